"""Single-modality baselines as arms: ``alone-<modality>`` and the ``alone`` group, trained
with every arm's budget, and each fused arm's difference to the best of them."""

from __future__ import annotations

import json

import pytest

from prefuse.analysis.tables import ablation_table, alone_verdict, difference_cell
from prefuse.errors import ConfigError
from prefuse.recipe.arms import arm, expand
from prefuse.recipe.checks import check_arms_data, check_config
from prefuse.runs.experiment import run_experiment
from prefuse.tuning.space import arm_space

from .conftest import tiny_config


def test_alone_arms_parse_and_the_group_waits_for_the_data(tmp_path):
    text = arm("alone-text")
    assert text.alone == "text" and not text.uses_stage1 and not text.has_weights
    assert expand(["scratch+concat", "alone"]) == ["scratch+concat", "alone"]
    assert expand(["alone", "alone-audio"], ["text", "audio"]) == ["alone-text", "alone-audio"]
    config = check_config(tiny_config(tmp_path, arms=["alone", "pretrained+attention"]))
    assert check_arms_data(config, ["a", "b"], "x.npz").arms == \
        ["alone-a", "alone-b", "pretrained+attention"]
    # No stage-1 search for a network with no stage 1.
    space = arm_space(check_config(tiny_config(tmp_path)), "alone-text")
    assert "train.lr" in space and "train.pretrain_epochs" not in space


def test_an_alone_arm_of_a_missing_modality_is_refused_before_any_work(tmp_path):
    config = tiny_config(tmp_path / "run", arms=["alone-smell"])
    with pytest.raises(ConfigError, match=r"'arms'.*no modality 'smell'.*text, audio, vision"):
        run_experiment(config, log=lambda _: None)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def alone_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("alone") / "run"
    config = tiny_config(out, seeds=[0, 1], arms=["pretrained+attention", "alone"])
    run_experiment(config, log=lambda _: None)
    return json.loads((out / "metrics.json").read_text())


def test_alone_arms_train_one_modality_with_the_whole_budget(alone_run):
    arms = alone_run["arms"]
    assert list(arms) == ["pretrained+attention", "alone-text", "alone-audio", "alone-vision"]
    for modality in ("text", "audio", "vision"):
        entry = arms[f"alone-{modality}"]
        assert entry["alone"] == modality and list(entry["mean_weights"]) == [modality]
        # The whole 6-epoch budget (patience 6: no early stop), where stage 1 had 2 and the
        # pre-trained arm 6 - 2 = 4.
        assert {s["epochs_run"] for s in entry["seeds"].values()} == {6}
    assert {s["epochs_run"] for s in arms["pretrained+attention"]["seeds"].values()} == {4}
    # Not the stage-1 table: text, the modality that carries the most, scores otherwise.
    assert arms["alone-text"]["mean"] != alone_run["unimodal"]["text"]["mean"]
    # One modality's encoder and head: fewer parameters than the fused network.
    assert arms["alone-text"]["params"] < arms["pretrained+attention"]["params"]
    assert "alone-text" not in alone_run.get("robustness", {})
    scores = {a: arms[a]["mean"]["acc"] for a in arms if a.startswith("alone-")}
    assert alone_run["best_alone"] == max(scores, key=scores.get)


def test_the_table_gives_each_arm_its_difference_to_the_best_alone(alone_run):
    table = ablation_table(alone_run)
    assert "Δ best alone" in table
    best = alone_run["best_alone"]
    fused = alone_run["arms"]["pretrained+attention"]["mean"]["acc"]
    delta = fused - alone_run["arms"][best]["mean"]["acc"]
    assert difference_cell(alone_run, "pretrained+attention", best).startswith(f"{delta:+.3f}")
    assert alone_verdict(alone_run).split(" (")[0] in " ".join(table.split())


def _summary(fused: dict[str, tuple[float, float]], seeds: int = 3) -> dict:
    def entry(mean, std, alone=None):
        e = {"mean": {"acc": mean}, "std": {"acc": std},
             "seeds": {str(s): {} for s in range(seeds)}}
        return {**e, "alone": alone} if alone else e

    arms = {name: entry(*v) for name, v in fused.items()}
    arms["alone-text"] = entry(0.80, 0.01, "text")
    arms["alone-audio"] = entry(0.60, 0.01, "audio")
    return {"primary_metric": "acc", "arms": arms, "best_alone": "alone-text"}


def test_the_verdict_says_which_fused_arm_beats_the_best_alone_beyond_noise():
    # +0.05 > 2 x 0.01: beyond noise; +0.01 < 2 x 0.02: within it.
    s = _summary({"a": (0.85, 0.01), "b": (0.81, 0.02)})
    assert difference_cell(s, "a", "alone-text") == "+0.050 *"
    assert difference_cell(s, "b", "alone-text") == "+0.010"
    assert difference_cell(s, "alone-text", "alone-text") == "ref"
    assert alone_verdict(s) == ("Beyond seed noise, a beats the best modality alone "
                                "(alone-text, test acc 0.800 ± 0.010); the other fused arms "
                                "do not.")
    s = _summary({"a": (0.85, 0.01), "d": (0.90, 0.01)})
    assert alone_verdict(s).startswith("Beyond seed noise, d, a beat the best modality alone "
                                       "(alone-text, test acc 0.800 ± 0.010).")
    # Worse beyond noise is no win.
    s = _summary({"b": (0.81, 0.02), "c": (0.70, 0.01)})
    assert alone_verdict(s) == ("No fused arm beats the best modality alone (alone-text, "
                                "test acc 0.800 ± 0.010) beyond seed noise.")
    s = _summary({"a": (0.85, 0.01)}, seeds=1)
    assert alone_verdict(s).endswith("with fewer than 2 seeds there is no noise estimate.")
    assert alone_verdict({"primary_metric": "acc", "arms": {}}) == ""


def test_the_alone_group_is_tuned_with_the_shared_search(tmp_path):
    from prefuse.config import SearchParam
    from prefuse.tuning import tune

    config = tiny_config(tmp_path, arms=["alone"], **{"tune.trials": 1})
    config.tune.space = {"train.lr": SearchParam("log", 1e-3, 1e-2),
                         "train.pretrain_epochs": SearchParam("int", 1, 3, stage1=True)}
    doc = tune(config, tmp_path / "t", log=lambda _: None)
    assert list(doc["arms"]) == ["alone-text", "alone-audio", "alone-vision"]
    for entry in doc["arms"].values():
        (trial,) = entry["trials"]
        # The whole 6-epoch budget was its to spend; no stage-1 parameter to search.
        assert trial["state"] == "complete" and set(trial["params"]) == {"train.lr"}
        assert trial["last_step"] == 6


def test_a_tuned_final_run_compares_each_fused_arm_with_the_best_alone(tmp_path):
    import json

    from prefuse.analysis.tables import ablation_table
    from prefuse.config import SearchParam
    from prefuse.tuning import tune

    config = tiny_config(tmp_path, arms=["scratch+concat", "alone-text", "alone-audio"],
                         **{"tune.trials": 1, "tune.final_seeds": [0]})
    config.tune.space = {"train.lr": SearchParam("log", 1e-3, 1e-2)}
    tune(config, tmp_path / "t", log=lambda _: None)
    final = json.loads((tmp_path / "t" / "final" / "metrics.json").read_text())
    alone = {a: final["arms"][a]["mean"]["acc"] for a in ("alone-text", "alone-audio")}
    assert final["best_alone"] == max(alone, key=alone.get)
    assert "Δ best alone" in ablation_table(final)
