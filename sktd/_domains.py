"""Source and target domains: stacking, splitting and their validation.

Two equivalent ways to hand the domains to ``fit``:

* split: ``fit(X_source, y_source, X_target=..., y_target=...)``;
* stacked: ``fit(X, y, sample_domain=d)`` with ``d > 0`` on source rows and
  ``d < 0`` on target rows (skada's convention).

Unlabelled target rows carry ``y = -1`` (classification, scikit-learn's
semi-supervised convention) or ``y = NaN`` (regression).
"""

import re
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.compose import TransformedTargetRegressor
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array
from sklearn.utils.validation import (
    _check_sample_weight,
    _num_samples,
    validate_data,
)

from ._arrays import SparseRows, standardise, take

#: Domain codes written by :func:`stack_domains` (as skada's generators do).
SOURCE_DOMAIN = 1
TARGET_DOMAIN = -2
#: Label of an unlabelled row for classifiers.
UNLABELLED = -1
#: Sparse matrices ``fit`` and ``predict`` accept (as scikit-learn's MLP does).
SPARSE_FORMATS = ("csr", "csc", "coo")


def stack_domains(X_source, y_source, X_target=None, y_target=None):
    """Stack source and target rows into ``(X, y, sample_domain)``.

    The stacked form is what Pipelines and cross-validation need: every row
    goes through the same preprocessing steps and is sliced consistently.

    Parameters
    ----------
    X_source : array-like of shape (n_source, n_features)
        Labelled source rows.
    y_source : array-like of shape (n_source,) or (n_source, n_outputs)
        Source labels.
    X_target : array-like of shape (n_target, n_features), default=None
        Target rows.
    y_target : array-like of shape (n_target,) or (n_target, n_outputs), \
            default=None
        Target labels, ``-1`` (classes) or ``NaN`` (regression) where unknown.
        ``None`` marks every target row unlabelled: ``NaN`` when ``y_source``
        is floating point, ``-1`` otherwise.

    Returns
    -------
    X : ndarray or DataFrame of shape (n_source + n_target, n_features)
        Source rows, then target rows; a DataFrame when both inputs are.
    y : ndarray of shape (n_source + n_target,) or (n_samples, n_outputs)
        Labels in the same order.
    sample_domain : ndarray of shape (n_source + n_target,)
        ``1`` on source rows, ``-2`` on target rows.

    Examples
    --------
    >>> from sktd import stack_domains
    >>> X, y, d = stack_domains([[0.0], [1.0]], [0, 1], [[2.0]], [-1])
    >>> X.ravel().tolist(), y.tolist(), d.tolist()
    ([0.0, 1.0, 2.0], [0, 1, -1], [1, 1, -2])
    """
    X_source_in, X_target_in = X_source, X_target
    X_source = check_array(
        X_source, dtype=None, ensure_all_finite=False, input_name="X_source"
    )
    y_source = check_array(
        y_source,
        dtype=None,
        ensure_2d=False,
        ensure_all_finite=False,
        input_name="y_source",
    )
    _check_same_length(X_source, "X_source", y_source, "y_source")
    if X_target is None:
        if y_target is not None:
            raise ValueError("y_target was given without X_target.")
        domain = np.full(len(X_source), SOURCE_DOMAIN)
        return X_source, y_source, domain
    X_target = check_array(
        X_target, dtype=None, ensure_all_finite=False, input_name="X_target"
    )
    _check_same_features(X_source, "X_source", X_target)
    y, domain = stack_labels(
        y_source, y_target, len(X_target), ("y_source", "y_target")
    )
    if _is_dataframe(X_source_in) and _is_dataframe(X_target_in):
        # Keep the columns (names, dtypes) for Pipelines that select by name.
        if list(X_source_in.columns) != list(X_target_in.columns):
            raise ValueError(
                "X_target's columns differ from X_source's: "
                f"{list(X_target_in.columns)} vs {list(X_source_in.columns)}."
            )
        import pandas as pd

        X = pd.concat([X_source_in, X_target_in], ignore_index=True)
    else:
        X = np.concatenate([X_source, X_target])
    return X, y, domain


