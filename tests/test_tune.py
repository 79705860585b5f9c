"""prefuse tune: shared studies, resumption, pruning, the sealed test split, reproducible
best configs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import prefuse
from prefuse.cli import main
from prefuse.config import RunConfig, SearchParam, load_config, with_overrides
from prefuse.errors import ConfigError, PrefuseError
from prefuse.tuning import tune
from prefuse.tuning.objective import Objective
from prefuse.tuning.space import check_tune
from prefuse.tuning.study import PRUNERS, TICKET, data_shape, open_storage, prepare_study

from .conftest import CPU, mixed_dataset, tiny_config

# Tiny trials; heartbeats short enough that a killed worker's trial is retried quickly.
CONFIG = """\
seeds = [0]

[data.synthetic]
train = 160
valid = 60
test = 60

[model]
width = 8
head_hidden = 16

[train]
epochs = 5
pretrain_epochs = 2
patience = 5

[tune]
heartbeat_seconds = 1
grace_seconds = 3

[tune.space."train.lr"]
kind = "log"
low = 1e-3
high = 3e-2

[tune.space."train.pretrain_epochs"]
kind = "int"
low = 1
high = 3
stage1 = true
"""


def _config_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tune.toml"
    path.write_text(CONFIG + extra)
    return path


def _trials(tune_dir: Path, arm: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=f"prefuse:{arm}",
                              storage=f"sqlite:///{tune_dir / 'study.db'}")
    return study.get_trials(deepcopy=False)


def _finished(trials) -> list:
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Path:
    """One small tune of two arms, best configs trained on seed 0 afterwards."""
    tmp = tmp_path_factory.mktemp("tune")
    code = main(["tune", "--config", str(_config_file(tmp)), "--arms", "scratch+concat",
                 "pretrained+attention", "--trials", "3", "--out", str(tmp / "t"),
                 "--final-seeds", "0"])
    assert code == 0
    return tmp / "t"


def test_tune_writes_best_configs_and_a_run_with_a_tuning_section(tuned):
    doc = json.loads((tuned / "tuning.json").read_text())
    assert set(doc["arms"]) == {"scratch+concat", "pretrained+attention"}
    for arm, entry in doc["arms"].items():
        assert len(entry["trials"]) == 3
        assert entry["direction"] == "maximize" and entry["metric"] == "acc"
        assert (tuned / "best" / f"{arm}.toml").is_file()
    # Stage-1 parameters are searched only where the arm has a stage 1.
    assert set(doc["arms"]["scratch+concat"]["best"]["params"]) == {"train.lr"}
    assert set(doc["arms"]["pretrained+attention"]["best"]["params"]) == \
        {"train.lr", "train.pretrain_epochs"}
    summary = json.loads((tuned / "final" / "metrics.json").read_text())
    assert set(summary["arms"]) == {"scratch+concat", "pretrained+attention"}
    assert set(summary["unimodal"]) == {"text", "audio", "vision"}
    report = (tuned / "final" / "report.md").read_text()
    assert "## Tuning" in report and "tuning_history.png" in report
    # The default design is paired, and the report says on how many trials the pick rests.
    assert doc["design"] == "paired" and len(doc["trials"]) == 3
    completed = sum(all(a["state"] == "complete" for a in t["arms"].values())
                    for t in doc["trials"])
    assert f"best among the {completed} of 3 trials that every arm" in " ".join(report.split())
    assert (tuned / "final" / "figures" / "tuning_history.png").is_file()
    assert (tuned / "final" / "models" / "scratch+concat" / "model.safetensors").is_file()


def test_the_best_config_reproduces_its_trial_value(tuned, tmp_path):
    doc = json.loads((tuned / "tuning.json").read_text())
    for arm in ("pretrained+attention", "scratch+concat"):
        best = doc["arms"][arm]["best"]
        out = tmp_path / arm
        assert main(["run", "--config", doc["arms"][arm]["config"], "--out", str(out)]) == 0
        again = json.loads((out / "metrics.json").read_text())["arms"][arm]
        assert again["seeds"]["0"]["valid"]["acc"] == pytest.approx(best["value"], abs=1e-9)


def test_two_workers_finish_exactly_the_budget_without_duplicates(tmp_path):
    config = with_overrides(load_config(_config_file(tmp_path)),
                            {"arms": ["scratch+concat"], "tune.trials": 6, "tune.jobs": 2,
                             "tune.design": "independent"})
    tune(config, tmp_path / "t", log=lambda _: None)
    trials = _trials(tmp_path / "t", "scratch+concat")
    finished = _finished(trials)
    assert len(finished) == 6
    assert len({t.number for t in finished}) == 6
    assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == 6
    assert all(t.user_attrs.get(TICKET) for t in finished)
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both worked


def _running_trial_started(tune_dir: Path) -> bool:
    trials = _trials(tune_dir, "pretrained+attention")
    return any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials)


def test_a_killed_tune_resumes_and_finishes_the_budget(tmp_path):
    config = _config_file(tmp_path)
    tune_dir = tmp_path / "t"
    # Longer trials, so that the kill lands inside one.
    command = [sys.executable, "-m", "prefuse", "tune", "--config", str(config),
               "--arms", "pretrained+attention", "--trials", "2", "--out", str(tune_dir),
               "--epochs", "16", "--set", "train.patience=16",
               "--set", "tune.design=independent"]
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(prefuse.__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    # Its first line comes once the study is set up: no reader here races its set-up.
    assert process.stdout.readline().startswith(b"tuning"), process.stderr.read().decode()
    deadline = time.monotonic() + 240
    while not _running_trial_started(tune_dir):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no trial started"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = [t for t in _trials(tune_dir, "pretrained+attention")
              if t.state == TrialState.RUNNING]
    assert len(killed) == 1
    assert main(command[3:]) == 0  # the same command, in this process
    trials = _trials(tune_dir, "pretrained+attention")
    assert len(_finished(trials)) == 2
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [killed[0].number]
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert len(retried) == 1 and retried[0].params == killed[0].params
    assert retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)


def test_the_pruner_stops_a_hopeless_trial_early(tmp_path):
    config = tiny_config(tmp_path, **{"train.epochs": 8, "train.patience": 8,
                                      "train.batch_size": 16, "tune.prune_after_trials": 1,
                                      "tune.prune_after_epochs": 3})
    config.tune.space = {"train.lr": SearchParam("log", 1e-7, 1e-1)}
    objective = Objective(config, "scratch+attention", mixed_dataset(n=120), log=lambda _: None,
                          where=CPU)
    study = optuna.create_study(direction="maximize",
                                pruner=PRUNERS.get(config.tune.pruner)(config.tune))
    for lr in (1e-2, 1e-7):  # a good trial, then one whose weights barely move
        study.enqueue_trial({"train.lr": lr}, user_attrs={TICKET: True})
    study.optimize(objective, n_trials=2)
    good, bad = study.trials
    assert good.state == TrialState.COMPLETE and len(good.intermediate_values) == 8
    assert bad.state == TrialState.PRUNED
    # Stopped soon after the pruner's 3 warm-up epochs, far from its budget of 8.
    assert max(bad.intermediate_values) <= 4


class Tripwire:
    """Stands in for the test split and records every access."""

    def __init__(self):
        object.__setattr__(self, "touched", [])

    def __getattr__(self, name):
        self.touched.append(name)
        raise AssertionError(f"the test split was read ({name})")

    def __len__(self):
        self.touched.append("__len__")
        raise AssertionError("the test split was read (len)")


def test_trials_never_touch_the_test_split(tiny_synthetic, tmp_path):
    import copy

    dataset = copy.copy(tiny_synthetic)
    tripwire = Tripwire()
    dataset.splits = {**tiny_synthetic.splits, "test": tripwire}
    config = tiny_config(tmp_path)
    config.tune.space = {"train.lr": SearchParam("log", 1e-3, 1e-2),
                         "train.pretrain_epochs": SearchParam("int", 1, 3, stage1=True)}
    for arm in ("pretrained+attention", "scratch+concat"):
        study = optuna.create_study(direction="maximize")
        study.enqueue_trial({}, user_attrs={TICKET: True})
        study.optimize(Objective(config, arm, dataset, log=lambda _: None, where=CPU),
                       n_trials=1)
        assert study.trials[0].state == TrialState.COMPLETE
    assert tripwire.touched == []


def test_tensorboard_events_are_written_and_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = tmp_path / "tb"
    assert main(["run", "--out", str(tmp_path / "run"), "--seeds", "0", "--epochs", "4",
                 "--pretrain-epochs", "2", "--width", "8", "--arms", "pretrained+attention",
                 "--set", "data.synthetic.train=80", "--set", "data.synthetic.valid=40",
                 "--set", "data.synthetic.test=40", "--tensorboard", str(board)]) == 0
    joint = EventAccumulator(str(board / "pretrained+attention" / "seed0")).Reload()
    tags = set(joint.Tags()["scalars"])
    assert {"loss/train", "loss/valid", "metric/valid", "usage/text",
            "attention/vision"} <= tags
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    epochs = history["arms"]["pretrained+attention"]["seeds"]["0"]["epochs_run"]
    assert [e.step for e in joint.Scalars("metric/valid")] == list(range(1, epochs + 1))
    weights = [joint.Scalars(f"attention/{m}")[-1].value for m in ("text", "audio", "vision")]
    assert sum(weights) == pytest.approx(1.0, abs=1e-5)
    stage1 = EventAccumulator(str(board / "pretrain" / "text" / "seed0")).Reload()
    assert len(stage1.Scalars("metric/valid")) == 2


def test_tensorboard_with_jobs_is_refused_before_any_work(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "run"), "--jobs", "2",
                 "--tensorboard", str(tmp_path / "tb")]) == 2
    assert "--tensorboard" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()


def test_bad_search_spaces_are_refused_naming_the_entry(tmp_path):
    config = tiny_config(tmp_path)
    for space, field in (({"train.lr": SearchParam("log", 0.0, 1e-2)}, "tune.space.train.lr"),
                         ({"train.nope": SearchParam("float", 0, 1)}, "tune.space.train.nope"),
                         ({"model.width": SearchParam("choice")}, "tune.space.model.width"),
                         ({"train.lr": SearchParam("normal", 0, 1)}, "tune.space.train.lr"),
                         ({"train.pretrain_epochs": SearchParam("int", 1, 9)},
                          "tune.space.train.pretrain_epochs")):
        config.tune.space = space
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            check_tune(config)


def test_a_study_made_with_other_settings_is_refused(tmp_path):
    config = tiny_config(tmp_path)
    storage = open_storage(config.tune, tmp_path)
    data = data_shape(mixed_dataset(n=20))
    prepare_study(storage, config, "scratch+concat", "maximize", data)
    other = with_overrides(config, {"model.width": 16})
    with pytest.raises(PrefuseError, match="other settings"):
        prepare_study(storage, other, "scratch+concat", "maximize", data)
    with pytest.raises(PrefuseError, match="other settings"):
        prepare_study(storage, config, "scratch+concat", "maximize",
                      data_shape(mixed_dataset(n=40)))
    # More trials for the same search are fine: the budget grows.
    study = prepare_study(storage, with_overrides(config, {"tune.trials": 40}),
                          "scratch+concat", "maximize", data)
    assert len(study.trials) == 40


def test_a_storage_that_cannot_be_opened_is_one_clear_error(tmp_path, capsys):
    code = main(["tune", "--config", str(_config_file(tmp_path)), "--arms", "scratch+concat",
                 "--trials", "1", "--out", str(tmp_path / "t"), "--storage", "nosuchdb://x"])
    assert code == 2
    err = capsys.readouterr().err
    assert "storage nosuchdb://x: cannot open" in err and "Traceback" not in err


def test_a_method_arm_searches_its_own_coefficients_and_no_other_methods(tmp_path):
    from prefuse.recipe.checks import check_config
    from prefuse.tuning.space import arm_space, configure, sample

    config = tiny_config(tmp_path, **{"train.epochs": 40})  # room for the stage-1 range
    # A config's own range for one method wins over the method's declared one.
    config.tune.space["methods.umt.weight"] = SearchParam("float", 2.0, 3.0)
    assert "methods.umt.weight" not in arm_space(config, "scratch+concat+ogm-ge")
    assert "methods.ogm-ge.alpha" not in arm_space(config, "scratch+concat")
    ogm = arm_space(config, "scratch+concat+ogm-ge")["methods.ogm-ge.alpha"]
    assert (ogm.kind, ogm.low, ogm.high) == ("float", 0.1, 2.0)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for arm, key, low, high in (("pretrained+attention+umt", "methods.umt.weight", 2.0, 3.0),
                                ("scratch+concat+ogm-ge", "methods.ogm-ge.alpha", 0.1, 2.0)):
        params = sample(study.ask(), config, arm)
        assert low <= params[key] <= high
        tuned = check_config(configure(config, arm, params, [0]))  # options checked there
        method, option = key.split(".")[1:]
        assert tuned.methods[method][option] == params[key]


def test_importances_need_neither_scikit_learn_nor_scipy(monkeypatch):
    from prefuse.tuning.results import _importances

    for name in ("sklearn", "scipy"):  # a None entry makes the import fail
        monkeypatch.setitem(sys.modules, name, None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    # The value depends on x alone: x takes (nearly) all the importance, y none.
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2 + 0 * t.suggest_float("y", 0, 1),
                   n_trials=30)
    importances = _importances(study)
    assert set(importances) == {"x", "y"}
    assert importances["x"] > 0.9 > importances["y"]
    assert sum(importances.values()) == pytest.approx(1.0)


def test_skipping_the_usage_probe_changes_no_number_of_the_training(tmp_path):
    # Trials skip the probe (a validation pass per modality and epoch) unless TensorBoard
    # shows it.
    from prefuse.data.source import load_data
    from prefuse.recipe.workspace import build_workspace
    from prefuse.tuning.objective import train_on_valid, without_test

    config = tiny_config(tmp_path)
    space = build_workspace(without_test(load_data(config)), CPU)
    rows = {True: [], False: []}
    results = {usage: train_on_valid("pretrained+attention", space, config, 0,
                                     lambda event, usage=usage: rows[usage].append(event.row),
                                     usage=usage)
               for usage in (True, False)}
    assert all("usage_text" in row for row in results[True].fit.history)
    assert not any(key.startswith("usage_") for row in rows[False] for key in row)
    without_usage = [{k: v for k, v in row.items() if not k.startswith("usage_")}
                     for row in results[True].fit.history]
    assert without_usage == results[False].fit.history
    assert results[True].valid.metrics == results[False].valid.metrics


@pytest.mark.parametrize("command", ["run", "tune"])
def test_a_tensorboard_path_that_cannot_be_a_directory_is_refused_before_any_work(
        tmp_path, capsys, command):
    a_file = tmp_path / "board.txt"
    a_file.write_text("not a folder")
    out = tmp_path / "out"
    # /proc refuses new folders even to root, whom permission bits would let through.
    for board, says in ((a_file, "exists and is not a directory"),
                        (a_file / "sub", f"{a_file} is not a directory"),
                        (Path("/proc/prefuse-board"), "cannot create this directory")):
        args = [command, "--out", str(out), "--tensorboard", str(board)]
        if command == "tune":
            args += ["--config", str(_config_file(tmp_path)), "--arms", "scratch+concat",
                     "--trials", "1"]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"prefuse: error: {board}: {says}") and "Traceback" not in err
        assert not out.exists()
    assert a_file.read_text() == "not a folder"


def test_a_tensorboard_directory_that_can_be_made_is_probed_and_left_as_it_was(tmp_path):
    from prefuse.cli import check_tensorboard_dir

    board = tmp_path / "new" / "deeper" / "board"
    check_tensorboard_dir(str(board))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("flag, field", [("--tune-seeds", "tune.tune_seeds"),
                                         ("--final-seeds", "tune.final_seeds")])
def test_a_negative_tune_seed_is_refused_before_a_study_is_written(tmp_path, capsys, flag,
                                                                   field):
    args = ["tune", "--config", str(_config_file(tmp_path)), "--arms", "scratch+concat",
            "--trials", "1", "--out", str(tmp_path / "t")]
    assert main(args + [flag, "-1"]) == 2
    err = capsys.readouterr().err
    assert f"config field '{field}': a seed must lie in [0, 2**32 - 1], got -1" in err
    assert "Traceback" not in err and not (tmp_path / "t").exists()
    assert main(args + ["--set", "tune.seed=4294967296"]) == 2
    assert "config field 'tune.seed'" in capsys.readouterr().err
    # The corrected command is not refused as "made with other settings".
    assert main(args + [flag, "1"]) == 0


def test_a_tune_continues_with_other_jobs_and_its_best_configs_say_not_where_it_ran(
        tmp_path):
    import tomllib

    from prefuse.config import RUNTIME_FIELDS

    args = ["tune", "--config", str(_config_file(tmp_path)), "--arms", "scratch+concat",
            "--out", str(tmp_path / "t"), "--set", "tune.design=independent"]
    assert main(args + ["--trials", "1", "--jobs", "1"]) == 0
    # Another --jobs (and device, threads) is where the tune runs: the study continues.
    assert main(args + ["--trials", "2", "--jobs", "2", "--set", "train.threads=1",
                        "--set", "train.device=cpu"]) == 0
    assert len(_finished(_trials(tmp_path / "t", "scratch+concat"))) == 2
    best = tomllib.loads((tmp_path / "t" / "best" / "scratch+concat.toml").read_text())
    for dotted in RUNTIME_FIELDS:
        table, leaf = dotted.split(".")
        assert leaf not in best[table], dotted
    assert best["train"]["precision"] == "fp32" and best["model"]["width"] == 8
    # What a run computes still decides the study: bf16 changes the numbers.
    config = load_config(_config_file(tmp_path))
    storage = open_storage(config.tune, tmp_path / "t")
    data = data_shape(mixed_dataset(n=20))
    prepare_study(storage, with_overrides(config, {"tune.study": "p"}), "scratch+concat",
                  "maximize", data)
    for runtime in ({"train.jobs": 3}, {"train.device": "cuda:1"}, {"tune.jobs": 4}):
        prepare_study(storage, with_overrides(config, {"tune.study": "p", **runtime}),
                      "scratch+concat", "maximize", data)
    with pytest.raises(PrefuseError, match="other settings"):
        prepare_study(storage, with_overrides(config, {"tune.study": "p",
                                                       "train.precision": "bf16"}),
                      "scratch+concat", "maximize", data)


def test_a_trial_places_its_splits_as_a_run_does(tiny_synthetic, tmp_path, monkeypatch):
    import copy

    import prefuse.tuning.objective as objective
    from prefuse.engine import runtime
    from prefuse.runs.experiment import run_experiment

    placed = []  # (split given, split returned, runtime) for every placement

    def place(split, where, share=0.5):
        # A new object stands for "moved to the device", so a trial that trains on the
        # host's copy instead is caught.
        moved = copy.copy(split)
        placed.append((split, moved, where))
        return moved

    monkeypatch.setattr(runtime, "place", place)
    trained_on = []
    train_on_valid = objective.train_on_valid

    def spy(arm, space, *args, **kwargs):
        trained_on.append(space.data)
        return train_on_valid(arm, space, *args, **kwargs)

    monkeypatch.setattr(objective, "train_on_valid", spy)
    # Independent: its trials train through ``train_on_valid`` (paired ones place the
    # splits the same way, through an ``Objective``: tests/test_paired.py).
    config = tiny_config(tmp_path / "run", arms=["scratch+concat"],
                         **{"tune.trials": 1, "tune.design": "independent"})
    tune(config, tmp_path / "t", tiny_synthetic, log=lambda _: None)
    assert len(trained_on) == 1 and trained_on[0].test is None
    (train, moved_train, where), (valid, moved_valid, _) = placed
    assert trained_on[0].train is moved_train and trained_on[0].valid is moved_valid
    assert len(train) == 240 and len(valid) == 80 and where.device.type == "cpu"
    placed.clear()
    run_experiment(config, tiny_synthetic, log=lambda _: None)
    assert [len(given) for given, _, _ in placed] == [240, 80, 120]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_a_trial_keeps_its_splits_on_the_device(tiny_synthetic, tmp_path):
    from prefuse.engine import runtime

    config = tiny_config(tmp_path, **{"train.device": "cuda"})
    where = runtime.resolve(config.train)
    with runtime.applied(where):
        objective = Objective(config, "scratch+concat", tiny_synthetic, log=lambda _: None,
                              where=where)
    assert objective.space.data.train.y.device == where.device
    assert objective.space.data.valid.y.device == where.device
    assert objective.space.data.test is None


def test_the_built_in_space_follows_a_shorter_budget(tmp_path):
    from prefuse.tuning.space import fit_to_budget

    # 40 epochs (the built-in budget): the built-in ranges, unchanged.
    forty = fit_to_budget(tiny_config(tmp_path, **{"train.epochs": 40}))
    assert forty.tune.space == RunConfig().tune.space
    # 6 epochs: stage 1 searches [5*6//40, 25*6//40] = [0, 3], raised to at least 1;
    # freezing min(5*6//40, 6-3-1) = 0 epochs.
    six = fit_to_budget(tiny_config(tmp_path))
    pre, freeze = six.tune.space["train.pretrain_epochs"], six.tune.space["train.freeze_epochs"]
    assert (pre.low, pre.high, pre.stage1) == (1, 3, True)
    assert (freeze.low, freeze.high) == (0, 0)
    # 16 epochs: [2, 10] and freezing up to min(2, 16-10-1) = 2.
    sixteen = fit_to_budget(tiny_config(tmp_path, **{"train.epochs": 16})).tune.space
    assert (sixteen["train.pretrain_epochs"].low, sixteen["train.pretrain_epochs"].high,
            sixteen["train.freeze_epochs"].high) == (2, 10, 2)
    # The other entries stay as they are.
    assert {k: v for k, v in six.tune.space.items() if not k.endswith("_epochs")} == \
        {k: v for k, v in RunConfig().tune.space.items() if not k.endswith("_epochs")}
    check_tune(six)
    with pytest.raises(ConfigError, match=r"tune\.space\.train\.pretrain_epochs"):
        check_tune(tiny_config(tmp_path))  # the built-in ranges, unfitted


def test_a_6_epoch_tune_with_the_built_in_space_runs(tmp_path):
    config = tiny_config(tmp_path, **{"arms": ["pretrained+attention"], "tune.trials": 1,
                                      "model.encoder": "gru"})
    doc = tune(config, tmp_path / "t", log=lambda _: None)
    (trial,) = doc["arms"]["pretrained+attention"]["trials"]
    assert 1 <= trial["params"]["train.pretrain_epochs"] <= 3
    assert trial["params"]["train.freeze_epochs"] == 0


def test_a_written_range_that_cannot_fit_the_budget_is_refused(tmp_path):
    # The built-in ranges, written out in a config with one entry more: kept as written.
    config = tiny_config(tmp_path)
    config.tune.space = {**RunConfig().tune.space,
                         "train.weight_decay": SearchParam("float", 0.0, 0.1)}
    with pytest.raises(ConfigError, match=r"'tune\.space\.train\.pretrain_epochs': value 25 "
                                          r"is refused.*\[1, 5\]"):
        tune(config, tmp_path / "t", log=lambda _: None)
    assert not (tmp_path / "t").exists()


def test_trials_per_arm_records_what_the_study_holds(tuned, tmp_path):
    import shutil

    again = tmp_path / "t"
    shutil.copytree(tuned, again)
    # A shorter --trials on a study of 3 trials runs none and says 3, not 1.
    assert main(["tune", "--config", str(_config_file(tmp_path)), "--arms", "scratch+concat",
                 "pretrained+attention", "--trials", "1", "--out", str(again)]) == 0
    doc = json.loads((again / "tuning.json").read_text())
    assert doc["trials_per_arm"] == 3
    assert all(len(entry["trials"]) == 3 for entry in doc["arms"].values())


def test_a_shorter_budget_alone_is_not_refused_for_the_base_stage_1_epochs(tmp_path,
                                                                          monkeypatch):
    # `--epochs 12` with the built-in space: the base's 15 stage-1 epochs are searched,
    # so they follow the budget too; a flag that fixes another field changes nothing.
    seen = []
    monkeypatch.setattr(prefuse.tuning, "tune",
                        lambda config, tune_dir, log, tensorboard: seen.append(config) or
                        {"arms": {}})
    assert main(["tune", "--epochs", "12", "--width", "16", "--out", str(tmp_path / "t")]) == 0
    (config,) = seen
    pre = config.tune.space["train.pretrain_epochs"]
    assert (pre.low, pre.high) == (1, 7) and 1 <= config.train.pretrain_epochs <= 7
    assert "model.width" not in config.tune.space and config.model.width == 16
    # A stage-1 flag that cannot fit the budget is the user's value, refused as such.
    assert main(["tune", "--epochs", "12", "--pretrain-epochs", "20",
                 "--out", str(tmp_path / "u")]) == 2
    assert seen == [config]
