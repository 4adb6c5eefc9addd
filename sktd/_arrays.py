"""In-memory arrays to and from torch: batches, forward passes, scaling.

skorch's default ``DataLoader`` fetches rows one at a time and collates them,
which costs more than the forward pass of a small MLP (skorch issues #433 and
#1100). The data here already sits in memory, so batches are slices. Targets
may be one tensor or a dict of named tensors (the distillation stage's teacher
outputs, labels and hints), sliced with the same index so that shuffling keeps
them with their rows.
"""

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from skorch.dataset import Dataset

# Predicting in chunks bounds the memory of the hidden activations; chunks are
# a whole number of fixed-size blocks (see forward_rows).
_PREDICT_BLOCK = 64
_PREDICT_CHUNK = 1024 * _PREDICT_BLOCK


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
                yield self.X[index], take(self.y, index)
        else:
            for start in range(0, n, self.batch_size):
                rows = slice(start, start + self.batch_size)
                yield self.X[rows], take(self.y, rows)


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
    """Return ``data`` as a tensor (float arrays as float32, as networks expect)."""
    if data is None or isinstance(data, torch.Tensor):
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
    padding = -n_rows % _PREDICT_BLOCK
    if padding:
        X = np.concatenate([X, np.zeros((padding,) + X.shape[1:], dtype=X.dtype)])
    with torch.inference_mode():
        outputs = [
            module(torch.from_numpy(X[start : start + _PREDICT_CHUNK]).to(device))
            .cpu()
            .numpy()
            for start in range(0, len(X), _PREDICT_CHUNK)
        ]
    outputs = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
    return outputs[:n_rows]


def standardise(X, scaler, dtype=np.float32):
    """Return ``(X - mean) / scale`` as a new ``dtype`` array, chunk by chunk.

    Going straight to float32 in chunks keeps the peak memory of a fit at one
    float32 copy of ``X`` rather than float64 temporaries of its full size.
    """
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
    weight ``k`` counts as ``k`` copies.
    """
    scaler = StandardScaler()
    for start in range(0, len(X), _PREDICT_CHUNK):
        rows = slice(start, start + _PREDICT_CHUNK)
        weights = None if sample_weight is None else sample_weight[rows]
        scaler.partial_fit(X[rows], sample_weight=weights)
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
        return torch.from_numpy(np.ascontiguousarray(array))

    if isinstance(y, dict):
        return tensor(X), {name: tensor(value) for name, value in y.items()}
    return tensor(X), tensor(y)


def softmax(logits):
    """Row-wise softmax of ``logits``, in their dtype."""
    logits = logits - logits.max(axis=1, keepdims=True)
    proba = np.exp(logits)
    return proba / proba.sum(axis=1, keepdims=True)
