"""Using a saved model: predict, evaluate, missing modalities, refused files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import prefuse
from prefuse.cli import main
from prefuse.config import RunConfig, with_overrides
from prefuse.data.batching import Tensors, TensorSplit
from prefuse.data.formats.npz import dataset_arrays, save_npz
from prefuse.data.inspect import describe
from prefuse.data.synthetic import DIMS, make_synthetic
from prefuse.engine.evaluation import evaluate
from prefuse.errors import DataError, PrefuseError
from prefuse.inference import load_data_file, predict, write_predictions
from prefuse.inference import scores as prefuse_scores
from prefuse.models.network import MultimodalNetwork
from prefuse.models.saving import load_model, save_model
from prefuse.recipe.stages import network_spec, train_arm
from prefuse.recipe.workspace import Workspace
from prefuse.runs.experiment import run_experiment
from prefuse.tasks import task_for

from .conftest import CPU

SIZES = {"train": 80, "valid": 30, "test": 40}
MODALITIES = ["text", "audio", "vision"]


def tiny_config(out, **more) -> RunConfig:
    overrides = {"out": str(out), "seeds": [0], "arms": ["scratch+concat", "pretrained+attention"],
                 "train.epochs": 3, "train.pretrain_epochs": 1, "model.width": 8,
                 **{f"data.synthetic.{k}": v for k, v in SIZES.items()}, **more}
    return with_overrides(RunConfig(), overrides)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished run trained on an NPZ file, and that file."""
    root = tmp_path_factory.mktemp("predict")
    data = save_npz(make_synthetic(seed=0, **SIZES), root / "synth.npz")
    run_experiment(tiny_config(root / "run", **{"data.path": str(data)}), log=lambda _: None)
    return root / "run", data


def _write_npz(path, arrays):
    np.savez(path, **arrays)
    return path


def _without(arrays, modality, *, listed):
    out = {k: v for k, v in arrays.items()
           if k.split("/")[-1] != modality or k.startswith("meta/")}
    if not listed:
        out["meta/modalities"] = np.array([m for m in MODALITIES if m != modality])
    return out


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_csv_has_one_row_per_sample_and_weights_sum_to_one(run, tmp_path):
    run_dir, data = run
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run_dir), "--data", str(data), "--out", str(out)]) == 0
    rows = _rows(out)
    assert len(rows) == sum(SIZES.values())
    assert {r["split"] for r in rows} == set(SIZES)
    assert list(rows[0])[:4] == ["split", "id", "label", "prediction"]
    assert "prob_positive" in rows[0]
    for r in rows:
        assert sum(float(r[f"weight_{m}"]) for m in MODALITIES) == pytest.approx(1, abs=1e-5)
    ids = [r["id"] for r in rows if r["split"] == "test"]
    assert ids == [f"test-{i:05d}" for i in range(SIZES["test"])]


