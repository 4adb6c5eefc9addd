"""The stage trainer: where every network of a fit is built and trained.

A :class:`StageTrainer` holds the settings every stage shares (optimizer, epochs,
batches, early stopping, device, verbosity) and turns a module plus arrays into
a fitted skorch net: it builds the net (:meth:`StageTrainer.net`), holds out a
validation split when early stopping asks for one, restarts a stage whose loss
turned NaN with a smaller step, and leaves the module in ``eval`` mode
(:meth:`StageTrainer.fit`). It knows nothing of the estimator.
"""

import contextlib
import copy
import inspect
import threading
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from skorch import NeuralNet
from skorch.callbacks import EarlyStopping
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from torch import nn

from ._arrays import TensorBatches, as_tensors, stack_rows, take, take_rows
from ._callbacks import FiniteLossGuard, NonFiniteLossError, StageProgress
from ._networks import MLP, unstack_networks

# Seeding torch's global generator and drawing initial weights from it must be
# atomic when several fits run in threads.
INIT_LOCK = threading.Lock()

# Restarts of a stage whose loss turned NaN, each with a 10x smaller step.
_NAN_RETRIES = 2


@dataclass(frozen=True)
class TrainingSettings:
    """What every stage's net shares; the estimator's parameters of the same name."""

    learning_rate: float
    weight_decay: float
    max_epochs: int
    batch_size: object
    early_stopping: bool
    validation_fraction: float
    n_iter_no_change: int
    tol: float
    verbose: int
    device: object


