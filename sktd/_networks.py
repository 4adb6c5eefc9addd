"""torch modules: the default MLP and the wrappers the stages build around networks.

Wrappers let a user's pretrained network take standardised rows
(:class:`Standardised`), turn probabilities into logits (:class:`LogOf`),
blend several teachers into one (:class:`BlendedTeacher`), soften or sharpen
a teacher's logits (:class:`Tempered`), expose a teacher's hidden layer
(:class:`TeacherFeatures`) or a student's adapted one (:class:`HintedStudent`).
"""

import copy

import numpy as np
import torch
from torch import nn

# Logit given to a class a linear model never saw (probability ~0).
UNSEEN_CLASS_LOGIT = -30.0

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "logistic": nn.Sigmoid,
    "gelu": nn.GELU,
}


class MLP(nn.Module):
    """A multi-layer perceptron split into a ``body`` and a linear ``head``.

    The split lets transfer strategies treat the feature extractor and the
    output layer differently (freeze the body, re-initialise the head).

    Parameters
    ----------
    n_features : int
        Width of the input rows.
    n_outputs : int
        Number of outputs: classes (logits) or regression targets.
    hidden_layer_sizes : tuple of int, default=(128, 64)
        Width of each hidden layer.
    activation : {"relu", "tanh", "logistic", "gelu"}, default="relu"
        Non-linearity after each hidden layer.
    dropout : float, default=0.0
        Dropout probability after each hidden activation.

    Examples
    --------
    >>> import torch
    >>> from sktd._networks import MLP
    >>> MLP(4, 3, hidden_layer_sizes=(8,))(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        n_features,
        n_outputs,
        hidden_layer_sizes=(128, 64),
        activation="relu",
        dropout=0.0,
    ):
        super().__init__()
        layers = []
        width = n_features
        for size in hidden_layer_sizes:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, X):
        """Return the raw outputs (logits for classification)."""
        return self.head(self.body(X))

    def features(self, X):
        """Return the last hidden layer's activations (the head's input)."""
        return self.body(X)


class HintedStudent(nn.Module):
    """A student that also outputs its hidden features mapped to the teacher's.

    The distillation stage trains this wrapper when a hint (feature-level) loss
    is asked for (FitNets, Romero et al., 2015): ``adapter``, a linear map
    from the student's last hidden layer to the teacher's, lets a narrow
    student be compared with a wide teacher. Only ``student`` is kept after
    training.

    Parameters
    ----------
    student : torch.nn.Module
        The student; its ``features(X)`` gives its last hidden layer.
    adapter : torch.nn.Linear
        Maps the student's features to the teacher's feature width.
    """

    def __init__(self, student, adapter):
        super().__init__()
        self.student = student
        self.adapter = adapter

    def forward(self, X):
        """Return the student's outputs followed by its adapted features."""
        features = self.student.features(X).flatten(1)
        return torch.cat([self.student(X), self.adapter(features)], dim=1)


def count_parameters(module):
    """Return the size of ``module``: its learnable scalars, and its tabular members'.

    A scikit-learn model in a blended teacher has no torch parameters; its
    ``model_size`` (coefficients, or tree nodes) counts instead, so that a
    teacher that is mostly gradient boosting does not report a size of 0.
    """
    weights = sum(p.numel() for p in module.parameters() if p.requires_grad)
    tabular = sum(
        part.model_size() for part in module.modules() if hasattr(part, "model_size")
    )
    return weights + tabular


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


class Tempered(nn.Module):
    """Divide a classifier's logits by a temperature.

    Logits at or below the unseen-class logit (``-30``, a class the model
    never saw) stay as they are: a temperature calibrates what the model
    knows, and does not make a class it never saw possible. Used by
    :func:`tempered` for networks whose output layer it cannot rescale.

    Parameters
    ----------
    module : torch.nn.Module
        Returns logits.
    temperature : float
        Above one softens the probabilities, below one sharpens them.
    """

    def __init__(self, module, temperature):
        super().__init__()
        self.module = module
        self.temperature = float(temperature)

    def forward(self, X):
        """Return the module's logits divided by the temperature."""
        return divide_logits(self.module(X), self.temperature)


def divide_logits(logits, temperature):
    """``logits / temperature``, but for the unseen-class logits, which stay.

    The one rule of tempering, for torch tensors and numpy arrays alike: the
    guard calibrates out-of-fold outputs with it, the teachers apply it.
    """
    where = torch.where if isinstance(logits, torch.Tensor) else np.where
    return where(logits <= UNSEEN_CLASS_LOGIT, logits, logits / temperature)


