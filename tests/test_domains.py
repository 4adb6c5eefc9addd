"""Stacking and validating the domains (``sktd._domains``)."""

import numpy as np
import pytest

from sktd import TransferDistillClassifier, TransferDistillRegressor, stack_domains
from sktd._domains import stack_labels


def test_stack_domains_marks_missing_target_labels_by_dtype():
    X = np.zeros((2, 1))
    _, y, domain = stack_domains(X, [0, 1], X)
    assert y.tolist() == [0, 1, -1, -1] and domain.tolist() == [1, 1, -2, -2]
    _, y, _ = stack_domains(X, [0.5, 1.5], X)
    assert np.isnan(y[2:]).all()
    _, y, _ = stack_domains(X, np.array([0, 1], dtype=np.uint8), X)
    # An unsigned dtype cannot hold -1: the labels widen instead of overflowing.
    assert y.tolist() == [0, 1, -1, -1]


def test_split_fit_and_stack_domains_share_one_stacking_rule():
    # The estimator's own marker wins: a classifier with float labels marks
    # unlabelled rows -1, a regressor with integer labels NaN.
    y, _ = stack_labels(np.array([0.0, 1.0]), None, 2, ("y", "y_target"), -1)
    assert y.tolist() == [0.0, 1.0, -1.0, -1.0]
    y, _ = stack_labels(np.array([1, 2]), None, 1, ("y", "y_target"), np.nan)
    assert np.isnan(y[2])
    # Numbers and strings are stacked as objects, never converted.
    y, _ = stack_labels(np.array(["a", "b"]), np.array([-1]), 1, ("y", "y_target"))
    assert y.dtype == object and y.tolist() == ["a", "b", -1]


@pytest.mark.parametrize(
    "y_target, message",
    [
        (np.zeros(3), "y_target has 3 rows, but X_target has 2"),
        (np.zeros((2, 2)), r"y_target has shape \(2,\) per row, but y has \(\)"),
    ],
)
def test_stacking_errors_name_the_argument(y_target, message):
    with pytest.raises(ValueError, match=message):
        stack_labels(np.zeros(4), y_target, 2, ("y", "y_target"))


@pytest.mark.parametrize(
    "cls, y",
    [
        (TransferDistillClassifier, np.array([0.0, 1.0] * 20)),
        (TransferDistillRegressor, np.arange(40)),
    ],
)
def test_split_and_stacked_forms_fill_unlabelled_rows_alike(cls, y):
    rng = np.random.RandomState(0)
    X, X_target = rng.normal(size=(40, 3)), rng.normal(size=(10, 3))
    params = dict(max_iter=2, random_state=0, teacher_hidden_layer_sizes=(4,))
    split = cls(**params).fit(X, y, X_target=X_target)
    marker = -1 if cls is TransferDistillClassifier else np.nan
    y_stacked = np.concatenate([y, np.full(10, marker)])
    stacked = cls(**params).fit(
        np.vstack([X, X_target]), y_stacked, sample_domain=np.r_[[1] * 40, [-2] * 10]
    )
    np.testing.assert_array_equal(split.predict(X_target), stacked.predict(X_target))