def stack_labels(y_source, y_target, n_target, names, unlabelled=None):
    """Stack source and target labels; return ``(y, sample_domain)``.

    The one stacking rule of both :func:`stack_domains` and the split form of
    ``fit``. ``y_target=None`` marks the ``n_target`` target rows unlabelled
    with ``unlabelled``, or, when that is ``None``, with ``NaN`` for floating
    point ``y_source`` and ``-1`` otherwise. Labels of different kinds (numbers
    and strings) are stacked as objects, never converted.
    """
    source_name, target_name = names
    if y_target is None:
        y_target = _unlabelled_like(y_source, n_target, unlabelled)
    y_target = check_array(
        y_target,
        dtype=None,
        ensure_2d=False,
        ensure_all_finite=False,
        input_name=target_name,
    )
    if y_target.ndim == 0:
        raise ValueError(f"{target_name} must be an array of labels, got a scalar.")
    if len(y_target) != n_target:
        raise ValueError(
            f"{target_name} has {len(y_target)} rows, but X_target has "
            f"{n_target}; give one label per row."
        )
    if y_source.ndim != y_target.ndim or y_source.shape[1:] != y_target.shape[1:]:
        raise ValueError(
            f"{target_name} has shape {y_target.shape[1:]} per row, but "
            f"{source_name} has {y_source.shape[1:]}; both domains need the same "
            "outputs."
        )
    if y_source.dtype.kind in "iufb" and y_target.dtype.kind in "iufb":
        y = np.concatenate([y_source, y_target])
    else:
        y = np.concatenate([y_source.astype(object), y_target.astype(object)])
    domain = np.concatenate(
        [np.full(len(y_source), SOURCE_DOMAIN), np.full(n_target, TARGET_DOMAIN)]
    )
    return y, domain


def check_sample_domain(sample_domain, n_samples):
    """Validate ``sample_domain`` and return it as a 1-D integer array."""
    sample_domain = check_array(
        sample_domain,
        ensure_2d=False,
        dtype=None,
        input_name="sample_domain",
    )
    if sample_domain.ndim != 1:
        raise ValueError(
            f"sample_domain must be 1-D, got an array of shape {sample_domain.shape}."
        )
    if sample_domain.dtype.kind not in "iu" and not (
        sample_domain.dtype.kind == "f"
        and np.all(sample_domain == np.round(sample_domain))
    ):
        raise TypeError(
            "sample_domain must hold integers (> 0 for source rows, < 0 for target "
            f"rows), got dtype {sample_domain.dtype}."
        )
    if sample_domain.dtype.kind == "f" and np.abs(sample_domain).max(initial=0) > 2**62:
        raise ValueError(
            "sample_domain holds values beyond the int64 range; use small "
            "integers (> 0 for source rows, < 0 for target rows)."
        )
    sample_domain = sample_domain.astype(np.int64)
    if len(sample_domain) != n_samples:
        raise ValueError(
            f"sample_domain has {len(sample_domain)} entries, but X has "
            f"{n_samples} rows; give one domain per row."
        )
    if np.any(sample_domain == 0):
        raise ValueError(
            "sample_domain contains 0; use a positive value for source rows and a "
            "negative value for target rows."
        )
    return sample_domain


