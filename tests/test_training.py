import copy
import json

import numpy as np
import pytest
import torch

from prefuse.cli import main
from prefuse.config import TrainConfig
from prefuse.data.batching import Tensors
from prefuse.data.formats.npz import save_npz
from prefuse.engine.evaluation import evaluate
from prefuse.engine.fit import fit
from prefuse.models.network import MultimodalNetwork
from prefuse.recipe.arms import arm as arm_named
from prefuse.recipe.stages import network_spec, pretrain, train_arm
from prefuse.recipe.workspace import Workspace
from prefuse.tasks import task_for

from .conftest import CPU, mixed_dataset, tiny_config


def test_a_tiny_run_learns(tmp_path):
    dataset = mixed_dataset(n=200)
    config = tiny_config(tmp_path)
    task = task_for(dataset)
    data = Tensors(dataset, task)
    torch.manual_seed(0)
    model = MultimodalNetwork(network_spec(dataset, config, task, "attention"))
    model.fit_standardization(dataset["train"])
    result = fit(model, None, data, task,
                 TrainConfig(epochs=10, lr=3e-3, patience=10, batch_size=16), CPU, seed=0)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.5 * losses[0]
    chance = task.chance(dataset["test"].labels)["acc"]
    assert evaluate(model, data.test, task, CPU).metrics["acc"] > chance + 0.3


def test_stage_two_starts_from_stage_one_weights(tiny_synthetic, tmp_path, monkeypatch):
    config = tiny_config(tmp_path)
    task = task_for(tiny_synthetic)
    data = Tensors(tiny_synthetic, task)
    space = Workspace(tiny_synthetic, task, data, CPU)
    unimodal = pretrain(space, config, seed=0)
    seen = {}

    def record_start(model, *args, **kwargs):
        seen.update({m: {k: v.clone() for k, v in model.encoders[m].state_dict().items()}
                     for m in model.modalities})
        raise StopIteration  # only the starting point matters here

    monkeypatch.setattr("prefuse.recipe.stages.fit", record_start)
    try:
        train_arm("pretrained+attention", space, config, 0, unimodal)
    except StopIteration:
        pass
    for m, result in unimodal.items():
        for k, v in result.model.encoders[m].state_dict().items():
            assert torch.equal(seen[m][k], v), (m, k)
    assert arm_named("pretrained+attention").loads_stage1


def test_same_seed_same_results_other_seed_differs(tiny_synthetic, tmp_path):
    config = tiny_config(tmp_path)
    task = task_for(tiny_synthetic)
    data = Tensors(tiny_synthetic, task)
    space = Workspace(tiny_synthetic, task, data, CPU)
    runs = [train_arm("scratch+attention", space, config, s)
            for s in (0, 0, 1)]
    assert runs[0].test.metrics == runs[1].test.metrics
    np.testing.assert_array_equal(runs[0].test.weights, runs[1].test.weights)
    assert not np.array_equal(runs[0].test.weights, runs[2].test.weights)


def test_run_on_any_generic_file_writes_the_run_directory(tmp_path):
    path = save_npz(mixed_dataset(n=60), tmp_path / "mixed.npz")
    out = tmp_path / "run"
    code = main(["run", "--data", str(path), "--out", str(out), "--seeds", "0", "1",
                 "--epochs", "4", "--pretrain-epochs", "2", "--width", "8"])
    assert code == 0
    for name in ("config.toml", "metrics.json", "history.csv", "attention.csv",
                 "model.safetensors", "model.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["modalities"] == ["sensor", "meta"]
    assert set(summary["arms"]) == {"scratch+concat", "scratch+attention",
                                    "pretrained+concat", "pretrained+attention"}
    for arm in summary["arms"].values():
        assert set(arm["seeds"]) == {"0", "1"}
        assert {"mean", "std", "train_seconds", "seconds_per_epoch", "params",
                "inference_samples_per_s", "peak_rss_mb"} <= set(arm)
        assert arm["inference_samples_per_s"] > 0 and arm["peak_rss_mb"] > 0
        assert "attention_agreement" not in arm  # no `dominant` in this file
    assert set(summary["unimodal"]) == {"sensor", "meta"}
    assert set(summary["attention"]) == {"before_pretraining", "after_pretraining"}
    lines = (out / "attention.csv").read_text().splitlines()
    assert lines[0].split(",")[-2:] == ["weight_sensor", "weight_meta"]
    assert len(lines) == 1 + 4 * 2 * 30


def test_bad_config_and_missing_data_exit_with_a_clear_message(tmp_path, capsys):
    assert main(["run", "--data", str(tmp_path / "nope.npz")]) == 2
    assert "nope.npz" in capsys.readouterr().err
    assert main(["run", "--set", "train.lr=-1"]) == 2
    assert "train.lr" in capsys.readouterr().err


def test_synth_command_writes_the_generic_layout(tmp_path):
    out = tmp_path / "s.npz"
    assert main(["data", "synth", "--out", str(out), "--train", "30", "--valid", "10",
                 "--test", "10"]) == 0
    with np.load(out, allow_pickle=False) as z:
        assert list(z["meta/modalities"]) == ["text", "audio", "vision"]
        assert z["train/text"].shape[0] == 30 and "test/dominant" in z.files


def test_unwritable_run_directory_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["run", "--out", str(blocker / "run"), "--epochs", "2",
                 "--pretrain-epochs", "1", "--set", "data.synthetic.train=40",
                 "--set", "data.synthetic.valid=20", "--set", "data.synthetic.test=20"]) == 2
    assert f"{blocker} is not a directory" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


