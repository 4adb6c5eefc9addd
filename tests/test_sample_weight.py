"""``fit(..., sample_weight=...)``: weights reach every stage, and only weights."""

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.ensemble import AdaBoostClassifier
from sklearn.model_selection import KFold, cross_validate

from sktd import TransferDistillClassifier, TransferDistillRegressor, stack_domains

# The full default engine: guard with the tabular pool, MUNGE transfer set.
GUARDED = dict(negative_transfer_guard=True)


def _stacked(domains):
    X_source, y_source, X_target, y_target = domains
    return stack_domains(X_source, y_source, X_target, y_target)


def _assert_same_fits(model, X, y, y_changed, domain, weights):
    """Fit ``model`` on both labellings; assert identical models; return the second."""
    fits = [
        clone(model).fit(X, labels, sample_domain=domain, sample_weight=weights)
        for labels in (y, y_changed)
    ]
    for method in ("predict", "predict_teacher"):
        np.testing.assert_array_equal(
            getattr(fits[0], method)(X), getattr(fits[1], method)(X)
        )
    return fits[1]


def test_zero_weight_rows_leave_their_labels_unused(regression_domains, fast_params):
    """Every stage weighs rows: a weightless row's label changes nothing.

    Source rows (pretraining, rehearsal, pooled candidates, scaling) and
    labelled target rows (transfer, the guard's folds, candidates and
    out-of-fold losses, distillation) both get zero weights here.
    """
    X, y, domain = _stacked(regression_domains)
    rng = np.random.default_rng(0)
    weights = rng.integers(1, 4, len(X)).astype(float)
    labelled = ~np.isnan(y)
    silenced = np.flatnonzero(labelled)[::4]
    weights[silenced] = 0.0
    assert (domain[silenced] > 0).any() and (domain[silenced] < 0).any()
    y_changed = y.copy()
    y_changed[silenced] = rng.normal(0, 1000, len(silenced))
    params = {**fast_params, **GUARDED}
    changed = _assert_same_fits(
        TransferDistillRegressor(**params, random_state=0),
        X,
        y,
        y_changed,
        domain,
        weights,
    )
    # ... while the same change without the zero weights does change the model.
    unweighted = TransferDistillRegressor(**params, random_state=0).fit(
        X, y_changed, sample_domain=domain
    )
    assert not np.array_equal(unweighted.predict(X), changed.predict(X))


def test_zero_weight_source_rows_leave_their_classes_unused(
    classification_domains, fast_params
):
    X, y, domain = _stacked(classification_domains)
    weights = np.ones(len(X))
    silenced = np.flatnonzero(domain > 0)[::3]
    weights[silenced] = 0.0
    y_changed = y.copy()
    y_changed[silenced] = (y[silenced] + 1) % 3
    params = {**fast_params, **GUARDED}
    _assert_same_fits(
        TransferDistillClassifier(**params, random_state=0),
        X,
        y,
        y_changed,
        domain,
        weights,
    )


@pytest.mark.parametrize("cls", [TransferDistillClassifier, TransferDistillRegressor])
def test_integer_weights_are_repeated_rows(cls, fast_params):
    """scikit-learn's sample-weight equivalence, at float32's tolerance.

    The rows fit in one batch (``batch_size="auto"`` is up to 200 rows), as in
    scikit-learn's check: with several batches, repeated rows land in other
    batches than their weighted original and the equivalence holds only on
    average.
    """
    rng = np.random.RandomState(42)
    X = rng.rand(40, 6)
    y = rng.randint(0, 3, 40) if cls is TransferDistillClassifier else rng.rand(40)
    weights = rng.randint(0, 4, 40)
    weighted = cls(**fast_params, random_state=0).fit(X, y, sample_weight=weights)
    repeated = cls(**fast_params, random_state=0).fit(
        X.repeat(weights, axis=0), y.repeat(weights)
    )
    method = "predict_proba" if cls is TransferDistillClassifier else "predict"
    np.testing.assert_allclose(
        getattr(weighted, method)(X), getattr(repeated, method)(X), atol=1e-5
    )


