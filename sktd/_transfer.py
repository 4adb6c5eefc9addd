"""Transfer strategies, the negative-transfer guard and the teachers it builds.

The estimator's second stage moves a source-trained network to the target task.
How it does so is a *strategy* (``transfer_strategy``):

``"finetune"``
    Every weight trains on the labelled target rows.
``"gradual"``
    The head trains alone first; then one more layer, from the top down, joins
    every few epochs (Howard & Ruder, 2018).
``"l2sp"``
    Every weight trains, pulled towards its source value by
    ``l2sp_strength / 2 * ||w - w_source||^2`` instead of towards zero
    (Li et al., 2018).
``"discriminative"``
    Every weight trains, each layer with a learning rate halved per layer below
    the head (Howard & Ruder, 2018).

The guard then asks, on out-of-fold predictions for the labelled target rows,
how to weigh five candidate teachers: the source network as it is, the
transferred network, the source network fine-tuned on the target rows
rehearsed among source rows, and two models of the target rows alone (linear,
and a bag of the teacher's architecture trained from scratch on the guard's
folds). The teacher is the weighted blend (:class:`BlendedTeacher`), so a source
that does not help gets no weight. The weights are those of the best blend on
the out-of-fold predictions, averaged over bootstrap resamples of the rows
(Breiman, 1996): a few dozen rows cannot tell close candidates apart, and the
average hedges where a single choice would gamble.
"""

import itertools

import numpy as np
import torch
from skorch.callbacks import Callback
from torch import nn

from ._training import SupervisedNet

TRANSFER_STRATEGIES = ("finetune", "gradual", "l2sp", "discriminative")

# Members of the blended teacher, in a fixed order.
CANDIDATES = (
    "pretrained",
    "transferred",
    "rehearsed",
    "target_linear",
    "target_network",
)

# Blend weights are searched on this grid over the simplex ...
_WEIGHT_STEP = 0.1
# ... once per bootstrap resample of the out-of-fold rows.
_BOOTSTRAPS = 50
# Rows per chunk when scoring every grid blend, bounding memory.
_CHUNK_ROWS = 1024

# Learning-rate factor between a layer and the one above it ("discriminative").
_LAYER_LR_DECAY = 0.5

# Logit given to a class the target-only model never saw (probability ~0).
_UNSEEN_CLASS_LOGIT = -30.0


def weighted_layers(module):
    """Return ``[(name, submodule), ...]`` of the leaf modules holding weights.

    They come in registration order, which for feed-forward networks is input
    to output; the last one is taken to be the head.
    """
    return [
        (name, sub)
        for name, sub in module.named_modules()
        if not list(sub.children()) and any(True for _ in sub.parameters(False))
    ]


def fit_head(module, n_outputs, seed):
    """Give ``module`` a head of ``n_outputs`` units; return whether it changed.

    A pretrained network whose output width differs from the target task's
    (other classes, other targets) keeps its body; its last linear layer is
    replaced by a freshly initialised one of the right width.
    """
    name, head = weighted_layers(module)[-1]
    if not isinstance(head, nn.Linear):
        raise ValueError(
            f"The teacher's last layer with weights ({name!r}, "
            f"{type(head).__name__}) must be a torch.nn.Linear for its output "
            f"width ({_out_features(head)}) to be changed to {n_outputs}."
        )
    if head.out_features == n_outputs:
        return False
    torch.manual_seed(seed)
    new_head = nn.Linear(head.in_features, n_outputs, bias=head.bias is not None)
    parent_name, _, attribute = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, attribute, new_head.to(head.weight.device))
    return True


def _out_features(layer):
    return getattr(layer, "out_features", "unknown")


class GradualUnfreezing(Callback):
    """Train the head alone, then unfreeze one more layer every ``every`` epochs.

    Parameters
    ----------
    every : int
        Epochs between two unfreezings.
    """

    def __init__(self, every):
        self.every = every

    def on_epoch_begin(self, net, **kwargs):
        """Set ``requires_grad`` for this epoch's trainable layers."""
        layers = weighted_layers(net.module_)
        n_trainable = 1 + (len(net.history) - 1) // self.every
        for depth, (_, layer) in enumerate(reversed(layers)):
            for weight in layer.parameters():
                weight.requires_grad_(depth < n_trainable)

    def on_train_end(self, net, **kwargs):
        """Leave every weight trainable, as the other strategies do."""
        for weight in net.module_.parameters():
            weight.requires_grad_(True)


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


