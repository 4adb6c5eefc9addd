"""The estimator layer shared by the classifier and the regressor.

:class:`BaseTransferDistill` validates parameters and inputs, reads as its three
stages in ``fit`` and hands arrays to the engine: the stage trainer
(``_trainer``), the transfer strategies (``_strategies``), the negative-transfer
guard (``_guard``) and the distillation (``_distillation``). The fitted state is
built aside and assigned in one step at the end of ``fit``, so an error or an
interrupt leaves the estimator as it was. It predicts with the student.
"""

import copy
import time
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context, is_classifier
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted, validate_data
from skorch import NeuralNet

from ._arrays import append_rows, fit_scaler, forward_rows, take_rows
from ._distillation import check_hint, distil, student_epochs
from ._domains import (
    SPARSE_FORMATS,
    Domains,
    check_domains,
    check_fit_sample_weight,
    check_sample_domain,
    check_weighted_rows,
    is_clean_float_array,
    refuse_split_form_where_it_goes_wrong,
    standardised_rows,
    warn_if_spread_underflows,
)
from ._guard import CANDIDATES, GUARD_MIN_ROWS, all_weights, choice_of, guard
from ._nets import SupervisedNet
from ._networks import count_parameters
from ._onnx import export_onnx
from ._seeds import Seeds, seeded_torch
from ._strategies import (
    TRANSFER_STRATEGIES,
    Pretrained,
    TransferStrategy,
    adapt_pretrained,
)
from ._threads import resolve_threads, torch_threads
from ._trainer import (
    StageTrainer,
    TrainingSettings,
    check_device,
    check_hidden_layer_sizes,
)
from ._transfer_set import munge_rows


