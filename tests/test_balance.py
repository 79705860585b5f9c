"""G-Blending inside a real fit, the unimodal ensemble as a network, and the ranked table."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from prefuse.analysis.tables import ablation_table, beyond_noise, ranked
from prefuse.config import TrainConfig
from prefuse.data.batching import Tensors, TensorSplit
from prefuse.data.dataset import MultimodalDataset, Split
from prefuse.engine.checkpoint import RunCheckpoints
from prefuse.engine.fit import fit
from prefuse.errors import ConfigError
from prefuse.methods import build_method
from prefuse.models.combiners import COMBINERS, fit_blend
from prefuse.models.ensemble import UnimodalEnsemble
from prefuse.models.network import MultimodalNetwork
from prefuse.models.saving import load_model, save_model
from prefuse.recipe.stages import network_spec
from prefuse.tasks import make_task, task_for

from .conftest import CPU, tiny_config
from .test_models import _batch, _spec

TASK = make_task("multiclass", 2, ["n", "y"])

# ---------------------------------------------------------------- G-Blending


def test_gblend_loss_is_the_weighted_sum_of_its_branch_losses():
    torch.manual_seed(0)
    model = MultimodalNetwork(replace(_spec(), unimodal_heads=True))
    method = build_method("gblend", TASK, tiny_config("unused"), list("abc"))
    assert method.options.super_epoch == 10
    assert method.weights == [0.25] * 4  # uniform over fused, a, b, c until estimated
    batch = _batch()
    batch.y = torch.tensor([0, 1, 0, 1, 0, 1])
    out = model(batch, method.request)
    method.weights = [0.1, 0.2, 0.3, 0.4]
    expected = 0.1 * TASK.loss(out.logits, batch.y) + sum(
        w * TASK.loss(out.unimodal_logits[m], batch.y) for w, m in zip([0.2, 0.3, 0.4], "abc"))
    assert method.loss(out, batch).item() == pytest.approx(expected.item())


# Scripted losses per epoch, branches (fused, text, audio, vision). Measured at epochs 1,
# 3 and 5 (super_epoch 2). From epoch 1 to 3, by hand:
#   fused:  G = 1.0 - 0.8 = 0.2, O = (0.8 - 0.5) - (1.0 - 1.0) = 0.3,  G/O^2 = 2.2222
#   text:   G = 1.1 - 0.9 = 0.2, O = (0.9 - 0.9) - (1.1 - 1.0) = -0.1, G/O^2 = 20
#   audio:  G = 0.9 - 1.0 < 0 -> 0;  vision: G = 0 -> 0
#   -> weights (0.1, 0.9, 0, 0) for epochs 4 and 5.
# From epoch 3 to 5 every validation loss rises: no branch generalises -> uniform.
TRAIN = {1: [1.0, 1.0, 1.0, 1.0], 2: [9.0] * 4, 3: [0.5, 0.9, 0.4, 1.0], 4: [9.0] * 4,
         5: [0.4] * 4}
VALID = {1: [1.0, 1.1, 0.9, 1.0], 3: [0.8, 0.9, 1.0, 1.0], 5: [0.9, 1.0, 1.1, 1.1]}


def test_gblend_reestimates_its_weights_at_super_epoch_boundaries_in_a_real_fit(
        tiny_synthetic, tmp_path, monkeypatch):
    config = tiny_config(tmp_path, **{"methods.gblend.super_epoch": 2})
    task = task_for(tiny_synthetic)
    data = Tensors(tiny_synthetic, task)
    method = build_method("gblend", task, config, tiny_synthetic.modalities)
    assert method.branches == ("fused", "text", "audio", "vision")
    epoch = {"now": 0}
    measured, seen = [], []

    # Every epoch reads each branch's training mean once, fused first.
    for k, mean in enumerate(method.train_losses):
        def scripted(runtime, k=k, real=mean.mean):
            real(runtime)  # the real reduction still runs (and resets) every epoch
            if k == 0:
                epoch["now"] += 1
            return TRAIN[epoch["now"]][k]
        monkeypatch.setattr(mean, "mean", scripted)

    def valid_losses(model, split):
        seen.append(split)
        measured.append(epoch["now"])
        return VALID[epoch["now"]]

    monkeypatch.setattr(method, "valid_losses", valid_losses)
    stage = RunCheckpoints(tmp_path, CPU).start(config, resume=False).stage(0, "arm", "g")
    torch.manual_seed(0)
    model = MultimodalNetwork(network_spec(tiny_synthetic, config, task, "attention",
                                           unimodal_heads=True))
    result = fit(model, method, data, task, TrainConfig(epochs=5, lr=1e-3, patience=10),
                 CPU, seed=0, checkpoint=stage)

    assert measured == [1, 3, 5]
    assert all(split is data.valid for split in seen)  # validation, never test
    columns = [f"gblend_weight_{b}" for b in method.branches]
    used = [[row[c] for c in columns] for row in result.history]
    assert used[:3] == [[0.25] * 4] * 3
    for row in used[3:]:
        assert row == pytest.approx([0.1, 0.9, 0.0, 0.0])
    assert method.weights == [0.25] * 4  # re-estimated after epoch 5
    # The weights and the last measurement are in the checkpoint, so a resume keeps them.
    saved = stage.load()["method"]
    assert saved == method.state_dict()
    assert saved["last"] == {"epoch": 5, "train": TRAIN[5], "valid": VALID[5]}
    fresh = build_method("gblend", task, config, tiny_synthetic.modalities)
    fresh.load_state_dict(saved)
    assert fresh.weights == method.weights and fresh.last == method.last


def test_gblend_measures_real_branch_losses_on_the_validation_split(tiny_synthetic):
    config = tiny_config("unused")
    task = task_for(tiny_synthetic)
    data = Tensors(tiny_synthetic, task)
    method = build_method("gblend", task, config, tiny_synthetic.modalities)
    torch.manual_seed(0)
    model = MultimodalNetwork(network_spec(tiny_synthetic, config, task, "attention",
                                           unimodal_heads=True)).eval()
    losses = method.valid_losses(model, data.valid, batch_size=32)
    with torch.no_grad():
        out = model(data.valid.batch(torch.arange(len(data.valid))), method.request)
    expected = [task.loss(out.logits, data.valid.y)] + \
        [task.loss(out.unimodal_logits[m], data.valid.y) for m in tiny_synthetic.modalities]
    assert losses == pytest.approx([e.item() for e in expected], rel=1e-5)


def test_gblend_rejects_a_bad_super_epoch():
    with pytest.raises(ConfigError, match=r"methods\.gblend\.super_epoch"):
        build_method("gblend", TASK, tiny_config("unused", **{"methods.gblend.super_epoch": 0}),
                     list("abc"))


# ---------------------------------------------------------------- unimodal ensemble


def _members(spec) -> dict[str, MultimodalNetwork]:
    torch.manual_seed(1)
    return {m: MultimodalNetwork(spec.only(m)) for m in spec.modalities}


def _ensemble(spec, members) -> UnimodalEnsemble:
    ens = UnimodalEnsemble(spec)
    for m, net in members.items():
        ens.load_pretrained(m, net)
    return ens.eval()


def test_ensemble_averages_the_stage1_models_probabilities():
    spec = replace(_spec(), fusion="ensemble")
    members = _members(spec)
    ens = _ensemble(spec, members)
    ens.combiner = COMBINERS.get("multiclass")()
    batch = _batch()
    batch.present["b"] = torch.tensor([True, True, True, False, False, True])
    with torch.no_grad():
        out = ens(batch)
        probs = {m: torch.softmax(net.eval()(batch).logits, dim=1) for m, net in members.items()}
    for i in range(6):
        have = [m for m in "abc" if batch.present[m][i]]
        hand = sum(probs[m][i] for m in have) / len(have)
        assert torch.allclose(torch.softmax(out.logits[i], dim=0), hand, atol=1e-6)
        assert out.weights[i].tolist() == pytest.approx(
            [1 / len(have) if m in have else 0.0 for m in "abc"])
    assert out.features.shape == (6, 3, 8)


def _regression_dataset(n: int = 40) -> MultimodalDataset:
    rng = np.random.default_rng(0)

    def split(k: int, shift: float) -> Split:
        y = rng.normal(size=k) + shift
        return Split(features={"a": (y[:, None] + rng.normal(size=(k, 3))).astype(np.float32),
                               "b": rng.normal(size=(k, 2)).astype(np.float32)},
                     labels=y.astype(np.float32))

    return MultimodalDataset(splits={"train": split(n, 0.0), "valid": split(n, 0.0),
                                     "test": split(n, 5.0)},
                             task="regression", modalities=["a", "b"], name="reg")


def test_regression_blend_is_fitted_on_validation_and_saved_with_the_model(tmp_path):
    dataset = _regression_dataset()
    task = task_for(dataset)
    data = Tensors(dataset, task)
    config = tiny_config("unused", **{"model.vector_encoder": "mlp"})
    spec = network_spec(dataset, config, task, "ensemble")
    members = _members(spec)
    ens = _ensemble(spec, members)
    ens.calibrate(data.valid, task)

    def member_outputs(split: TensorSplit) -> np.ndarray:
        batch = split.batch(torch.arange(len(split)))
        with torch.no_grad():
            return np.stack([members[m].eval()(batch).logits[:, 0].numpy()
                             for m in "ab"], axis=1)

    blend = fit_blend(member_outputs(data.valid), dataset["valid"].labels)
    assert ens.combiner.blend.coef == pytest.approx(blend.coef, rel=1e-5)
    assert ens.combiner.blend.intercept == pytest.approx(blend.intercept, rel=1e-5)
    test = data.test.batch(torch.arange(len(data.test)))
    with torch.no_grad():
        out = ens(test)
    hand = blend.intercept[0] + member_outputs(data.test) @ blend.coef[0]
    assert out.logits[:, 0].numpy() == pytest.approx(hand, rel=1e-4, abs=1e-5)
    share = np.abs(blend.coef[0]) / np.abs(blend.coef[0]).sum()
    assert out.weights[0].tolist() == pytest.approx(share.tolist(), rel=1e-5)

    save_model(ens, "ensemble", task, tmp_path)
    loaded, _, meta = load_model(tmp_path)
    assert meta["network"] == "ensemble" and isinstance(loaded, UnimodalEnsemble)
    with torch.no_grad():
        assert torch.allclose(loaded(test).logits, out.logits)


def test_an_ensemble_that_was_never_calibrated_says_so():
    ens = UnimodalEnsemble(replace(_spec(), fusion="ensemble"))
    with pytest.raises(ValueError, match="calibrate"):
        ens(_batch())


# ---------------------------------------------------------------- the ranked table


def _entry(mean: float, std: float, seeds: int = 3, **traits) -> dict:
    return {"seeds": {str(s): {} for s in range(seeds)}, "mean": {"acc": mean},
            "std": {"acc": std}, "params": 10, "seconds_per_epoch": 0.5, **traits}


def _summary(**arms) -> dict:
    return {"task": "binary", "primary_metric": "acc", "arms": arms, "unimodal": {}}


def test_the_table_ranks_arms_and_marks_only_differences_beyond_twice_the_std():
    summary = _summary(**{
        "worse": _entry(0.70, 0.02),                         # 0.10 > 2 x 0.02: marked
        "pretrained+attention": _entry(0.80, 0.01, headline=True),
        "close": _entry(0.79, 0.01),                         # 0.01 < 2 x 0.01: not marked
        "better": _entry(0.85, 0.02),                        # 0.05 > 2 x 0.02: marked
        "ensemble": {**_entry(0.78, 0.01), "seconds_per_epoch": None},
    })
    assert ranked(summary) == ["better", "pretrained+attention", "close", "ensemble", "worse"]
    lines = {line.split()[0]: line for line in ablation_table(summary).splitlines()
             if line.split() and line.split()[0] in summary["arms"]}
    assert "+0.050 *" in lines["better"]
    assert " ref " in lines["pretrained+attention"]
    assert "-0.010" in lines["close"] and "*" not in lines["close"]
    assert "-0.100 *" in lines["worse"]
    assert lines["ensemble"].split()[-1] == "–"  # no joint epochs to time
    text = ablation_table(summary)
    assert list(lines) == ranked(summary) and "2× the larger" in " ".join(text.split())


def test_lower_is_better_metrics_rank_ascending_and_one_seed_gives_no_mark():
    summary = _summary(a=_entry(0.9, 0.0, seeds=1), b=_entry(0.7, 0.0, seeds=1))
    summary["primary_metric"] = "mae"
    for e in summary["arms"].values():
        e["mean"], e["std"] = {"mae": e["mean"]["acc"]}, {"mae": 0.0}
    assert ranked(summary) == ["b", "a"]
    assert beyond_noise(summary["arms"]["a"], summary["arms"]["b"], "mae") is None
    assert "*" not in ablation_table(summary).split("Arms ranked")[0]
