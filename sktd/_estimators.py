"""The transfer-then-distil estimators.

``fit`` runs three stages, each a fresh skorch net:

1. :meth:`~BaseTransferDistill._pretrain` a teacher on the labelled source rows
   (skipped for a teacher the user pretrained);
2. :meth:`~BaseTransferDistill._transfer` it to the labelled target rows with a
   transfer strategy, and guard against negative transfer by blending it with
   the source network, a rehearsed fine-tune and target-only models as
   held-out rows advise;
3. :meth:`~BaseTransferDistill._distil` a small student from the teacher over the
   transfer set, every source and target row, labelled or not.
"""

import contextlib
import copy
import threading
import time
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
from skorch import NeuralNet
from skorch.callbacks import EarlyStopping
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from torch import nn

from ._domains import (
    Domains,
    check_domains,
    check_finite_labels,
    check_sample_domain,
    is_unlabelled_class,
)
from ._losses import ClassificationDistillationLoss, RegressionDistillationLoss
from ._networks import MLP, HintedStudent, count_parameters
from ._persistence import export_onnx
from ._training import (
    ConsistentDistillationNet,
    DistillationNet,
    FiniteLossGuard,
    NonFiniteLossError,
    StageProgress,
    SupervisedNet,
    TensorBatches,
    fit_scaler,
    forward_rows,
    standardise,
)
from ._transfer import (
    CANDIDATES,
    TRANSFER_STRATEGIES,
    BlendedTeacher,
    LogOf,
    Standardised,
    TeacherFeatures,
    bag,
    choose_weights,
    fit_head,
    has_features,
    linear_module,
    strategy_settings,
)

_INIT_LOCK = threading.Lock()

# Restarts of a stage whose loss turned NaN, each with a 10x smaller step.
_NAN_RETRIES = 2

# The guard needs this many labelled target rows to hold some out; it uses at
# most this many folds.
_GUARD_MIN_ROWS = 10
_GUARD_FOLDS = 5

# Ridge penalties the target-only regression candidate chooses from.
_RIDGE_ALPHAS = np.logspace(-3, 3, 13)

# Rehearsal: at most this many source rows are replayed among the labelled
# target rows, each target row repeated until the target rows weigh as much as
# the source sample, but at most this many times; for at most this many epochs.
_REHEARSAL_SOURCE_ROWS = 5000
_REHEARSAL_MAX_REPEATS = 10
_REHEARSAL_EPOCHS = 20