def test_predict_jsonl_one_split(run, tmp_path):
    run_dir, data = run
    out = tmp_path / "preds.jsonl"
    assert main(["predict", str(run_dir), "--data", str(data), "--split", "test",
                 "--arm", "scratch+concat", "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == SIZES["test"]
    for r in records:
        assert r["prediction"] in (0, 1) and 0 <= r["prob_positive"] <= 1
        assert sum(r[f"weight_{m}"] for m in MODALITIES) == pytest.approx(1, abs=1e-6)


def test_saved_and_loaded_model_predicts_identically(tmp_path):
    dataset = make_synthetic(seed=1, **SIZES)
    task = task_for(dataset)
    data = Tensors(dataset, task)
    config = tiny_config(tmp_path, arms=["scratch+attention"], **{"train.epochs": 1})
    trained = train_arm("scratch+attention", Workspace(dataset, task, data, CPU), config,
                        seed=0)
    expected = evaluate(trained.model, data.test, task, CPU)
    save_model(trained.model, "scratch+attention", task, tmp_path / "model")
    got = predict(load_model(tmp_path / "model"), dataset, split="test")["test"].evaluation
    for name in ("predictions", "scores", "weights"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    assert got.metrics == expected.metrics


def _test_split_without(arrays, modality):
    return {k: v for k, v in arrays.items() if k not in (f"test/{modality}",
                                                         f"test/lengths/{modality}")}


@pytest.mark.parametrize("change, masked", [
    (lambda a: _without(a, "vision", listed=True), ["vision"]),
    (lambda a: _without(a, "vision", listed=False), ["vision"]),
    (lambda a: _test_split_without(a, "vision"), []),
], ids=["arrays-absent", "not-listed", "absent-from-test-only"])
def test_file_lacking_a_modality_matches_masking_it_by_hand(run, tmp_path, change, masked):
    run_dir, data = run
    full = prefuse.load_dataset(data)
    path = _write_npz(tmp_path / "novision.npz", change(dataset_arrays(full)))
    model, task, _ = loaded = load_model(run_dir)
    got = predict(loaded, path, split="test")["test"]
    assert got.masked == masked
    test = TensorSplit(full["test"], MODALITIES, regression=False)
    test.present["vision"] = torch.zeros(len(test), dtype=torch.bool)
    test.complete = test.complete - {"vision"}
    by_hand = evaluate(model, test, task, CPU)
    np.testing.assert_allclose(got.evaluation.scores, by_hand.scores, atol=1e-6)
    np.testing.assert_array_equal(got.evaluation.predictions, by_hand.predictions)
    weights = got.evaluation.weights
    assert (weights[:, 2] == 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1, atol=1e-6)


def test_samples_marked_absent_are_masked_alone(run, tmp_path):
    run_dir, data = run
    arrays = dataset_arrays(prefuse.load_dataset(data))
    absent = np.zeros(SIZES["test"], dtype=bool)
    absent[::3] = True
    arrays["test/present/audio"] = ~absent
    path = _write_npz(tmp_path / "someaudio.npz", arrays)
    weights = predict(run_dir, path, split="test")["test"].evaluation.weights
    assert (weights[absent, 1] == 0).all() and (weights[~absent, 1] > 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1, atol=1e-6)


def _renamed(arrays):
    out = {k.replace("vision", "video"): v for k, v in arrays.items()}
    out["meta/modalities"] = np.array(["text", "audio", "video"])
    return out


def _narrow_text(arrays):
    return {k: v[..., :30] if k.split("/")[-1] == "text" and "/lengths/" not in k else v
            for k, v in arrays.items()}


def _vector_vision(arrays):
    return {k: v.mean(axis=1) if k.split("/")[-1] == "vision" and k.count("/") == 1
            and not k.startswith("meta/") else v
            for k, v in arrays.items() if not k.endswith("lengths/vision")}


@pytest.mark.parametrize("change, expected", [
    (_renamed, ["modalities unknown to the model: video", "text, audio, vision"]),
    (_narrow_text, [f"text: the model expects D={DIMS['text']}, the data has D=30"]),
    (_vector_vision, ["vision: the model expects a sequence (N, T, D), the data has a vector"]),
], ids=["renamed", "dims", "vector"])
def test_mismatched_file_is_refused_with_what_differs(run, tmp_path, capsys, change, expected):
    run_dir, data = run
    arrays = dataset_arrays(prefuse.load_dataset(data))
    path = _write_npz(tmp_path / "bad.npz", change(arrays))
    assert main(["predict", str(run_dir), "--data", str(path), "--out",
                 str(tmp_path / "p.csv")]) == 2
    message = capsys.readouterr().err
    for part in expected:
        assert part in message
    assert not (tmp_path / "p.csv").exists()
    with pytest.raises(PrefuseError, match="does not fit the model"):
        predict(run_dir, path)


def test_evaluate_rescores_the_saved_model(run, tmp_path, capsys):
    run_dir, data = run
    out = tmp_path / "scores.json"
    assert main(["evaluate", str(run_dir), "--data", str(data), "--arm", "scratch+concat",
                 "--out", str(out)]) == 0
    assert "acc" in capsys.readouterr().out
    scores = json.loads(out.read_text())
    saved = json.loads((run_dir / "metrics.json").read_text())
    recorded = saved["arms"]["scratch+concat"]["seeds"]["0"]["test"]
    assert scores["test"]["acc"] == pytest.approx(recorded["acc"], abs=1e-12)
    assert scores["test"]["f1_macro"] == pytest.approx(recorded["f1_macro"], abs=1e-12)


def test_model_json_describes_the_model(run):
    run_dir, _ = run
    meta = json.loads((run_dir / "model.json").read_text())
    assert meta["prefuse_version"] == prefuse.__version__
    assert meta["spec"]["modalities"] == MODALITIES
    assert meta["spec"]["dims"] == DIMS
    assert set(meta["normalization"]) == set(MODALITIES)
    assert meta["task"] == {"kind": "binary", "targets": 1, "label_names": ["positive"]}
    assert meta["config"]["model"]["width"] == 8
    assert not (run_dir / "checkpoints").exists()


def test_metrics_hold_the_robustness_table(run):
    run_dir, _ = run
    summary = json.loads((run_dir / "metrics.json").read_text())
    for arm in ("scratch+concat", "pretrained+attention"):
        table = summary["robustness"][arm]
        assert set(table) == {f"without_{m}" for m in MODALITIES}
        for entry in table.values():
            assert set(entry) == {"mean", "std"} and "acc" in entry["mean"]
    from prefuse.analysis.tables import robustness_table

    assert "without_vision" in robustness_table(summary)


def test_metrics_hold_the_metric_per_dominant_modality(run):
    from prefuse.analysis.tables import dominant_table

    run_dir, _ = run
    summary = json.loads((run_dir / "metrics.json").read_text())
    for arm in summary["arms"].values():
        assert set(arm["by_dominant"]) == set(MODALITIES)
        assert all(0.0 <= e["mean"] <= 1.0 for e in arm["by_dominant"].values())
    table = dominant_table(summary).splitlines()
    assert table[2].split()[:1] == ["arm"] and "vision" in table[2]
    assert any(line.startswith("pretrained+attention") for line in table)


def test_public_api():
    for name in ("load_model", "load_dataset", "make_synthetic", "RunConfig", "load_config",
                 "run_experiment", "predict"):
        assert callable(getattr(prefuse, name))
    with pytest.raises(AttributeError):
        prefuse.no_such_name  # noqa: B018


def test_classes_and_vector_targets_get_their_own_columns(tmp_path):
    from .conftest import mixed_dataset

    dataset = mixed_dataset()
    task = task_for(dataset)
    data = Tensors(dataset, task)
    config = tiny_config(tmp_path, arms=["scratch+attention"], **{"train.epochs": 1})
    trained = train_arm("scratch+attention", Workspace(dataset, task, data, CPU), config,
                        seed=0)
    save_model(trained.model, "scratch+attention", task, tmp_path / "model")
    out = tmp_path / "classes.csv"
    write_predictions(predict(tmp_path / "model", dataset, split="test"), task,
                      ["sensor", "meta"], out)
    rows = _rows(out)
    assert len(rows) == len(dataset["test"])
    for r in rows:
        assert sum(float(r[f"prob_{c}"]) for c in "abc") == pytest.approx(1, abs=1e-5)
        assert int(r["prediction"]) in (0, 1, 2)

    for split in dataset.splits.values():
        split.labels = np.stack([split.labels, -split.labels], axis=1).astype(np.float32)
    dataset.task, dataset.label_names = "regression", ["x", "y"]
    task = task_for(dataset)
    model = MultimodalNetwork(network_spec(dataset, config, task, "attention"))
    predictions = predict((model.eval(), task, {}), dataset, split="test")
    write_predictions(predictions, task, ["sensor", "meta"], tmp_path / "targets.jsonl")
    write_predictions(predictions, task, ["sensor", "meta"], tmp_path / "targets.csv")
    record = json.loads((tmp_path / "targets.jsonl").read_text().splitlines()[0])
    assert len(record["prediction"]) == 2 and len(record["label"]) == 2
    assert not any(k.startswith("prob_") for k in record)
    assert len(_rows(tmp_path / "targets.csv")[0]["prediction"].split(";")) == 2
    with pytest.raises(PrefuseError, match=".csv or .jsonl"):
        write_predictions(predictions, task, ["sensor", "meta"], tmp_path / "p.txt")


def _raw(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _unlabelled(arrays, split):
    """``split``'s features, lengths and ids only: what new data to predict on looks like."""
    keep = [f"{split}/{m}" for m in MODALITIES] + [f"{split}/lengths/{m}" for m in MODALITIES]
    return {k: v for k, v in arrays.items() if k in keep + [f"{split}/ids"]}


def _meta(arrays):
    return {k: v for k, v in arrays.items() if k.startswith("meta/")}


def test_unlabelled_file_is_predicted_like_the_labelled_original(run, tmp_path):
    run_dir, data = run
    arrays = _raw(data)
    path = _write_npz(tmp_path / "new.npz", _meta(arrays) | _unlabelled(arrays, "test"))
    got = prefuse.predict(run_dir, path)
    assert list(got) == ["test"]
    new, old = got["test"], predict(run_dir, data, split="test")["test"]
    assert new.labels is None and new.evaluation.loss is None and new.evaluation.metrics is None
    np.testing.assert_array_equal(new.ids, old.ids)
    for name in ("predictions", "scores", "weights"):
        np.testing.assert_array_equal(getattr(new.evaluation, name),
                                      getattr(old.evaluation, name))

    for suffix in (".csv", ".jsonl"):
        new_out, old_out = tmp_path / f"new{suffix}", tmp_path / f"old{suffix}"
        assert main(["predict", str(run_dir), "--data", str(path), "--out", str(new_out)]) == 0
        assert main(["predict", str(run_dir), "--data", str(data), "--split", "test",
                     "--out", str(old_out)]) == 0
        if suffix == ".csv":
            new_rows, old_rows = _rows(new_out), _rows(old_out)
        else:
            new_rows, old_rows = ([json.loads(line) for line in f.read_text().splitlines()]
                                  for f in (new_out, old_out))
        assert len(new_rows) == SIZES["test"]
        assert all(r["label"] == ("" if suffix == ".csv" else None) for r in new_rows)
        assert all(r["label"] not in ("", None) for r in old_rows)
        assert [r | {"label": None} for r in new_rows] == [r | {"label": None} for r in old_rows]


def test_labelled_and_unlabelled_splits_in_one_file(run, tmp_path, capsys):
    run_dir, data = run
    arrays = _raw(data)
    valid = {k: v for k, v in arrays.items() if k.startswith("valid/")}
    path = _write_npz(tmp_path / "mixed.npz", _meta(arrays) | valid | _unlabelled(arrays, "test"))
    got = predict(run_dir, path)
    assert list(got) == ["valid", "test"]
    assert got["test"].labels is None
    report = describe(load_data_file(path))
    assert "labels: none" in report and f"labels: shape ({SIZES['valid']},)" in report
    np.testing.assert_array_equal(got["valid"].labels, prefuse.load_dataset(data)["valid"].labels)

    out = tmp_path / "mixed.csv"
    assert main(["predict", str(run_dir), "--data", str(path), "--out", str(out)]) == 0
    rows = _rows(out)
    assert [r["split"] for r in rows] == ["valid"] * SIZES["valid"] + ["test"] * SIZES["test"]
    assert all((r["label"] == "") == (r["split"] == "test") for r in rows)

    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--data", str(path), "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "split 'test' has no labels" in err and str(path) in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(PrefuseError, match="split 'test' has no labels"):
        prefuse_scores(got)

    scores_out = tmp_path / "valid.json"
    assert main(["evaluate", str(run_dir), "--data", str(path), "--split", "valid",
                 "--out", str(scores_out)]) == 0
    expected = prefuse_scores(predict(run_dir, data, split="valid"))
    assert json.loads(scores_out.read_text()) == expected


def test_unlabelled_split_whose_modalities_disagree_on_size_is_refused(run, tmp_path):
    run_dir, data = run
    arrays = _meta(_raw(data)) | _unlabelled(_raw(data), "test")
    arrays["test/audio"] = arrays["test/audio"][:-1]
    path = _write_npz(tmp_path / "short.npz", arrays)
    with pytest.raises(DataError) as info:
        predict(run_dir, path)
    assert info.value.field == "test/audio" and str(path) in str(info.value)
    assert f"has {SIZES['test'] - 1} samples, test/text {SIZES['test']}" in str(info.value)


@pytest.mark.parametrize("change, key", [
    (lambda a: {k: v for k, v in a.items() if k != "test/labels"}, "test/labels"),
    (lambda a: _meta(a) | _unlabelled(a, "test"), "train/labels"),
], ids=["no-test-labels", "prediction-only-file"])
def test_training_still_needs_every_split_labelled(run, tmp_path, capsys, change, key):
    _, data = run
    path = _write_npz(tmp_path / "nolabels.npz", change(_raw(data)))
    out = tmp_path / "run"
    assert main(["run", "--data", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{path} [{key}]: split '{key.split('/')[0]}' is missing" in err
    assert not out.exists()


def test_a_file_without_valid_is_predicted_whole(run, tmp_path):
    # Training carves valid out of train; prediction must not hide any train sample.
    run_dir, data = run
    arrays = {k: v for k, v in _raw(data).items() if not k.startswith("valid/")}
    path = _write_npz(tmp_path / "novalid.npz", arrays)
    got = predict(run_dir, path)
    assert list(got) == ["train", "test"]
    assert len(got["train"].ids) == SIZES["train"]
    np.testing.assert_array_equal(got["train"].ids, arrays["train/ids"].astype(str))


def test_predict_and_evaluate_warn_on_input_that_carries_nothing(run, tmp_path, capsys):
    run_dir, _ = run
    arrays = dataset_arrays(make_synthetic(seed=0, **SIZES))
    for split in SIZES:
        for m in MODALITIES:
            arrays[f"{split}/lengths/{m}"] = np.zeros(SIZES[split], dtype=np.int64)
    empty = _write_npz(tmp_path / "empty.npz", arrays)
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run_dir), "--data", str(empty), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    for split in SIZES:
        for m in MODALITIES:
            assert f"{empty} [{split}/present/{m}]: modality '{m}' is present in no " \
                   f"sample of {split}" in err
        assert f"{empty} [{split}]: {SIZES[split]} of {SIZES[split]} samples have no " \
               "modality present" in err
    rows = _rows(out)
    assert len(rows) == sum(SIZES.values()) and {r["no_input"] for r in rows} == {"True"}
    assert {float(r[f"weight_{m}"]) for r in rows for m in MODALITIES} == {0.0}
    assert main(["evaluate", str(run_dir), "--data", str(empty)]) == 0
    err = capsys.readouterr().err
    assert f"{empty} [test/present/audio]: modality 'audio' is present in no sample" in err


def test_predict_marks_only_the_samples_with_no_modality_present(run, tmp_path, capsys):
    run_dir, _ = run
    arrays = dataset_arrays(make_synthetic(seed=0, **SIZES))
    for m in MODALITIES:
        arrays[f"test/lengths/{m}"][:5] = 0  # samples 0-4 carry nothing
    arrays["test/lengths/text"][5:9] = 0  # samples 5-8 lack text alone
    data = _write_npz(tmp_path / "some.npz", arrays)
    out = tmp_path / "preds.jsonl"
    assert main(["predict", str(run_dir), "--data", str(data), "--split", "test",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{data} [test]: 5 of {SIZES['test']} samples have no modality present" in err
    assert "is present in no sample" not in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["no_input"] for r in rows] == [True] * 5 + [False] * (SIZES["test"] - 5)
