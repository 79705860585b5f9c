"""Paired trials (``tune.design = "paired"``, the default): one configuration per trial,
trained by every arm; stage 1 shared within a trial; the whole trial pruned or none of it;
each arm's pick among the trials every arm completed; paired after a restart or with
several workers."""

from __future__ import annotations

import json
import time
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

import prefuse.tuning.paired as paired
from prefuse.config import SearchParam, with_overrides
from prefuse.errors import PrefuseError
from prefuse.tuning import tune
from prefuse.tuning.paired import PairedObjective, _stage1_key, arm_attr
from prefuse.tuning.results import paired_summaries
from prefuse.tuning.space import configure, sample_paired
from prefuse.tuning.study import PRUNERS, TICKET, load_named, open_storage, prepare_named
from prefuse.tuning.workers import work

from .conftest import CPU, tiny_config

ARMS = ["scratch+concat", "pretrained+attention", "pretrained+attention+ogm-ge"]
OGM = "methods.ogm-ge.alpha"


def _config(tmp_path, **overrides):
    config = tiny_config(tmp_path / "run", **{"arms": list(ARMS), "tune.trials": 2,
                                              "tune.startup_trials": 1, **overrides})
    config.tune.space = {"train.lr": SearchParam("log", 1e-3, 3e-2),
                         "train.pretrain_epochs": SearchParam("int", 1, 3, stage1=True)}
    return config


def _study(tune_dir, config) -> optuna.Study:
    return load_named(open_storage(config.tune, tune_dir), config.tune, config.tune.study)


@pytest.fixture
def spied(monkeypatch):
    """Every ``train_arm`` and ``pretrain`` call of a paired trial: (arm, lr, stage-1
    epochs, seed) and (lr, stage-1 epochs, seed)."""
    calls = {"arm": [], "pretrain": []}
    train_arm, pretrain = paired.train_arm, paired.pretrain

    def arm_spy(arm, space, config, seed, *args, **kwargs):
        assert space.data.test is None  # the placed splits of a trial: train and valid only
        calls["arm"].append((arm, config.train.lr, config.train.pretrain_epochs, seed,
                             dict(config.methods.get("ogm-ge", {}))))
        return train_arm(arm, space, config, seed, *args, **kwargs)

    def pretrain_spy(space, config, seed, *args, **kwargs):
        calls["pretrain"].append((config.train.lr, config.train.pretrain_epochs, seed))
        return pretrain(space, config, seed, *args, **kwargs)

    monkeypatch.setattr(paired, "train_arm", arm_spy)
    monkeypatch.setattr(paired, "pretrain", pretrain_spy)
    return calls


