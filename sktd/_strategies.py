"""Transfer strategies: how a source-trained network moves to the target rows.

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

:class:`TransferStrategy` applies one of them (``fine_tune``), or fine-tunes on
the target rows rehearsed among source rows (``rehearse``), through a stage
trainer; both take arrays and return fitted nets.
"""

import copy

import numpy as np
import torch
from skorch import NeuralNet
from torch import nn

from ._callbacks import GradualUnfreezing, weighted_layers
from ._nets import STACKED_NETS, L2SPNet, SupervisedNet
from ._networks import LogOf, Standardised, stack_networks
from ._trainer import INIT_LOCK

TRANSFER_STRATEGIES = ("finetune", "gradual", "l2sp", "discriminative")

# Learning-rate factor between a layer and the one above it ("discriminative").
_LAYER_LR_DECAY = 0.5

# Rehearsal: at most this many source rows are replayed among the labelled
# target rows, each target row repeated until the target rows weigh as much as
# the source sample, but at most this many times; for at most this many epochs.
REHEARSAL_SOURCE_ROWS = 5000
REHEARSAL_MAX_REPEATS = 10
REHEARSAL_EPOCHS = 20


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


class TransferStrategy:
    """Fine-tune copies of a source network on target rows, with one strategy.

    Parameters
    ----------
    strategy : {"finetune", "gradual", "l2sp", "discriminative"}
        See the module's docstring.
    l2sp_strength : float
        Coefficient of the L2-SP penalty.
    trainer : StageTrainer
        Builds and fits the nets.
    spec : None, torch.nn.Module or skorch.NeuralNet
        The user's ``teacher``: a skorch net's optimizer settings apply.
    """

    def __init__(self, strategy, l2sp_strength, trainer, spec):
        self.strategy = strategy
        self.l2sp_strength = l2sp_strength
        self.trainer = trainer
        self.spec = spec

    def fine_tune(
        self, module, X, y, seed, progress=True, max_epochs=None, sample_weight=None
    ):
        """Train a copy of ``module`` on ``X``, ``y``; return the fitted net.

        ``max_epochs`` caps the stage's epoch budget; ``sample_weight`` weighs
        the rows' losses.
        """
        module = copy.deepcopy(module)
        net_class, extra, callbacks = self._settings(module, max_epochs)
        return self._train(
            module,
            X,
            y,
            seed,
            net_class,
            callbacks=callbacks,
            progress=progress,
            sample_weight=sample_weight,
            **extra,
        )

    def _settings(self, module, max_epochs=None):
        """Return the strategy's net class, net settings and callbacks for ``module``.

        ``max_epochs`` caps the stage's epoch budget.
        """
        net_class, extra, callbacks = strategy_settings(
            self.strategy,
            module,
            self.trainer.learning_rate(self.spec),
            self.l2sp_strength,
            self.trainer.settings.n_iter_no_change,
        )
        if max_epochs is not None:
            extra["max_epochs"] = self.trainer.max_epochs(self.spec, cap=max_epochs)
        return net_class, extra, callbacks

    def rehearse(
        self,
        module,
        X_pool,
        y_pool,
        source_rows,
        X,
        y,
        seed,
        sample_weight=None,
        pool_weight=None,
    ):
        """Fine-tune a copy of ``module`` on target rows rehearsed among source rows.

        Fine-tuning on a few target rows alone forgets what the source taught
        about the inputs those rows do not cover; replaying source rows with
        them keeps it (rehearsal, Robins 1995), as a model trained on both
        would, at the cost of a few epochs. The target rows ``X``, ``y`` are
        repeated so that they weigh about as much as the source sample, which
        is drawn from ``X_pool[source_rows]`` by index: the source is never
        copied whole. ``sample_weight`` (of ``X``) and ``pool_weight`` (of
        ``X_pool``) weigh the rows' losses; both or neither.
        """
        X, y, sample_weight = rehearsal_rows(
            X_pool, y_pool, source_rows, X, y, seed, sample_weight, pool_weight
        )
        max_epochs = self.trainer.max_epochs(self.spec, cap=REHEARSAL_EPOCHS)
        return self._train(
            copy.deepcopy(module),
            X,
            y,
            seed,
            SupervisedNet,
            progress=False,
            sample_weight=sample_weight,
            max_epochs=max_epochs,
        )

    def fine_tune_folds(self, module, parts, seed, max_epochs=None):
        """Fine-tune one copy of ``module`` per fold, side by side.

        ``parts`` holds each fold's ``(X, y, sample_weight)``. The copies
        train as one stack (:func:`~sktd._networks.stack_networks`), each on
        its own rows with the strategy's settings, as :meth:`fine_tune` would
        train it alone; they stop together, when their summed loss plateaus.
        ``module`` must be :func:`~sktd._networks.stackable`. Returns the
        fitted modules.
        """
        stack = stack_networks([module] * len(parts))
        net_class, extra, callbacks = self._settings(stack, max_epochs)
        return self._train_stack(
            stack, module, parts, seed, net_class, callbacks=callbacks, **extra
        )

    def rehearse_folds(
        self, module, X_pool, y_pool, source_rows, parts, seeds, pool_weight=None
    ):
        """Rehearse one copy of ``module`` per fold, side by side.

        As :meth:`rehearse` on each fold's target rows ``(X, y,
        sample_weight)`` of ``parts``, with its seed of ``seeds``; the copies
        train as one stack and stop together (see :meth:`fine_tune_folds`).
        Returns the fitted modules.
        """
        rehearsals = [
            rehearsal_rows(
                X_pool, y_pool, source_rows, X, y, seed, sample_weight, pool_weight
            )
            for (X, y, sample_weight), seed in zip(parts, seeds)
        ]
        stack = stack_networks([module] * len(parts))
        max_epochs = self.trainer.max_epochs(self.spec, cap=REHEARSAL_EPOCHS)
        return self._train_stack(
            stack, module, rehearsals, seeds[0], SupervisedNet, max_epochs=max_epochs
        )

    def _train_stack(self, stack, template, parts, seed, net_class, **options):
        return self.trainer.fit_stack(
            STACKED_NETS[net_class],
            stack,
            template,
            parts,
            self.spec,
            stage="transfer",
            seed=seed,
            **options,
        )

    def _train(
        self, module, X, y, seed, net_class, progress, sample_weight=None, **options
    ):
        """Train ``module`` (a copy the caller made) as a transfer-stage net."""
        module.train()
        net = self.trainer.net(
            net_class,
            module,
            self.spec,
            stage="transfer",
            seed=seed,
            progress=progress,
            **options,
        )
        return self.trainer.fit(net, X, y, stratify=True, sample_weight=sample_weight)


