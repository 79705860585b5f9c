import pytest

from prefuse.config import RunConfig, config_to_toml, load_config, with_overrides
from prefuse.errors import ConfigError
from prefuse.recipe.checks import check_config


def test_config_round_trips_through_toml(tmp_path):
    config = with_overrides(RunConfig(), {"train.lr": 0.005, "seeds": [3, 4],
                                          "model.encoders": {"text": "gru"},
                                          "arms": ["scratch+concat", "pretrained+attention"]})
    path = tmp_path / "c.toml"
    path.write_text(config_to_toml(config))
    assert load_config(path) == config


@pytest.mark.parametrize("text, field", [
    ("[train]\nlr = -1.0\n", "train.lr"),
    ("[train]\nepochs = 'ten'\n", "train.epochs"),
    ("[train]\nlearning_rate = 0.1\n", "train.learning_rate"),
    ("[model]\nencoder = 'rnn9'\n", "model.encoder"),
    ("arms = ['scratch+magic']\n", "arms"),
    ("arms = ['frozen+concat']\n[train]\npretrain_epochs = 0\n", "train.pretrain_epochs"),
    ("arms = ['scratch+concat+umt']\n[train]\npretrain_epochs = 0\n",
     "train.pretrain_epochs"),
    ("[methods.umt]\nweight = 'big'\n", "methods.umt.weight"),
    ("[methods.umt]\nlambda = 1.0\n", "methods.umt.lambda"),
    ("[methods.magic]\nweight = 1.0\n", "methods.magic"),
    ("[train]\nepochs = 5\npretrain_epochs = 5\n", "train.pretrain_epochs"),
    ("seeds = []\n", "seeds"),
    ("[train]\nthreads = -2\n", "train.threads"),
])
def test_bad_config_value_names_file_and_field(tmp_path, text, field):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        # Types and ranges fail in load_config, registered names in check_config.
        check_config(load_config(path), path)
    assert info.value.field == field
    assert str(path) in str(info.value) and field in str(info.value)


def test_invalid_toml_is_a_config_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[train\nlr = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
