"""Shifted transfer tasks from data that ships with scikit-learn, or generated.

Each builder returns a dict with ``X_source``, ``y_source``, ``X_target``,
``y_target`` (``-1`` / ``NaN`` on unlabelled rows), ``X_test``, ``y_test`` and
``kind`` (``"classification"`` or ``"regression"``). The shifts follow the
families of skada's ``make_shifted_datasets`` (covariate, target, conditional,
subspace), which builds the 2-feature tasks (``pip install -e ".[bench]"``).
"""

import numpy as np
from sklearn.datasets import make_friedman1

from sktd import make_shifted_digits


def _split_target(X, y, n_labelled, n_unlabelled, rng, kind):
    order = rng.permutation(len(X))
    X, y = X[order], y[order]
    n_train = n_labelled + n_unlabelled
    y_train = y[:n_train].astype(float if kind == "regression" else int).copy()
    y_train[n_labelled:] = np.nan if kind == "regression" else -1
    return X[:n_train], y_train, X[n_train:], y[n_train:]


def _task(X_s, y_s, X_t, y_t, n_labelled, n_unlabelled, rng, kind):
    X_target, y_target, X_test, y_test = _split_target(
        X_t, y_t, n_labelled, n_unlabelled, rng, kind
    )
    return dict(
        X_source=X_s,
        y_source=y_s,
        X_target=X_target,
        y_target=y_target,
        X_test=X_test,
        y_test=y_test,
        kind=kind,
    )


def digits(seed, n_labelled=50, n_unlabelled=400):
    data = make_shifted_digits(n_labelled, n_unlabelled, random_state=seed)
    return dict(data, kind="classification")


def skada_task(shift, label, seed, n_labelled=50, n_unlabelled=350):
    """One of skada's ``make_shifted_datasets`` problems (2 features)."""
    from skada.datasets import make_shifted_datasets

    rng = np.random.RandomState(seed)
    # The subspace family draws half as many rows per requested sample.
    scale = 2 if shift == "subspace" else 1
    X, y, sample_domain = make_shifted_datasets(
        n_samples_source=200 * scale,
        n_samples_target=100 * scale,
        shift=shift,
        label=label,
        noise=0.3,
        random_state=seed,
    )
    source, target = sample_domain > 0, sample_domain < 0
    kind = "regression" if label == "regression" else "classification"
    return _task(
        X[source], y[source], X[target], y[target], n_labelled, n_unlabelled, rng, kind
    )


def regression_covariate_shift(seed, n_labelled=50, n_unlabelled=500):
    """Friedman #1: the target samples the corner of the cube the source rarely does."""
    rng = np.random.RandomState(seed)
    X, y = make_friedman1(5000, n_features=10, noise=0.5, random_state=seed)
    corner = X[:, :5].sum(axis=1)
    order = np.argsort(corner)
    source, target = order[:3500], order[3500:]
    return _task(
        X[source],
        y[source],
        X[target],
        y[target],
        n_labelled,
        n_unlabelled,
        rng,
        "regression",
    )


def regression_conditional_shift(seed, n_labelled=50, n_unlabelled=500):
    """Friedman #1 with the target's response changed: a new offset and slope."""
    rng = np.random.RandomState(seed)
    X, y = make_friedman1(5000, n_features=10, noise=0.5, random_state=seed)
    source, target = np.arange(3500), np.arange(3500, 5000)
    y_target = 1.3 * y[target] + 2.0 * X[target, 5]
    return _task(
        X[source],
        y[source],
        X[target],
        y_target,
        n_labelled,
        n_unlabelled,
        rng,
        "regression",
    )


def _skada(shift, label):
    return lambda seed: skada_task(shift, label, seed)


TASKS = {
    "digits (shifted, dimmed, noisy)": digits,
    "skada covariate shift": _skada("covariate_shift", "multiclass"),
    "skada target shift": _skada("target_shift", "multiclass"),
    "skada conditional shift": _skada("conditional_shift", "multiclass"),
    "skada subspace shift": _skada("subspace", "multiclass"),
    "Friedman #1, covariate shift (R²)": regression_covariate_shift,
    "Friedman #1, conditional shift (R²)": regression_conditional_shift,
    "skada covariate shift (R²)": _skada("covariate_shift", "regression"),
    "skada conditional shift (R²)": _skada("conditional_shift", "regression"),
    "skada subspace shift (R²)": _skada("subspace", "regression"),
}
