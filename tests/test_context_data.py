"""The data side of utterance context: windows cut from groups, batches of whole windows,
evaluation and prediction in sample order, and the refusals around ``--context``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from prefuse.cli import main
from prefuse.config import RunConfig, TrainConfig, with_overrides
from prefuse.data.batching import Batch, Tensors, TensorSplit
from prefuse.data.dataset import MultimodalDataset, Split
from prefuse.data.windows import pack, plan_windows, window_for, window_lengths
from prefuse.engine import distributed, runtime
from prefuse.engine.evaluation import evaluate
from prefuse.errors import ConfigError, DataError, PrefuseError
from prefuse.inference import predict
from prefuse.models.network import NetworkSpec
from prefuse.models.outputs import PLAIN, NetworkOutput, Request
from prefuse.recipe.checks import check_arms_data, check_config, check_runtime
from prefuse.tasks import task_for

from .conftest import CPU, tiny_config


@pytest.mark.parametrize("n, size, expected", [
    (70, 32, [24, 23, 23]), (64, 32, [32, 32]), (65, 32, [22, 22, 21]), (5, 32, [5]),
    (1, 1, [1]), (7, 2, [2, 2, 2, 1]), (0, 4, [])])
def test_window_lengths_are_near_equal_and_never_longer_than_the_window(n, size, expected):
    lengths = window_lengths(n, size)
    assert lengths.tolist() == expected
    assert lengths.sum() == n and (lengths <= size).all()
    assert len(lengths) == -(-n // size)


def _groups(rng: np.random.Generator, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Groups of ``sizes`` utterances, shuffled in the file, with gaps in the positions."""
    group = np.concatenate([np.full(s, f"v{k}") for k, s in enumerate(sizes)])
    order = np.concatenate([np.sort(rng.choice(1000, s, replace=False)) for s in sizes])
    shuffle = rng.permutation(len(group))
    return group[shuffle], order[shuffle]


def test_plan_keeps_every_utterance_once_in_group_order():
    rng = np.random.default_rng(0)
    group, order = _groups(rng, [70, 1, 33, 32, 5])
    plan = plan_windows(group, order, 32)
    assert sorted(plan.index.tolist()) == list(range(len(group)))
    windows = plan.windows()
    assert [len(w) for w in windows] == [24, 23, 23, 1, 17, 16, 32, 5]
    for w in windows:
        assert len(set(group[w])) == 1 and (np.diff(order[w]) > 0).all()
    # A group's windows follow one another: its utterances in order across them.
    v0 = np.concatenate([w for w in windows if group[w[0]] == "v0"])
    assert (np.diff(order[v0]) > 0).all() and len(v0) == 70


def test_a_sample_without_a_group_is_a_window_of_its_own():
    group = np.array(["a", "", "a", "", "a"])
    plan = plan_windows(group, np.array([2, 0, 0, 0, 1]), 8)
    assert sorted(map(sorted, (w.tolist() for w in plan.windows()))) == [[0, 2, 4], [1], [3]]


def test_pack_keeps_windows_whole_and_a_long_window_gets_its_own_batch():
    plan = plan_windows(np.repeat(["a", "b", "c", "d"], [3, 9, 2, 4]), np.arange(18), 9)
    packing = pack(plan, np.arange(plan.count), 6)
    sizes = np.diff(packing.bounds).tolist()
    assert sizes == [3, 9, 6]  # a | b (9 > 6: alone) | c + d
    assert packing.window_bounds.tolist() == [0, 1, 2, 4]
    np.testing.assert_array_equal(packing.order, np.arange(18))
    np.testing.assert_array_equal(packing.slot[12:], [0, 1, 0, 1, 2, 3])


def test_pack_fills_batches_to_the_batch_size_on_average():
    # Videos of 25 and batches of 64: 75 is nearer 64 than 50, so three videos a batch.
    plan = plan_windows(np.repeat([f"v{k:02d}" for k in range(12)], 25), np.arange(300), 32)
    sizes = np.diff(pack(plan, np.arange(plan.count), 64).bounds).tolist()
    assert sizes == [75, 75, 75, 75]
    # Lengths 10, 40, 30 and a batch of 32: 10 + 40 / 2 = 30 <= 32 takes the 40 in; the
    # 30 would leave the batch farther off (50 + 15 > 32) and starts the next.
    plan = plan_windows(np.repeat(["a", "b", "c"], [10, 40, 30]), np.arange(80), 40)
    assert np.diff(pack(plan, np.arange(plan.count), 32).bounds).tolist() == [50, 30]