@dataclass
class Domains:
    """Validated rows of both domains, in stacked order.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features)
        Every row: the transfer set.
    y : ndarray
        Encoded labels: class indices with ``-1`` where unlabelled, or floats
        with ``NaN`` where unlabelled.
    is_source : ndarray of bool
        ``True`` on source rows.
    is_labelled : ndarray of bool
        ``True`` on rows with a label.
    sample_weight : ndarray of shape (n_samples,) or None
        Weight of each row in every stage's loss; ``None``: all rows alike.
    """

    X: np.ndarray
    y: np.ndarray
    is_source: np.ndarray
    is_labelled: np.ndarray
    sample_weight: np.ndarray | None = None

    def weights(self, mask):
        """Return the weights of the rows of ``mask`` (``None``: unweighted)."""
        return take(self.sample_weight, mask)

    @property
    def source(self):
        """Mask of the labelled source rows (the pretraining set)."""
        return self.is_source & self.is_labelled

    @property
    def labelled_target(self):
        """Mask of the labelled target rows (the fine-tuning set)."""
        return ~self.is_source & self.is_labelled


def is_unlabelled_class(y):
    """Mask of unlabelled entries: ``-1`` for any dtype, and ``None`` in objects."""
    y = np.asarray(y)
    if y.dtype.kind in "iuf":
        return y == UNLABELLED
    if y.dtype.kind == "O":
        return np.fromiter(
            (
                v is None
                or (
                    isinstance(v, (int, float, np.integer, np.floating))
                    and not isinstance(v, (bool, np.bool_))
                    and v == UNLABELLED
                )
                for v in y
            ),
            dtype=bool,
            count=len(y),
        )
    return np.zeros(len(y), dtype=bool)


def as_label_array(labels, name):
    """Class labels of one kind as a plain array: objects become bool or int.

    Stacking numbers with an object ``y_target`` (``-1`` or ``None`` marking
    unlabelled rows) leaves Python ints or bools in an object array, which
    scikit-learn cannot type; a mix of kinds is refused, naming ``name``.
    """
    if labels.dtype != object or not len(labels):
        return labels
    kinds = {
        "bool"
        if isinstance(v, (bool, np.bool_))
        else "int"
        if isinstance(v, (int, np.integer))
        else "str"
        if isinstance(v, str)
        else type(v).__name__
        for v in labels
    }
    if kinds == {"bool"}:
        return labels.astype(bool)
    if kinds == {"int"}:
        return labels.astype(np.int64)
    if len(kinds) > 1:
        raise ValueError(
            f"{name} mixes labels of kinds {sorted(kinds)}; use one kind of label "
            "(unlabelled target rows are -1 or None)."
        )
    return labels


def _unlabelled_rows(y, unlabelled):
    """Rows whose label is the unlabelled marker: -1 (or None), or all NaN."""
    if isinstance(unlabelled, float):
        try:
            values = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        except (TypeError, ValueError):
            return np.zeros(len(y), dtype=bool)
        return np.isnan(values).all(axis=1)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        return np.zeros(len(y), dtype=bool)
    return is_unlabelled_class(y)


def _unlabelled_like(y_source, n_rows, unlabelled=None):
    shape = (n_rows,) + y_source.shape[1:]
    kind = y_source.dtype.kind
    if unlabelled is None:
        unlabelled = np.nan if kind == "f" else UNLABELLED
    if unlabelled != unlabelled:
        return np.full(shape, np.nan)
    if kind == "i":
        return np.full(shape, unlabelled, dtype=y_source.dtype)
    if kind in "uf":
        # An unsigned dtype cannot hold -1.
        return np.full(shape, unlabelled, dtype=np.int64 if kind == "u" else float)
    return np.full(shape, unlabelled, dtype=object)


def _is_dataframe(X):
    return hasattr(X, "columns") and hasattr(X, "iloc")


def _check_same_length(X, X_name, y, y_name):
    if _num_samples(y) != _num_samples(X):
        raise ValueError(
            f"{y_name} has {_num_samples(y)} rows, but {X_name} has "
            f"{_num_samples(X)}; give one label per row."
        )


def _check_same_features(X_source, source_name, X_target):
    if X_target.shape[1] != X_source.shape[1]:
        raise ValueError(
            f"X_target has {X_target.shape[1]} features, but {source_name} has "
            f"{X_source.shape[1]}; both domains need the same features."
        )