@pytest.mark.parametrize("constant", [1.0, 3.0])
def test_equal_weights_are_the_unweighted_fit(
    classification_domains, fast_params, constant
):
    X, y, domain = _stacked(classification_domains)
    plain = TransferDistillClassifier(**fast_params, random_state=0).fit(
        X, y, sample_domain=domain
    )
    weighted = TransferDistillClassifier(**fast_params, random_state=0).fit(
        X, y, sample_domain=domain, sample_weight=np.full(len(X), constant)
    )
    np.testing.assert_array_equal(plain.predict_proba(X), weighted.predict_proba(X))


def test_heavier_rows_pull_the_predictions(fast_params):
    """Labels without signal: the class whose rows weigh more is predicted."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = rng.integers(0, 2, 200)
    weights = np.where(y == 0, 20.0, 1.0)
    X_test = rng.normal(size=(500, 4))
    plain = TransferDistillClassifier(**fast_params, random_state=0).fit(X, y)
    weighted = TransferDistillClassifier(**fast_params, random_state=0).fit(
        X, y, sample_weight=weights
    )
    assert np.mean(weighted.predict(X_test) == 0) > 0.9
    assert np.mean(plain.predict(X_test) == 0) < 0.8


def test_adaboost_boosts_the_estimator(fast_params):
    """AdaBoost reweighs rows between rounds: sktd must take the weights."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] + 0.3 * rng.normal(size=300) > 0).astype(int)
    base = TransferDistillClassifier(**fast_params, random_state=0)
    boosted = AdaBoostClassifier(base, n_estimators=4, random_state=0).fit(X, y)
    assert len(boosted.estimators_) >= 2
    # Later rounds fit reweighed rows: their models differ from the first.
    first, second = boosted.estimators_[:2]
    assert not np.array_equal(first.predict_proba(X), second.predict_proba(X))
    assert boosted.score(X, y) > 0.8


def test_routed_cross_validation_passes_weights(classification_domains, fast_params):
    """sample_weight is requested by default, as sample_domain is (skada's way)."""
    X, y, domain = _stacked(classification_domains)
    weights = np.where(domain > 0, 1.0, 2.0)
    with sklearn.config_context(enable_metadata_routing=True):
        results = cross_validate(
            TransferDistillClassifier(**fast_params, random_state=0),
            X,
            np.where(y == -1, 0, y),
            cv=KFold(2),
            params={"sample_domain": domain, "sample_weight": weights},
        )
    assert np.isfinite(results["test_score"]).all()


@pytest.mark.parametrize(
    "weights, message",
    [
        (lambda n: -np.ones(n), "Negative values"),
        (lambda n: np.ones(n - 1), "sample_weight"),
        (lambda n: np.full(n, np.nan), "sample_weight"),
        (lambda n: np.where(np.arange(n) < 160, 0.0, 1.0), "every labelled source"),
        (
            lambda n: np.where((np.arange(n) >= 160) & (np.arange(n) < 180), 0.0, 1.0),
            "every labelled target",
        ),
    ],
)
def test_bad_weights_are_refused_naming_the_argument(
    classification_domains, fast_params, weights, message
):
    X, y, domain = _stacked(classification_domains)
    with pytest.raises(ValueError, match=message):
        TransferDistillClassifier(**fast_params).fit(
            X, y, sample_domain=domain, sample_weight=weights(len(X))
        )


def test_split_form_refuses_weights(classification_domains, fast_params):
    X_source, y_source, X_target, y_target = classification_domains
    with pytest.raises(ValueError, match="sample_weight weighs the rows of X"):
        TransferDistillClassifier(**fast_params).fit(
            X_source,
            y_source,
            X_target=X_target,
            y_target=y_target,
            sample_weight=np.ones(len(X_source)),
        )
