"""skorch nets for the three stages and a batch iterator over whole tensors.

skorch's default ``DataLoader`` fetches rows one at a time and collates them,
which costs more than the forward pass of a small MLP (skorch issues #433 and
#1100). The data here already sits in memory, so batches are slices.
"""

import sys
import time

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping
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
        Dataset whose ``X`` and ``y`` are tensors (``y`` may be ``None``).
    batch_size : int, default=128
        Rows per batch.
    shuffle : bool, default=False
        Draw a new permutation of the rows each epoch.
    seed : int, default=None
        Seeds this iterator's own generator of permutations, so that shuffling
        is reproducible even while other fits draw from torch's global one.
    """

    def __init__(self, dataset, batch_size=128, shuffle=False, seed=None, **_):
        self.X, self.y = _tensors_of(dataset)
        self.batch_size = batch_size
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
            # Labels and teacher outputs travel in y, so one index keeps them
            # aligned with their rows.
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, self.batch_size):
                index = order[start : start + self.batch_size]
                yield self.X[index], None if self.y is None else self.y[index]
        else:
            for start in range(0, n, self.batch_size):
                stop = start + self.batch_size
                yield self.X[start:stop], None if self.y is None else self.y[start:stop]


def _tensors_of(dataset):
    if isinstance(dataset, torch.utils.data.Subset):
        X, y = _tensors_of(dataset.dataset)
        index = torch.as_tensor(dataset.indices)
        return X[index], None if y is None else y[index]
    if isinstance(dataset, Dataset) and isinstance(dataset.X, torch.Tensor):
        return dataset.X, dataset.y
    raise TypeError(
        "TensorBatches needs a skorch Dataset of tensors, got "
        f"{type(dataset).__name__}."
    )


class NonFiniteLossError(ArithmeticError):
    """Raised when a training loss becomes NaN or infinite."""


class FiniteLossGuard(Callback):
    """Stop a stage as soon as its epoch loss is not finite.

    A NaN loss leaves NaN weights behind; training on would return a model
    that predicts NaN. The estimator catches the error and retries the stage.
    """

    def on_epoch_end(self, net, **kwargs):
        """Check the epoch's training loss."""
        loss = net.history[-1].get("train_loss")
        if loss is not None and not np.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss became {loss} in epoch {len(net.history)}"
            )


class StageProgress(Callback):
    """One progress line per stage: epoch, losses, time.

    On a terminal the line is rewritten in place every epoch; elsewhere (logs,
    captured output) only the stage's final line is printed.

    Parameters
    ----------
    stage : str
        Name printed at the start of the line (``"pretrain"``, ...).
    enabled : bool, default=True
        ``False`` prints nothing.
    """

    def __init__(self, stage, enabled=True):
        self.stage = stage
        self.enabled = enabled

    def on_train_begin(self, net, **kwargs):
        """Start the stage's clock."""
        self.start_ = time.perf_counter()

    def on_epoch_end(self, net, **kwargs):
        """Rewrite the progress line on a terminal."""
        if self.enabled and sys.stdout.isatty():
            print(self._line(net), end="\r", flush=True)

    def on_train_end(self, net, **kwargs):
        """Print the stage's final line."""
        if self.enabled and len(net.history):
            print(self._line(net), flush=True)

    def _line(self, net):
        last = net.history[-1]
        parts = [f"[sktd] {self.stage:<8} epoch {last['epoch']:>4}/{net.max_epochs}"]
        for key in ("train_loss", "valid_loss"):
            if key in last:
                parts.append(f"{key} {last[key]:.4f}")
        parts.append(f"{time.perf_counter() - self.start_:.1f}s")
        return "  ".join(parts)


class StageNet(NeuralNet):
    """Base of the stage nets: a user's ``KeyboardInterrupt`` stops the whole fit.

    skorch's ``partial_fit`` swallows ``KeyboardInterrupt`` (its
    ``EarlyStopping`` raises one to end training) and returns the half-trained
    net, which would let ``fit`` go on to the next stage. An interrupt that no
    early-stopping callback raised is recorded so the estimator can re-raise it.
    """

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """Run skorch's loop, remembering whether the user interrupted it."""
        self.interrupted_ = False
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt:
            self.interrupted_ = not any(
                isinstance(callback, EarlyStopping)
                and callback.misses_ >= callback.patience
                for _, callback in self.callbacks_
            )
            raise


class SupervisedNet(StageNet):
    """Net of the pretraining and transfer stages: outputs against labels."""