def test_every_arm_trains_once_on_the_trials_params_and_stage_1_once_per_seed(
        tmp_path, tiny_synthetic, spied):
    config = _config(tmp_path, **{"tune.tune_seeds": [0, 1], "tune.pruner": "none"})
    doc = tune(config, tmp_path / "t", tiny_synthetic, log=lambda _: None)
    trials = _study(tmp_path / "t", config).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert doc["design"] == "paired" and len(doc["trials"]) == 2
    for trial, row in zip(trials, doc["trials"]):
        lr, epochs = trial.params["train.lr"], trial.params["train.pretrain_epochs"]
        alpha = trial.params[f"pretrained+attention+ogm-ge/{OGM}"]
        assert row["params"] == trial.params
        for arm in ARMS:
            used = trial.user_attrs[arm_attr(arm)]
            assert used["state"] == "complete" and len(used["seed_values"]) == 2
            assert used["params"]["train.lr"] == lr == row["arms"][arm]["params"]["train.lr"]
            assert used["value"] == pytest.approx(sum(used["seed_values"]) / 2)
            # Each arm, each seed, exactly once, on this trial's configuration.
            trained = [c for c in spied["arm"] if c[0] == arm and c[1] == lr]
            assert sorted(c[3] for c in trained) == [0, 1]
            assert all(c[2] == epochs for c in trained if arm != "scratch+concat")
        assert trial.user_attrs[arm_attr("pretrained+attention+ogm-ge")]["params"][OGM] == alpha
        assert [c[4] for c in spied["arm"] if c[0].endswith("ogm-ge") and c[1] == lr] == \
            [{"alpha": alpha}] * 2
        assert "train.pretrain_epochs" not in trial.user_attrs[arm_attr(ARMS[0])]["params"]
        # The trial's value: the mean over arms.
        assert trial.value == pytest.approx(
            sum(trial.user_attrs[arm_attr(a)]["value"] for a in ARMS) / len(ARMS))
        # Two stage-1 arms, two seeds: stage 1 trained twice (once per seed), shared twice.
        assert Counter(c for c in spied["pretrain"] if c[0] == lr) == \
            {(lr, epochs, 0): 1, (lr, epochs, 1): 1}
        assert trial.user_attrs["stage1"]["trained"] == 2
        assert trial.user_attrs["stage1"]["shared"] == 2
        # Every arm's last epoch in the budget's steps: 6 epochs a seed, two seeds.
        assert [row["arms"][a]["last_step"] for a in ARMS] == [12, 12, 12]
    assert len(spied["arm"]) == 2 * 2 * len(ARMS) and len(spied["pretrain"]) == 2 * 2


def test_the_best_of_each_arm_reproduces_its_paired_trial(tmp_path, tiny_synthetic):
    # Stage 1 from the trial's cache gives what a run (which trains its own) gives.
    from prefuse.runs.experiment import run_experiment
    from prefuse.tuning.results import best_config

    config = _config(tmp_path, **{"arms": ARMS[1:], "tune.trials": 1})
    doc = tune(config, tmp_path / "t", tiny_synthetic, log=lambda _: None)
    for arm in ARMS[1:]:
        best = doc["arms"][arm]["best"]
        run = best_config(config, arm, best["params"], tmp_path / arm)
        metrics = run_experiment(run, tiny_synthetic, log=lambda _: None)
        assert metrics["arms"][arm]["seeds"]["0"]["valid"]["acc"] == \
            pytest.approx(best["value"], abs=1e-9)


def test_the_shared_space_is_drawn_once_and_each_arm_draws_its_own_method_options(
        tmp_path):
    arms = ["pretrained+attention+ogm-ge", "scratch+concat+ogm-ge", "scratch+concat"]
    config = _config(tmp_path, arms=arms)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    params = sample_paired(trial, config)
    assert set(trial.params) == {"train.lr", "train.pretrain_epochs", f"{arms[0]}/{OGM}",
                                 f"{arms[1]}/{OGM}"}
    assert trial.params[f"{arms[0]}/{OGM}"] != trial.params[f"{arms[1]}/{OGM}"]
    assert params[arms[0]] == {"train.lr": trial.params["train.lr"],
                               "train.pretrain_epochs": trial.params["train.pretrain_epochs"],
                               OGM: trial.params[f"{arms[0]}/{OGM}"]}
    assert params[arms[1]] == {"train.lr": trial.params["train.lr"],
                               OGM: trial.params[f"{arms[1]}/{OGM}"]}
    assert params[arms[2]] == {"train.lr": trial.params["train.lr"]}


def test_stage_1_is_shared_only_between_arms_that_read_the_same_fields(tmp_path):
    config = _config(tmp_path)
    plain = configure(config, "pretrained+attention", {"train.lr": 1e-2}, [0])
    method = configure(config, "pretrained+attention+ogm-ge",
                       {"train.lr": 1e-2, OGM: 0.4}, [0])
    assert _stage1_key(plain) == _stage1_key(method)
    assert _stage1_key(plain) != _stage1_key(configure(config, "pretrained+attention",
                                                       {"train.lr": 2e-2}, [0]))