def _grouped_split(sizes: list[int], seed: int = 0, labelled: bool = True) -> Split:
    """A regression split whose only feature (and label) is each sample's index, so that
    an output can be traced back to its sample."""
    group, order = _groups(np.random.default_rng(seed), sizes)
    n = len(group)
    ids = np.arange(n, dtype=np.float32)
    return Split(features={"a": ids[:, None].copy()}, labels=ids.copy() if labelled else None,
                 group=group, order=order)


def _check_whole_windows(batch: Batch, split: Split, batch_size: int) -> list[int]:
    """Assert that ``batch`` holds whole windows laid out as ``batch.windows`` says; return
    its sample indices."""
    rows = batch.x["a"][:, 0].long().numpy()
    w = batch.windows
    assert w is not None and len(batch) <= max(batch_size + w.size / 2, w.size)
    grid = np.full((w.count, w.size), -1)
    grid[w.window.numpy(), w.slot.numpy()] = rows
    for line in grid:
        used = line[line >= 0]
        assert len(used) > 0 and (line[len(used):] == -1).all()  # left-aligned, no holes
        assert len(set(split.group[used])) == 1
        assert (np.diff(split.order[used]) > 0).all()
    return rows.tolist()


def test_training_batches_are_whole_windows_covering_each_utterance_once_per_epoch():
    split = _grouped_split([70, 3, 12, 40, 1, 9])
    data = TensorSplit(split, ["a"], regression=True, context_window=16)
    plan = data.plan
    windows = {tuple(sorted(w.tolist())) for w in plan.windows()}
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        seen, found = [], set()
        for batch in data.batches(20, generator):
            rows = _check_whole_windows(batch, split, 20)
            seen += rows
            for k in range(batch.windows.count):
                found.add(tuple(sorted(np.array(rows)[batch.windows.window.numpy() == k])))
        assert sorted(seen) == list(range(len(split)))
        assert found == windows  # the plan's windows, none cut, none merged


def _epoch(data: TensorSplit, seed: int, drop: float = 0.0) -> list[tuple]:
    generator = torch.Generator().manual_seed(seed)
    return [(b.x["a"][:, 0].tolist(), b.windows.window.tolist(), b.windows.slot.tolist(),
             b.present["a"].tolist()) for b in data.batches(20, generator, drop)]


def test_the_same_seed_gives_the_same_batches_and_another_seed_shuffles_windows():
    data = TensorSplit(_grouped_split([70, 3, 12, 40, 1, 9]), ["a"], True, 16)
    assert _epoch(data, 3) == _epoch(data, 3)
    assert _epoch(data, 3, 0.5) == _epoch(data, 3, 0.5)
    assert _epoch(data, 3) != _epoch(data, 4)


def test_without_a_window_batches_are_as_before():
    split = _grouped_split([7, 5])
    plain, zero = TensorSplit(split, ["a"], True), TensorSplit(split, ["a"], True, 0)
    for a, b in zip(plain.batches(4, torch.Generator().manual_seed(1)),
                    zero.batches(4, torch.Generator().manual_seed(1))):
        assert torch.equal(a.x["a"], b.x["a"]) and a.windows is None and b.windows is None
    rows = torch.arange(12.0)
    assert plain.restore(rows) is rows


def test_windows_need_groups():
    with pytest.raises(ValueError, match="groups"):
        TensorSplit(Split(features={"a": np.zeros((3, 1), np.float32)},
                          labels=np.zeros(3)), ["a"], True, 4)


class RowId(nn.Module):
    """A stand-in network: each sample's logit is its feature (its index), and it records
    the windows it was given."""

    def __init__(self, spec: NetworkSpec | None = None):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))
        self.spec = spec
        self.seen: list[Batch] = []

    def forward(self, batch: Batch, request: Request = PLAIN) -> NetworkOutput:
        self.seen.append(batch)
        logits = batch.x["a"][:, :1] + self.bias
        return NetworkOutput(logits=logits, weights=logits.repeat(1, 2),
                             kept_logits={k: logits for k in request.keep})


def _dataset(splits: dict[str, Split]) -> MultimodalDataset:
    return MultimodalDataset(splits=splits, task="regression", modalities=["a"],
                             source="ctx.npz")


