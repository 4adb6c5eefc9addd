"""Shifted transfer tasks built from data that ships with scikit-learn."""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import check_random_state


def make_shifted_digits(n_labelled=50, n_unlabelled=450, random_state=0):
    """Split scikit-learn's digits into a source domain and a shifted target.

    Source rows are untouched 8x8 digit images. Target images are translated
    one pixel to the right, dimmed (``0.75 * x + 2``) and noisy (Gaussian,
    standard deviation 1.5): the same task seen through another sensor.

    Parameters
    ----------
    n_labelled : int, default=50
        Labelled target rows for training.
    n_unlabelled : int, default=450
        Unlabelled target rows for training (their labels are ``-1``).
    random_state : int, RandomState instance or None, default=0
        Seeds the split and the noise.

    Returns
    -------
    data : dict
        ``X_source``, ``y_source`` (900 rows); ``X_target``, ``y_target``
        (``n_labelled + n_unlabelled`` rows, ``-1`` where unlabelled);
        ``X_test``, ``y_test`` (the remaining target rows, all labelled).

    Examples
    --------
    >>> from sktd import make_shifted_digits
    >>> data = make_shifted_digits(n_labelled=20, n_unlabelled=100)
    >>> data["X_source"].shape, data["X_target"].shape, data["X_test"].shape
    ((900, 64), (120, 64), (777, 64))
    >>> int((data["y_target"] == -1).sum())
    100
    """
    rng = check_random_state(random_state)
    X, y = load_digits(return_X_y=True)
    order = rng.permutation(len(X))
    source, target = order[:900], order[900:]
    n_train = n_labelled + n_unlabelled
    if n_labelled < 1 or n_unlabelled < 0 or n_train >= len(target):
        raise ValueError(
            f"n_labelled={n_labelled} and n_unlabelled={n_unlabelled} must leave "
            f"test rows among the {len(target)} target rows (n_labelled >= 1)."
        )
    images = X[target].reshape(-1, 8, 8)
    images = np.roll(images, 1, axis=2) * 0.75 + 2.0
    X_target = images.reshape(-1, 64) + rng.normal(0.0, 1.5, size=(len(target), 64))
    y_target = y[target].copy()
    y_train = y_target[:n_train].copy()
    y_train[n_labelled:] = -1
    return {
        "X_source": X[source],
        "y_source": y[source],
        "X_target": X_target[:n_train],
        "y_target": y_train,
        "X_test": X_target[n_train:],
        "y_test": y_target[n_train:],
    }