def test_a_pruned_trial_is_pruned_for_every_arm_and_trains_no_other(tmp_path, tiny_synthetic,
                                                                   spied):
    config = _config(tmp_path, **{"train.epochs": 8, "train.patience": 8,
                                  "train.batch_size": 16, "tune.prune_after_trials": 1,
                                  "tune.prune_after_epochs": 3})
    config.tune.space = {"train.lr": SearchParam("log", 1e-7, 1e-1)}
    objective = PairedObjective(config, tiny_synthetic, log=lambda _: None, where=CPU)
    study = optuna.create_study(direction="maximize",
                                pruner=PRUNERS.get(config.tune.pruner)(config.tune))
    for lr in (1e-2, 1e-7):  # a good trial, then one whose weights barely move
        study.enqueue_trial({"train.lr": lr}, user_attrs={TICKET: True})
    study.optimize(objective, n_trials=2)
    good, bad = study.trials
    assert good.state == TrialState.COMPLETE and bad.state == TrialState.PRUNED
    assert {good.user_attrs[arm_attr(a)]["state"] for a in ARMS} == {"complete"}
    assert {bad.user_attrs[arm_attr(a)]["state"] for a in ARMS} == {"pruned"}
    # The watched arm (the first with joint training) trained first and alone.
    assert [c[0] for c in spied["arm"] if c[1] == 1e-7] == ["scratch+concat"]
    assert max(bad.intermediate_values) <= 4


def _hand_trial(number_state, values, lr):
    state, parts = number_state, {}
    for arm, (arm_state, value) in values.items():
        parts[arm_attr(arm)] = {"state": arm_state, "value": value, "seed_values": [value],
                                "params": {"train.lr": lr}}
    done = [v for s, v in values.values() if s == "complete"]
    return optuna.trial.create_trial(
        state=state, value=sum(done) / len(done) if state == TrialState.COMPLETE else None,
        params={"train.lr": lr},
        distributions={"train.lr": optuna.distributions.FloatDistribution(1e-4, 1.0)},
        user_attrs=parts)


def test_the_final_pick_counts_only_trials_every_arm_completed():
    a, b = "scratch+concat", "pretrained+attention"
    study = optuna.create_study(direction="maximize")
    for state, values, lr in (
            (TrialState.COMPLETE, {a: ("complete", 0.6), b: ("complete", 0.5)}, 0.1),
            # The best value of a, but b failed on this configuration: not a's pick.
            (TrialState.FAIL, {a: ("complete", 0.9), b: ("fail", None)}, 0.2),
            (TrialState.PRUNED, {a: ("pruned", 0.95), b: ("pruned", None)}, 0.3),
            (TrialState.COMPLETE, {a: ("complete", 0.7), b: ("complete", 0.4)}, 0.4)):
        study.add_trial(_hand_trial(state, values, lr))
    entries, rows = paired_summaries(study, [a, b], "acc")
    assert entries[a]["best"]["number"] == 3 and entries[a]["best"]["value"] == 0.7
    assert entries[b]["best"]["number"] == 0 and entries[b]["best"]["params"] == \
        {"train.lr": 0.1}
    assert [t["state"] for t in entries[a]["trials"]] == ["complete", "complete", "pruned",
                                                          "complete"]
    assert [r["state"] for r in rows] == ["complete", "fail", "pruned", "complete"]
    assert rows[1]["arms"][b] == {"state": "fail", "value": None, "seed_values": [None],
                                  "params": {"train.lr": 0.2}, "last_step": None}