def rehearsal_rows(
    X_pool, y_pool, source_rows, X, y, seed, sample_weight=None, pool_weight=None
):
    """Return the rows, labels and weights of a rehearsal (see ``rehearse``).

    At most :data:`REHEARSAL_SOURCE_ROWS` source rows drawn from
    ``X_pool[source_rows]`` with ``seed``, followed by the target rows ``X``
    repeated until they weigh about as much, at most
    :data:`REHEARSAL_MAX_REPEATS` times.
    """
    rng = np.random.default_rng(seed)
    n_source = min(len(source_rows), REHEARSAL_SOURCE_ROWS)
    picked = np.sort(rng.choice(len(source_rows), n_source, replace=False))
    replayed = source_rows[picked]
    repeats = int(np.clip(n_source // len(X), 1, REHEARSAL_MAX_REPEATS))
    X = np.concatenate([X_pool[replayed], *[X] * repeats])
    y = np.concatenate([y_pool[replayed], *[y] * repeats])
    if sample_weight is not None:
        sample_weight = np.concatenate(
            [pool_weight[replayed], *[sample_weight] * repeats]
        )
    return X, y, sample_weight


class Pretrained:
    """A teacher trained elsewhere, kept as it is through ``clone``.

    scikit-learn's ``clone`` (so ``GridSearchCV``, ``cross_val_score``) rebuilds
    a skorch net from its parameters, which drops its trained weights: a fitted
    net passed as ``teacher`` would silently be pretrained again from scratch.
    Wrapped in ``Pretrained``, the weights are copied once and travel with the
    estimator's parameters (``clone`` deep-copies objects without
    ``get_params``); the source stage is skipped.

    Parameters
    ----------
    teacher : torch.nn.Module or fitted skorch.NeuralNet
        The pretrained network. A skorch classifier trained with ``NLLLoss``
        (a module ending in a softmax) outputs probabilities; they become
        logits.

    Examples
    --------
    >>> import torch
    >>> from sklearn.base import clone
    >>> from sktd import Pretrained, TransferDistillClassifier
    >>> network = torch.nn.Linear(4, 3)
    >>> model = TransferDistillClassifier(teacher=Pretrained(network))
    >>> copied = clone(model).teacher.module
    >>> bool(torch.equal(copied.weight, network.weight))
    True
    """

    def __init__(self, teacher):
        if isinstance(teacher, NeuralNet):
            if not getattr(teacher, "initialized_", False):
                raise ValueError(
                    "Pretrained(teacher) needs a fitted skorch net or a torch "
                    "module; this skorch net is not initialized."
                )
            self.outputs_probabilities = isinstance(
                getattr(teacher, "criterion_", None), nn.NLLLoss
            )
            self.module = copy.deepcopy(teacher.module_)
        elif isinstance(teacher, nn.Module):
            self.outputs_probabilities = False
            self.module = copy.deepcopy(teacher)
        else:
            raise TypeError(
                "Pretrained(teacher) needs a torch.nn.Module or a fitted skorch "
                f"net, got {type(teacher).__name__}."
            )

    def __repr__(self):
        return f"Pretrained({type(self.module).__name__})"


def adapt_pretrained(spec, n_outputs, input_scaler, output_scaler, seed):
    """Wrap the user's pretrained teacher to take and give standardised values.

    Parameters
    ----------
    spec : torch.nn.Module, skorch.NeuralNet or Pretrained
        The pretrained teacher; it is copied, never changed.
    n_outputs : int
        The task's output width: the teacher's head is re-initialised at this
        width if its own differs.
    input_scaler : StandardScaler
        The estimator's input scaling, undone for the teacher.
    output_scaler : StandardScaler or None
        Regression: the estimator's target scaling, applied to the outputs.
        ``None`` for classification, where a skorch classifier trained with
        ``NLLLoss`` (probabilities) has its outputs turned into logits.

    Returns
    -------
    module : Standardised
        The teacher, on the device of its weights.
    resized : bool
        Whether its head was re-initialised (it must then be trained).
    """
    outputs_probabilities = isinstance(spec, NeuralNet) and isinstance(
        getattr(spec, "criterion_", None), nn.NLLLoss
    )
    if isinstance(spec, Pretrained):
        module, outputs_probabilities = spec.module, spec.outputs_probabilities
    elif isinstance(spec, NeuralNet):
        if not getattr(spec, "initialized_", False):
            raise ValueError(
                "teacher_pretrained=True, but the skorch net given as teacher is "
                "not fitted; scikit-learn's clone (GridSearchCV, cross_val_score) "
                "rebuilds a net without its weights. Pass "
                "teacher=sktd.Pretrained(net), which keeps them."
            )
        module = spec.module_
    else:
        module = spec
    module = copy.deepcopy(module)
    if not isinstance(module, nn.Module):
        raise TypeError(
            "teacher_pretrained=True needs teacher to be a torch.nn.Module "
            f"or an initialized skorch net, got {type(spec).__name__}."
        )
    if output_scaler is None and outputs_probabilities:
        # skorch classifiers trained with NLLLoss output probabilities.
        module = LogOf(module)
    with INIT_LOCK:
        resized = fit_head(module, n_outputs, seed=seed)
    output_mean, output_scale = 0.0, 1.0
    if output_scaler is not None:
        output_mean, output_scale = output_scaler.mean_, output_scaler.scale_
    wrapped = Standardised(
        module, input_scaler.mean_, input_scaler.scale_, output_mean, output_scale
    )
    return wrapped, resized
