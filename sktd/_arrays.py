"""In-memory arrays to and from torch: batches, forward passes, scaling.

skorch's default ``DataLoader`` fetches rows one at a time and collates them,
which costs more than the forward pass of a small MLP (skorch issues #433 and
#1100). The data here already sits in memory, so batches are slices. Targets
may be one tensor or a dict of named tensors (the distillation stage's teacher
outputs, labels and hints), sliced with the same index so that shuffling keeps
them with their rows.
"""

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.preprocessing import StandardScaler
from skorch.dataset import Dataset

# Predicting in chunks bounds the memory of the hidden activations; chunks are
# a whole number of fixed-size blocks (see forward_rows).
_PREDICT_BLOCK = 64
_PREDICT_CHUNK = 1024 * _PREDICT_BLOCK
# Rows of a sparse X are densified at most this many values at a time.
_SPARSE_CHUNK_VALUES = 1 << 20


def chunk_rows(X):
    """Rows per chunk when reading ``X`` in chunks: a whole number of blocks.

    Dense ``X`` is already in memory; a sparse one (:class:`SparseRows`) is
    densified a chunk at a time, so its chunks hold at most
    ``_SPARSE_CHUNK_VALUES`` values (8 MB of float64).
    """
    if not isinstance(X, SparseRows):
        return _PREDICT_CHUNK
    blocks = _SPARSE_CHUNK_VALUES // max(1, X.shape[1] * _PREDICT_BLOCK)
    return int(np.clip(blocks, 1, 1024)) * _PREDICT_BLOCK


class SparseRows:
    """Rows of a sparse ``X``, standardised only when read, a few at a time.

    Centering fills a sparse matrix's zeros, so standardising a sparse ``X``
    as a whole would make it dense. This keeps the matrix as given (CSR) with
    the scaler's statistics, and standardises to float32 only the rows read:
    a training batch, a chunk of predictions, the labelled target rows. Rows
    appended later (the transfer set's synthetic rows, already standardised
    and dense) follow the matrix's rows.

    ``rows[index]`` (an index array, mask, slice or tensor) returns the dense,
    standardised float32 rows, with the same arithmetic as :func:`standardise`;
    :meth:`subset` keeps a selection sparse.

    Parameters
    ----------
    matrix : scipy.sparse matrix of shape (n_rows, n_features)
        The rows as given, float64.
    mean, scale : ndarray of shape (n_features,)
        The scaler's statistics.
    tail : ndarray of shape (n_tail, n_features), dtype float32, default=None
        Standardised dense rows after the matrix's.
    """

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, matrix, mean, scale, tail=None):
        self.matrix = matrix.tocsr()
        self.mean = mean
        self.scale = scale
        n_features = self.matrix.shape[1]
        self.tail = np.zeros((0, n_features), np.float32) if tail is None else tail

    @property
    def shape(self):
        """``(n_rows, n_features)``, the appended rows included."""
        return (len(self), self.matrix.shape[1])

    def __len__(self):
        return self.matrix.shape[0] + len(self.tail)

    def _positions(self, index):
        if isinstance(index, slice):
            return np.arange(*index.indices(len(self)))
        if isinstance(index, torch.Tensor):
            index = index.numpy()
        index = np.asarray(index)
        if index.dtype == bool:
            return np.flatnonzero(index)
        return np.where(index < 0, index + len(self), index)

    def __getitem__(self, index):
        """Return rows ``index``, dense, standardised, float32."""
        positions = self._positions(index)
        n_sparse = self.matrix.shape[0]
        in_matrix = positions < n_sparse
        out = np.empty((len(positions), self.shape[1]), np.float32)
        if in_matrix.any():
            # In place, one float64 chunk at a time: the arithmetic of
            # standardise, so sparse and dense rows give the same float32.
            dense = self.matrix[positions[in_matrix]].toarray()
            with np.errstate(over="ignore", invalid="ignore"):
                np.subtract(dense, self.mean, out=dense)
                np.divide(dense, self.scale, out=dense)
            out[in_matrix] = dense
        if not in_matrix.all():
            out[~in_matrix] = self.tail[positions[~in_matrix] - n_sparse]
        return out

    def subset(self, index):
        """Return rows ``index`` (in increasing order), still sparse."""
        positions = self._positions(index)
        if np.any(np.diff(positions) < 0):
            raise ValueError("SparseRows.subset takes rows in increasing order.")
        n_sparse = self.matrix.shape[0]
        in_matrix = positions < n_sparse
        return SparseRows(
            self.matrix[positions[in_matrix]],
            self.mean,
            self.scale,
            self.tail[positions[~in_matrix] - n_sparse],
        )

    def append(self, rows):
        """Return these rows followed by the standardised dense ``rows``."""
        tail = np.concatenate([self.tail, rows.astype(np.float32, copy=False)])
        return SparseRows(self.matrix, self.mean, self.scale, tail)

    def all_finite(self):
        """Whether every standardised value is finite (read chunk by chunk)."""
        step = chunk_rows(self)
        return all(
            np.isfinite(self[start : start + step]).all()
            for start in range(0, len(self), step)
        )


