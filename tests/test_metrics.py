"""Every metric against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prefuse import metrics
from prefuse.tasks import make_task

# Two truths are exactly 0 (the conventions differ on them); predictions sit on .5 and
# +-2.5, where numpy rounds half to even.
TRUTH = np.array([0.0, 2.6, -2.0, 3.4, -0.6, 0.0])
PRED = np.array([0.5, 2.5, -2.5, 2.9, 0.2, -0.3])


@pytest.fixture(scope="module")
def sentiment():
    return metrics.sentiment_metrics(PRED, TRUTH)


def test_mae(sentiment):
    # |.5| + |-.1| + |-.5| + |-.5| + |.8| + |-.3| = 2.7
    assert sentiment["mae"] == pytest.approx(2.7 / 6)


def test_corr_by_hand():
    # deviations (-1, 0, 1) and (-1, 1, 0): covariance sum 1, variance sums 2 and 2
    assert metrics.sentiment_metrics(np.array([1.0, 2, 3]),
                                     np.array([1.0, 3, 2]))["corr"] == pytest.approx(0.5)


def test_corr_is_pearson(sentiment):
    assert sentiment["corr"] == pytest.approx(np.corrcoef(PRED, TRUTH)[0, 1], rel=1e-12)


def test_corr_of_constant_prediction_is_nan():
    assert math.isnan(metrics.sentiment_metrics(np.zeros(3), np.array([1.0, 2, 3]))["corr"])


def test_acc7_rounds_half_to_even(sentiment):
    # pred -> round(clip(p, -3, 3)): 0.5->0, 2.5->2, -2.5->-2, 2.9->3, 0.2->0, -0.3->0
    # truth:                          0,     2.6->3, -2,      3.4->3, -0.6->-1, 0
    # equal at 0, 2, 3, 5 (rounding half away from zero would give 2 of 6)
    assert sentiment["acc7"] == pytest.approx(4 / 6)


def test_acc5_clips_to_two(sentiment):
    # clip to [-2, 2] first: 2.5 and 2.6 both become 2, 2.9 and 3.4 both 2
    # pred 0, 2, -2, 2, 0, 0 vs truth 0, 2, -2, 2, -1, 0
    assert sentiment["acc5"] == pytest.approx(5 / 6)


def test_acc2_and_f1_without_zero_labels(sentiment):
    # truth != 0 at 1..4: truth > 0 (1, 0, 1, 0), pred > 0 (1, 0, 1, 1)
    assert sentiment["acc2_non0"] == pytest.approx(3 / 4)
    # class 1: P 2/3, R 1, F1 .8 (2 true); class 0: P 1, R 1/2, F1 2/3 (2 true)
    assert sentiment["f1_non0"] == pytest.approx((0.8 * 2 + 2 / 3 * 2) / 4)
    # MulT's swapped arguments weight by predicted support (3 and 1) instead
    assert sentiment["f1_non0"] != pytest.approx((0.8 * 3 + 2 / 3 * 1) / 4)


def test_acc2_and_f1_with_zero_labels(sentiment):
    # all samples, >= 0: truth (1, 1, 0, 1, 0, 1), pred (1, 1, 0, 1, 1, 0)
    assert sentiment["acc2_has0"] == pytest.approx(4 / 6)
    # class 1: TP 3, FP 1, FN 1 -> F1 .75 (4 true); class 0: TP 1, FP 1, FN 1 -> .5 (2)
    assert sentiment["f1_has0"] == pytest.approx((0.75 * 4 + 0.5 * 2) / 6)


def test_zero_prediction_counts_as_positive_only_with_zeros():
    truth = np.array([0.0, 1.0, -1.0])
    pred = np.array([0.0, 0.0, 0.0])
    out = metrics.sentiment_metrics(pred, truth)
    assert out["acc2_has0"] == pytest.approx(2 / 3)  # 0 >= 0 for truth 0 and 1
    assert out["acc2_non0"] == pytest.approx(1 / 2)  # 0 > 0 is false: right for -1 only


def test_all_zero_truth_has_no_non0_scores():
    out = metrics.sentiment_metrics(np.array([1.0, -1.0]), np.zeros(2))
    assert math.isnan(out["acc2_non0"]) and math.isnan(out["f1_non0"])
    assert out["acc2_has0"] == 0.5


def test_shapes_n_by_1_are_flattened():
    out = metrics.sentiment_metrics(PRED.reshape(-1, 1), TRUTH.reshape(-1, 1, 1))
    assert out["acc7"] == pytest.approx(4 / 6)


def test_multitarget_regression():
    pred = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 5.0]])
    truth = np.array([[1.0, 3.0], [3.0, 2.0], [2.0, 0.0]])
    out = metrics.multitarget_regression_metrics(pred, truth, ["a", "b"])
    assert out["mae_a"] == pytest.approx(2 / 3)
    assert out["mae_b"] == pytest.approx(9 / 3)
    assert out["corr_a"] == pytest.approx(0.5)
    # b: deviations (-2, -1, 3) and (4/3, 1/3, -5/3): covariance -8, variances 14, 42/9
    corr_b = -8 / math.sqrt(14 * 42 / 9)
    assert out["corr_b"] == pytest.approx(corr_b)
    assert out["mae"] == pytest.approx((2 / 3 + 3) / 2)
    assert out["corr"] == pytest.approx((0.5 + corr_b) / 2)


def test_multilabel_per_label_metrics():
    truth = np.array([[1, 0], [0, 0], [1, 1], [0, 1]])
    pred = np.array([[1, 1], [0, 1], [0, 1], [0, 1]])
    out = metrics.multilabel_metrics(pred, truth, ["Neutral", "Happy"])
    # Neutral: truth (1,0,1,0), pred (1,0,0,0): class 1 F1 2/3, class 0 F1 .8, 2 each
    assert out["acc_Neutral"] == pytest.approx(3 / 4)
    assert out["f1_Neutral"] == pytest.approx((2 / 3 + 0.8) / 2)
    # Happy: always "present": class 1 F1 2/3, class 0 F1 0, two samples each
    assert out["acc_Happy"] == pytest.approx(1 / 2)
    assert out["f1_Happy"] == pytest.approx(1 / 3)
    assert out["acc_mean"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert out["f1_mean"] == pytest.approx(((2 / 3 + 0.8) / 2 + 1 / 3) / 2)


def test_classification():
    truth = np.array([0, 0, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 2, 2, 0])
    out = metrics.classification_metrics(pred, truth)
    assert out["acc"] == pytest.approx(4 / 6)
    # F1 per class: 0 -> .5 (2 true), 1 -> 2/3 (1 true), 2 -> .8 (3 true)
    assert out["f1_weighted"] == pytest.approx((0.5 * 2 + 2 / 3 + 0.8 * 3) / 6)
    assert out["f1_macro"] == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)


def test_lower_is_better():
    assert metrics.lower_is_better("mae") and metrics.lower_is_better("mae_confident")
    assert metrics.lower_is_better("loss")
    assert not any(metrics.lower_is_better(m) for m in ("acc7", "corr", "f1_has0", "acc_mean"))


def test_iemocap_task_reads_eight_logits_as_four_pairs():
    task = make_task("multilabel", 4, ["Neutral", "Happy", "Sad", "Angry"])
    assert task.out_dim == 8
    logits = np.array([[0.0, 1.0, 2.0, 0.0, 0.0, 0.5, 3.0, -3.0]])
    pred, _ = task.decode(logits)
    np.testing.assert_array_equal(pred, [[1, 0, 1, 0]])
    out = task.metrics(pred, np.array([[1, 0, 1, 1]]))
    assert out["acc_Angry"] == 0.0 and out["acc_Neutral"] == 1.0


def test_f1_counts_labels_seen_only_in_predictions_or_only_in_truth():
    # truth holds 0 and 1; the predictions also hold 2, never true. Per label:
    # 0: tp 1, true 2, predicted 1 -> 2/3; 1: tp 1, true 2, predicted 2 -> 1/2; 2: tp 0 -> 0.
    out = metrics.classification_metrics(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 1]))
    assert out["f1_macro"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert out["f1_weighted"] == pytest.approx((2 / 3 * 2 + 1 / 2 * 2) / 4)
    # A class that is true but never predicted scores 0 and keeps its weight.
    out = metrics.classification_metrics(np.array([0, 0, 0]), np.array([0, 1, 0]))
    assert out["f1_weighted"] == pytest.approx((0.8 * 2 + 0 * 1) / 3)
    assert out["f1_macro"] == pytest.approx(0.4)
