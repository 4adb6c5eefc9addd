"""Cross-validation on the target domain.

scikit-learn's splitters fold every row alike. For transfer learning the
question is how well the model does on the *target*: every source row (and
every unlabelled target row) belongs in every training fold, and only labelled
target rows are folded into test folds, so ``"accuracy"``, ``"r2"`` or
``score`` measure the target task unchanged.

The splitters read the domains from ``groups`` (metadata routing off:
``cross_val_score(..., groups=sample_domain)``) or from a routed
``sample_domain`` (routing on: ``params={"sample_domain": sample_domain}``).
"""

import numbers

import numpy as np
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold
from sklearn.model_selection._split import BaseCrossValidator
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import _num_samples

from ._domains import check_sample_domain, is_unlabelled_class

__all__ = ["TargetKFold", "TargetShuffleSplit"]


class _TargetSplitter(BaseCrossValidator):
    """Fold the labelled target rows; keep every other row in training."""

    # Both names are requested so the splitter works with routing on
    # (sample_domain, as the estimators name it) and off (groups).
    __metadata_request__split = {"groups": True, "sample_domain": True}

    def get_n_splits(self, X=None, y=None, groups=None, sample_domain=None):
        """Return the number of splits, ``n_splits``."""
        return self.n_splits

    def split(self, X, y=None, groups=None, sample_domain=None):
        """Generate train and test indices.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Stacked source and target rows.
        y : array-like of shape (n_samples,), default=None
            Labels; ``-1`` (classes) or ``NaN`` (regression) mark unlabelled
            target rows, which are never tested on. Used to stratify.
        groups : array-like of shape (n_samples,), default=None
            The domains (``> 0`` source, ``< 0`` target) when metadata routing
            is off.
        sample_domain : array-like of shape (n_samples,), default=None
            The domains when metadata routing is on; wins over ``groups``.

        Yields
        ------
        train : ndarray
            Every source row, every unlabelled target row and the labelled
            target rows outside the test fold.
        test : ndarray
            Labelled target rows only.
        """
        n_samples = _num_samples(X)
        domains = sample_domain if sample_domain is not None else groups
        if domains is None:
            raise ValueError(
                f"{type(self).__name__} needs the domains of the rows: pass "
                "groups=sample_domain (metadata routing off) or route "
                "sample_domain to the splitter (routing on)."
            )
        is_target = check_sample_domain(domains, n_samples) < 0
        labelled = np.ones(n_samples, dtype=bool)
        if y is not None:
            y = np.asarray(y)
            if len(y) != n_samples:
                raise ValueError(
                    f"y has {len(y)} rows, but X has {n_samples}; give one label "
                    "per row."
                )
            labelled = ~_unlabelled_rows(y)
        candidates = np.flatnonzero(is_target & labelled)
        if len(candidates) < self.n_splits:
            raise ValueError(
                f"{type(self).__name__} needs at least n_splits={self.n_splits} "
                f"labelled target rows (sample_domain < 0) to test on; got "
                f"{len(candidates)}."
            )
        always_train = np.flatnonzero(~np.isin(np.arange(n_samples), candidates))
        labels = None if y is None else y[candidates]
        for train, test in self._split_candidates(candidates, labels):
            yield (
                np.sort(np.concatenate([always_train, candidates[train]])),
                (candidates[test]),
            )


class TargetKFold(_TargetSplitter):
    """K-fold over the labelled target rows; source rows always train.

    Every source row and every unlabelled target row is in every training
    fold; the labelled target rows are split into ``n_splits`` folds, each
    used once as the test set. With class labels, folds are stratified when
    every class has at least ``n_splits`` labelled target rows.

    Parameters
    ----------
    n_splits : int, default=5
        Number of folds, at least 2.
    shuffle : bool, default=False
        Shuffle the labelled target rows before folding.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling when ``shuffle=True``.

    See Also
    --------
    TargetShuffleSplit : Random target test sets instead of folds.
    sklearn.model_selection.KFold : Folds every row alike.

    Examples
    --------
    >>> import numpy as np
    >>> from sktd.model_selection import TargetKFold
    >>> X = np.zeros((8, 1))
    >>> y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    >>> sample_domain = np.array([1, 1, 1, 1, -2, -2, -2, -2])
    >>> for train, test in TargetKFold(n_splits=2).split(X, y, sample_domain):
    ...     print(train, test)
    [0 1 2 3 6 7] [4 5]
    [0 1 2 3 4 5] [6 7]
    """

    def __init__(self, n_splits=5, *, shuffle=False, random_state=None):
        self.n_splits = _checked_n_splits(n_splits, minimum=2)
        self.shuffle = shuffle
        self.random_state = random_state

    def _split_candidates(self, candidates, labels):
        options = dict(
            n_splits=self.n_splits,
            shuffle=self.shuffle,
            random_state=self.random_state if self.shuffle else None,
        )
        if labels is not None and _can_stratify(labels, self.n_splits):
            return StratifiedKFold(**options).split(candidates, labels)
        return KFold(**options).split(candidates)


class TargetShuffleSplit(_TargetSplitter):
    """Random train/test splits of the labelled target rows; source rows train.

    Parameters
    ----------
    n_splits : int, default=5
        Number of re-shuffling and splitting iterations.
    test_size : float or int, default=0.2
        Share (float) or number (int) of labelled target rows in each test set.
    random_state : int, RandomState instance or None, default=None
        Seeds the splits.

    Examples
    --------
    >>> import numpy as np
    >>> from sktd.model_selection import TargetShuffleSplit
    >>> sample_domain = np.array([1] * 6 + [-2] * 10)
    >>> cv = TargetShuffleSplit(n_splits=3, test_size=0.5, random_state=0)
    >>> [len(test) for _, test in cv.split(np.zeros((16, 1)), groups=sample_domain)]
    [5, 5, 5]
    """

    def __init__(self, n_splits=5, *, test_size=0.2, random_state=None):
        self.n_splits = _checked_n_splits(n_splits, minimum=1)
        self.test_size = test_size
        self.random_state = random_state

    def _split_candidates(self, candidates, labels):
        splitter = ShuffleSplit(
            n_splits=self.n_splits,
            test_size=self.test_size,
            random_state=self.random_state,
        )
        return splitter.split(candidates)


def _unlabelled_rows(y):
    if y.dtype.kind == "f":
        missing = np.isnan(y)
        return missing if y.ndim == 1 else missing.any(axis=1)
    return is_unlabelled_class(y) if y.ndim == 1 else np.zeros(len(y), dtype=bool)


def _can_stratify(labels, n_splits):
    if type_of_target(labels) not in ("binary", "multiclass"):
        return False
    _, counts = np.unique(labels, return_counts=True)
    return counts.min() >= n_splits


def _checked_n_splits(n_splits, minimum):
    """Return ``n_splits`` if it is an integer of at least ``minimum``."""
    if not isinstance(n_splits, numbers.Integral) or n_splits < minimum:
        raise ValueError(f"n_splits must be an integer >= {minimum}, got {n_splits!r}.")
    return n_splits