class StageTrainer:
    """Build and fit the skorch nets of the stages, from arrays.

    Parameters
    ----------
    settings : TrainingSettings
        Optimizer, epochs, batches, early stopping, verbosity and device.
    criterion : type of torch.nn.Module
        Supervised loss of the pretraining and transfer stages
        (``CrossEntropyLoss`` on logits, or ``MSELoss``).
    classification : bool
        Whether labels are class indices (validation splits are stratified).
    n_outputs : int
        Width of every network's output.
    """

    def __init__(self, settings, criterion, classification, n_outputs):
        self.settings = settings
        self.criterion = criterion
        self.classification = classification
        self.n_outputs = n_outputs
        self.label = None

    @contextlib.contextmanager
    def labelled(self, label):
        """Name the nets built meanwhile (``"guard fold 2/5: rehearsed"``).

        The name titles their ``verbose=2`` tables after the stage's.
        """
        previous, self.label = self.label, label
        try:
            yield
        finally:
            self.label = previous

    def new_module(self, spec, hidden_layer_sizes, n_features, seed):
        """Return a freshly initialised module for a ``teacher`` / ``student`` spec.

        ``None`` builds the default MLP with ``hidden_layer_sizes``; a skorch
        net contributes its module (class or instance); a module is copied.
        """
        with INIT_LOCK:
            torch.manual_seed(seed)
            return self._module_of(spec, hidden_layer_sizes, n_features)

    def check_module(self, spec, hidden_layer_sizes, n_features, name):
        """Refuse, before any training, a user's module of the wrong widths.

        A module that cannot take rows of ``n_features`` would fail inside
        torch, unnamed; one with more or fewer outputs than the task's would
        be broadcast against its targets by the losses. ``name`` is the
        estimator's parameter the module came from.
        """
        if spec is None:
            return
        # Building a skorch net's module class draws its initial weights from
        # torch's global generator, which the caller's state must not see.
        with INIT_LOCK, torch.random.fork_rng(devices=[]):
            module = self._module_of(spec, hidden_layer_sizes, n_features)
        self.check_widths(module, n_features, name)

    def check_widths(self, module, n_features, name):
        """Refuse a built ``module`` that does not map ``n_features`` to the outputs.

        Its ``train`` / ``eval`` mode is left as it was.
        """
        parameter = next(module.parameters(), None)
        device = "cpu" if parameter is None else parameter.device
        training = module.training
        module.eval()
        try:
            with torch.no_grad():
                outputs = module(torch.zeros(2, n_features, device=device))
        except RuntimeError as error:
            raise ValueError(
                f"{name}: the module cannot take rows of {n_features} features, "
                f"as X has: {error}"
            ) from error
        finally:
            module.train(training)
        shape = tuple(getattr(outputs, "shape", ()))
        if shape != (2, self.n_outputs):
            wanted = "classes" if self.classification else "targets"
            if self.n_outputs == 1:
                wanted = "target"
            raise ValueError(
                f"{name}: the module returns outputs of shape {shape[1:]} per "
                f"row, but the task has {self.n_outputs} {wanted}: its output "
                f"must have shape (n_rows, {self.n_outputs})."
            )

    def _module_of(self, spec, hidden_layer_sizes, n_features):
        if spec is None:
            sizes = check_hidden_layer_sizes(hidden_layer_sizes)
            return MLP(n_features, self.n_outputs, sizes)
        if isinstance(spec, NeuralNet):
            if getattr(spec, "initialized_", False):
                return copy.deepcopy(spec.module_)
            module = spec.module
            if isinstance(module, type):
                return module(**spec.get_params_for("module"))
            return copy.deepcopy(module)
        if isinstance(spec, nn.Module):
            return copy.deepcopy(spec)
        raise TypeError(
            "teacher and student must be None, a torch.nn.Module or a skorch "
            f"NeuralNet, got {type(spec).__name__}."
        )

    def learning_rate(self, spec):
        """Return a stage's learning rate: the skorch spec's, else the settings'."""
        return spec.lr if isinstance(spec, NeuralNet) else self.settings.learning_rate

    def max_epochs(self, spec, cap=None):
        """Return the epoch budget of a stage: the skorch spec's, else the settings'.

        ``cap``, if given, bounds it: the budget of a net trained within a
        stage (the guard's, rehearsal's) never exceeds the stage's own.
        """
        budget = (
            spec.max_epochs if isinstance(spec, NeuralNet) else self.settings.max_epochs
        )
        return budget if cap is None else min(budget, cap)

    def net(
        self,
        net_class,
        module,
        spec,
        *,
        stage,
        seed,
        criterion=None,
        callbacks=(),
        progress=True,
        n_networks=1,
        **extra,
    ):
        """Build the skorch net of one stage.

        A skorch ``spec`` overrides the optimizer settings; ``callbacks`` and
        ``extra`` net parameters come from the stage. ``criterion`` defaults
        to the supervised one. ``progress=False`` keeps the stage's progress
        line for another net of the same stage. A net training a stack of
        ``n_networks`` networks sums their losses, and so is said to plateau
        when the sum gains less than ``n_networks`` times ``tol``.
        """
        s = self.settings
        options = {
            "optimizer": torch.optim.Adam,
            "lr": s.learning_rate,
            "optimizer__weight_decay": s.weight_decay,
            # One fused kernel updates all of a small net's tensors: the same
            # arithmetic up to rounding, and per step half the optimizer time
            # of the vectorised (foreach) update on a CPU, a fifth of a step.
            **_fast_adam(s.device),
            "max_epochs": s.max_epochs,
            "batch_size": s.batch_size,
        }
        user_callbacks = []
        if isinstance(spec, NeuralNet):
            check_net_settings(spec)
            # Copies: a fit must not change the estimator's parameters.
            user_callbacks = copy.deepcopy(list(spec.callbacks or []))
            # The user's optimizer may not take ``fused`` / ``foreach``.
            for name in ("optimizer__fused", "optimizer__foreach"):
                options.pop(name, None)
            options.update(
                optimizer=spec.optimizer,
                lr=spec.lr,
                max_epochs=spec.max_epochs,
                batch_size=spec.batch_size,
                **{
                    f"optimizer__{k}": v
                    for k, v in spec.get_params_for("optimizer").items()
                },
            )
        options.update(extra)
        stopper = EarlyStopping(
            monitor="valid_loss" if s.early_stopping else "train_loss",
            patience=s.n_iter_no_change,
            threshold=s.tol * n_networks,
            threshold_mode="abs",
            load_best=s.early_stopping,
            sink=print if s.verbose >= 2 else _silent,
        )
        return net_class(
            module=module,
            criterion=self.criterion if criterion is None else criterion,
            iterator_train=TensorBatches,
            iterator_valid=TensorBatches,
            iterator_train__shuffle=True,
            iterator_train__seed=seed,
            train_split=None,
            callbacks=[
                ("early_stopping", stopper),
                ("finite_loss", FiniteLossGuard()),
                ("progress", StageProgress(stage, progress and bool(s.verbose))),
                *callbacks,
                *user_callbacks,
            ],
            device=s.device,
            log_title=stage if self.label is None else f"{stage}, {self.label}",
            # The fitted nets' own predict_proba gives probabilities, as a
            # skorch classifier's does, whatever the stage's loss.
            predict_nonlinearity=_probabilities if self.classification else None,
            # skorch's per-epoch table only at verbose >= 2; verbose=1 is
            # one progress line per stage.
            verbose=int(s.verbose >= 2),
            **options,
        )

    def fitted(self, net_class, module, spec, *, stage):
        """Return an initialised, untrained net around a module already fitted."""
        net = self.net(net_class, module, spec, stage=stage, seed=0)
        net.initialize()
        net.module_.eval()
        return net

    def fit_stack(
        self, net_class, stack, template, parts, spec, *, stage, seed, **extra
    ):
        """Train a stack of networks side by side, network ``i`` on ``parts[i]``.

        ``stack`` is :func:`~sktd._networks.stack_networks` of copies of
        ``template``, ``net_class`` a net whose loss sums the networks' (see
        :class:`~sktd._nets.StackedLoss`), ``parts`` each network's ``(X, y,
        sample_weight)``; ``spec``, ``stage``, ``seed`` and ``extra`` build the
        net as :meth:`net` does. Returns the trained networks, each a copy of
        ``template``, in ``eval`` mode.
        """
        stack.train()
        net = self.net(
            net_class,
            stack,
            spec,
            stage=stage,
            seed=seed,
            progress=False,
            n_networks=len(parts),
            **extra,
        )
        X, y, weights = stack_rows(parts)
        net = self.fit(net, X, y, stratify=False, sample_weight=weights)
        return unstack_networks(net.module_, template)

    def fit(self, net, X, y, *, stratify, validate_on=None, sample_weight=None):
        """Fit ``net`` on rows ``X``, ``y``; return it, its module in eval mode.

        ``y`` is an array or a dict of arrays (named targets). With early
        stopping, ``validation_fraction`` of the rows (of the rows where
        ``validate_on`` is true, if given) are held out, stratified by class
        when ``stratify`` and possible. ``sample_weight`` weighs each row's
        loss (training and validation); it travels with the rows as the named
        target ``"weights"``.
        """
        s = self.settings
        if sample_weight is not None:
            if not isinstance(y, dict):
                # One loss per row, for the weights to average.
                net.set_params(criterion__reduction="none")
                y = {"labels": y}
            y = {**y, "weights": np.asarray(sample_weight, dtype=np.float32)}
            stratify_labels = y["labels"]
        else:
            stratify_labels = y
        if net.batch_size == "auto":
            net.batch_size = min(200, len(X))
        if s.early_stopping:
            pool = np.flatnonzero(
                np.ones(len(X), bool) if validate_on is None else validate_on
            )
            if len(pool) < 2:
                rows = "training" if validate_on is None else "target"
                raise ValueError(
                    f"early_stopping=True holds out validation_fraction="
                    f"{s.validation_fraction} of the {rows} rows, but there are "
                    f"only {len(pool)}: pass more rows (X_target for target rows) "
                    "or set early_stopping=False."
                )
            stratify_by = (
                stratify_labels[pool] if stratify and self.classification else None
            )
            _, valid = train_test_split(
                pool,
                test_size=s.validation_fraction,
                stratify=_stratification(stratify_by, s.validation_fraction),
                random_state=0,
            )
            is_valid = np.zeros(len(X), bool)
            is_valid[valid] = True
            X, X_valid = take_rows(X, ~is_valid), take_rows(X, is_valid)
            y, y_valid = take(y, ~is_valid), take(y, is_valid)
            net.set_params(
                train_split=predefined_split(Dataset(*as_tensors(X_valid, y_valid)))
            )
        X, y = as_tensors(X, y)
        initial_module = copy.deepcopy(net.module)
        for attempt in range(_NAN_RETRIES + 1):
            try:
                net.fit(X, y)
                break
            except NonFiniteLossError as error:
                if attempt == _NAN_RETRIES:
                    raise ValueError(
                        f"Training diverged: {error}, even with the learning rate "
                        f"lowered to {net.lr:g}. Check the inputs for extreme "
                        "values or lower learning_rate_init."
                    ) from error
                # Divergence is most often a step size too large for this data:
                # restart the stage from its initial weights with a smaller one.
                net.set_params(module=copy.deepcopy(initial_module), lr=net.lr / 10)
        if net.interrupted_:
            raise KeyboardInterrupt
        net.module_.eval()
        return net