def take_rows(X, index):
    """Rows ``index`` of ``X``: an array's, or a :class:`SparseRows` kept sparse."""
    if isinstance(X, SparseRows):
        return X.subset(index)
    return X[index]


def append_rows(X, rows):
    """``X`` followed by the dense rows ``rows``, as an array or SparseRows."""
    if isinstance(X, SparseRows):
        return X.append(rows)
    return np.concatenate([X, rows])


class TensorBatches:
    """Iterate over a skorch ``Dataset`` of tensors in contiguous batches.

    Used as ``iterator_train`` and ``iterator_valid`` of the nets below. It
    accepts the keyword arguments skorch passes to a ``DataLoader``.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset or torch.utils.data.Subset
        Dataset whose ``X`` is a tensor and ``y`` a tensor, a dict of tensors
        or ``None``.
    batch_size : int or "auto", default=128
        Rows per batch; ``"auto"`` is ``min(200, n_rows)``.
    shuffle : bool, default=False
        Draw a new permutation of the rows each epoch.
    seed : int, default=None
        Seeds this iterator's own generator of permutations, so that shuffling
        is reproducible even while other fits draw from torch's global one.
    """

    def __init__(self, dataset, batch_size=128, shuffle=False, seed=None, **_):
        self.X, self.y = _tensors_of(dataset)
        # "auto", as the estimators' batch_size: MLPClassifier's min(200, n).
        self.batch_size = min(200, len(self.X)) if batch_size == "auto" else batch_size
        self.shuffle = shuffle
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self):
        n = len(self.X)
        return (n + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.X)
        if self.shuffle:
            # Every named target is taken with the same index, so labels and
            # teacher outputs stay aligned with their rows.
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, self.batch_size):
                index = order[start : start + self.batch_size]
                yield self._rows(index), take(self.y, index)
        else:
            for start in range(0, n, self.batch_size):
                rows = slice(start, start + self.batch_size)
                yield self._rows(rows), take(self.y, rows)

    def _rows(self, index):
        if isinstance(self.X, SparseRows):
            return torch.from_numpy(self.X[index])
        return self.X[index]


def _tensors_of(dataset):
    if isinstance(dataset, torch.utils.data.Subset):
        X, y = _tensors_of(dataset.dataset)
        index = torch.as_tensor(dataset.indices)
        return X[index], take(y, index)
    if isinstance(dataset, Dataset):
        # A fitted stage net's own predict wraps arrays the caller passed.
        return _as_tensor(dataset.X), _as_tensor(dataset.y)
    raise TypeError(
        "TensorBatches needs a skorch Dataset of tensors or arrays, got "
        f"{type(dataset).__name__}."
    )


def _as_tensor(data):
    """Return ``data`` as a tensor (float arrays as float32, as networks expect).

    :class:`SparseRows` stay as they are: batches read them.
    """
    if data is None or isinstance(data, (torch.Tensor, SparseRows)):
        return data
    if isinstance(data, dict):
        return {name: _as_tensor(value) for name, value in data.items()}
    array = np.asarray(data)
    if array.dtype.kind == "f":
        array = array.astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(array))