def strategy_settings(strategy, module, lr, l2sp_strength, n_iter_no_change):
    """Return ``(net_class, extra net kwargs, extra callbacks)`` for a strategy."""
    if strategy == "finetune":
        return SupervisedNet, {}, []
    if strategy == "gradual":
        every = max(1, n_iter_no_change // 2)
        return SupervisedNet, {}, [("gradual_unfreezing", GradualUnfreezing(every))]
    if strategy == "l2sp":
        source_weights = {
            name: weight.detach().clone() for name, weight in module.named_parameters()
        }
        return (
            L2SPNet,
            {
                "l2sp_strength": l2sp_strength,
                "source_weights": source_weights,
                # L2-SP replaces weight decay rather than adding to it.
                "optimizer__weight_decay": 0.0,
            },
            [],
        )
    if strategy == "discriminative":
        layers = weighted_layers(module)
        groups = [
            (f"{name}.*", {"lr": lr * _LAYER_LR_DECAY**depth})
            for depth, (name, _) in enumerate(reversed(layers))
        ]
        return SupervisedNet, {"optimizer__param_groups": groups}, []
    raise ValueError(f"Unknown transfer_strategy {strategy!r}.")


class Standardised(nn.Module):
    """Run a module that expects raw rows on standardised ones.

    The estimator's networks all see standardised inputs; a teacher the user
    pretrained on raw rows gets them back through this wrapper.

    Parameters
    ----------
    module : torch.nn.Module
        The user's network, fed ``X * scale + mean``.
    mean, scale : array-like of shape (n_features,)
        The estimator's input scaler.
    output_mean, output_scale : float or array-like, default=0.0, 1.0
        Regression: the estimator's target scaler, applied to the outputs so
        that they are in the units the other networks learn.
    """

    def __init__(self, module, mean, scale, output_mean=0.0, output_scale=1.0):
        super().__init__()
        self.module = module
        for name, value in (
            ("mean", mean),
            ("scale", scale),
            ("output_mean", output_mean),
            ("output_scale", output_scale),
        ):
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32))

    def forward(self, X):
        """Undo the input standardisation, apply the module, standardise outputs."""
        outputs = self.module(X * self.scale + self.mean)
        return (outputs - self.output_mean) / self.output_scale


class LogOf(nn.Module):
    """Turn a module that outputs probabilities into one that outputs logits.

    skorch's ``NeuralNetClassifier`` trains with ``NLLLoss`` on a module ending
    in a softmax; distillation needs logits, and ``log(p)`` is one.
    """

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, X):
        """Return ``log`` of the wrapped module's probabilities."""
        return torch.log(self.module(X).clamp_min(1e-12))


class BlendedTeacher(nn.Module):
    """A weighted blend of teachers, itself a teacher.

    Classification blends probabilities and returns their log as logits;
    regression blends outputs.

    Parameters
    ----------
    members : dict of str to torch.nn.Module
        The blended networks, by candidate name.
    weights : dict of str to float
        Their weights, summing to one.
    classification : bool
        Whether outputs are logits to blend as probabilities.
    """

    def __init__(self, members, weights, classification):
        super().__init__()
        # Summed in name order, so a blend rebuilt from a file (whose members
        # may come in another order) adds its floats in the same order.
        self.members = nn.ModuleDict(sorted(members.items()))
        for name in members:
            weight = torch.tensor(float(weights[name]), dtype=torch.float32)
            self.register_buffer(f"weight_{name}", weight)
        self.classification = classification

    def forward(self, X):
        """Return the blended logits (classification) or outputs (regression)."""
        total = 0.0
        for name, member in self.members.items():
            weight = getattr(self, f"weight_{name}")
            outputs = member(X)
            total = total + weight * (
                torch.softmax(outputs, dim=1) if self.classification else outputs
            )
        if self.classification:
            return torch.log(total.clamp_min(1e-12))
        return total


class TeacherFeatures(nn.Module):
    """The last hidden layer of a teacher, as a module (for the hint loss).

    A network exposes it through a ``features(X)`` method, as the default MLP
    does (or a ``features`` submodule, as torchvision's models do); the
    wrappers pass it through. A blend's features are its members' side by
    side, each scaled by the square root of its weight, so that matching them
    is the blend-weighted sum of matching each member's; members without
    hidden features (the linear model) are left out.

    Parameters
    ----------
    teacher : torch.nn.Module
        The teacher, which must have features (see :func:`has_features`).
    """

    def __init__(self, teacher):
        super().__init__()
        self.teacher = teacher

    def forward(self, X):
        """Return the teacher's features of rows ``X``, flattened."""
        return _features(self.teacher, X)


def has_features(module):
    """Return whether :class:`TeacherFeatures` can read a hidden layer of ``module``."""
    if isinstance(module, BlendedTeacher):
        return any(True for _ in _featured_members(module))
    if isinstance(module, (Standardised, LogOf)):
        return has_features(module.module)
    return callable(getattr(module, "features", None))


def _features(module, X):
    if isinstance(module, BlendedTeacher):
        return torch.cat(
            [
                weight.sqrt() * _features(member, X)
                for weight, member in _featured_members(module)
            ],
            dim=1,
        )
    if isinstance(module, Standardised):
        return _features(module.module, X * module.scale + module.mean)
    if isinstance(module, LogOf):
        return _features(module.module, X)
    return module.features(X).flatten(1)


def _featured_members(blend):
    """Yield ``(weight, member)`` for the weighted members with hidden features."""
    for name, member in blend.members.items():
        weight = getattr(blend, f"weight_{name}")
        if weight and has_features(member):
            yield weight, member