def test_a_continued_paired_tune_stays_paired_and_refuses_the_other_design(tmp_path,
                                                                           tiny_synthetic):
    config = _config(tmp_path, **{"arms": ARMS[:2], "tune.trials": 1})
    tune(config, tmp_path / "t", tiny_synthetic, log=lambda _: None)
    doc = tune(with_overrides(config, {"tune.trials": 2}), tmp_path / "t", tiny_synthetic,
               log=lambda _: None)
    trials = _study(tmp_path / "t", config).get_trials()
    assert len(trials) == 2 and doc["trials_per_arm"] == 2
    for trial in trials:
        parts = [trial.user_attrs[arm_attr(a)] for a in ARMS[:2]]
        assert len({p["state"] for p in parts}) == 1
        assert {p["params"]["train.lr"] for p in parts} == {trial.params["train.lr"]}
    with pytest.raises(PrefuseError, match=r'made with tune\.design = "paired"; continue it '
                                           r"with --set tune\.design=paired"):
        tune(with_overrides(config, {"tune.design": "independent"}), tmp_path / "t",
             tiny_synthetic, log=lambda _: None)
    other = with_overrides(config, {"tune.design": "independent"})
    tune(other, tmp_path / "i", tiny_synthetic, log=lambda _: None)
    with pytest.raises(PrefuseError, match=r'tune\.design = "independent"'):
        tune(config, tmp_path / "i", tiny_synthetic, log=lambda _: None)


def test_a_bad_design_is_refused_naming_the_field(tmp_path, tiny_synthetic):
    from prefuse.errors import ConfigError

    with pytest.raises(ConfigError, match=r"tune\.design.*paired"):
        tune(_config(tmp_path, **{"tune.design": "pairs"}), tmp_path / "t", tiny_synthetic,
             log=lambda _: None)


def test_a_trial_whose_worker_died_is_run_again_whole_with_its_params(tmp_path,
                                                                      tiny_synthetic, spied):
    config = _config(tmp_path, **{"arms": ARMS[:2], "tune.heartbeat_seconds": 1,
                                  "tune.grace_seconds": 1, "tune.pruner": "none"})
    tune_dir = tmp_path / "t"
    storage = open_storage(config.tune, tune_dir)
    study = prepare_named(storage, config, config.tune.study, "maximize",
                          {"name": tiny_synthetic.name})
    # A worker takes the first ticket, draws its parameters, trains one arm, and dies.
    with pytest.warns(UserWarning, match="Heartbeat"):  # asked, as a worker would not
        dead = study.ask()
    params = sample_paired(dead, config)
    dead.set_user_attr(arm_attr(ARMS[0]), {"state": "complete", "value": 0.99,
                                           "seed_values": [0.99], "params": params[ARMS[0]]})
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)  # past the grace period
    work(config, str(tune_dir), tiny_synthetic)
    trials = load_named(storage, config.tune, config.tune.study).get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 2
    assert trials[dead.number].state == TrialState.FAIL
    (again,) = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert again.params == dead.params
    parts = {a: again.user_attrs[arm_attr(a)] for a in ARMS[:2]}
    assert {p["state"] for p in parts.values()} == {"complete"}
    assert parts[ARMS[0]]["value"] != 0.99  # trained again, not the dead worker's record
    lr = dead.params["train.lr"]
    assert sorted(c[0] for c in spied["arm"] if c[1] == lr) == sorted(ARMS[:2])


def test_two_workers_keep_every_trial_paired(tmp_path, tiny_synthetic):
    config = _config(tmp_path, **{"arms": ARMS[:2], "tune.trials": 4, "tune.jobs": 2,
                                  "train.epochs": 3, "train.patience": 3,
                                  "tune.pruner": "none"})
    config.tune.space["train.pretrain_epochs"] = SearchParam("int", 1, 2, stage1=True)
    tune(config, tmp_path / "t", tiny_synthetic, log=lambda _: None)
    trials = _study(tmp_path / "t", config).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    for trial in trials:
        parts = [trial.user_attrs[arm_attr(a)] for a in ARMS[:2]]
        assert {p["state"] for p in parts} == {"complete"}
        assert {p["params"]["train.lr"] for p in parts} == {trial.params["train.lr"]}
    doc = json.loads((tmp_path / "t" / "tuning.json").read_text())
    assert [r["number"] for r in doc["trials"]] == [0, 1, 2, 3]