class BaseTransferDistill(BaseEstimator, metaclass=ABCMeta):
    """Shared machinery of the classifier and the regressor.

    Warning: this class should not be used directly; use
    :class:`~sktd.TransferDistillClassifier` or
    :class:`~sktd.TransferDistillRegressor`. Subclasses say how labels are
    validated and encoded, which supervised criterion and distillation loss
    to use, and how outputs become predictions.
    """

    _parameter_constraints = {
        "teacher": [None, HasMethods(["forward"]), NeuralNet, Pretrained],
        "student": [None, HasMethods(["forward"]), NeuralNet],
        "teacher_pretrained": [StrOptions({"auto"}), "boolean"],
        "teacher_hidden_layer_sizes": ["array-like"],
        "student_hidden_layer_sizes": ["array-like"],
        "transfer_strategy": [StrOptions(set(TRANSFER_STRATEGIES))],
        "l2sp_strength": [Interval(Real, 0, None, closed="left")],
        "negative_transfer_guard": ["boolean"],
        "teacher_pool": [StrOptions({"networks", "tabular"})],
        "transfer_set": [StrOptions({"given", "munge"})],
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
        "student_max_iter": [None, Interval(Integral, 1, None, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "device": [str, torch.device],
        "torch_threads": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
        ],
    }

    # Like skada's estimators, request sample_domain by default, so that
    # routed pipelines, searches and skada's scorers pass it with no
    # set_*_request call (predictions ignore it beyond checking its length).
    __metadata_request__fit = {"sample_domain": True, "sample_weight": True}
    __metadata_request__predict = {"sample_domain": True}
    __metadata_request__score = {"sample_domain": True, "sample_weight": True}

    @abstractmethod
    def __init__(
        self,
        teacher,
        student,
        *,
        teacher_pretrained,
        teacher_hidden_layer_sizes,
        student_hidden_layer_sizes,
        transfer_strategy,
        l2sp_strength,
        negative_transfer_guard,
        teacher_pool,
        transfer_set,
        alpha,
        hint_weight,
        consistent_teaching,
        noise_scale,
        learning_rate_init,
        batch_size,
        max_iter,
        student_max_iter,
        weight_decay,
        early_stopping,
        validation_fraction,
        n_iter_no_change,
        tol,
        random_state,
        verbose,
        device,
        torch_threads,
    ):
        self.teacher = teacher
        self.student = student
        self.teacher_pretrained = teacher_pretrained
        self.teacher_hidden_layer_sizes = teacher_hidden_layer_sizes
        self.student_hidden_layer_sizes = student_hidden_layer_sizes
        self.transfer_strategy = transfer_strategy
        self.l2sp_strength = l2sp_strength
        self.negative_transfer_guard = negative_transfer_guard
        self.teacher_pool = teacher_pool
        self.transfer_set = transfer_set
        self.alpha = alpha
        self.hint_weight = hint_weight
        self.consistent_teaching = consistent_teaching
        self.noise_scale = noise_scale
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.student_max_iter = student_max_iter
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.torch_threads = torch_threads

    @property
    def module_(self):
        """Not a skorch net: say where the networks are, and what skada needs.

        skada's ``DeepEmbeddedValidation`` and ``MaNoScorer`` read ``module_``
        from any estimator that is not a Pipeline (skada's deep estimators
        are skorch nets); an sktd estimator in a Pipeline is scored from its
        predictions instead.
        """
        raise AttributeError(
            f"{type(self).__name__} has no module_: it is not a skorch net, it "
            "holds two (teacher_ and student_, whose module_ is the network). "
            "skada's DeepEmbeddedValidation and MaNoScorer read module_ from "
            "estimators outside a Pipeline: score a pipeline instead, e.g. "
            "skada.make_da_pipeline(StandardScaler(), model)."
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Sparse rows are standardised a batch at a time (SparseRows).
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------------ fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X,
        y,
        *,
        X_target=None,
        y_target=None,
        sample_domain=None,
        sample_weight=None,
    ):
        """Pretrain a teacher, transfer it to the target, distil a student.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Source rows (split form) or source and target rows (stacked form,
            with ``sample_domain``). A sparse matrix (CSR, CSC or COO) stays
            sparse: rows are standardised a batch at a time.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Labels of ``X``. In the stacked form, target rows may be
            unlabelled: ``-1`` for classifiers, ``NaN`` for regressors.
            Without ``X_target`` and ``sample_domain``, rows labelled so are
            unlabelled rows of the one domain, as in scikit-learn's
            semi-supervised estimators: the teacher learns from the labelled
            rows, the student from the teacher on every row.
        X_target : {array-like, sparse matrix} of shape (n_target, n_features), \
                default=None
            Target rows (split form). Refused inside scikit-learn's
            cross-validation tools, behind a Pipeline's earlier steps and
            inside a ``TransformedTargetRegressor``, which fold or transform
            ``X`` and ``y`` only: use the stacked form there.
        y_target : array-like of shape (n_target,), default=None
            Labels of ``X_target``, ``-1`` / ``NaN`` where unknown. ``None``
            with ``X_target`` given means every target row is unlabelled.
        sample_domain : array-like of shape (n_samples,), default=None
            Stacked form: ``> 0`` on source rows, ``< 0`` on target rows.
            Cannot be combined with ``X_target``.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row of ``X`` (stacked form, or no domains) in every
            stage: the input and target scaling, pretraining, transfer, the
            guard's candidates and out-of-fold losses, and distillation (a
            synthetic row weighs what its target row weighs). A row of weight
            ``k`` counts about as ``k`` copies of it; weight 0 leaves its label
            unused. Not available in the split form, where ``X`` holds the
            source rows only.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        check_device(self.device)
        for name in ("teacher_hidden_layer_sizes", "student_hidden_layer_sizes"):
            # Before any training: a bad width would otherwise surface only
            # when its stage builds its network, unnamed.
            check_hidden_layer_sizes(getattr(self, name), name)
        check_hint(self.hint_weight, self.consistent_teaching, self.student)
        domains, fitted = self._validate_domains(
            X, y, X_target, y_target, sample_domain, sample_weight
        )
        seeds = Seeds(self.random_state)
        trainer = self._trainer(fitted["n_outputs_"])
        n_features = domains.X.shape[1]
        if not self._teacher_is_pretrained():
            # A pretrained teacher's head is resized to the task instead.
            trainer.check_module(
                self.teacher, self.teacher_hidden_layer_sizes, n_features, "teacher"
            )
        trainer.check_module(
            self.student, self.student_hidden_layer_sizes, n_features, "student"
        )
        with (
            torch_threads(resolve_threads(self.torch_threads)),
            seeded_torch(seeds("torch")),
        ):
            pretrained, pretrain_history = self._pretrain(
                domains, trainer, seeds, fitted
            )
            teacher, transfer_history, choice = self._transfer(
                pretrained, domains, trainer, seeds
            )
            fitted.update(choice)
            student = self._distil(teacher.module_, domains, trainer, seeds, fitted)
        fitted.update(
            teacher_=teacher,
            student_=student,
            history_={
                "pretrain": pretrain_history,
                "transfer": transfer_history,
                "distil": student.history,
            },
            n_iter_=len(student.history),
        )
        self._set_fitted(fitted)
        return self

    def _pretrain(self, domains, trainer, seeds, fitted):
        """Stage 1: train the teacher on the labelled source rows.

        Returns the net and its history. A teacher the user pretrained is
        taken as it is (its head resized to the task if needed), with no
        history.
        """
        if self._teacher_is_pretrained():
            module, resized = adapt_pretrained(
                self.teacher,
                fitted["n_outputs_"],
                fitted["input_scaler_"],
                fitted.get("target_scaler_"),
                seed=seeds("head"),
            )
            trainer.check_widths(module, domains.X.shape[1], "teacher")
            if resized and not domains.labelled_target.any():
                raise ValueError(
                    "The pretrained teacher's output width differs from the task's "
                    f"{fitted['n_outputs_']} outputs, so its head is re-initialised "
                    "and must be trained: pass labelled target rows (y_target)."
                )
            net = trainer.fitted(
                SupervisedNet, module.to(self.device), self.teacher, stage="pretrain"
            )
            return net, None
        seed = seeds("pretrain")
        module = trainer.new_module(
            self.teacher, self.teacher_hidden_layer_sizes, domains.X.shape[1], seed
        )
        net = trainer.net(
            SupervisedNet, module, self.teacher, stage="pretrain", seed=seed
        )
        X, y = _rows(domains.X, domains.source), _rows(domains.y, domains.source)
        weights = domains.weights(domains.source)
        net = trainer.fit(net, X, y, stratify=True, sample_weight=weights)
        return net, net.history

    def _transfer(self, pretrained, domains, trainer, seeds):
        """Stage 2: move the teacher to the labelled target rows, guarded.

        A copy of the pretrained network is trained on the labelled target
        rows with ``transfer_strategy``. With ``negative_transfer_guard`` and
        enough rows, the teacher is the blend of candidates the guard weighs
        (``_guard.guard``). With no labelled target row the pretrained network
        is the teacher. Returns the teacher's net, the transfer's history
        (``None`` when it did not run) and the ``transfer_*_`` attributes.
        """
        rows = domains.labelled_target
        if not rows.any():
            net, choice = self._teacher(
                trainer, pretrained.module_, {"pretrained": 1.0}
            )
            return net, None, choice
        X, y, weights = domains.X[rows], domains.y[rows], domains.weights(rows)
        strategy = TransferStrategy(
            self.transfer_strategy, self.l2sp_strength, trainer, self.teacher
        )
        transferred = strategy.fine_tune(
            pretrained.module_, X, y, seeds("transfer"), sample_weight=weights
        )
        if not self.negative_transfer_guard or rows.sum() < GUARD_MIN_ROWS:
            net, choice = self._teacher(
                trainer, transferred.module_, {"transferred": 1.0}
            )
            return net, transferred.history, choice
        weights, losses, module = guard(
            pretrained.module_,
            transferred.module_,
            X,
            y,
            X_pool=domains.X,
            y_pool=domains.y,
            sample_weight=weights,
            pool_weight=domains.sample_weight,
            source_rows=np.flatnonzero(domains.source),
            transfer=strategy,
            network_spec=None if self._teacher_is_pretrained() else self.teacher,
            hidden_layer_sizes=self.teacher_hidden_layer_sizes,
            seeds=seeds,
            tabular=self.teacher_pool == "tabular",
        )
        net, choice = self._teacher(trainer, module, weights, losses)
        return net, transferred.history, choice

    def _teacher(self, trainer, module, weights, losses=None):
        """Return the teacher's net around ``module`` and its ``transfer_*_`` facts."""
        net = trainer.fitted(SupervisedNet, module, self.teacher, stage="transfer")
        choice = {
            "transfer_weights_": all_weights(weights),
            "transfer_choice_": choice_of(weights),
            "transfer_losses_": losses,
        }
        return net, choice

    def _distil(self, teacher, domains, trainer, seeds, fitted):
        """Stage 3: train the student on the teacher's outputs over every row.

        When some target rows are labelled, they are the only hard labels:
        the student serves the target task, and source labels may disagree
        with it. Without them, the source labels are the task's.
        """
        labels = domains.y
        if domains.labelled_target.any():
            labels = labels.copy()
            labels[domains.is_source] = self._unlabelled_marker()
        X, is_source, weights = domains.X, domains.is_source, domains.sample_weight
        if self.transfer_set == "munge":
            synthetic, parents = munge_rows(
                domains.X, domains.is_source, domains.is_labelled, seeds("munge")
            )
            X = append_rows(X, synthetic)
            if weights is not None:
                # A synthetic row stands for the target row it was drawn from.
                weights = np.concatenate([weights, weights[parents]])
            unlabelled = np.full(
                (len(synthetic),) + labels.shape[1:],
                self._unlabelled_marker(),
                dtype=labels.dtype,
            )
            labels = np.concatenate([labels, unlabelled])
            # Synthetic rows are never held out to judge the student.
            is_source = np.concatenate([is_source, np.ones(len(synthetic), bool)])
        return distil(
            teacher,
            X,
            labels,
            trainer=trainer,
            criterion=self._distillation_criterion(),
            spec=self.student,
            hidden_layer_sizes=self.student_hidden_layer_sizes,
            seeds=seeds,
            # Early stopping watches target rows when there are any: the
            # student is judged on the target task.
            validate_on=None if is_source.all() else ~is_source,
            consistent_teaching=self.consistent_teaching,
            noise_scale=self.noise_scale,
            unlabelled_marker=self._unlabelled_marker(),
            hint_weight=self.hint_weight,
            teacher_name=fitted["transfer_choice_"],
            sample_weight=weights,
            max_epochs=student_epochs(self.student_max_iter, self.max_iter),
        )

    # ------------------------------------------------------ fit plumbing

    def _teacher_is_pretrained(self):
        if isinstance(self.teacher, Pretrained):
            return True
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

    def _trainer(self, n_outputs):
        settings = TrainingSettings(
            learning_rate=self.learning_rate_init,
            weight_decay=self.weight_decay,
            max_epochs=self.max_iter,
            batch_size=self.batch_size,
            early_stopping=self.early_stopping,
            validation_fraction=self.validation_fraction,
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            verbose=self.verbose,
            device=self.device,
        )
        return StageTrainer(
            settings, self._supervised_criterion(), is_classifier(self), n_outputs
        )

    def _validate_domains(self, X, y, X_target, y_target, sample_domain, sample_weight):
        """Check every input of ``fit``; return the stacked rows and fitted facts.

        Returns the :class:`Domains` (standardised rows, encoded labels) and a
        dict of the fitted attributes validation establishes
        (``n_features_in_``, ``input_scaler_``, ``classes_`` or
        ``target_scaler_``, ...), to be assigned at the end of ``fit``.
        """
        # scikit-learn's validation records the features on the estimator it
        # is given; a shallow copy keeps this estimator untouched until the end.
        probe = copy.copy(self)
        if X_target is not None:
            refuse_split_form_where_it_goes_wrong(self)
        X, y, is_source, target_label_name = check_domains(
            probe, X, y, X_target, y_target, sample_domain, self._unlabelled_marker()
        )
        weights = check_fit_sample_weight(
            sample_weight, X.shape[0], X_target is not None
        )
        y, is_labelled, fitted = self._encode_labels(
            y, is_source, target_label_name, weights
        )
        check_weighted_rows(weights, is_source, is_labelled)
        fitted["n_features_in_"] = probe.n_features_in_
        if hasattr(probe, "feature_names_in_"):
            fitted["feature_names_in_"] = probe.feature_names_in_
        fitted["input_scaler_"] = fit_scaler(X, weights)
        warn_if_spread_underflows(X, fitted["input_scaler_"], "X")
        X = standardised_rows(
            X, fitted["input_scaler_"], "X" if X_target is None else "X or X_target"
        )
        domains = Domains(
            X=X,
            y=y,
            is_source=is_source,
            is_labelled=is_labelled,
            sample_weight=weights,
        )
        return domains, fitted

    def _set_fitted(self, fitted):
        """Replace every fitted attribute (``name_``) by those of ``fitted``."""
        stale = [
            name
            for name in vars(self)
            if name.endswith("_") and not name.startswith("_") and name not in fitted
        ]
        # The old values stay referenced until the swap is done: freeing one
        # may run Python code, which would let another thread read the
        # attributes half replaced.
        previous = dict(vars(self))
        vars(self).update(fitted)
        for name in stale:
            del self.__dict__[name]
        del previous

    # ------------------------------------------------------------- predict

    def _outputs(self, X, network="student_", sample_domain=None):
        """Return a fitted network's outputs on ``X`` and the fitted state used.

        The state is one copy of the estimator's attributes, taken at once, so
        that a ``fit`` finishing meanwhile in another thread cannot pair this
        call's network with the next fit's classes or scalers.
        """
        state = dict(vars(self))
        if "student_" not in state:
            check_is_fitted(self)
        if network not in state:
            tabular = sorted(
                name
                for name, weight in state["transfer_weights_"].items()
                if weight and name not in CANDIDATES
            )
            raise ValueError(
                "This estimator was loaded from a model file that holds its "
                f"student only: its teacher blends scikit-learn models {tabular} "
                "(teacher_pool='tabular'), which sktd's model files do not store. "
                "Keep the fitted estimator with pickle to use its teacher."
            )
        if not is_clean_float_array(X, state["n_features_in_"]) or (
            "feature_names_in_" in state
        ):
            X = validate_data(
                self, X, reset=False, dtype=np.float64, accept_sparse=SPARSE_FORMATS
            )
        if sample_domain is not None:
            # Predictions are for the target task whatever the domain; the
            # domains are only checked so that a misaligned array is caught.
            check_sample_domain(sample_domain, _num_samples(X))
        X = standardised_rows(X, state["input_scaler_"], "X")
        with torch_threads(resolve_threads(self._threads_setting())):
            return forward_rows(state[network].module_, X, self.device), state

    def _threads_setting(self):
        # Estimators pickled before the parameter existed predict as "auto".
        return getattr(self, "torch_threads", "auto")

    def predict_teacher(self, X):
        """Predict with the teacher (after transfer) instead of the student.

        The teacher is what the student was distilled from: comparing the two
        shows what distillation kept. ``teacher_`` is the same model as a
        skorch net, on standardised rows (``input_scaler_.transform(X)``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows to predict.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (classifier) or values in the units of ``y``
            (regressor).
        """
        return self._outputs_to_predictions(*self._outputs(X, "teacher_"))

    def score(self, X, y, sample_weight=None, sample_domain=None):
        """Return the student's accuracy (classifier) or R² (regressor) on ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Test rows.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Their labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows in the score.
        sample_domain : array-like of shape (n_samples,), default=None
            Accepted for skada's scorers and routed cross-validation; checked
            for its length and otherwise ignored: the student predicts the
            target task.

        Returns
        -------
        score : float
            Accuracy or R² of :meth:`predict`.
        """
        predictions = self.predict(X, sample_domain=sample_domain)
        return float(self._score_predictions(y, predictions, sample_weight))

    def distillation_report(self, X, y, n_repeats=5):
        """Compare teacher and student on ``X``, ``y``: what distillation bought.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
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
            wall time to predict all of ``X``. ``n_params`` counts the
            networks' weights and, for a teacher's scikit-learn members, the
            linear models' coefficients and the boosted trees' nodes.
        """
        check_is_fitted(self)
        if not isinstance(n_repeats, Integral) or n_repeats < 1:
            raise ValueError(
                f"n_repeats must be a positive integer, got {n_repeats!r}."
            )
        report = {}
        for name in ("teacher", "student"):
            times = []
            for _ in range(n_repeats):
                start = time.perf_counter()
                outputs, state = self._outputs(X, f"{name}_")
                predictions = self._outputs_to_predictions(outputs, state)
                times.append(time.perf_counter() - start)
            net = state[f"{name}_"]
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
        Same as :func:`sktd.export_onnx`.

        Parameters
        ----------
        path : str or path-like
            File to write, conventionally ending in ``.onnx``.
        """
        export_onnx(self, path)

    # -- hooks of the subclasses

    @abstractmethod
    def _encode_labels(self, y, is_source, target_label_name, sample_weight=None):
        """Return encoded labels, the labelled mask and the fitted label facts.

        ``sample_weight`` (or ``None``) weighs a regressor's target scaling.
        """

    @abstractmethod
    def _unlabelled_marker(self):
        """Return the label of an unlabelled row: ``-1`` or ``NaN``."""

    @abstractmethod
    def _supervised_criterion(self):
        """Return the loss of the pretraining and transfer stages."""

    @abstractmethod
    def _distillation_criterion(self):
        """Return the loss of the distillation stage."""

    @abstractmethod
    def _outputs_to_predictions(self, outputs, state):
        """Turn outputs into predictions in the units of ``y``, with ``state``."""

    @abstractmethod
    def _score_predictions(self, y, predictions, sample_weight=None):
        """Return the accuracy or R² of ``predictions``."""


def _rows(array, mask):
    """``array[mask]``, without a copy when every row is selected.

    Rows of a sparse ``X`` (:class:`~sktd._arrays.SparseRows`) stay sparse.
    """
    return array if mask.all() else take_rows(array, mask)