def forward_rows(module, X, device):
    """Return the outputs of ``module`` on rows ``X`` as float32, without autograd.

    Rows go through in blocks of a fixed size, the last one padded with zeros:
    BLAS picks its kernels by matrix shape, so without padding a row's float32
    outputs would change in the last bits with the number of rows predicted
    alongside it. Small inputs pay no other per-call overhead: ``eval()`` walks
    every submodule, so it only runs when needed.
    """
    if module.training:
        module.eval()
    n_rows = len(X)
    if not n_rows:
        raise ValueError("forward_rows needs at least one row.")
    outputs = []
    step = chunk_rows(X)
    with torch.inference_mode():
        for start in range(0, n_rows, step):
            chunk = X[start : start + step]
            padding = -len(chunk) % _PREDICT_BLOCK
            if padding:
                zeros = np.zeros((padding,) + chunk.shape[1:], dtype=chunk.dtype)
                chunk = np.concatenate([chunk, zeros])
            outputs.append(module(torch.from_numpy(chunk).to(device)).cpu().numpy())
    outputs = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
    return outputs[:n_rows]


def standardise(X, scaler, dtype=np.float32):
    """Return ``(X - mean) / scale`` as a new ``dtype`` array, chunk by chunk.

    Going straight to float32 in chunks keeps the peak memory of a fit at one
    float32 copy of ``X`` rather than float64 temporaries of its full size. A
    sparse ``X`` gives :class:`SparseRows`, standardised when read.
    """
    if sp.issparse(X):
        return SparseRows(X, scaler.mean_, scaler.scale_)
    out = np.empty(X.shape, dtype=dtype)
    mean, scale = scaler.mean_, scaler.scale_
    # Values beyond float32 become infinite here; callers check and say so.
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, len(X), _PREDICT_CHUNK):
            rows = slice(start, start + _PREDICT_CHUNK)
            np.divide(X[rows] - mean, scale, out=out[rows], casting="same_kind")
    return out


def fit_scaler(X, sample_weight=None):
    """Fit a ``StandardScaler`` chunk by chunk (no full-size temporaries).

    With ``sample_weight``, the means and spreads are weighted: a row of
    weight ``k`` counts as ``k`` copies. A sparse ``X`` gets the same
    statistics (up to rounding) without being centred.
    """
    if sp.issparse(X):
        scaler = StandardScaler(with_mean=False).fit(X, sample_weight=sample_weight)
        # The rows are centred when read (SparseRows), never in the matrix.
        scaler.with_mean = True
        return scaler
    scaler = StandardScaler()
    for start in range(0, len(X), _PREDICT_CHUNK):
        rows = slice(start, start + _PREDICT_CHUNK)
        scaler.partial_fit(X[rows], sample_weight=take(sample_weight, rows))
    return scaler


def take(y, index):
    """Rows ``index`` of targets ``y``: a tensor or array, a dict of them, or None."""
    if y is None:
        return None
    if isinstance(y, dict):
        return {name: value[index] for name, value in y.items()}
    return y[index]


def as_tensors(X, y):
    """Return ``X`` and ``y`` (an array or a dict of arrays) as tensors, no copy."""

    def tensor(array):
        if isinstance(array, SparseRows):
            return array
        return torch.from_numpy(np.ascontiguousarray(array))

    if isinstance(y, dict):
        return tensor(X), {name: tensor(value) for name, value in y.items()}
    return tensor(X), tensor(y)


def softmax(logits):
    """Row-wise softmax of ``logits``, in their dtype."""
    logits = logits - logits.max(axis=1, keepdims=True)
    proba = np.exp(logits)
    return proba / proba.sum(axis=1, keepdims=True)


def stack_rows(parts):
    """Lay ``k`` sets of rows side by side, for a stack of ``k`` networks.

    Parameters
    ----------
    parts : list of (X, y, sample_weight)
        Network ``i``'s rows, labels and row weights (``None``: all one).

    Returns
    -------
    X : ndarray of shape (n, k, n_features)
    y : ndarray of shape (n, k) or (n, k, n_outputs)
    sample_weight : ndarray of shape (n, k)
        ``n`` is the largest set's size; a smaller set is padded with rows of
        weight zero, which count for nothing.
    """
    n = max(len(X) for X, _, _ in parts)
    X = np.zeros((n, len(parts), parts[0][0].shape[1]), np.float32)
    y_first = np.asarray(parts[0][1])
    y = np.zeros((n, len(parts), *y_first.shape[1:]), y_first.dtype)
    weights = np.zeros((n, len(parts)), np.float32)
    for i, (rows, labels, sample_weight) in enumerate(parts):
        X[: len(rows), i] = rows
        y[: len(rows), i] = labels
        weights[: len(rows), i] = 1.0 if sample_weight is None else sample_weight
    return X, y, weights