def check_domains(estimator, X, y, X_target, y_target, sample_domain, unlabelled):
    """Validate the inputs of ``fit`` in either form and stack them.

    Sets ``n_features_in_`` (and ``feature_names_in_``) on ``estimator`` from
    ``X``. Errors name the argument at fault.

    Parameters
    ----------
    estimator : BaseEstimator
        The estimator being fitted.
    X, y, X_target, y_target, sample_domain
        As in the estimators' ``fit``.
    unlabelled : object
        Label given to every target row when ``y_target`` is ``None``.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64
        Source rows then target rows (split form), or ``X`` as given.
    y : ndarray
        Labels in the same order, not yet encoded.
    is_source : ndarray of bool
        ``True`` on source rows.
    target_label_name : str
        Name of the argument holding target labels, for later messages.
    """
    if X_target is not None and sample_domain is not None:
        raise ValueError(
            "Pass the target rows either as X_target (split form) or through "
            "sample_domain (stacked form), not both."
        )
    if X_target is None and y_target is not None:
        raise ValueError("y_target was given without X_target.")
    if y is not None and _num_samples(y) != _num_samples(X):
        raise ValueError(
            f"y has {_num_samples(y)} rows, but X has {_num_samples(X)}; give one "
            "label per row."
        )
    if y is None:
        raise ValueError(
            f"{type(estimator).__name__} requires y to be passed, but the target y "
            "is None."
        )
    try:
        X = validate_data(
            estimator,
            X,
            reset=True,
            dtype=np.float64,
            ensure_all_finite=True,
            accept_sparse=SPARSE_FORMATS,
        )
    except ValueError as error:
        if "could not convert" in str(error):
            message = f"X: {error}; every feature must be numeric."
        elif re.search(r"\bX\b", str(error)):
            raise
        else:
            # scikit-learn's message may not say which array it means, and
            # fit takes two (X and X_target).
            message = f"X: {error}"
        raise ValueError(message) from error
    # NaN may mark unlabelled target rows: the estimators check labels per domain.
    y = check_array(
        y, ensure_2d=False, dtype=None, ensure_all_finite=False, input_name="y"
    )
    if X_target is None:
        if sample_domain is None:
            # One domain; as in scikit-learn's semi-supervised estimators, rows
            # labelled -1 (NaN) are unlabelled: distillation teaches on them.
            is_labelled = ~_unlabelled_rows(y, unlabelled)
            if not is_labelled.any():
                raise ValueError(
                    f"y marks every row unlabelled ({unlabelled}); sktd needs "
                    "labelled rows to pretrain the teacher."
                )
            return X, y, is_labelled, "y"
        is_source = check_sample_domain(sample_domain, X.shape[0]) > 0
        if not is_source.any():
            raise ValueError(
                "sample_domain marks no row as source (> 0); sktd needs labelled "
                "source rows to pretrain the teacher."
            )
        return X, y, is_source, "y"

    X_target = _check_target_rows(estimator, X_target)
    y, domain = stack_labels(
        y, y_target, X_target.shape[0], ("y", "y_target"), unlabelled
    )
    if sp.issparse(X) or sp.issparse(X_target):
        # One sparse matrix of both domains: the dense one is sparsified, not
        # the sparse one densified.
        stacked = sp.vstack([sp.csr_matrix(X), sp.csr_matrix(X_target)], format="csr")
        return stacked, y, domain > 0, "y_target"
    return np.concatenate([X, X_target]), y, domain > 0, "y_target"


def check_fit_sample_weight(sample_weight, n_rows, split_form):
    """Validate ``fit``'s ``sample_weight``; ``None`` when every row weighs alike.

    Weights align with the rows of ``X``, so they need the stacked form (or no
    domains) in which ``X`` holds every row. Equal weights are no weights: the
    fit is then the unweighted one, bit for bit.
    """
    if sample_weight is None:
        return None
    if split_form:
        raise ValueError(
            "sample_weight weighs the rows of X, which in the split form "
            "(X_target given) holds the source rows only. Pass the stacked form "
            "instead: X, y, sample_domain = sktd.stack_domains(X_source, "
            "y_source, X_target, y_target), with the weights of the source "
            "rows then the target rows."
        )
    weights = _check_sample_weight(
        sample_weight,
        np.empty((n_rows, 0)),
        dtype=np.float64,
        ensure_non_negative=True,
    )
    if not np.isfinite(weights).all():
        raise ValueError("sample_weight holds NaN or infinite values.")
    if np.all(weights == weights[0]) and weights[0] > 0:
        return None
    return weights


