"""Context on the built-in context benchmark: it helps where an utterance's video tells its
label, and finds nothing where the utterances of a video are independent.

One modality alone (``alone-audio``: an arm a run trains, with its budget and early
stopping), three seeds each, context on and off, on the benchmark (labels follow their
video's tendency 80% of the time, half the utterances carry no cue of their own) and on its
control (``follow=0.5``: the same videos, labels independent of them). "Beyond noise" is the
tables' rule: a difference of means larger than twice the larger of the two stds.
"""

from __future__ import annotations

import numpy as np
import pytest

from prefuse.config import RunConfig, with_overrides
from prefuse.data.synthetic_context import make_context_synthetic
from prefuse.data.windows import window_for
from prefuse.recipe.stages import train_arm
from prefuse.recipe.workspace import build_workspace

from .conftest import CPU

SEEDS = (0, 1, 2)


def _test_accuracy(follow: float, context: str) -> tuple[float, float]:
    """Mean and std over ``SEEDS`` of ``alone-audio``'s test accuracy."""
    dataset = make_context_synthetic(seed=0, train=2400, valid=600, test=1200, follow=follow)
    config = with_overrides(RunConfig(), {
        "model.context": context, "model.width": 16, "model.head_hidden": 16,
        "train.epochs": 10, "train.patience": 10, "train.lr": 3e-3, "train.device": "cpu"})
    space = build_workspace(dataset, CPU, context_window=window_for(config.model))
    accuracy = [train_arm("alone-audio", space, config, seed, usage=False).test.metrics["acc"]
                for seed in SEEDS]
    return float(np.mean(accuracy)), float(np.std(accuracy))


@pytest.fixture(scope="module")
def accuracy() -> dict[tuple[float, str], tuple[float, float]]:
    return {(follow, context): _test_accuracy(follow, context)
            for follow in (0.8, 0.5) for context in ("none", "gru")}


def _noise(a: tuple[float, float], b: tuple[float, float]) -> float:
    return 2 * max(a[1], b[1])


def test_context_helps_beyond_seed_noise_where_the_video_tells(accuracy):
    with_context, without = accuracy[(0.8, "gru")], accuracy[(0.8, "none")]
    assert with_context[0] - without[0] > _noise(with_context, without)


def test_context_is_within_noise_of_none_on_independent_utterances(accuracy):
    with_context, without = accuracy[(0.5, "gru")], accuracy[(0.5, "none")]
    assert abs(with_context[0] - without[0]) <= _noise(with_context, without)