def bag(networks, classification):
    """Average ``networks`` with equal weights (bagging), as one teacher."""
    members = {f"fold{i}": network for i, network in enumerate(networks)}
    weights = dict.fromkeys(members, 1.0 / len(members))
    return BlendedTeacher(members, weights, classification)


def linear_module(model, n_features, classes=None):
    """Copy a fitted scikit-learn linear model into an ``nn.Linear``.

    Parameters
    ----------
    model : LogisticRegression or Ridge-like estimator
        Fitted on standardised rows (and, for regression, standardised targets).
    n_features : int
        Input width.
    classes : ndarray of int, default=None
        Classification: the estimator's encoded classes (``0..n_classes-1``);
        a class ``model`` never saw gets a logit of -30.
    """
    coef = np.atleast_2d(model.coef_)
    intercept = np.atleast_1d(model.intercept_)
    if classes is None:
        weight, bias = coef, intercept
    else:
        weight = np.zeros((len(classes), n_features))
        bias = np.full(len(classes), _UNSEEN_CLASS_LOGIT)
        if len(model.classes_) == 2 and coef.shape[0] == 1:
            # Binary logistic regression has one logit; [0, z] is equivalent.
            bias[model.classes_] = [0.0, intercept[0]]
            weight[model.classes_[1]] = coef[0]
        else:
            weight[model.classes_] = coef
            bias[model.classes_] = intercept
    layer = nn.Linear(n_features, weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return layer


def blend_outputs(outputs, weights, classification):
    """Blend candidate outputs (logits or values) with ``weights``, in numpy."""
    total = 0.0
    for name, weight in weights.items():
        if weight:
            out = outputs[name]
            total = total + weight * (_softmax(out) if classification else out)
    return total


def blend_loss(outputs, weights, y, classification):
    """Log loss (classification, ``y`` encoded) or mean squared error of a blend."""
    blended = blend_outputs(outputs, weights, classification)
    if classification:
        return float(-np.mean(np.log(np.clip(blended[np.arange(len(y)), y], 1e-12, 1))))
    return float(np.mean((blended - y) ** 2))


def simplex_grid(n_candidates, step=_WEIGHT_STEP):
    """Every weight vector on the ``step`` grid of the simplex, in a fixed order."""
    steps = int(round(1 / step))
    combos = [
        combo
        for combo in itertools.product(range(steps + 1), repeat=n_candidates)
        if sum(combo) == steps
    ]
    return np.array(combos, dtype=np.float64) / steps


def choose_weights(outputs, y, classification, n_bootstraps=_BOOTSTRAPS, seed=0):
    """Blend weights from out-of-fold outputs: bootstrap-averaged best blends.

    For each of ``n_bootstraps`` resamples of the rows, the blend on the
    simplex grid with the smallest loss is found; the weights are the mean of
    those blends. ``n_bootstraps=0`` takes the best blend on the rows as they
    are.

    Returns
    -------
    weights : dict of str to float
        Summing to one.
    losses : dict of str to float
        The out-of-fold loss of each candidate alone and of the chosen
        ``"blend"``.
    """
    names = list(outputs)
    grid = simplex_grid(len(names))
    y = np.asarray(y)
    n_rows = len(y)
    rng = np.random.default_rng(seed)
    # Each resample as row counts: its loss for every blend is one product.
    counts = np.vstack(
        [np.ones(n_rows)]
        + [
            np.bincount(rng.integers(0, n_rows, n_rows), minlength=n_rows)
            for _ in range(n_bootstraps)
        ]
    )
    totals = np.zeros((len(grid), len(counts)))
    for start in range(0, n_rows, _CHUNK_ROWS):
        rows = slice(start, start + _CHUNK_ROWS)
        chunk = {name: outputs[name][rows] for name in names}
        totals += _row_losses(chunk, names, grid, y[rows], classification) @ (
            counts[:, rows].T
        )
    best = totals.argmin(axis=0)
    chosen = grid[best[1:]].mean(axis=0) if n_bootstraps else grid[best[0]]
    weights = {name: float(w) for name, w in zip(names, chosen)}
    losses = {
        name: blend_loss(
            outputs, {n: float(n == name) for n in names}, y, classification
        )
        for name in names
    }
    losses["blend"] = blend_loss(outputs, weights, y, classification)
    return weights, losses


def _row_losses(outputs, names, grid, y, classification):
    """Per-row loss of every grid blend: an array (n_blends, n_rows)."""
    if classification:
        rows = np.arange(len(y))
        # Only the true class's blended probability enters the log loss.
        true_proba = np.stack([_softmax(outputs[n])[rows, y] for n in names])
        return -np.log(np.clip(grid @ true_proba, 1e-12, 1))
    stacked = np.stack([outputs[n] for n in names])  # (candidates, rows, outputs)
    blended = np.einsum("gc,cro->gro", grid, stacked)
    return ((blended - y) ** 2).mean(axis=2)


def _softmax(logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    proba = np.exp(logits)
    return proba / proba.sum(axis=1, keepdims=True)