def check_weighted_rows(sample_weight, is_source, is_labelled):
    """Refuse weights that silence all labelled source or labelled target rows."""
    if sample_weight is None:
        return
    for mask, rows in (
        (is_source & is_labelled, "labelled source"),
        (~is_source & is_labelled, "labelled target"),
    ):
        if mask.any() and not sample_weight[mask].any():
            raise ValueError(
                f"sample_weight is zero on every {rows} row: those rows would "
                "teach nothing. Give some of them a positive weight, or leave "
                "them out."
            )


def check_finite_labels(labels, name, unlabelled_hint):
    """Raise a ``ValueError`` naming ``name`` if float ``labels`` hold NaN or inf."""
    labels = np.asarray(labels)
    if labels.dtype.kind != "f":
        return
    if np.isnan(labels).any():
        raise ValueError(f"Input {name} contains NaN. {unlabelled_hint}")
    if np.isinf(labels).any():
        raise ValueError(
            f"Input {name} contains infinity or a value too large for dtype('float64')."
        )


def _check_target_rows(estimator, X_target):
    """Validate ``X_target`` against the features ``X`` set on ``estimator``."""
    if _num_samples(X_target) == 0:
        raise ValueError(
            "X_target is empty; pass X_target=None when there is no target data."
        )
    try:
        shape = getattr(X_target, "shape", None) or np.shape(X_target)
    except ValueError as error:
        raise ValueError(
            f"X_target: {error} Every row needs the same number of features."
        ) from error
    if len(shape) == 2 and shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X_target has {shape[1]} features, but X has "
            f"{estimator.n_features_in_}; both domains need the same features."
        )
    try:
        return validate_data(
            estimator,
            X_target,
            reset=False,
            dtype=np.float64,
            ensure_all_finite=True,
            accept_sparse=SPARSE_FORMATS,
        )
    except ValueError as error:
        message = str(error).replace("Input X ", "Input X_target ")
        if "X_target" not in message:
            message = f"X_target: {message}"
        raise ValueError(message) from error


def refuse_split_form_where_it_goes_wrong(estimator):
    """Raise if ``estimator.fit`` got ``X_target`` from a Pipeline or CV tool.

    ``cross_val_score``, ``GridSearchCV`` and friends fold only ``X``: with
    ``X_target`` as a fit parameter the target rows are never in a test fold,
    and when ``len(X_target) == len(X)`` scikit-learn even slices them with the
    *source* rows' indices, silently. No result of such a run is meaningful.
    A Pipeline's earlier steps transform ``X`` and never ``X_target``; a
    TransformedTargetRegressor transforms ``y`` and never ``y_target``.
    """
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        _refuse_split_form_behind_pipeline_steps(frame, estimator)
        _refuse_split_form_behind_a_target_transform(frame, estimator)
        if code.co_name in (
            "_fit_and_score",
            "_fit_and_predict",
        ) and code.co_filename.endswith("_validation.py"):
            raise ValueError(
                "X_target was passed to fit inside scikit-learn's cross-validation "
                "(cross_val_score, cross_validate, cross_val_predict, "
                "GridSearchCV, ...). It folds "
                "only X: the target rows would never be tested on, and when "
                "len(X_target) == len(X) they are sliced with the source rows' "
                "indices. Use the stacked form instead: X, y, sample_domain = "
                "sktd.stack_domains(X_source, y_source, X_target, y_target), then "
                "cv=sktd.model_selection.TargetKFold() with groups=sample_domain "
                "and the fit parameter sample_domain."
            )
        frame = frame.f_back