def test_evaluation_puts_every_output_back_in_sample_order():
    split = _grouped_split([70, 3, 12, 40, 1, 9])
    task = task_for(_dataset({"train": split}))
    model = RowId()
    out = evaluate(model, TensorSplit(split, ["a"], True, 16), task, CPU, batch_size=20,
                   keep=(("a",),))
    assert all(b.windows is not None for b in model.seen)
    # The pass went window by window (not in sample order), and the outputs came back.
    assert torch.cat([b.x["a"][:, 0] for b in model.seen]).tolist() != \
        list(range(len(split)))
    np.testing.assert_array_equal(out.predictions, np.arange(len(split)))
    np.testing.assert_array_equal(out.weights[:, 1], np.arange(len(split)))
    assert out.loss == 0.0 and out.metrics["mae"] == 0.0
    assert out.kept[("a",)]["mae"] == 0.0
    plain = evaluate(RowId(), TensorSplit(split, ["a"], True), task, CPU, batch_size=20)
    np.testing.assert_array_equal(plain.predictions, out.predictions)


def test_tensors_pass_the_window_to_every_split():
    ds = _dataset({"train": _grouped_split([9, 4]), "valid": _grouped_split([5], 1),
                   "test": _grouped_split([6, 2], 2)})
    data = Tensors(ds, task_for(ds), 4)
    assert [len(s.plan.windows()) for s in (data.train, data.valid, data.test)] == [4, 2, 3]
    assert Tensors(ds, task_for(ds)).train.plan is None


def test_window_for_is_the_window_only_with_context():
    config = RunConfig()
    assert window_for(config.model) == 0
    assert window_for(with_overrides(config, {"model.context": "gru",
                                              "model.context_window": 7}).model) == 7


def _spec(context: str = "gru", window: int = 2) -> NetworkSpec:
    return NetworkSpec(modalities=["a"], dims={"a": 1}, sequence={"a": False},
                       encoders={"a": "mlp"}, fusion="concat", out_dim=1, context=context,
                       context_window=window)


