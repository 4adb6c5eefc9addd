"""The transfer set's synthetic rows (``sktd._transfer_set``)."""

import numpy as np
import pytest

from sktd import TransferDistillClassifier, TransferDistillRegressor
from sktd._nets import DistillationNet
from sktd._transfer_set import (
    MUNGE_MIN_ROWS,
    MUNGE_ROWS_PER_TARGET_ROW,
    munge,
    munge_rows,
)


def test_munge_redraws_attributes_around_the_nearest_neighbour():
    X = np.array([[0.0, 0.0], [1.0, 10.0], [50.0, 50.0]])
    rows = munge(X, 3000, seed=0, p=0.5)
    start = X[np.arange(3000) % 3]
    kept = rows == start
    # About half the attributes are redrawn, the others kept as they were.
    assert 0.4 < 1 - kept.mean() < 0.6
    # A redrawn attribute of row 0 centres on its neighbour's (row 1) value
    # with a spread of their distance: 1 for the first attribute.
    first = rows[0::3, 0][~kept[0::3, 0]]
    assert abs(first.mean() - 1.0) < 0.15 and abs(first.std() - 1.0) < 0.15
    np.testing.assert_array_equal(munge(X, 30, seed=4), munge(X, 30, seed=4))


def test_munge_rows_come_from_the_target_rows_only():
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(-10, 1, (100, 2)), rng.normal(10, 1, (20, 2))])
    is_source = np.arange(120) < 100
    # Some target rows unlabelled: four synthetic rows per target row.
    is_labelled = np.arange(120) < 110
    rows, parents = munge_rows(X, is_source, is_labelled, seed=0)
    assert len(rows) == len(parents) == MUNGE_ROWS_PER_TARGET_ROW * 20
    assert (rows > 0).all()
    # Each row names the target row it was drawn from.
    assert (parents >= 100).all() and set(parents) == set(range(100, 120))
    unchanged = np.isclose(rows, X[parents]).all(axis=1)
    assert unchanged.any()
    assert len(munge_rows(X, np.arange(120) < 119, is_labelled, seed=0)[0]) == 0


def test_munge_rows_stand_in_for_unlabelled_target_rows_when_there_are_none():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(130, 3))
    is_source = np.arange(130) < 100
    every_row_labelled = np.ones(130, bool)
    rows, parents = munge_rows(X, is_source, every_row_labelled, seed=0)
    assert len(rows) == MUNGE_MIN_ROWS > MUNGE_ROWS_PER_TARGET_ROW * 30
    # Every target row is a parent, as evenly as the count allows.
    counts = np.bincount(parents - 100)
    assert len(counts) == 30 and counts.max() - counts.min() <= 1
    # One unlabelled target row is enough to need no stand-ins.
    one_unlabelled = every_row_labelled.copy()
    one_unlabelled[-1] = False
    assert len(munge_rows(X, is_source, one_unlabelled, seed=0)[0]) == 120


@pytest.mark.parametrize("labelled_only", [False, True])
@pytest.mark.parametrize("cls", [TransferDistillClassifier, TransferDistillRegressor])
def test_munge_rows_join_the_distillation_unlabelled(
    cls,
    labelled_only,
    classification_domains,
    regression_domains,
    fast_params,
    monkeypatch,
):
    X, y, X_target, y_target = (
        classification_domains
        if cls is TransferDistillClassifier
        else regression_domains
    )
    if labelled_only:
        # The fixtures' first 20 target rows are the labelled ones.
        X_target, y_target = X_target[:20], y_target[:20]
    seen = []
    original_fit = DistillationNet.fit

    def recording_fit(self, X, y=None, **kwargs):
        seen.append((len(X), y["labels"].numpy().copy()))
        return original_fit(self, X, y, **kwargs)

    monkeypatch.setattr(DistillationNet, "fit", recording_fit)
    cls(transfer_set="munge", random_state=0, **fast_params).fit(
        X, y, X_target=X_target, y_target=y_target
    )
    ((n_rows, labels),) = seen
    n_given = len(X) + len(X_target)
    n_synthetic = MUNGE_MIN_ROWS if labelled_only else 4 * len(X_target)
    assert n_rows == n_given + n_synthetic
    synthetic = labels[n_given:]
    if cls is TransferDistillClassifier:
        assert (synthetic == -1).all()
    else:
        assert np.isnan(synthetic).all()