def _fast_adam(device):
    """Adam's fastest implementation on ``device``: fused where torch has one."""
    if torch.device(device).type in ("cpu", "cuda"):
        return {"optimizer__fused": True}
    return {"optimizer__foreach": True}


def check_hidden_layer_sizes(sizes, name="hidden_layer_sizes"):
    """Return ``sizes`` as a tuple of positive ints, or raise a ``ValueError``.

    ``name`` is the parameter the sizes came from, for the message.
    """
    sizes = tuple(np.atleast_1d(sizes).tolist())
    if not all(isinstance(s, Integral) and s > 0 for s in sizes):
        raise ValueError(f"{name} must be positive integers, got {sizes}.")
    return sizes


def _probabilities(logits):
    """Softmax over classes: the prediction non-linearity of classifier nets."""
    return torch.softmax(logits, dim=-1)


# Of a skorch net given as teacher or student, sktd uses these settings (and
# ``module__*``, ``optimizer__*``); the estimator's parameters set criterion,
# train_split, device, verbose and classes for every stage. The settings below
# change how a net iterates or predicts, which sktd's stages fix: a value other
# than skorch's default is refused rather than dropped.
_NET_SETTINGS_REFUSED = (
    "iterator_train",
    "iterator_valid",
    "dataset",
    "predict_nonlinearity",
    "warm_start",
    "compile",
    "use_caching",
)