def _refuse_split_form_behind_pipeline_steps(frame, estimator):
    """Raise if ``frame`` is that of a Pipeline ending in ``estimator`` after steps.

    A fit parameter bypasses every step: the steps would transform the source
    rows and hand the target rows to sktd untransformed, two domains on two
    scales, silently.
    """
    if not frame.f_code.co_filename.endswith("pipeline.py"):
        return
    pipeline = frame.f_locals.get("self")
    if not isinstance(pipeline, Pipeline) or pipeline.steps[-1][1] is not estimator:
        return
    earlier = [
        name
        for name, step in pipeline.steps[:-1]
        if step is not None and step != "passthrough"
    ]
    if earlier:
        raise ValueError(
            "X_target was passed to fit through a Pipeline whose steps before "
            f"sktd ({', '.join(earlier)}) transform X only: the target rows "
            "would reach sktd untransformed. Use the stacked form instead: X, y, "
            "sample_domain = sktd.stack_domains(X_source, y_source, X_target, "
            "y_target), then pipeline.fit(X, y, <sktd step>__sample_domain="
            "sample_domain) (or sample_domain=... with metadata routing on)."
        )


def _refuse_split_form_behind_a_target_transform(frame, estimator):
    """Raise if ``frame`` is a TransformedTargetRegressor's fitting ``estimator``.

    It transforms ``y`` and never ``y_target``: with ``func=np.log`` the
    target rows' labels reached sktd unlogged and the R² was -3e13.
    """
    wrapper = frame.f_locals.get("self")
    if (
        isinstance(wrapper, TransformedTargetRegressor)
        and getattr(wrapper, "regressor_", None) is estimator
    ):
        raise ValueError(
            "X_target was passed to fit through a TransformedTargetRegressor, "
            "which transforms y only: y_target would reach sktd untransformed. "
            "Use the stacked form instead: X, y, sample_domain = "
            "sktd.stack_domains(X_source, y_source, X_target, y_target), then "
            "fit(X, y, sample_domain=sample_domain)."
        )


def warn_if_spread_underflows(X, scaler, name):
    """Warn about features that vary but whose variance underflows to zero.

    The scaler then takes them for constants (scale 1) and the networks see
    them as all but constant; a rescaled copy would be learnt from.
    """
    flat = scaler.var_ == 0
    if not flat.any():
        return
    columns = X[:, flat]
    high, low = columns.max(axis=0), columns.min(axis=0)
    if sp.issparse(high):
        high, low = high.toarray(), low.toarray()
    if (high != low).any():
        warnings.warn(
            f"{name} has features whose values differ but whose spread is below "
            "float64 precision (variance 0): they are treated as constant. "
            "Rescale them (e.g. multiply by 1e100).",
            UserWarning,
            stacklevel=4,
        )


def standardised_rows(X, scaler, name):
    """Standardise ``X`` to float32; refuse values the networks cannot hold.

    A sparse ``X`` gives :class:`~sktd._arrays.SparseRows`, standardised when
    read.
    """
    rows = standardise(X, scaler)
    finite = rows.all_finite() if isinstance(rows, SparseRows) else np.isfinite(rows)
    if not np.all(finite):
        raise ValueError(
            f"{name} holds values that overflow float32 once standardised (above "
            "about 3.4e38 in magnitude): sktd's networks compute in float32. "
            "Rescale those features."
        )
    return rows


def is_clean_float_array(X, n_features):
    """Whether ``X`` is what ``validate_data`` would return unchanged.

    Lets predict skip scikit-learn's generic checks, which cost more than the
    forward pass of a small network on one row.
    """
    return (
        type(X) is np.ndarray
        and X.ndim == 2
        and X.dtype.kind == "f"
        and X.shape[0] > 0
        and X.shape[1] == n_features
        and np.isfinite(X).all()
    )
