"""The skorch nets of the three stages.

Each stage trains one of these on in-memory tensors (see ``_arrays``); what a
net adds to skorch's ``NeuralNet`` is its loss: supervised, supervised with the
L2-SP pull towards source weights, or distillation against a frozen teacher.
"""

import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping

from ._callbacks import StageLog
from ._losses import weighted_mean


class StageNet(NeuralNet):
    """Base of the stage nets: a user's ``KeyboardInterrupt`` stops the whole fit.

    skorch's ``partial_fit`` swallows ``KeyboardInterrupt`` (its
    ``EarlyStopping`` raises one to end training) and returns the half-trained
    net, which would let ``fit`` go on to the next stage. An interrupt that no
    early-stopping callback raised is recorded so the estimator can re-raise it.
    """

    def __init__(self, *args, log_title="", **kwargs):
        super().__init__(*args, **kwargs)
        self.log_title = log_title

    @property
    def _default_callbacks(self):
        # verbose=2's per-epoch tables say which stage (and guard fold) they
        # belong to, without colour codes where they are not shown in colour.
        return [
            (
                name,
                StageLog(getattr(self, "log_title", ""))
                if name == "print_log"
                else callback,
            )
            for name, callback in super()._default_callbacks
        ]

    def initialize_callbacks(self):
        """Initialise the callbacks, noting which listen to each batch."""
        super().initialize_callbacks()
        self.batch_listeners_ = {
            event: [cb for _, cb in self.callbacks_ if _listens(cb, event)]
            for event in _BATCH_EVENTS
        }
        return self

    def notify(self, method_name, **cb_kwargs):
        """Call the callbacks' ``method_name``; a batch's event only where heard.

        skorch announces every batch's events to every callback, a tenth of
        a small network's step; most callbacks (skorch's own included) act
        on epochs only. Those that define a batch event still hear it.
        """
        listeners = getattr(self, "batch_listeners_", {}).get(method_name)
        if listeners is None:
            return super().notify(method_name, **cb_kwargs)
        getattr(self, method_name)(self, **cb_kwargs)
        for callback in listeners:
            getattr(callback, method_name)(self, **cb_kwargs)
        return None

    def _set_training(self, training=True):
        """Set the modules' mode, where it is not already ``training``.

        skorch sets it before every batch, walking every submodule; after the
        first batch of an epoch it is already set.
        """
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            if isinstance(module, torch.nn.Module) and module.training != training:
                module.train(training)

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


# The events skorch announces once per batch.
_BATCH_EVENTS = ("on_batch_begin", "on_batch_end", "on_grad_computed")


def _listens(callback, event):
    """Whether ``callback`` does anything on ``event`` (defines its own method)."""
    method = getattr(callback, event)
    return getattr(method, "__func__", method) is not getattr(Callback, event)


class SupervisedNet(StageNet):
    """Net of the pretraining and transfer stages: outputs against labels.

    With sample weights, ``y`` is a dict ``{"labels", "weights"}`` and the
    criterion gives one loss per row (``criterion__reduction="none"``), which
    the weights average.
    """

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Return the criterion's loss; with weights, its weighted row mean."""
        if not isinstance(y_true, dict):
            return super().get_loss(y_pred, y_true, X=X, training=training)
        return self.weighted_loss(
            y_pred,
            y_true["labels"].to(y_pred.device),
            y_true["weights"].to(y_pred.device),
        )

    def weighted_loss(self, y_pred, labels, weights):
        """Return the rows' losses averaged with their ``weights``."""
        losses = self.criterion_(y_pred, labels)
        losses = losses.reshape(len(losses), -1).mean(dim=1)
        return weighted_mean(losses, weights)