# skorch's defaults of those settings, read once.
_NET_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(NeuralNet.__init__).parameters.items()
}


def check_net_settings(spec):
    """Refuse the settings of a skorch net sktd cannot honour, naming them."""
    params = spec.get_params(deep=False)
    refused = [
        name
        for name in _NET_SETTINGS_REFUSED
        if name in params and not _same(params[name], _NET_DEFAULTS[name])
    ]
    refused += [
        name
        for name in params
        if "__" in name and not name.startswith(("module__", "optimizer__"))
    ]
    if refused:
        raise ValueError(
            f"The {type(spec).__name__} given as teacher or student sets "
            f"{sorted(refused)}, which sktd cannot honour: each stage builds its "
            "own data iterators and predicts with its own nonlinearity. sktd "
            "uses a skorch net's module, optimizer, lr, max_epochs, batch_size "
            "and callbacks (with their module__ / optimizer__ settings); the "
            "estimator's parameters set the rest."
        )


def _same(value, default):
    if value is default:
        return True
    try:
        return bool(value == default)
    except Exception:
        return False


def _silent(*args, **kwargs):
    """Sink for skorch messages when ``verbose=0``."""


def _stratification(y, test_size):
    """``y`` if a stratified split of ``test_size`` is possible, else ``None``.

    Every class needs two rows, and both sides of the split a row per class.
    """
    if y is None:
        return None
    _, counts = np.unique(y, return_counts=True)
    n_test = int(np.ceil(test_size * len(y)))
    n_classes = len(counts)
    if counts.min() < 2 or min(n_test, len(y) - n_test) < n_classes:
        return None
    return y


def check_device(device):
    """Refuse a ``device`` torch cannot parse or this machine does not have."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'cpu', "
            "'cuda', 'cuda:1', 'mps', ..."
        ) from error
    availability = {
        "cuda": ("torch.cuda.is_available()", torch.cuda.is_available),
        "mps": (
            "torch.backends.mps.is_available()",
            torch.backends.mps.is_available,
        ),
    }
    if parsed.type == "cpu":
        return
    if parsed.type not in availability:
        raise ValueError(
            f"device={device!r}: sktd trains on 'cpu', 'cuda' or 'mps' devices, "
            f"not {parsed.type!r}."
        )
    check, is_available = availability[parsed.type]
    if not is_available():
        raise ValueError(
            f"device={device!r}, but this machine or torch build has no "
            f"{parsed.type} device ({check} is False); use device='cpu'."
        )