def test_predict_cuts_the_new_file_into_the_models_windows():
    grouped = _grouped_split([5, 3, 1], labelled=False)
    ds = _dataset({"test": grouped})
    model = RowId(_spec(window=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every sample has a group: no warning
        out = predict((model, task_for(_dataset({"train": _grouped_split([2])})), {}), ds)
    np.testing.assert_array_equal(out["test"].evaluation.predictions, np.arange(9))
    assert max(b.windows.size for b in model.seen) == 2
    assert sum(b.windows.count for b in model.seen) == 3 + 2 + 1


def test_predict_scores_samples_without_a_group_alone_with_one_warning():
    alone = Split(features={"a": np.arange(4, dtype=np.float32)[:, None]}, labels=None)
    partly = _grouped_split([3, 2], labelled=False)
    partly.group[[0, 4]] = ""
    ds = _dataset({"valid": alone, "test": partly})
    model = RowId(_spec(window=4))
    task = task_for(_dataset({"train": _grouped_split([2])}))
    with pytest.warns(UserWarning) as caught:
        out = predict((model, task, {}), ds)
    messages = [str(w.message) for w in caught if "no group" in str(w.message)]
    assert len(messages) == 1 and "6 of 9 samples have no group" in messages[0]
    assert "without context" in messages[0]
    np.testing.assert_array_equal(out["valid"].evaluation.predictions, np.arange(4))
    np.testing.assert_array_equal(out["test"].evaluation.predictions, np.arange(5))
    windows = [b.windows for b in model.seen]
    assert [w.count for w in windows] == [4, 3]  # 4 alone; 2 alone + one group of 3


def test_a_model_without_context_predicts_without_windows():
    model = RowId(_spec(context="none", window=0))
    ds = _dataset({"test": Split(features={"a": np.ones((3, 1), np.float32)}, labels=None)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict((model, task_for(_dataset({"train": _grouped_split([2])})), {}), ds)
    assert all(b.windows is None for b in model.seen)


def _context(**overrides) -> RunConfig:
    return with_overrides(RunConfig(), {"model.context": "gru", **overrides})


def test_context_on_data_without_groups_names_the_file_and_the_missing_field():
    config = check_config(_context(arms=["scratch+concat"]))
    splits = {"train": _grouped_split([3]),
              "valid": Split(features={"a": np.zeros((2, 1), np.float32)},
                             labels=np.zeros(2))}
    with pytest.raises(DataError) as caught:
        check_arms_data(config, ["a"], "clips.npz", splits)
    message = str(caught.value)
    assert message.startswith("clips.npz [valid/group]:") and "group" in message
    assert "context (gru)" in message
    # Without context the same data is fine, and so is data with every group.
    check_arms_data(check_config(with_overrides(RunConfig(), {"arms": ["scratch+concat"]})),
                    ["a"], "clips.npz", splits)
    check_arms_data(config, ["a"], "clips.npz", {"train": _grouped_split([3])})


@pytest.mark.parametrize("window", [0, -3])
def test_a_window_under_one_is_refused_naming_the_field(window):
    with pytest.raises(ConfigError) as caught:
        check_config(_context(**{"model.context_window": window}), "run.toml")
    assert caught.value.field == "model.context_window" and "at least 1" in str(caught.value)
    assert "run.toml" in str(caught.value)


def test_mult_with_context_is_refused_with_the_reason():
    with pytest.raises(ConfigError) as caught:
        check_config(_context(arms=["mult", "scratch+concat"]))
    message = str(caught.value)
    assert caught.value.field == "model.context" and "arm mult" in message
    assert "time steps within one utterance" in message
    check_config(with_overrides(RunConfig(), {"arms": ["mult"]}))  # without context: fine


def test_context_under_torchrun_is_refused():
    two = runtime.resolve(TrainConfig(device="cpu"), env={"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(ConfigError, match="one process only, not 2"):
        check_runtime(_context(), two)
    check_runtime(RunConfig(), two)  # without context, torchrun trains as before
    data = TensorSplit(_grouped_split([4, 4]), ["a"], True, 4)
    batch = next(data.batches(8))
    with pytest.raises(PrefuseError, match="cut them apart"):
        distributed.shard(batch, two)
    plain = next(TensorSplit(_grouped_split([4, 4]), ["a"], True).batches(8))
    assert len(distributed.shard(plain, two)) == 4


def test_the_context_flags_set_their_fields_in_run_and_tune(tmp_path, capsys, monkeypatch):
    import prefuse.tuning
    seen = []
    monkeypatch.setattr(prefuse.tuning, "tune", lambda config, *a, **k: seen.append(config)
                        or {"arms": {}})
    assert main(["tune", "--out", str(tmp_path / "t"), "--context", "lstm",
                 "--context-window", "8"]) == 0
    assert (seen[0].model.context, seen[0].model.context_window) == ("lstm", 8)
    assert main(["run", "--out", str(tmp_path / "r"), "--context", "gru",
                 "--context-window", "0"]) == 2
    err = capsys.readouterr().err
    assert "config field 'model.context_window'" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_a_run_with_context_trains_on_whole_windows(tmp_path, monkeypatch):
    """Every arm path that passes over a split (training, gblend's validation losses, the
    ensemble's calibration, evaluation) runs on windows end to end."""
    from prefuse.data.synthetic_context import make_context_synthetic
    from prefuse.runs.experiment import run_experiment

    seen = []
    original = TensorSplit.batches

    def spy(self, *args, **kwargs):
        for batch in original(self, *args, **kwargs):
            seen.append(batch.windows)
            yield batch

    monkeypatch.setattr(TensorSplit, "batches", spy)
    dataset = make_context_synthetic(seed=0, train=120, valid=40, test=40)
    config = tiny_config(tmp_path / "run", arms=["ensemble", "pretrained+attention+gblend"],
                         **{"model.context": "gru", "model.context_window": 4,
                            "train.epochs": 4, "train.pretrain_epochs": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = run_experiment(config, dataset, log=lambda *_: None)
    assert set(metrics["arms"]) == {"ensemble", "pretrained+attention+gblend"}
    assert seen and all(w is not None and w.size <= 4 for w in seen)


def test_a_tune_cannot_search_the_context_settings():
    from prefuse.config import SearchParam
    from prefuse.tuning.space import check_tune

    for key, param in (("model.context_window", SearchParam("int", low=4, high=16)),
                       ("model.context", SearchParam("choice", choices=["none", "gru"]))):
        config = with_overrides(RunConfig(), {"model.context": "gru"})
        config.tune.space = {key: param}
        with pytest.raises(ConfigError) as caught:
            check_tune(config)
        assert caught.value.field == f"tune.space.{key}" and "--context" in str(caught.value)