def tempered(module, temperature):
    """Return ``module`` with its logits divided by ``temperature``.

    sktd's own networks come back as copies whose output layer is rescaled
    (the same structure and parameter names, so model files store them as
    any network); a bag of networks tempers each member; a module with a
    ``with_temperature(t)`` method (the scikit-learn candidates) returns its
    own tempered copy; any other module is wrapped in :class:`Tempered`.
    ``module`` itself is never changed.
    """
    temperature = float(temperature)
    if temperature == 1.0:
        return module
    if isinstance(module, BlendedTeacher):
        members = {
            name: tempered(member, temperature)
            for name, member in module.members.items()
        }
        weights = {name: float(getattr(module, f"weight_{name}")) for name in members}
        return BlendedTeacher(members, weights, module.classification)
    if callable(getattr(module, "with_temperature", None)):
        return module.with_temperature(temperature)
    if type(module) is MLP or type(module) is nn.Linear:
        module = copy.deepcopy(module)
        layer = module.head if isinstance(module, MLP) else module
        with torch.no_grad():
            # A row of a linear model for a class it never saw (no weights,
            # the unseen-class bias) keeps its logit, as divide_logits does.
            unseen = (layer.weight == 0).all(dim=1) & (layer.bias <= UNSEEN_CLASS_LOGIT)
            scale = torch.where(unseen, 1.0, 1.0 / temperature)
            layer.weight.mul_(scale[:, None])
            layer.bias.mul_(scale)
        return module
    return Tempered(module, temperature)


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
    if isinstance(module, (Standardised, LogOf, Tempered)):
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
    if isinstance(module, (LogOf, Tempered)):
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
        bias = np.full(len(classes), UNSEEN_CLASS_LOGIT)
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


# Layers that act on each value alone: the same on a stack of networks' rows.
_ELEMENTWISE = (*ACTIVATIONS.values(), nn.Dropout, nn.Identity)


class StackedLinear(nn.Module):
    """The ``nn.Linear`` layers of ``k`` networks, applied side by side.

    Takes ``(n_rows, k, in_features)`` and returns ``(n_rows, k,
    out_features)``: network ``i`` maps its own column of rows with its own
    weights, all ``k`` in one batched product. Gradients and Adam's updates
    stay per network, so training the stack trains each network as alone.

    Parameters
    ----------
    layers : list of torch.nn.Linear
        The layers to stack, all of one shape; copied, never changed.
    """

    def __init__(self, layers):
        super().__init__()
        # (k, in, out), as torch.baddbmm multiplies (k, rows, in) by it.
        self.weight = nn.Parameter(
            torch.stack([layer.weight.detach().T for layer in layers]).clone()
        )
        self.bias = nn.Parameter(
            torch.stack([layer.bias.detach() for layer in layers])[:, None, :].clone()
        )

    def forward(self, X):
        """Map each network's column of ``X`` with its own weights."""
        return torch.baddbmm(self.bias, X.transpose(0, 1), self.weight).transpose(0, 1)


def stackable(module):
    """Whether :func:`stack_networks` can stack copies of ``module``.

    The default :class:`MLP` and ``nn.Sequential`` stacks of ``nn.Linear``
    (with bias) and activation layers can: their forward is known to map each
    row alone through those layers. Anything else (a user's own ``forward``)
    cannot.
    """
    if isinstance(module, nn.Linear):
        return module.bias is not None
    if isinstance(module, _ELEMENTWISE):
        return True
    if isinstance(module, (MLP, nn.Sequential)):
        return all(stackable(child) for child in module.children())
    return False


def stack_networks(networks):
    """Return one module computing ``networks`` side by side.

    The stack takes ``(n_rows, k, n_features)``, column ``i`` for network
    ``i``, and returns ``(n_rows, k, n_outputs)``. It keeps the first
    network's structure and names (``body.0``, ``head``), every ``nn.Linear``
    replaced by a :class:`StackedLinear`, so that per-layer settings (frozen
    layers, per-layer learning rates, L2-SP's source weights) apply to it as
    to one network. The networks must share one architecture for which
    :func:`stackable` holds.
    """
    template = networks[0]
    if not stackable(template):
        raise TypeError(f"{type(template).__name__} cannot be stacked.")
    stack = copy.deepcopy(template)
    _replace_linear(stack, networks)
    return stack


def _replace_linear(stack, networks):
    for name, child in list(stack.named_children()):
        parts = [getattr(network, name) for network in networks]
        if isinstance(child, nn.Linear):
            setattr(stack, name, StackedLinear(parts))
        else:
            _replace_linear(child, parts)


def unstack_networks(stack, template):
    """Return the networks of a stack, each a copy of ``template`` with its weights.

    ``template`` is one network of the architecture :func:`stack_networks`
    stacked; the stack's ``k`` networks come back in order, in ``eval`` mode.
    """
    k = next(stack.parameters()).shape[0]
    networks = []
    for i in range(k):
        network = copy.deepcopy(template)
        _copy_weights(network, stack, i)
        networks.append(network.eval())
    return networks


def _copy_weights(network, stack, i):
    for name, child in network.named_children():
        stacked = getattr(stack, name)
        if isinstance(child, nn.Linear):
            with torch.no_grad():
                child.weight.copy_(stacked.weight[i].T)
                child.bias.copy_(stacked.bias[i, 0])
        else:
            _copy_weights(child, stacked, i)
