"""Training methods and the step seam: each mechanism on tiny tensors, then tiny runs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from prefuse.config import TrainConfig
from prefuse.data.batching import Batch, Tensors
from prefuse.engine.checkpoint import RunCheckpoints
from prefuse.engine.fit import fit
from prefuse.methods import METHODS, Method, build_method
from prefuse.methods.umt import Umt
from prefuse.models.network import MultimodalNetwork
from prefuse.models.outputs import Request
from prefuse.recipe.stages import pretrain, train_arm
from prefuse.recipe.workspace import Workspace
from prefuse.tasks import make_task, task_for

from .conftest import CPU, tiny_config
from .test_models import _batch, _spec

TASK = make_task("multiclass", 2, ["n", "y"])


def _parameters_with_grad(model: torch.nn.Module) -> set[str]:
    return {name.split(".")[0] for name, p in model.named_parameters()
            if p.grad is not None and p.grad.abs().sum() > 0}


def test_requested_outputs_have_their_shapes_and_meaning():
    torch.manual_seed(0)
    model = MultimodalNetwork(replace(_spec(), unimodal_heads=True)).eval()
    batch = _batch()
    out = model(batch, Request(unimodal_heads=True, keep=(("a", "c"),)))
    assert out.logits.shape == (6, 2) and out.weights.shape == (6, 3)
    assert out.features.shape == (6, 3, 8)
    assert {m: v.shape for m, v in out.unimodal_logits.items()} == \
        {m: (6, 2) for m in "abc"}
    # An auxiliary head sees its own modality's features only.
    assert torch.allclose(out.unimodal_logits["b"], model.unimodal_heads["b"](out.features[:, 1]))
    # Kept logits are the fused logits with the other modalities masked.
    masked = Batch(batch.x, batch.lengths, {**batch.present, "b": torch.zeros(6, dtype=bool)},
                   batch.y)
    assert torch.allclose(out.kept_logits[("a", "c")], model(masked).logits)


def test_shared_unimodal_logits_are_the_network_with_one_modality():
    torch.manual_seed(0)
    model = MultimodalNetwork(_spec()).eval()
    batch = _batch()
    out = model(batch, Request(shared_unimodal=True))
    for m in "abc":
        alone = {k: torch.full((6,), k == m) for k in "abc"}
        expected = model(Batch(batch.x, batch.lengths, alone, batch.y)).logits
        assert torch.allclose(out.unimodal_logits[m], expected, atol=1e-6)


def _umt(model: MultimodalNetwork) -> Umt:
    """UMT whose teachers are stage-1 networks holding ``model``'s own encoders."""
    stage1 = {}
    for m in model.modalities:
        teacher = MultimodalNetwork(model.spec.only(m))
        teacher.encoders[m].load_state_dict(model.encoders[m].state_dict())
        teacher.standardize[m].load_state_dict(model.standardize[m].state_dict())
        stage1[m] = teacher
    return build_method("umt", TASK, tiny_config("unused"), model.modalities, stage1)


def test_umt_extra_loss_is_zero_when_student_equals_teacher():
    torch.manual_seed(0)
    model = MultimodalNetwork(_spec())
    method = _umt(model)
    batch = _batch()
    out = model(batch, method.request)
    assert method.distillation(out.features, batch).item() == 0.0
    assert method.loss(out, batch).item() == pytest.approx(TASK.loss(out.logits, batch.y).item())
    assert method.options.weight == 10.0


def test_umt_distance_by_hand_and_its_gradient_reaches_only_the_encoders(monkeypatch):
    torch.manual_seed(0)
    model = MultimodalNetwork(_spec())
    method = _umt(model)
    batch = _batch()
    batch.present["c"] = torch.tensor([True, False, True, False, True, False])
    # Teachers at zero, student features all 2: each modality's mean squared gap is 4
    # (over the three samples that have c, for c), so the sum over a, b, c is 12.
    monkeypatch.setattr(method, "_teacher_features", lambda m, b: torch.zeros(6, 8))
    assert method.distillation(torch.full((6, 3, 8), 2.0), batch).item() == pytest.approx(12.0)
    monkeypatch.undo()

    with torch.no_grad():
        for p in model.encoders.parameters():
            p.add_(0.1)  # the student moves away from its teachers
    extra = method.distillation(model(batch).features, batch)
    assert extra.item() > 0
    extra.backward()
    assert _parameters_with_grad(model) == {"encoders"}


def test_dgl_fused_loss_sends_no_gradient_into_the_encoders():
    torch.manual_seed(0)
    model = MultimodalNetwork(_spec())
    method = build_method("dgl", TASK, tiny_config("unused"), list("abc"))
    batch = _batch()
    batch.y = torch.tensor([0, 1, 0, 1, 0, 1])
    out = model(batch, method.request)
    TASK.loss(out.logits, batch.y).backward(retain_graph=True)
    assert _parameters_with_grad(model) == {"fusion", "head"}
    model.zero_grad()
    # The unimodal losses train the encoders only, through the frozen fusion and head.
    sum(TASK.loss(out.unimodal_logits[m], batch.y) for m in "abc").backward()
    assert _parameters_with_grad(model) == {"encoders"}