class BaseTransferDistill(BaseEstimator):
    """Shared machinery of the classifier and the regressor.

    Subclasses say how labels are validated and encoded, which supervised
    criterion and distillation loss to use, and how outputs become
    predictions.
    """

    _parameter_constraints = {
        "teacher": [None, HasMethods(["forward"]), NeuralNet],
        "student": [None, HasMethods(["forward"]), NeuralNet],
        "teacher_pretrained": [StrOptions({"auto"}), "boolean"],
        "teacher_hidden_layer_sizes": ["array-like"],
        "student_hidden_layer_sizes": ["array-like"],
        "transfer_strategy": [StrOptions(set(TRANSFER_STRATEGIES))],
        "l2sp_strength": [Interval(Real, 0, None, closed="left")],
        "negative_transfer_guard": ["boolean"],
        "alpha": [Interval(Real, 0, 1, closed="both")],
        "hint_weight": [Interval(Real, 0, None, closed="left")],
        "consistent_teaching": [None, StrOptions({"noise", "mixup"})],
        "noise_scale": [Interval(Real, 0, None, closed="neither")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "device": [str, torch.device],
    }

    def __init__(
        self,
        teacher=None,
        student=None,
        *,
        teacher_pretrained="auto",
        teacher_hidden_layer_sizes=(128, 64),
        student_hidden_layer_sizes=(32, 16),
        transfer_strategy="l2sp",
        l2sp_strength=0.01,
        negative_transfer_guard=True,
        alpha=0.9,
        hint_weight=0.0,
        consistent_teaching=None,
        noise_scale=0.1,
        learning_rate_init=1e-3,
        batch_size="auto",
        max_iter=200,
        weight_decay=0.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        random_state=None,
        verbose=0,
        device="cpu",
    ):
        self.teacher = teacher
        self.student = student
        self.teacher_pretrained = teacher_pretrained
        self.teacher_hidden_layer_sizes = teacher_hidden_layer_sizes
        self.student_hidden_layer_sizes = student_hidden_layer_sizes
        self.transfer_strategy = transfer_strategy
        self.l2sp_strength = l2sp_strength
        self.negative_transfer_guard = negative_transfer_guard
        self.alpha = alpha
        self.hint_weight = hint_weight
        self.consistent_teaching = consistent_teaching
        self.noise_scale = noise_scale
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.device = device

    # ------------------------------------------------------------------ fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, X_target=None, y_target=None, sample_domain=None):
        """Pretrain a teacher, transfer it to the target, distil a student.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Source rows (split form) or source and target rows (stacked form,
            with ``sample_domain``).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Labels of ``X``. In the stacked form, target rows may be
            unlabelled: ``-1`` for classifiers, ``NaN`` for regressors.
        X_target : array-like of shape (n_target, n_features), default=None
            Target rows (split form).
        y_target : array-like of shape (n_target,), default=None
            Labels of ``X_target``, ``-1`` / ``NaN`` where unknown. ``None``
            with ``X_target`` given means every target row is unlabelled.
        sample_domain : array-like of shape (n_samples,), default=None
            Stacked form: ``> 0`` on source rows, ``< 0`` on target rows.
            Cannot be combined with ``X_target``.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        previous_state = self.__dict__.copy()
        try:
            self._check_device()
            self._check_hint()
            domains = self._validate_domains(X, y, X_target, y_target, sample_domain)
            domains.seed = check_random_state(self.random_state).randint(2**31 - 1)
            self.history_ = {}
            with _seeded_torch(domains.seed):
                pretrained = self._pretrain(domains)
                self.teacher_ = self._transfer(pretrained, domains)
                self.student_ = self._distil(self.teacher_, domains)
        except BaseException:
            # An error or a KeyboardInterrupt leaves the estimator as it was
            # (fitted before, or unfitted), never half-fitted.
            self.__dict__.clear()
            self.__dict__.update(previous_state)
            raise
        self.n_iter_ = len(self.student_.history)
        return self

    def _check_device(self):
        """Refuse a ``device`` torch cannot parse or this machine does not have."""
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(
                f"device={self.device!r} is not a torch device; use 'cpu', "
                "'cuda', 'cuda:1', 'mps', ..."
            ) from error
        availability = {
            "cuda": ("torch.cuda.is_available()", torch.cuda.is_available),
            "mps": (
                "torch.backends.mps.is_available()",
                torch.backends.mps.is_available,
            ),
        }
        if device.type not in availability:
            return
        check, is_available = availability[device.type]
        if not is_available():
            raise ValueError(
                f"device={self.device!r}, but this machine or torch build has no "
                f"{device.type} device ({check} is False); use device='cpu'."
            )

    def _pretrain(self, domains):
        """Stage 1: train the teacher on the labelled source rows.

        A teacher the user pretrained is taken as it is (its head resized to
        the task if needed) and the stage records no history.
        """
        if self._teacher_is_pretrained():
            module = self._pretrained_module(domains)
            net = self._make_net(
                SupervisedNet,
                module,
                self._supervised_criterion(),
                self.teacher,
                stage="pretrain",
                seed=domains.seed,
            )
            net.initialize()
            net.module_.eval()
            self.history_["pretrain"] = None
            return net
        module = self._build_module(
            self.teacher,
            self.teacher_hidden_layer_sizes,
            domains.X.shape[1],
            seed=domains.seed,
        )
        net = self._make_net(
            SupervisedNet,
            module,
            self._supervised_criterion(),
            self.teacher,
            stage="pretrain",
            seed=domains.seed,
        )
        X, y = _rows(domains.X, domains.source), _rows(domains.y, domains.source)
        net = self._fit_net(net, X, y, stratify=True)
        self.history_["pretrain"] = net.history
        return net

    def _transfer(self, pretrained, domains):
        """Stage 2: move the teacher to the labelled target rows, guarded.

        A copy of the pretrained network is trained on the labelled target
        rows with ``transfer_strategy``. With ``negative_transfer_guard``, the
        teacher is then the blend of five candidates that predicts held-out
        labelled target rows best: the pretrained network, the transferred
        one, the pretrained network fine-tuned on the target rows rehearsed
        among source rows, and two target-only models (linear, and a bag of
        the teacher's architecture trained from scratch on the guard's folds).
        With no labelled target row the pretrained network is the teacher.
        """
        rows = domains.labelled_target
        self.transfer_losses_ = None
        if not rows.any():
            self.history_["transfer"] = None
            return self._choose_teacher({"pretrained": pretrained.module_})
        X, y = domains.X[rows], domains.y[rows]
        transferred = self._fine_tune(pretrained.module_, X, y, domains.seed + 1)
        self.history_["transfer"] = transferred.history
        if not self.negative_transfer_guard or rows.sum() < _GUARD_MIN_ROWS:
            return self._choose_teacher({"transferred": transferred.module_})
        weights, self.transfer_losses_, fold_networks = self._weigh_candidates(
            pretrained.module_, X, y, domains
        )
        candidates = {
            "pretrained": pretrained.module_,
            "transferred": transferred.module_,
            # Networks trained on a few target rows vary a lot from one
            # initialisation and subset to the next: their bag, the guard's
            # fold networks averaged, is steadier than one refit on all rows.
            "target_network": bag(fold_networks, self._is_classifier_task()),
        }
        if weights["rehearsed"]:
            candidates["rehearsed"] = self._rehearse(
                pretrained.module_, domains, X, y, domains.seed + 4
            ).module_
        if weights["target_linear"]:
            candidates["target_linear"] = self._target_linear_module(X, y)
        return self._choose_teacher(candidates, weights)

    def _distil(self, teacher, domains):
        """Stage 3: train the student on the teacher's outputs over every row.

        When some target rows are labelled, they are the only hard labels:
        the student serves the target task, and source labels may disagree
        with it. Without them, the source labels are the task's.
        """
        teacher_out = forward_rows(teacher.module_, domains.X, self.device)
        if not np.isfinite(teacher_out).all():
            raise ValueError(
                "The teacher predicts NaN or infinity on some rows; check the "
                "inputs for extreme values or lower learning_rate_init."
            )
        y = domains.y
        if domains.labelled_target.any():
            y = y.copy()
            y[domains.is_source] = self._unlabelled_marker()
        targets = [teacher_out, self._labels_as_columns(y)]
        module = self._build_module(
            self.student,
            self.student_hidden_layer_sizes,
            domains.X.shape[1],
            seed=domains.seed + 2,
        )
        extra = {}
        if self._hints_from(teacher.module_):
            hints = self._teacher_hints(teacher.module_, domains.X)
            targets.append(hints)
            module = self._hinted(
                module, domains.X.shape[1], hints.shape[1], seed=domains.seed + 5
            )
            extra = {"hint_weight": self.hint_weight, "n_hint_columns": hints.shape[1]}
        targets = np.hstack(targets).astype(np.float32)
        net_class = DistillationNet
        if self.consistent_teaching is not None:
            net_class = ConsistentDistillationNet
            extra = {
                "teacher_module": teacher.module_,
                "perturbation": self.consistent_teaching,
                "noise_scale": self.noise_scale,
                "perturbation_seed": domains.seed + 3,
                "unlabelled_marker": float(self._unlabelled_marker()),
            }
        net = self._make_net(
            net_class,
            module,
            self._distillation_criterion(),
            self.student,
            stage="distil",
            seed=domains.seed + 2,
            **extra,
        )
        # Early stopping watches target rows when there are any: the student
        # is judged on the target task.
        validate_on = None if domains.is_source.all() else ~domains.is_source
        net = self._fit_net(
            net, domains.X, targets, stratify=False, validate_on=validate_on
        )
        if isinstance(net.module_, HintedStudent):
            # The adapter served training only: the student is what predicts.
            net.module_ = net.module_.student
        self.history_["distil"] = net.history
        return net

    # ------------------------------------------------------- hint steps

    def _check_hint(self):
        """Refuse, before any training, a hint loss the distillation cannot use."""
        if not self.hint_weight:
            return
        if self.consistent_teaching is not None:
            raise ValueError(
                f"hint_weight={self.hint_weight!r} cannot be combined with "
                f"consistent_teaching={self.consistent_teaching!r}: the teacher's "
                "features are computed once, on the unperturbed rows. Set "
                "hint_weight=0 or consistent_teaching=None."
            )
        spec = self.student
        student = spec.module if isinstance(spec, NeuralNet) else spec
        if student is not None and not callable(getattr(student, "features", None)):
            name = getattr(student, "__name__", type(student).__name__)
            raise ValueError(
                f"hint_weight={self.hint_weight!r} needs a student with a "
                f"features(X) method returning its last hidden layer; the student "
                f"{name} has none. Add one, or set hint_weight=0."
            )

    def _hints_from(self, teacher):
        """Whether the distillation adds a hint loss: the teacher must allow it."""
        if not self.hint_weight:
            return False
        if not has_features(teacher):
            warnings.warn(
                f"hint_weight={self.hint_weight!r} has no effect: the teacher "
                f"({self.transfer_choice_!r}) has no hidden layer to match.",
                UserWarning,
                stacklevel=4,
            )
            return False
        return True

    def _teacher_hints(self, teacher, X):
        """Return the teacher's features on every row, each column standardised."""
        hints = forward_rows(TeacherFeatures(teacher), X, self.device)
        scale = hints.std(axis=0)
        # A unit that never fires (a dead ReLU) carries nothing to match.
        scale[scale < 1e-6] = 1.0
        return (hints - hints.mean(axis=0)) / scale

    def _hinted(self, student, n_features, n_hints, seed):
        """Wrap ``student`` with a linear adapter from its features to the hints."""
        device = next(student.parameters()).device
        with torch.no_grad():
            row = torch.zeros(1, n_features, device=device)
            width = student.features(row).flatten(1).shape[1]
        with _INIT_LOCK:
            torch.manual_seed(seed)
            adapter = nn.Linear(width, n_hints).to(device)
        return HintedStudent(student, adapter)

    # ------------------------------------------------------ transfer steps

    def _teacher_is_pretrained(self):
        if self.teacher_pretrained == "auto":
            return isinstance(self.teacher, NeuralNet) and getattr(
                self.teacher, "initialized_", False
            )
        if self.teacher_pretrained and self.teacher is None:
            raise ValueError(
                "teacher_pretrained=True needs a teacher: pass the pretrained "
                "torch module or skorch net as teacher."
            )
        return bool(self.teacher_pretrained)

    def _pretrained_module(self, domains):
        """Wrap the user's pretrained teacher to take and give standardised values."""
        spec = self.teacher
        module = copy.deepcopy(spec.module_ if isinstance(spec, NeuralNet) else spec)
        if not isinstance(module, nn.Module):
            raise TypeError(
                "teacher_pretrained=True needs teacher to be a torch.nn.Module "
                f"or an initialized skorch net, got {type(spec).__name__}."
            )
        if (
            self._is_classifier_task()
            and isinstance(spec, NeuralNet)
            and isinstance(getattr(spec, "criterion_", None), nn.NLLLoss)
        ):
            # skorch classifiers trained with NLLLoss output probabilities.
            module = LogOf(module)
        with _INIT_LOCK:
            resized = fit_head(module, self.n_outputs_, seed=domains.seed)
        if resized and not domains.labelled_target.any():
            raise ValueError(
                "The pretrained teacher's output width differs from the task's "
                f"{self.n_outputs_} outputs, so its head is re-initialised and "
                "must be trained: pass labelled target rows (y_target)."
            )
        scaler = self.input_scaler_
        output_mean, output_scale = 0.0, 1.0
        if not self._is_classifier_task():
            output_mean = self.target_scaler_.mean_
            output_scale = self.target_scaler_.scale_
        return Standardised(
            module, scaler.mean_, scaler.scale_, output_mean, output_scale
        ).to(self.device)

    def _fine_tune(self, module, X, y, seed, progress=True):
        """Train a copy of ``module`` on ``X``, ``y`` with the transfer strategy."""
        module = copy.deepcopy(module)
        module.train()
        net_class, extra, callbacks = strategy_settings(
            self.transfer_strategy,
            module,
            self._learning_rate(self.teacher),
            self.l2sp_strength,
            self.n_iter_no_change,
        )
        net = self._make_net(
            net_class,
            module,
            self._supervised_criterion(),
            self.teacher,
            stage="transfer",
            seed=seed,
            callbacks=callbacks,
            progress=progress,
            **extra,
        )
        return self._fit_net(net, X, y, stratify=True)

    def _rehearse(self, module, domains, X, y, seed):
        """Fine-tune a copy of ``module`` on target rows rehearsed among source rows.

        Fine-tuning on a few target rows alone forgets what the source taught
        about the inputs those rows do not cover; replaying source rows with
        them keeps it (rehearsal, Robins 1995), as a model trained on both
        would, at the cost of a few epochs. The target rows are repeated so
        that they weigh about as much as the source sample, which is drawn
        from ``domains`` by index: the source is never copied whole.
        """
        source_rows = np.flatnonzero(domains.source)
        rng = np.random.default_rng(seed)
        n_source = min(len(source_rows), _REHEARSAL_SOURCE_ROWS)
        picked = np.sort(rng.choice(len(source_rows), n_source, replace=False))
        replayed = source_rows[picked]
        repeats = int(np.clip(n_source // len(X), 1, _REHEARSAL_MAX_REPEATS))
        X = np.concatenate([domains.X[replayed], *[X] * repeats])
        y = np.concatenate([domains.y[replayed], *[y] * repeats])
        module = copy.deepcopy(module)
        module.train()
        spec = self.teacher
        max_epochs = spec.max_epochs if isinstance(spec, NeuralNet) else self.max_iter
        net = self._quiet_transfer_net(
            module, spec, seed, max_epochs=min(max_epochs, _REHEARSAL_EPOCHS)
        )
        return self._fit_net(net, X, y, stratify=True)

    def _weigh_candidates(self, pretrained, X, y, domains):
        """Blend weights chosen on out-of-fold predictions of the target rows.

        ``X``, ``y`` are the labelled target rows of ``domains``. Each fold
        fine-tunes the pretrained network (alone and rehearsed among the
        source rows) and fits the target-only models on the other folds; the
        pretrained network never saw a target row, so it predicts every row
        out of fold as it is. Returns the weights, the out-of-fold losses and
        the folds' target-only networks.
        """
        seed = domains.seed
        outputs = {
            name: np.zeros((len(X), self.n_outputs_), np.float32) for name in CANDIDATES
        }
        outputs["pretrained"] = forward_rows(pretrained, X, self.device)
        fold_networks = []
        for fold, (train, test) in enumerate(self._guard_folds(y, seed)):
            fold_seed = seed + 10 + fold
            fitted = {
                "transferred": self._fine_tune(
                    pretrained, X[train], y[train], fold_seed, progress=False
                ).module_,
                "target_linear": self._target_linear_module(X[train], y[train]),
                "rehearsed": self._rehearse(
                    pretrained, domains, X[train], y[train], fold_seed
                ).module_,
                "target_network": self._fit_target_network(
                    X[train], y[train], fold_seed
                ),
            }
            for name, module in fitted.items():
                outputs[name][test] = forward_rows(module, X[test], self.device)
            fold_networks.append(fitted["target_network"])
        weights, losses = choose_weights(
            outputs, y, self._is_classifier_task(), seed=seed
        )
        return weights, losses, fold_networks

    def _guard_folds(self, y, seed):
        if self._is_classifier_task():
            _, counts = np.unique(y, return_counts=True)
            n_splits = min(_GUARD_FOLDS, counts.min())
            if n_splits >= 2:
                return StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(
                    y, y
                )
        return KFold(_GUARD_FOLDS, shuffle=True, random_state=seed).split(y)

    def _fit_target_network(self, X, y, seed):
        """Train the teacher's architecture on target rows alone; return its module.

        The default MLP stands in for a pretrained teacher, whose architecture
        cannot be re-initialised; the network starts from a fresh
        initialisation.
        """
        spec = None if self._teacher_is_pretrained() else self.teacher
        module = self._build_module(
            spec, self.teacher_hidden_layer_sizes, X.shape[1], seed=seed
        )
        net = self._quiet_transfer_net(module, spec, seed)
        return self._fit_net(net, X, y, stratify=True).module_

    def _quiet_transfer_net(self, module, spec, seed, **extra):
        """Build a supervised net of the transfer stage that prints no progress line.

        The stage's one line is the transferred network's; the guard's other
        fits are part of the stage.
        """
        return self._make_net(
            SupervisedNet,
            module,
            self._supervised_criterion(),
            spec,
            stage="transfer",
            seed=seed,
            progress=False,
            **extra,
        )

    def _target_linear_module(self, X, y):
        """Fit a linear model on target rows alone; return it as an ``nn.Linear``."""
        n_features = X.shape[1]
        if not self._is_classifier_task():
            model = RidgeCV(alphas=_RIDGE_ALPHAS).fit(X, y)
            return linear_module(model, n_features).to(self.device)
        classes = np.arange(self.n_outputs_)
        seen = np.unique(y)
        if len(seen) == 1:
            layer = linear_module(_Constant(seen, n_features), n_features, classes)
            return layer.to(self.device)
        model = LogisticRegression(max_iter=1000).fit(X, y)
        return linear_module(model, n_features, classes).to(self.device)

    def _choose_teacher(self, candidates, weights=None):
        """Record the transfer weights; return the teacher they make, as a net."""
        weights = weights or {name: 1.0 for name in candidates}
        self.transfer_weights_ = {
            name: float(weights.get(name, 0.0)) for name in CANDIDATES
        }
        members = {name: candidates[name] for name in candidates if weights.get(name)}
        if len(members) == 1:
            (self.transfer_choice_,) = members
            (module,) = members.values()
        else:
            self.transfer_choice_ = "blend"
            module = BlendedTeacher(
                members,
                {name: weights[name] for name in members},
                classification=self._is_classifier_task(),
            )
        net = self._make_net(
            SupervisedNet,
            module,
            self._supervised_criterion(),
            self.teacher,
            stage="transfer",
            seed=0,
        )
        net.initialize()
        net.module_.eval()
        return net

    # ------------------------------------------------------- stage plumbing

    def _build_module(self, spec, hidden_layer_sizes, n_features, seed):
        """Return a fresh torch module for a ``teacher`` / ``student`` spec.

        Weights are initialised from torch's global generator; the lock makes
        seeding and drawing atomic when several fits run in threads.
        """
        with _INIT_LOCK:
            torch.manual_seed(seed)
            return self._new_module(spec, hidden_layer_sizes, n_features)

    def _new_module(self, spec, hidden_layer_sizes, n_features):
        if spec is None:
            sizes = _check_hidden_layer_sizes(hidden_layer_sizes)
            return MLP(n_features, self.n_outputs_, sizes)
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

    def _learning_rate(self, spec):
        return spec.lr if isinstance(spec, NeuralNet) else self.learning_rate_init

    def _make_net(
        self,
        net_class,
        module,
        criterion,
        spec,
        stage,
        seed,
        callbacks=(),
        progress=True,
        **extra,
    ):
        """Build the skorch net of one stage.

        A skorch ``spec`` overrides the estimator's optimizer settings;
        ``callbacks`` and ``extra`` net parameters come from the stage.
        """
        settings = {
            "optimizer": torch.optim.Adam,
            "lr": self.learning_rate_init,
            "optimizer__weight_decay": self.weight_decay,
            "max_epochs": self.max_iter,
            "batch_size": self.batch_size,
        }
        if isinstance(spec, NeuralNet):
            settings.update(
                optimizer=spec.optimizer,
                lr=spec.lr,
                max_epochs=spec.max_epochs,
                batch_size=spec.batch_size,
                **{
                    f"optimizer__{k}": v
                    for k, v in spec.get_params_for("optimizer").items()
                },
            )
        settings.update(extra)
        monitor = "valid_loss" if self.early_stopping else "train_loss"
        stopper = EarlyStopping(
            monitor=monitor,
            patience=self.n_iter_no_change,
            threshold=self.tol,
            threshold_mode="abs",
            load_best=self.early_stopping,
            sink=print if self.verbose >= 2 else _silent,
        )
        return net_class(
            module=module,
            criterion=criterion,
            iterator_train=TensorBatches,
            iterator_valid=TensorBatches,
            iterator_train__shuffle=True,
            iterator_train__seed=seed,
            train_split=None,
            callbacks=[
                ("early_stopping", stopper),
                ("finite_loss", FiniteLossGuard()),
                ("progress", StageProgress(stage, progress and bool(self.verbose))),
                *callbacks,
            ],
            device=self.device,
            # skorch's per-epoch table only at verbose >= 2; verbose=1 is
            # one progress line per stage.
            verbose=int(self.verbose >= 2),
            **settings,
        )

    def _fit_net(self, net, X, y, stratify, validate_on=None):
        """Fit ``net`` on rows ``X``, ``y``, holding out a validation split if asked.

        With ``early_stopping``, ``validation_fraction`` of the rows (of the
        rows where ``validate_on`` is true, if given) are held out.
        """
        if net.batch_size == "auto":
            net.batch_size = min(200, len(X))
        if self.early_stopping:
            pool = np.flatnonzero(
                np.ones(len(X), bool) if validate_on is None else validate_on
            )
            stratify_by = y[pool] if stratify and self._is_classifier_task() else None
            _, valid = train_test_split(
                pool,
                test_size=self.validation_fraction,
                stratify=_stratifiable(stratify_by, self.validation_fraction),
                random_state=0,
            )
            is_valid = np.zeros(len(X), bool)
            is_valid[valid] = True
            X, X_valid = X[~is_valid], X[is_valid]
            y, y_valid = y[~is_valid], y[is_valid]
            net.set_params(
                train_split=predefined_split(Dataset(*_as_tensors(X_valid, y_valid)))
            )
        X, y = _as_tensors(X, y)
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

    def _validate_domains(self, X, y, X_target, y_target, sample_domain):
        """Check every input of ``fit`` and return the stacked, encoded rows."""
        X, y, is_source, target_label_name = check_domains(
            self, X, y, X_target, y_target, sample_domain, self._unlabelled_marker()
        )
        y, is_labelled = self._encode_labels(y, is_source, target_label_name)
        self.input_scaler_ = fit_scaler(X)
        X = standardise(X, self.input_scaler_)
        return Domains(X=X, y=y, is_source=is_source, is_labelled=is_labelled)

    # ------------------------------------------------------------- predict

    def _transform_inputs(self, X, sample_domain=None):
        if "student_" not in self.__dict__:
            check_is_fitted(self)
        if not _is_clean_float_array(X, self.n_features_in_) or hasattr(
            self, "feature_names_in_"
        ):
            X = validate_data(self, X, reset=False, dtype=np.float64)
        if sample_domain is not None:
            # Predictions are for the target task whatever the domain; the
            # domains are only checked so that a misaligned array is caught.
            check_sample_domain(sample_domain, len(X))
        return standardise(X, self.input_scaler_)

    def _student_outputs(self, X, sample_domain=None):
        X = self._transform_inputs(X, sample_domain)
        return forward_rows(self.student_.module_, X, self.device)

    def distillation_report(self, X, y, n_repeats=5):
        """Compare teacher and student on ``X``, ``y``: what distillation bought.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Evaluation rows (typically held-out target rows).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Their labels.
        n_repeats : int, default=5
            Timed predictions per model; the median is reported.

        Returns
        -------
        report : dict
            ``{"teacher": {...}, "student": {...}}``, each with ``score``
            (accuracy or R²), ``n_params`` and ``latency_ms``, the median
            wall time to predict all of ``X``.
        """
        check_is_fitted(self)

        def teacher_outputs(X):
            X = self._transform_inputs(X)
            return forward_rows(self.teacher_.module_, X, self.device)

        report = {}
        for name, net, outputs_of in (
            ("teacher", self.teacher_, teacher_outputs),
            ("student", self.student_, self._student_outputs),
        ):
            times = []
            for _ in range(n_repeats):
                start = time.perf_counter()
                predictions = self._outputs_to_predictions(outputs_of(X))
                times.append(time.perf_counter() - start)
            report[name] = {
                "score": float(self._score_predictions(y, predictions)),
                "n_params": count_parameters(net.module_),
                "latency_ms": 1000.0 * float(np.median(times)),
            }
        return report

    def export_onnx(self, path):
        """Write the student as an ONNX graph, with its input scaling folded in.

        onnxruntime then reproduces :meth:`predict_proba` (classifier, output
        ``probabilities``) or :meth:`predict` (regressor, output
        ``predictions``) on float32 rows within 1e-5. Needs the ``onnx`` extra.

        Parameters
        ----------
        path : str or path-like
            File to write, conventionally ending in ``.onnx``.
        """
        export_onnx(self, path)

    def _is_classifier_task(self):
        return False


class TransferDistillClassifier(ClassifierMixin, BaseTransferDistill):
    """Pretrain on a source domain, fine-tune on the target, distil a student.

    One ``fit`` trains a teacher network on the labelled source rows, fine-tunes
    it on the labelled target rows and distils it into a smaller student over
    every row, labelled or not, with Hinton's soft targets. ``predict`` and
    ``predict_proba`` use the student.

    Parameters
    ----------
    teacher : None, torch.nn.Module or skorch.NeuralNet, default=None
        Teacher network. ``None`` builds an MLP with
        ``teacher_hidden_layer_sizes``. A module is copied, never trained in
        place; it must map ``n_features`` inputs to ``n_classes`` logits. A
        skorch net contributes its module, optimizer, ``lr``, ``max_epochs``
        and ``batch_size``; its nested parameters (``teacher__lr``) can be
        tuned by :class:`~sklearn.model_selection.GridSearchCV`.
    student : None, torch.nn.Module or skorch.NeuralNet, default=None
        Student network, as ``teacher``; ``None`` builds an MLP with
        ``student_hidden_layer_sizes``.
    teacher_pretrained : "auto" or bool, default="auto"
        Whether ``teacher`` is already trained, so that the source stage is
        skipped. ``"auto"``: true for an initialized (fitted) skorch net. A
        pretrained teacher receives rows in the units given to ``fit`` (the
        estimator's scaling is undone for it). A skorch classifier trained with
        ``NLLLoss`` (a module ending in a softmax) is handled: its probabilities
        become logits. If its output width differs from the task's, its last
        ``nn.Linear`` is re-initialised at the right width and learnt on the
        labelled target rows.
    teacher_hidden_layer_sizes : tuple of int, default=(128, 64)
        Hidden widths of the default teacher.
    student_hidden_layer_sizes : tuple of int, default=(32, 16)
        Hidden widths of the default student.
    transfer_strategy : {"finetune", "gradual", "l2sp", "discriminative"}, \
            default="l2sp"
        How the teacher moves to the labelled target rows: train every weight;
        train the head alone, then unfreeze one layer more every
        ``n_iter_no_change // 2`` epochs; pull weights towards their source
        values (L2-SP) instead of weight decay; or halve the learning rate per
        layer below the head.
    l2sp_strength : float, default=0.01
        Coefficient of the L2-SP penalty ``0.5 * ||w - w_source||^2``.
    negative_transfer_guard : bool, default=True
        With at least 10 labelled target rows, weigh five candidate teachers
        (the source network, the transferred one, the source network
        fine-tuned on the target rows rehearsed among source rows, and on the
        target rows alone a linear model and a bag of the teacher's
        architecture trained from scratch on the folds) by their out-of-fold
        loss on the labelled target rows (5 folds), and teach with the best
        blend, averaged over bootstrap resamples of those rows, so that a
        source that does not help the target gets no weight. ``False``: the
        transferred network is the teacher.
    temperature : float, default=4.0
        Softening temperature ``T`` of the distillation loss; the teacher term
        is scaled by ``T**2``.
    alpha : float, default=0.9
        Weight of the teacher term in the distillation loss; ``1 - alpha``
        weighs the hard labels. Unlabelled rows use the teacher term only.
    distillation_loss : {"kl", "logit_mse"}, default="kl"
        ``"kl"``: Hinton's soft targets. ``"logit_mse"``: squared error between
        logits (Ba & Caruana, 2014).
    hint_weight : float, default=0.0
        Weight of a feature-level (hint) term in the distillation loss
        (FitNets, Romero et al., 2015): the student's last hidden layer,
        through a learned linear map, regresses the teacher's (each unit
        standardised; a blend's members side by side, weighted). 0 turns it
        off. Needs a student with a ``features(X)`` method (the default MLP
        has one) and no ``consistent_teaching``; a teacher without hidden
        layers (a linear model alone) gets a warning and no hint.
    consistent_teaching : {None, "noise", "mixup"}, default=None
        Perturb each distillation batch and query the teacher on the very
        rows the student sees (Beyer et al., 2022): Gaussian noise of
        ``noise_scale`` on standardised rows, or mixup of row pairs (mixed rows
        keep only the teacher's targets).
    noise_scale : float, default=0.1
        Standard deviation of the ``"noise"`` perturbation.
    learning_rate_init : float, default=1e-3
        Adam learning rate of every stage.
    batch_size : int or "auto", default="auto"
        Rows per batch; ``"auto"`` is ``min(200, n_rows)`` as in
        :class:`~sklearn.neural_network.MLPClassifier`.
    max_iter : int, default=200
        Maximum number of epochs of each stage.
    weight_decay : float, default=0.0
        L2 penalty passed to Adam.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of each stage's rows and stop when the
        validation loss has not improved by ``tol`` for ``n_iter_no_change``
        epochs, restoring the best weights. When ``False``, the training loss
        is monitored the same way.
    validation_fraction : float, default=0.1
        Share of rows held out when ``early_stopping`` is on.
    n_iter_no_change : int, default=10
        Epochs without improvement before a stage stops.
    tol : float, default=1e-4
        Minimum improvement of the monitored loss.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling and validation splits. The same
        integer gives bit-identical predictions on the CPU.
    verbose : int, default=0
        ``0`` is silent; ``1`` shows one progress line per stage (pretrain,
        transfer, distil) with the epoch, the losses and the time; ``2`` adds
        skorch's per-epoch table.
    device : str or torch.device, default="cpu"
        Where every stage trains and predicts, e.g. ``"cuda"``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Sorted union of the source and target labels.
    teacher_ : skorch.NeuralNet
        The fitted teacher (after transfer). Its module outputs logits; it is
        a blend of networks (``BlendedTeacher``) when the guard blends.
    transfer_weights_ : dict of str to float
        The teacher's blend weights of ``"pretrained"`` (source network),
        ``"transferred"``, ``"rehearsed"`` (fine-tuned on the target rows
        replayed among source rows), ``"target_linear"`` (linear model of the
        target rows) and ``"target_network"`` (bag of networks trained on
        folds of the target rows alone), summing to 1.
    transfer_choice_ : str
        The candidate with all the weight, or ``"blend"``.
    transfer_losses_ : dict of str to float or None
        Out-of-fold log loss on the labelled target rows of each candidate
        and of the chosen ``"blend"``; ``None`` when the guard did not run.
    student_ : skorch.NeuralNet
        The fitted student, used by ``predict``. Its module outputs logits.
    input_scaler_ : sklearn.preprocessing.StandardScaler
        Standardises the inputs of both networks, fitted on every row.
    history_ : dict
        skorch ``History`` of each stage, keyed ``"pretrain"``, ``"transfer"``
        and ``"distil"``; ``None`` for a stage that did not run (transfer
        without labelled target rows).
    n_iter_ : int
        Epochs run by the distillation stage.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during ``fit``, when ``X`` has string column
        names.

    See Also
    --------
    TransferDistillRegressor : The same recipe for regression.
    sklearn.neural_network.MLPClassifier : A single network on one domain.

    References
    ----------
    G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural
    Network", 2015.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sktd import TransferDistillClassifier
    >>> X, y = make_classification(n_samples=300, random_state=0)
    >>> X_source, y_source, X_target, y_target = X[:200], y[:200], X[200:], y[200:]
    >>> clf = TransferDistillClassifier(max_iter=20, random_state=0)
    >>> clf = clf.fit(X_source, y_source, X_target=X_target, y_target=y_target)
    >>> clf.predict(X_target[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        **BaseTransferDistill._parameter_constraints,
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "distillation_loss": [StrOptions({"kl", "logit_mse"})],
    }

    def __init__(
        self,
        teacher=None,
        student=None,
        *,
        teacher_pretrained="auto",
        teacher_hidden_layer_sizes=(128, 64),
        student_hidden_layer_sizes=(32, 16),
        transfer_strategy="l2sp",
        l2sp_strength=0.01,
        negative_transfer_guard=True,
        temperature=4.0,
        alpha=0.9,
        distillation_loss="kl",
        hint_weight=0.0,
        consistent_teaching=None,
        noise_scale=0.1,
        learning_rate_init=1e-3,
        batch_size="auto",
        max_iter=200,
        weight_decay=0.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        random_state=None,
        verbose=0,
        device="cpu",
    ):
        super().__init__(
            teacher=teacher,
            student=student,
            teacher_pretrained=teacher_pretrained,
            teacher_hidden_layer_sizes=teacher_hidden_layer_sizes,
            student_hidden_layer_sizes=student_hidden_layer_sizes,
            transfer_strategy=transfer_strategy,
            l2sp_strength=l2sp_strength,
            negative_transfer_guard=negative_transfer_guard,
            alpha=alpha,
            hint_weight=hint_weight,
            consistent_teaching=consistent_teaching,
            noise_scale=noise_scale,
            learning_rate_init=learning_rate_init,
            batch_size=batch_size,
            max_iter=max_iter,
            weight_decay=weight_decay,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            random_state=random_state,
            verbose=verbose,
            device=device,
        )
        self.temperature = temperature
        self.distillation_loss = distillation_loss

    def predict(self, X, sample_domain=None):
        """Predict class labels with the student.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to classify.
        sample_domain : array-like, default=None
            Accepted for Pipelines and cross-validation, and ignored:
            predictions are always for the target task.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Predicted labels from ``classes_``.
        """
        return self._outputs_to_predictions(self._student_outputs(X, sample_domain))

    def predict_proba(self, X, sample_domain=None):
        """Class probabilities from the student.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to classify.
        sample_domain : array-like, default=None
            Accepted and ignored, as in :meth:`predict`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_``.
        """
        return _softmax(self._student_outputs(X, sample_domain))

    def predict_log_proba(self, X, sample_domain=None):
        """Log of :meth:`predict_proba`."""
        logits = self._student_outputs(X, sample_domain).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags

    # -- hooks used by the base class

    def _is_classifier_task(self):
        return True

    def _encode_labels(self, y, is_source, target_label_name):
        if y.ndim != 1:
            y = column_or_1d(y, warn=True)
        is_labelled = is_source | ~is_unlabelled_class(y)
        hint = "Classifiers mark unlabelled target rows with -1."
        for rows, name in (
            (is_source, "y"),
            (is_labelled & ~is_source, target_label_name),
        ):
            check_finite_labels(y[rows], name, hint)
            try:
                check_classification_targets(y[rows])
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from error
        labelled = y[is_labelled]
        self.classes_ = np.unique(labelled)
        if len(self.classes_) < 2:
            raise ValueError(
                "TransferDistillClassifier needs labelled rows of at least 2 "
                f"classes; got 1 class ({self.classes_[0]!r})."
            )
        self.n_outputs_ = len(self.classes_)
        encoded = np.full(len(y), -1, dtype=np.int64)
        encoded[is_labelled] = np.searchsorted(self.classes_, labelled)
        return encoded, is_labelled

    def _unlabelled_marker(self):
        return -1

    def _labels_as_columns(self, y):
        return y.reshape(-1, 1).astype(np.float32)

    def _supervised_criterion(self):
        return nn.CrossEntropyLoss

    def _distillation_criterion(self):
        return ClassificationDistillationLoss(
            self.temperature, self.alpha, kind=self.distillation_loss
        )

    def _outputs_to_predictions(self, outputs):
        return self.classes_[np.argmax(outputs, axis=1)]

    def _score_predictions(self, y, predictions):
        return accuracy_score(y, predictions)


class TransferDistillRegressor(RegressorMixin, BaseTransferDistill):
    """Pretrain on a source domain, fine-tune on the target, distil a student.

    The regression counterpart of :class:`TransferDistillClassifier`. The
    student is trained on ``(1 - alpha) * MSE(student, y) + alpha *
    MSE(student, teacher)``; rows whose label is ``NaN`` use the teacher term
    only. Targets are standardised internally.

    Parameters
    ----------
    teacher : None, torch.nn.Module or skorch.NeuralNet, default=None
        Teacher network; see :class:`TransferDistillClassifier`. A module must
        map ``n_features`` inputs to ``n_outputs`` values.
    student : None, torch.nn.Module or skorch.NeuralNet, default=None
        Student network, as ``teacher``.
    teacher_pretrained : "auto" or bool, default="auto"
        Whether ``teacher`` is already trained, so that the source stage is
        skipped. ``"auto"``: true for an initialized (fitted) skorch net. A
        pretrained teacher receives rows in the units given to ``fit`` (the
        estimator's scaling is undone for it) and returns values in the units of
        ``y``. If its output width differs from the task's, its last
        ``nn.Linear`` is re-initialised at the right width and learnt on the
        labelled target rows.
    teacher_hidden_layer_sizes : tuple of int, default=(128, 64)
        Hidden widths of the default teacher.
    student_hidden_layer_sizes : tuple of int, default=(32, 16)
        Hidden widths of the default student.
    transfer_strategy : {"finetune", "gradual", "l2sp", "discriminative"}, \
            default="l2sp"
        How the teacher moves to the labelled target rows: train every weight;
        train the head alone, then unfreeze one layer more every
        ``n_iter_no_change // 2`` epochs; pull weights towards their source
        values (L2-SP) instead of weight decay; or halve the learning rate per
        layer below the head.
    l2sp_strength : float, default=0.01
        Coefficient of the L2-SP penalty ``0.5 * ||w - w_source||^2``.
    negative_transfer_guard : bool, default=True
        With at least 10 labelled target rows, weigh five candidate teachers
        (the source network, the transferred one, the source network
        fine-tuned on the target rows rehearsed among source rows, and on the
        target rows alone a ridge model and a bag of the teacher's
        architecture trained from scratch on the folds) by their out-of-fold
        loss on the labelled target rows (5 folds), and teach with the best
        blend, averaged over bootstrap resamples of those rows, so that a
        source that does not help the target gets no weight. ``False``: the
        transferred network is the teacher.
    alpha : float, default=0.9
        Weight of the teacher term in the distillation loss.
    hint_weight : float, default=0.0
        Weight of a feature-level (hint) term in the distillation loss
        (FitNets, Romero et al., 2015): the student's last hidden layer,
        through a learned linear map, regresses the teacher's (each unit
        standardised; a blend's members side by side, weighted). 0 turns it
        off. Needs a student with a ``features(X)`` method (the default MLP
        has one) and no ``consistent_teaching``; a teacher without hidden
        layers (a linear model alone) gets a warning and no hint.
    consistent_teaching : {None, "noise", "mixup"}, default=None
        Perturb each distillation batch and query the teacher on the very
        rows the student sees (Beyer et al., 2022): Gaussian noise of
        ``noise_scale`` on standardised rows, or mixup of row pairs (mixed rows
        keep only the teacher's targets).
    noise_scale : float, default=0.1
        Standard deviation of the ``"noise"`` perturbation.
    learning_rate_init : float, default=1e-3
        Adam learning rate of every stage.
    batch_size : int or "auto", default="auto"
        Rows per batch; ``"auto"`` is ``min(200, n_rows)``.
    max_iter : int, default=200
        Maximum number of epochs of each stage.
    weight_decay : float, default=0.0
        L2 penalty passed to Adam.
    early_stopping : bool, default=False
        As in :class:`TransferDistillClassifier`.
    validation_fraction : float, default=0.1
        Share of rows held out when ``early_stopping`` is on.
    n_iter_no_change : int, default=10
        Epochs without improvement before a stage stops.
    tol : float, default=1e-4
        Minimum improvement of the monitored loss.
    random_state : int, RandomState instance or None, default=None
        Seeds every stage; the same integer gives bit-identical predictions on
        the CPU.
    verbose : int, default=0
        ``0`` is silent; ``1`` shows one progress line per stage (pretrain,
        transfer, distil) with the epoch, the losses and the time; ``2`` adds
        skorch's per-epoch table.
    device : str or torch.device, default="cpu"
        Where every stage trains and predicts.

    Attributes
    ----------
    teacher_ : skorch.NeuralNet
        The fitted teacher (after transfer), on standardised targets.
    transfer_weights_ : dict of str to float
        The teacher's blend weights of ``"pretrained"`` (source network),
        ``"transferred"``, ``"rehearsed"`` (fine-tuned on the target rows
        replayed among source rows), ``"target_linear"`` (ridge model of the
        target rows) and ``"target_network"`` (bag of networks trained on
        folds of the target rows alone), summing to 1.
    transfer_choice_ : str
        The candidate with all the weight, or ``"blend"``.
    transfer_losses_ : dict of str to float or None
        Out-of-fold mean squared error (standardised targets) on the labelled
        target rows of each candidate and of the chosen ``"blend"``; ``None``
        when the guard did not run.
    student_ : skorch.NeuralNet
        The fitted student, used by ``predict``.
    input_scaler_ : sklearn.preprocessing.StandardScaler
        Standardises the inputs, fitted on every row.
    target_scaler_ : sklearn.preprocessing.StandardScaler
        Standardises the targets, fitted on the labelled rows.
    n_outputs_ : int
        Number of regression targets.
    history_ : dict
        skorch ``History`` of each stage, keyed ``"pretrain"``, ``"transfer"``
        and ``"distil"``; ``None`` for a stage that did not run (transfer
        without labelled target rows).
    n_iter_ : int
        Epochs run by the distillation stage.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during ``fit``, when ``X`` has string column
        names.

    See Also
    --------
    TransferDistillClassifier : The same recipe for classification.
    sklearn.neural_network.MLPRegressor : A single network on one domain.

    References
    ----------
    M. R. U. Saputra et al., "Distilling Knowledge From a Deep Pose Regressor
    Network", ICCV 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from sktd import TransferDistillRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 3))
    >>> y = X @ [1.0, -2.0, 0.5]
    >>> reg = TransferDistillRegressor(max_iter=20, random_state=0)
    >>> reg = reg.fit(X[:150], y[:150], X_target=X[150:], y_target=y[150:])
    >>> reg.predict(X[:2]).shape
    (2,)
    """

    def predict(self, X, sample_domain=None):
        """Predict targets with the student.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to predict.
        sample_domain : array-like, default=None
            Accepted for Pipelines and cross-validation, and ignored.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions, in the units of the training targets.
        """
        return self._outputs_to_predictions(self._student_outputs(X, sample_domain))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    # -- hooks used by the base class

    def _encode_labels(self, y, is_source, target_label_name):
        try:
            y = check_array(
                y, ensure_2d=False, dtype=np.float64, ensure_all_finite=False
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"y must hold numbers for a regressor: {error}") from error
        columns = y.reshape(len(y), -1)
        check_finite_labels(
            columns[is_source],
            "y",
            "Only target rows may be unlabelled (NaN); every source row needs a label.",
        )
        missing = np.isnan(columns)
        # NaN marks an unlabelled target row; infinity is never a label.
        check_finite_labels(
            np.where(missing, 0.0, columns)[~is_source], target_label_name, ""
        )
        partly = missing.any(axis=1) & ~missing.all(axis=1)
        if partly.any():
            raise ValueError(
                f"{target_label_name} has {int(partly.sum())} rows with NaN in some "
                "outputs but not all; a row is labelled in every output or in none."
            )
        is_labelled = ~missing.any(axis=1)
        self.n_outputs_ = columns.shape[1]
        self.target_scaler_ = StandardScaler().fit(columns[is_labelled])
        encoded = np.full_like(columns, np.nan)
        encoded[is_labelled] = self.target_scaler_.transform(columns[is_labelled])
        return encoded.astype(np.float32), is_labelled

    def _unlabelled_marker(self):
        return np.nan

    def _labels_as_columns(self, y):
        return y

    def _supervised_criterion(self):
        return nn.MSELoss

    def _distillation_criterion(self):
        return RegressionDistillationLoss(self.alpha)

    def _outputs_to_predictions(self, outputs):
        predictions = self.target_scaler_.inverse_transform(outputs.astype(np.float64))
        return predictions.ravel() if self.n_outputs_ == 1 else predictions

    def _score_predictions(self, y, predictions):
        return r2_score(y, predictions)


# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def _seeded_torch(seed):
    """Seed torch's global generator for one fit, then restore it.

    Initialisation happens on the CPU; the CPU generator is the only one used
    by the default networks (custom modules' dropout draws from it too).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _silent(*args, **kwargs):
    """Sink for skorch messages when ``verbose=0``."""


def _rows(array, mask):
    """``array[mask]``, without a copy when every row is selected."""
    return array if mask.all() else array[mask]


def _is_clean_float_array(X, n_features):
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


def _softmax(logits):
    logits = logits.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    proba = np.exp(logits)
    return proba / proba.sum(axis=1, keepdims=True)


def _as_tensors(X, y):
    return torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(
        np.ascontiguousarray(y)
    )


def _check_hidden_layer_sizes(sizes):
    sizes = tuple(np.atleast_1d(sizes).tolist())
    if not all(isinstance(s, Integral) and s > 0 for s in sizes):
        raise ValueError(f"hidden layer sizes must be positive integers, got {sizes}.")
    return sizes


def _stratifiable(y, test_size):
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


class _Constant:
    """A fitted linear model that predicts its one class everywhere."""

    def __init__(self, classes, n_features):
        self.classes_ = classes
        self.coef_ = np.zeros((1, n_features))
        self.intercept_ = np.zeros(1)