class DistillationNet(StageNet):
    """Net of the distillation stage.

    ``y`` holds, per row, the teacher's outputs followed by the row's labels,
    so that batching and shuffling cannot separate them. The teacher itself is
    never an attribute of this net: its weights stay out of the optimizer and
    out of ``train()`` mode.

    With a hint loss, the module is a ``HintedStudent``
    whose last ``n_hint_columns`` outputs are its adapted features, and the
    last ``n_hint_columns`` columns of ``y`` the teacher's (standardised)
    features; their mean squared difference, times ``hint_weight``, is added.

    Parameters
    ----------
    hint_weight : float, default=0.0
        Weight of the hint (feature-matching) term.
    n_hint_columns : int, default=0
        Width of the teacher's features; 0 without a hint loss.
    """

    def __init__(self, *args, hint_weight=0.0, n_hint_columns=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.hint_weight = hint_weight
        self.n_hint_columns = n_hint_columns

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Split ``y_true`` into teacher outputs and labels, then apply the loss."""
        n_hint = self.n_hint_columns
        n_outputs = y_pred.shape[1] - n_hint
        y_true = y_true.to(y_pred.device)
        n_targets = y_true.shape[1] - n_hint
        loss = self.criterion_(
            y_pred[:, :n_outputs],
            y_true[:, :n_outputs],
            y_true[:, n_outputs:n_targets],
        )
        if not n_hint:
            return loss
        hint = ((y_pred[:, n_outputs:] - y_true[:, n_targets:]) ** 2).mean()
        return loss + self.hint_weight * hint


class ConsistentDistillationNet(DistillationNet):
    """Distillation where teacher and student see the same perturbed rows.

    "Consistent teaching" (Beyer et al., 2022): each batch is perturbed, and
    the teacher's outputs are computed on the very rows the student sees, so
    the student matches the teacher's function around the data rather than
    at the data points only. The teacher is an ``__init__`` argument, never a
    registered module, so its weights stay out of the student's optimizer.

    Parameters
    ----------
    teacher_module : torch.nn.Module
        The frozen teacher, in ``eval`` mode.
    perturbation : {"noise", "mixup"}
        ``"noise"`` adds Gaussian noise of standard deviation ``noise_scale``
        to the (standardised) rows, which keep their labels. ``"mixup"``
        replaces each row by a random convex combination with another row of
        the batch; mixed rows have no hard label, only the teacher's.
    noise_scale : float, default=0.1
        Standard deviation of the ``"noise"`` perturbation.
    perturbation_seed : int, default=0
        Seeds the perturbations' own generator.
    unlabelled_marker : float, default=-1.0
        Label of a mixed row: ``-1`` for classes, ``NaN`` for regression.
    """

    def __init__(
        self,
        *args,
        teacher_module=None,
        perturbation="noise",
        noise_scale=0.1,
        perturbation_seed=0,
        unlabelled_marker=-1.0,
        **kwargs,
    ):
        # Set before skorch's __init__ so that skorch does not register the
        # teacher as one of the net's own (trainable) modules.
        self.teacher_module = teacher_module
        super().__init__(*args, **kwargs)
        self.perturbation = perturbation
        self.noise_scale = noise_scale
        self.perturbation_seed = perturbation_seed
        self.unlabelled_marker = unlabelled_marker

    def initialize(self):
        """Initialize the net and the generator of perturbations."""
        super().initialize()
        self.perturbation_generator_ = torch.Generator().manual_seed(
            int(self.perturbation_seed)
        )
        return self

    def train_step_single(self, batch, **fit_params):
        """Perturb the batch, ask the teacher, then take the student's step."""
        self._set_training(True)
        Xi, yi = batch
        Xi, yi = Xi.to(self.device), yi.to(self.device)
        n_outputs = yi.shape[1] - self.n_label_columns_
        Xi, labels = self.perturb(Xi, yi[:, n_outputs:])
        with torch.no_grad():
            teacher_out = self.teacher_module(Xi)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.criterion_(y_pred, teacher_out, labels)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def fit(self, X, y=None, **fit_params):
        """Fit; remember how many label columns follow the teacher's outputs."""
        # y packs the teacher's outputs, then one column per label.
        n_outputs = self.teacher_module(X[:1].to(self.device)).shape[1]
        self.n_label_columns_ = y.shape[1] - n_outputs
        return super().fit(X, y, **fit_params)

    def perturb(self, X, labels):
        """Return perturbed rows and their labels (unlabelled where mixed)."""
        generator = self.perturbation_generator_
        if self.perturbation == "noise":
            noise = torch.randn(X.shape, generator=generator) * self.noise_scale
            return X + noise.to(X.device), labels
        weight = torch.rand((len(X), 1), generator=generator).to(X.device)
        partner = torch.randperm(len(X), generator=generator).to(X.device)
        mixed = weight * X + (1 - weight) * X[partner]
        return mixed, torch.full_like(labels, self.unlabelled_marker)


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
    for start in range(0, len(X), _PREDICT_CHUNK):
        rows = slice(start, start + _PREDICT_CHUNK)
        np.divide(X[rows] - mean, scale, out=out[rows], casting="same_kind")
    return out


def fit_scaler(X):
    """Fit a ``StandardScaler`` chunk by chunk (no full-size temporaries)."""
    scaler = StandardScaler()
    for start in range(0, len(X), _PREDICT_CHUNK):
        scaler.partial_fit(X[start : start + _PREDICT_CHUNK])
    return scaler