class DistillationNet(StageNet):
    """Net of the distillation stage.

    ``y`` is a dict of named targets per row: ``"teacher"`` (the teacher's
    outputs), ``"labels"`` (``-1`` / ``NaN`` where unlabelled), with sample
    weights ``"weights"`` and, with a hint loss, ``"hints"`` (the teacher's
    standardised features). Batching slices
    them together, so shuffling cannot separate them. The teacher itself is
    never an attribute of this net: its weights stay out of the optimizer and
    out of ``train()`` mode.

    With a hint loss, the module is a ``HintedStudent`` whose last
    ``n_hint_columns`` outputs are its adapted features; their mean squared
    difference to the hints, times ``hint_weight``, is added.

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
        """Apply the distillation loss to the named targets, plus the hint term."""
        y_true = {name: value.to(y_pred.device) for name, value in y_true.items()}
        n_outputs = y_pred.shape[1] - self.n_hint_columns
        weights = y_true.get("weights")
        loss = self.distillation_loss(
            y_pred[:, :n_outputs], y_true["teacher"], y_true["labels"], weights
        )
        if not self.n_hint_columns:
            return loss
        hint = ((y_pred[:, n_outputs:] - y_true["hints"]) ** 2).mean(dim=1)
        return loss + self.hint_weight * weighted_mean(hint, weights)

    def distillation_loss(self, student, teacher, labels, sample_weight=None):
        """Return the criterion's loss, weighted by ``sample_weight`` if given.

        Unweighted, the criterion is called as any ``(student, teacher,
        labels)`` loss, so a criterion without ``sample_weight`` still serves.
        """
        if sample_weight is None:
            return self.criterion_(student, teacher, labels)
        return self.criterion_(student, teacher, labels, sample_weight=sample_weight)


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
        weights = yi.get("weights")
        if weights is not None:
            weights = weights.to(self.device)
        Xi, labels, weights = self.perturb(
            Xi.to(self.device), yi["labels"].to(self.device), weights
        )
        with torch.no_grad():
            teacher_out = self.teacher_module(Xi)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.distillation_loss(y_pred, teacher_out, labels, weights)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def perturb(self, X, labels, sample_weight=None):
        """Return perturbed rows, their labels (unlabelled where mixed), weights.

        A mixed row weighs what its two rows weigh, in the mix's proportions.
        """
        generator = self.perturbation_generator_
        if self.perturbation == "noise":
            noise = torch.randn(X.shape, generator=generator) * self.noise_scale
            return X + noise.to(X.device), labels, sample_weight
        weight = torch.rand((len(X), 1), generator=generator).to(X.device)
        partner = torch.randperm(len(X), generator=generator).to(X.device)
        mixed = weight * X + (1 - weight) * X[partner]
        if sample_weight is not None:
            share = weight[:, 0]
            sample_weight = share * sample_weight + (1 - share) * sample_weight[partner]
        return mixed, torch.full_like(labels, self.unlabelled_marker), sample_weight


class L2SPNet(SupervisedNet):
    """Supervised net whose loss adds the L2-SP penalty towards source weights.

    Parameters
    ----------
    l2sp_strength : float
        Coefficient of ``0.5 * ||w - w_source||^2`` summed over the weights that
        have a source value (a re-initialised head has none and is left free).
    source_weights : dict of str to torch.Tensor
        The source network's weights, by parameter name.
    """

    def __init__(self, *args, l2sp_strength=0.01, source_weights=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.l2sp_strength = l2sp_strength
        self.source_weights = source_weights

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Supervised loss plus, in training, the pull towards the source."""
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if not training or not self.source_weights:
            return loss
        penalty = sum(
            ((weight - self.source_weights[name].to(weight.device)) ** 2).sum()
            for name, weight in self.module_.named_parameters()
            if name in self.source_weights
            and weight.shape == self.source_weights[name].shape
        )
        return loss + 0.5 * self.l2sp_strength * penalty


class StackedLoss:
    """Loss of ``k`` networks trained side by side, one per fold of rows.

    The module is a stack (:func:`~sktd._networks.stack_networks`): ``y_pred``
    is ``(n_rows, k, n_outputs)``, and the labels and weights ``(n_rows, k,
    ...)`` hold each network's own rows, padded with rows of weight zero. The
    loss is the sum of each network's weighted mean loss, so each network's
    gradient (and any penalty on its weights) is what it would be alone.
    """

    def weighted_loss(self, y_pred, labels, weights):
        """Sum over the stack of each network's weighted row mean."""
        # Classes or outputs go second: the criterion's (rows, C, k) layout.
        outputs = y_pred.transpose(1, 2)
        if labels.dim() == 3:
            labels = labels.transpose(1, 2)
        losses = self.criterion_(outputs, labels)
        if losses.dim() == 3:
            losses = losses.mean(dim=1)
        weights = weights.to(losses.dtype)
        totals = torch.clamp(weights.sum(dim=0), min=1e-12)
        return ((losses * weights).sum(dim=0) / totals).sum()


class StackedNet(StackedLoss, SupervisedNet):
    """:class:`SupervisedNet` of a stack of networks (the guard's folds)."""


class StackedL2SPNet(StackedLoss, L2SPNet):
    """:class:`L2SPNet` of a stack of networks; the penalty sums over them."""


# The stacked net of each supervised net class.
STACKED_NETS = {SupervisedNet: StackedNet, L2SPNet: StackedL2SPNet}