def test_multiloss_adds_each_auxiliary_head_loss():
    torch.manual_seed(0)
    model = MultimodalNetwork(replace(_spec(), unimodal_heads=True))
    method = build_method("multiloss", TASK, tiny_config("unused"), list("abc"))
    batch = _batch()
    batch.present["a"] = torch.tensor([True, True, False, False, True, True])
    method.start(model, 0, CPU)
    out = model(batch, method.request)
    keep = batch.present["a"]
    unimodal = TASK.loss(out.unimodal_logits["a"][keep], batch.y[keep]) \
        + sum(TASK.loss(out.unimodal_logits[m], batch.y) for m in "bc")
    expected = TASK.loss(out.logits, batch.y) + unimodal
    assert method.loss(out, batch).item() == pytest.approx(expected.item())
    # Its history column: the epoch's mean of the summed unimodal losses.
    assert method.end_epoch(1, model, None) == {"unimodal_loss": pytest.approx(unimodal.item())}
    assert np.isnan(method.end_epoch(2, model, None)["unimodal_loss"])  # nothing since


def test_method_options_come_from_the_config(tmp_path):
    config = tiny_config(tmp_path, **{"methods.umt.weight": 2.5})
    assert config.methods == {"umt": {"weight": 2.5}}
    assert build_method("multiloss", TASK, config, ["a"]).options.weight == 1.0
    assert build_method("dgl", TASK, config, ["a"]).options.weight == 4.0
    assert build_method("umt", TASK, config, ["a"], {"a": MultimodalNetwork(
        _spec().only("a"))}).options.weight == 2.5


class Counting(Method):
    """Counts its steps and logs the count: state that resuming must keep."""

    def __init__(self, task):
        super().__init__(task)
        self.steps = 0

    def loss(self, out, batch):
        self.steps += 1
        return super().loss(out, batch)

    def end_epoch(self, epoch, model, valid):
        return {"counting_steps": float(self.steps)}

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def test_method_logs_per_epoch_and_its_state_is_checkpointed(tiny_synthetic, tmp_path):
    config = tiny_config(tmp_path)
    task = task_for(tiny_synthetic)
    data = Tensors(tiny_synthetic, task)
    stage = RunCheckpoints(tmp_path, CPU).start(config, resume=False).stage(0, "arm", "x")

    def run(epochs: int) -> tuple[Counting, list[dict]]:
        torch.manual_seed(0)
        model = MultimodalNetwork(_network_spec(tiny_synthetic, config, task))
        method = Counting(task)
        result = fit(model, method, data, task,
                     TrainConfig(epochs=epochs, lr=1e-3, patience=10), CPU, seed=0,
                     checkpoint=stage)
        return method, result.history

    first, history = run(2)
    per_epoch = history[0]["counting_steps"]
    assert per_epoch > 0 and history[1]["counting_steps"] == 2 * per_epoch
    resumed, history = run(3)  # continues after the saved epoch 2
    assert resumed.steps == 3 * per_epoch and history[2]["counting_steps"] == 3 * per_epoch


def _network_spec(dataset, config, task):
    from prefuse.recipe.stages import network_spec

    return network_spec(dataset, config, task, "attention")


def test_frozen_init_leaves_the_encoders_bit_identical(tiny_synthetic, tmp_path):
    config = tiny_config(tmp_path)
    task = task_for(tiny_synthetic)
    data = Tensors(tiny_synthetic, task)
    space = Workspace(tiny_synthetic, task, data, CPU)
    unimodal = pretrain(space, config, seed=0)
    result = train_arm("frozen+attention", space, config, 0, unimodal)
    for m, stage1 in unimodal.items():
        for key, value in stage1.model.encoders[m].state_dict().items():
            assert torch.equal(result.model.encoders[m].state_dict()[key], value), (m, key)
    assert result.fit.epochs_run == config.train.epochs - config.train.pretrain_epochs


def test_every_registered_method_is_documented_with_defaults():
    for name in METHODS:
        cls = METHODS.get(name)
        assert cls.__doc__ and cls.Options() is not None


# The methods that change gradients after backward, also on the paper's joint baseline.
SCRATCH_MODULATED = ["scratch+concat+ogm-ge", "scratch+concat+agm", "scratch+concat+mmpareto"]