def test_metric_by_dominant_matches_a_hand_count():
    from types import SimpleNamespace

    from prefuse.data.dataset import Split
    from prefuse.runs.summary import metric_by_dominant
    from prefuse.tasks import make_task

    split = Split(features={"a": np.zeros((6, 1), np.float32)},
                  labels=np.array([1, 0, 1, 0, 1, 0]), lengths={"a": np.ones(6, np.int64)},
                  ids=np.array([str(i) for i in range(6)]),
                  dominant=np.array([0, 0, 1, 1, 2, 2]))
    runs = [SimpleNamespace(test=SimpleNamespace(predictions=np.array(p)))
            for p in ([1, 0, 0, 0, 1, 1], [1, 0, 1, 0, 1, 0])]
    got = metric_by_dominant(runs, make_task("binary", 1), split, ["t", "a", "v"])
    # Seed one is right on both text samples and on one of each other pair; seed two on all.
    assert got == {"t": {"mean": 1.0, "std": 0.0}, "a": {"mean": 0.75, "std": 0.25},
                   "v": {"mean": 0.75, "std": 0.25}}


def test_run_whose_reader_has_gone_still_trains_and_writes_its_run(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    command = [sys.executable, "-m", "prefuse", "run", "--out", str(out), "--seeds", "0",
               "--epochs", "3", "--pretrain-epochs", "1", "--width", "4",
               "--set", "data.synthetic.train=40", "--set", "data.synthetic.valid=20",
               "--set", "data.synthetic.test=20"]
    # The read end is closed before the run prints anything: every print meets a broken
    # pipe, as after `prefuse run | head -1`.
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=300) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    assert (out / "report.html").is_file() and (out / "metrics.json").is_file()


def test_run_experiment_refuses_an_unlabelled_dataset_built_in_memory(tmp_path):
    import pytest

    from prefuse.data.synthetic import make_synthetic
    from prefuse.errors import DataError
    from prefuse.runs.experiment import run_experiment

    dataset = make_synthetic(seed=0, train=40, valid=20, test=20)
    dataset["train"].labels = None
    with pytest.raises(DataError, match="train/labels"):
        run_experiment(tiny_config(tmp_path / "run"), dataset)
    assert not (tmp_path / "run").exists()


def _untrained(arm: str, dataset, task, data, config):
    """``arm``'s network as built for ``dataset``, untrained (the ensemble: over untrained
    stage-1 members, calibrated on the validation split)."""
    spec = arm_named(arm)
    torch.manual_seed(0)
    model = spec.build(network_spec(dataset, config, task, spec.fusion))
    model.fit_standardization(dataset["train"])
    if not spec.joint:
        base = network_spec(dataset, config, task, "concat")
        for modality in dataset.modalities:
            member = MultimodalNetwork(base.only(modality))
            member.fit_standardization(dataset["train"])
            model.load_pretrained(modality, member)
        model.calibrate(data.valid, task)
    return model


@pytest.mark.parametrize("arm", ["scratch+attention", "mult", "ensemble"])
def test_kept_scores_are_those_of_the_split_masked_by_hand(tiny_synthetic, arm):
    # The simple network scores every subset from one encoding of each batch; MulT and
    # the ensemble run once per subset. Either way: the numbers of masking by hand.
    task = task_for(tiny_synthetic)
    data = Tensors(tiny_synthetic, task)
    model = _untrained(arm, tiny_synthetic, task, data, tiny_config("unused"))
    subsets = (("text",), ("audio", "vision"), ("text", "audio", "vision"))
    got = evaluate(model, data.test, task, CPU, batch_size=50, keep=subsets)
    for subset in subsets:
        masked = copy.copy(data.test)
        masked.present = {m: p if m in subset else torch.zeros_like(p)
                          for m, p in data.test.present.items()}
        masked.complete = data.test.complete & set(subset)
        assert got.kept[subset] == evaluate(model, masked, task, CPU).metrics, subset
    assert got.kept[subsets[-1]] == got.metrics
    assert got.kept[("text",)] != got.metrics  # masking changed something
