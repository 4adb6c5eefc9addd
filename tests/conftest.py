import os

# The suite runs one worker per core (pytest-xdist): each worker's native
# thread pools (OpenMP, BLAS) get one thread, or their spinning threads
# oversubscribe the cores many times over (set before numpy loads them).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402 (after the thread settings)
import pytest  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402

# Small networks and few epochs: tests check behaviour, not accuracy records.
# The guard (five candidates over five folds) is off unless a test is about it.
FAST = dict(
    teacher_hidden_layer_sizes=(16,),
    student_hidden_layer_sizes=(8,),
    learning_rate_init=0.01,
    max_iter=15,
    negative_transfer_guard=False,
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


@pytest.fixture(scope="session")
def make_trainer():
    """Build a ``StageTrainer`` from arrays' point of view, small by default."""
    from torch import nn

    from sktd._trainer import StageTrainer, TrainingSettings

    def make(
        criterion=nn.CrossEntropyLoss, classification=True, n_outputs=3, **changes
    ):
        settings = dict(
            learning_rate=0.01,
            weight_decay=0.0,
            max_epochs=15,
            batch_size="auto",
            early_stopping=False,
            validation_fraction=0.1,
            n_iter_no_change=10,
            tol=1e-4,
            verbose=0,
            device="cpu",
        )
        settings.update(changes)
        return StageTrainer(
            TrainingSettings(**settings), criterion, classification, n_outputs
        )

    return make