@pytest.fixture(scope="module")
def method_run(tmp_path_factory):
    from prefuse.runs.experiment import run_experiment

    out = tmp_path_factory.mktemp("methods") / "run"
    # Big enough for stage 1 to learn something: frozen encoders and UMT's teachers are
    # only as good as the stage-1 networks.
    config = tiny_config(out, arms=["frozen+attention", "balance", "scratch+concat+dgl",
                                    *SCRATCH_MODULATED],
                         **{"train.epochs": 16, "train.pretrain_epochs": 8, "train.lr": 3e-3,
                            "model.width": 16, "data.synthetic.train": 600,
                            "data.synthetic.valid": 200, "data.synthetic.test": 300})
    return out, run_experiment(config, log=lambda *_: None)


def test_every_new_arm_learns_on_the_builtin_benchmark(method_run):
    _, summary = method_run
    chance = summary["chance"]["acc"]
    assert list(summary["arms"]) == ["frozen+attention", "ensemble", "pretrained+attention+agm",
                                     "pretrained+attention+dgl",
                                     "pretrained+attention+gblend",
                                     "pretrained+attention+mmpareto",
                                     "pretrained+attention+multiloss",
                                     "pretrained+attention+ogm-ge",
                                     "pretrained+attention+umt", "scratch+concat+dgl",
                                     *SCRATCH_MODULATED]
    for arm, entry in summary["arms"].items():
        assert entry["mean"]["acc"] > chance + 0.05, (arm, entry["mean"]["acc"], chance)


def test_metrics_json_records_each_arms_parts(method_run):
    out, summary = method_run
    umt = summary["arms"]["pretrained+attention+umt"]
    assert umt["parts"] == {"init": "pretrained", "fusion": "attention", "method": "umt"}
    assert umt["has_weights"] and not umt["headline"] and umt["before"] == "scratch+attention"
    assert summary["arms"]["scratch+concat+dgl"]["parts"]["method"] == "dgl"
    assert not summary["arms"]["scratch+concat+dgl"]["has_weights"]
    # Multiloss's auxiliary heads are part of its network (saved and reloaded with it).
    from prefuse.models.saving import load_model

    model, _, meta = load_model(out, "pretrained+attention+multiloss")
    assert meta["network"] == "simple" and hasattr(model, "unimodal_heads")
    assert np.isfinite(summary["arms"]["pretrained+attention+dgl"]["seconds_per_epoch"])


def test_history_keeps_what_each_method_logs(method_run):
    import csv

    out, _ = method_run
    with open(out / "history.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    umt = [r for r in rows if r["arm"] == "pretrained+attention+umt"]
    assert umt and all(float(r["umt_distance"]) >= 0 for r in umt)
    dgl = [r for r in rows if r["arm"] == "scratch+concat+dgl"]
    assert dgl and all(float(r["unimodal_loss"]) > 0 and r["umt_distance"] == "" for r in dgl)
    assert all(r["unimodal_loss"] == "" for r in rows if r["arm"] == "frozen+attention")


def test_a_saved_ensemble_predicts_what_the_run_scored(method_run):
    from prefuse.config import load_config
    from prefuse.data.source import load_data
    from prefuse.inference import predict

    out, summary = method_run
    entry = summary["arms"]["ensemble"]
    assert entry["parts"] == {"init": "frozen", "fusion": "ensemble", "method": "none"}
    assert entry["seeds"]["0"]["epochs_run"] == 0 and np.isnan(entry["seconds_per_epoch"])
    dataset = load_data(load_config(out / "config.toml"))
    scored = predict(out, dataset, split="test", arm="ensemble")["test"].evaluation
    assert scored.metrics == pytest.approx(entry["seeds"]["0"]["test"])
    assert scored.weights.sum(axis=1) == pytest.approx(np.ones(len(scored.weights)))


def test_gblend_logs_its_weights_every_epoch(method_run):
    import csv

    out, _ = method_run
    with open(out / "history.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["arm"] == "pretrained+attention+gblend"]
    assert rows
    for row in rows:
        weights = [float(row[f"gblend_weight_{b}"]) for b in ("fused", "text", "audio", "vision")]
        assert sum(weights) == pytest.approx(1.0) and min(weights) >= 0


def test_history_keeps_each_modulating_methods_coefficients(method_run):
    import csv
    import math

    out, summary = method_run
    with open(out / "history.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    modalities = summary["modalities"]
    for prefix, method, low, high in [("ogm_coeff", "ogm-ge", 0.0, 1.0),
                                      ("agm_coeff", "agm", 0.0, math.inf),
                                      ("mmpareto_conflict", "mmpareto", 0.0, 1.0)]:
        for arm in (f"pretrained+attention+{method}", f"scratch+concat+{method}"):
            mine = [r for r in rows if r["arm"] == arm]
            values = [float(r[f"{prefix}_{m}"]) for r in mine for m in modalities]
            assert mine and all(low <= v <= high for v in values), (arm, values)
    # OGM-GE slows some modality at some point.
    assert any(float(r[f"ogm_coeff_{m}"]) < 1 for r in rows for m in modalities
               if r["arm"] == "scratch+concat+ogm-ge")
