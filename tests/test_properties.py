"""Property-based tests: random shapes, label sets, domain splits, unlabelled shares.

Every draw must either fit and predict with the right output shapes, or raise one
of the documented errors (docs/user_guide/errors.rst).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sktd import TransferDistillClassifier, TransferDistillRegressor, stack_domains

TINY = dict(
    teacher_hidden_layer_sizes=(3,),
    student_hidden_layer_sizes=(2,),
    max_iter=1,
    batch_size=8,
    random_state=0,
)
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
DOCUMENTED = ("needs labelled rows of at least 2 classes",)


@st.composite
def domains(draw, task):
    n_source = draw(st.integers(1, 25))
    n_target = draw(st.integers(0, 15))
    n_features = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_source, n_features)) * draw(st.sampled_from([1e-6, 1, 1e6]))
    X_target = rng.normal(size=(n_target, n_features)) + 1.0
    unlabelled_share = draw(st.floats(0.0, 1.0))
    unlabelled = rng.rand(n_target) < unlabelled_share
    if task == "classification":
        n_classes = draw(st.integers(1, 4))
        names = draw(
            st.sampled_from(
                [
                    np.arange(n_classes) * 3,
                    np.array(list("abcd")[:n_classes], dtype=object),
                ]
            )
        )
        y = names[rng.randint(n_classes, size=n_source)]
        y_target = names[rng.randint(n_classes, size=n_target)].astype(object)
        y_target[unlabelled] = -1
        if names.dtype.kind != "O":
            y_target = y_target.astype(int)
    else:
        n_outputs = draw(st.integers(1, 3))
        shape = (n_source,) if n_outputs == 1 else (n_source, n_outputs)
        y = rng.normal(size=shape) * 100
        y_target = rng.normal(size=(n_target,) + shape[1:])
        y_target[unlabelled] = np.nan
    stacked = draw(st.booleans())
    return (
        X,
        y,
        (X_target if n_target else None),
        (y_target if n_target else None),
        stacked,
    )


def _fit(model, X, y, X_target, y_target, stacked):
    if stacked:
        X_all, y_all, domain = stack_domains(X, y, X_target, y_target)
        model.fit(X_all, y_all, sample_domain=domain)
        return X_all
    model.fit(X, y, X_target=X_target, y_target=y_target)
    return X if X_target is None else np.vstack([X, X_target])


@SETTINGS
@given(domains("classification"))
def test_classifier_fits_or_raises_documented_error(data):
    X, y, X_target, y_target, stacked = data
    model = TransferDistillClassifier(**TINY)
    try:
        X_all = _fit(model, X, y, X_target, y_target, stacked)
    except ValueError as error:
        assert any(fragment in str(error) for fragment in DOCUMENTED), error
        labels = set(y.tolist()) | (
            set() if y_target is None else {v for v in y_target.tolist() if v != -1}
        )
        assert len(labels) < 2
        return
    predictions = model.predict(X_all)
    assert predictions.shape == (len(X_all),)
    assert set(predictions.tolist()) <= set(model.classes_.tolist())
    proba = model.predict_proba(X_all)
    assert proba.shape == (len(X_all), len(model.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.all(np.isfinite(proba))


@SETTINGS
@given(domains("regression"))
def test_regressor_fits_and_predicts_right_shapes(data):
    X, y, X_target, y_target, stacked = data
    model = TransferDistillRegressor(**TINY)
    X_all = _fit(model, X, y, X_target, y_target, stacked)
    predictions = model.predict(X_all)
    assert predictions.shape == (len(X_all),) + y.shape[1:]
    assert np.all(np.isfinite(predictions))


@pytest.mark.parametrize("n_rows", [1, 2])
def test_tiny_sources_fit(n_rows):
    X = np.arange(n_rows * 2, dtype=float).reshape(n_rows, 2)
    model = TransferDistillRegressor(**TINY).fit(X, np.arange(n_rows, dtype=float))
    assert model.predict(X).shape == (n_rows,)
