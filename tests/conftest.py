import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression

# Small networks and few epochs: tests check behaviour, not accuracy records.
FAST = dict(
    teacher_hidden_layer_sizes=(16,),
    student_hidden_layer_sizes=(8,),
    learning_rate_init=0.01,
    max_iter=15,
)


@pytest.fixture
def fast_params():
    return dict(FAST)


@pytest.fixture(scope="module")
def classification_domains():
    """Source rows, labelled target rows (first 20), unlabelled target rows."""
    X, y = make_classification(
        n_samples=240, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    X_target = X[160:] + 0.5
    y_target = y[160:].copy()
    y_target[20:] = -1
    return X[:160], y[:160], X_target, y_target


@pytest.fixture(scope="module")
def regression_domains():
    X, y = make_regression(n_samples=200, n_features=5, noise=1.0, random_state=0)
    X_target = X[150:] * 1.2
    y_target = y[150:].copy()
    y_target[20:] = np.nan
    return X[:150], y[:150], X_target, y_target
