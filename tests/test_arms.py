"""Arm names: compositions, named arms, groups, and clear errors for the rest."""

from __future__ import annotations

from dataclasses import replace

import pytest

from prefuse.config import ARMS, RunConfig, TrainConfig, with_overrides
from prefuse.errors import ConfigError
from prefuse.recipe import arms as arms_module
from prefuse.recipe.arms import arm, expand
from prefuse.recipe.checks import check_config

METHOD_ARMS = ["pretrained+attention+agm", "pretrained+attention+dgl",
               "pretrained+attention+gblend", "pretrained+attention+mmpareto",
               "pretrained+attention+multiloss", "pretrained+attention+ogm-ge",
               "pretrained+attention+umt"]
BALANCE = ["ensemble"] + METHOD_ARMS


def test_paper_arms_keep_their_names_and_declare_their_traits():
    headline = arm("pretrained+attention")
    assert headline.parts() == {"init": "pretrained", "fusion": "attention", "method": "none"}
    assert headline.headline and headline.has_weights and headline.uses_stage1
    assert headline.before == "scratch+attention"
    concat = arm("scratch+concat")
    assert not (concat.headline or concat.has_weights or concat.uses_stage1)
    assert concat.before is None
    assert [a for a in ARMS if arm(a).headline] == ["pretrained+attention"]


@pytest.mark.parametrize("name, parts, stage1, loads", [
    ("frozen+concat", ("frozen", "concat", "none"), True, True),
    ("scratch+attention+umt", ("scratch", "attention", "umt"), True, False),
    ("scratch+concat+dgl", ("scratch", "concat", "dgl"), False, False),
    ("pretrained+attention+multiloss", ("pretrained", "attention", "multiloss"), True, True),
])
def test_compositions_parse_into_their_parts(name, parts, stage1, loads):
    a = arm(name)
    assert a.name == name and tuple(a.parts().values()) == parts
    assert a.uses_stage1 == stage1 and a.loads_stage1 == loads and not a.headline


def test_mult_is_a_named_arm():
    mult = arm("mult")
    assert mult.fusion == "mult" and not mult.has_weights and not mult.uses_stage1
    assert mult.joint and not mult.balance


def test_ensemble_is_a_named_balance_arm_that_trains_nothing_jointly():
    ensemble = arm("ensemble")
    assert ensemble.parts() == {"init": "frozen", "fusion": "ensemble", "method": "none"}
    assert ensemble.uses_stage1 and not ensemble.joint and ensemble.balance
    assert not ensemble.has_weights and not ensemble.headline


@pytest.mark.parametrize("name", ["magic+concat", "scratch+magic", "scratch+concat+none",
                                  "scratch+concat+umt+dgl", "mult+umt", "scratch", "",
                                  "pretrained+attention+"])
def test_bad_arm_names_name_the_field_and_the_choices(name):
    with pytest.raises(ConfigError) as info:
        arm(name)
    message = str(info.value)
    assert info.value.field == "arms"
    for choice in ("scratch", "frozen", "attention", "concat", "umt", "mult", "paper"):
        assert choice in message


def test_groups_expand():
    assert expand(["paper"]) == list(ARMS)
    assert expand(["balance"]) == BALANCE
    assert expand(["all"]) == list(ARMS) + ["ensemble", "mult"] + METHOD_ARMS
    assert expand(["scratch+concat", "paper"]) == list(ARMS)


def test_check_config_expands_groups_and_rejects_bad_names():
    config = check_config(with_overrides(RunConfig(), {"arms": ["balance", "mult"]}))
    assert config.arms == BALANCE + ["mult"]
    with pytest.raises(ConfigError, match="arms"):
        check_config(with_overrides(RunConfig(), {"arms": ["pretrained+attention+magic"]}))


def test_an_arm_trains_with_the_runs_config_less_stage_1_and_with_its_overrides():
    t = TrainConfig(epochs=40, pretrain_epochs=15, encoder_lr=1e-4, freeze_epochs=3)
    scratch = arm("scratch+attention").training(t)
    assert (scratch.epochs, scratch.encoder_lr, scratch.freeze_epochs) == (40, 0.0, 0)
    pretrained = arm("pretrained+attention").training(t)
    assert (pretrained.epochs, pretrained.encoder_lr, pretrained.freeze_epochs) == \
        (25, 1e-4, 3)
    frozen = arm("frozen+attention").training(t)
    assert (frozen.epochs, frozen.freeze_epochs) == (25, 25)
    mult = arm("mult").training(t)
    assert (mult.epochs, mult.lr, mult.batch_size, mult.grad_clip, mult.patience) == \
        (40, 1e-3, 24, 0.8, t.patience)
    assert t == TrainConfig(epochs=40, pretrain_epochs=15, encoder_lr=1e-4, freeze_epochs=3)


@pytest.mark.parametrize("overrides, match", [
    ({"learning_rate": 1e-3}, r"'arms': arm mult: train_overrides \['learning_rate'\] name no "
                              "train field"),
    ({"lr": -1.0}, r"'train.lr': arm mult: must be > 0, got -1.0")])
def test_check_config_checks_each_arms_own_training_config(monkeypatch, overrides, match):
    real = arms_module.arm
    monkeypatch.setattr(arms_module, "arm", lambda name: replace(
        real(name), train_overrides=overrides) if name == "mult" else real(name))
    config = with_overrides(RunConfig(), {"arms": ["scratch+concat", "mult"]})
    with pytest.raises(ConfigError, match=match) as caught:
        check_config(config, "run.toml")
    assert str(caught.value).startswith("run.toml: ")
    check_config(with_overrides(RunConfig(), {"arms": ["scratch+concat"]}))
