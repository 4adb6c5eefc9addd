"""The public estimators, a classifier and a regressor.

``fit`` runs three stages (see :class:`~sktd._base.BaseTransferDistill`):

1. pretrain a teacher on the labelled source rows (skipped for a teacher the
   user pretrained);
2. transfer it to the labelled target rows with a transfer strategy, guarded
   against negative transfer by blending it with the source network, a
   rehearsed fine-tune and target-only models as held-out rows advise;
3. distil a small student from the teacher over the transfer set, every
   source and target row, labelled or not.

Each class repeats its full signature and docstring, as scikit-learn's MLPs
do; ``tests/test_estimators.py`` keeps the shared parameter descriptions
consistent.
"""

import inspect
import warnings
from numbers import Real

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d
from torch import nn

from ._arrays import softmax, take
from ._base import BaseTransferDistill
from ._docstrings import fill_docstring
from ._domains import as_label_array, check_finite_labels, is_unlabelled_class
from ._losses import ClassificationDistillationLoss, RegressionDistillationLoss


@fill_docstring
class TransferDistillClassifier(ClassifierMixin, BaseTransferDistill):
    """Pretrain on a source domain, fine-tune on the target, distil a student.

    One ``fit`` trains a teacher network on the labelled source rows, fine-tunes
    it on the labelled target rows and distils it into a smaller student over
    every row, labelled or not, with Hinton's soft targets. ``predict`` and
    ``predict_proba`` use the student.

    Parameters
    ----------
    teacher : None, torch.nn.Module, skorch.NeuralNet or Pretrained, \
            default=None
        Teacher network. ``None`` builds an MLP with
        ``teacher_hidden_layer_sizes``. A module is copied, never trained in
        place; it must map ``n_features`` inputs to ``n_classes`` logits,
        shape ``(n_rows, n_classes)`` (checked before any training). A
        skorch net contributes its module, optimizer, ``lr``, ``max_epochs``,
        ``batch_size`` and callbacks (an ``LRScheduler`` schedules each stage
        the net trains); its nested parameters (``teacher__lr``) can be tuned
        by :class:`~sklearn.model_selection.GridSearchCV`. Its criterion,
        ``train_split``, ``device`` and ``verbose`` are the stage's, set by
        this estimator's parameters; data iterators, ``dataset``,
        ``predict_nonlinearity``, ``warm_start``, ``compile`` and
        ``use_caching`` other than skorch's defaults are refused
        (``ValueError`` naming them).
    {{student}}
    teacher_pretrained : "auto" or bool, default="auto"
        Whether ``teacher`` is already trained, so that the source stage is
        skipped. ``"auto"``: true for an initialized (fitted) skorch net and
        for :class:`~sktd.Pretrained`, which wraps a pretrained network so
        that ``clone`` (and so ``GridSearchCV``) keeps its weights. A
        pretrained teacher receives rows in the units given to ``fit`` (the
        estimator's scaling is undone for it). A skorch classifier trained with
        ``NLLLoss`` (a module ending in a softmax) is handled: its probabilities
        become logits. If its output width differs from the task's, its last
        ``nn.Linear`` is re-initialised at the right width and learnt on the
        labelled target rows.
    {{teacher_hidden_layer_sizes}}
    {{student_hidden_layer_sizes}}
    {{transfer_strategy}}
    {{l2sp_strength}}
    {{negative_transfer_guard}}
    {{teacher_pool}}
    {{transfer_set}}
    temperature : float, default=4.0
        Softening temperature ``T`` of the distillation loss; the teacher term
        is scaled by ``T**2``.
    {{alpha}}
    distillation_loss : {"kl", "logit_mse"}, default="kl"
        ``"kl"``: Hinton's soft targets. ``"logit_mse"``: squared error between
        logits (Ba & Caruana, 2014).
    {{hint_weight}}
    {{consistent_teaching}}
    {{noise_scale}}
    {{training}}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Sorted union of the source and target labels.
    teacher_ : skorch.NeuralNet
        The fitted teacher (after transfer). Its module outputs logits; it is
        a blend of networks (``BlendedTeacher``) when the guard blends.
        Absent from an estimator :func:`sktd.load` read from a file whose
        teacher blends scikit-learn models, which model files do not store.
    transfer_weights_ : dict of str to float
        The teacher's blend weights of ``"pretrained"`` (source network),
        ``"transferred"``, ``"rehearsed"`` (fine-tuned on the target rows
        replayed among source rows), ``"target_linear"`` (linear model of the
        target rows) and ``"target_network"`` (bag of networks trained on
        folds of the target rows alone), summing to 1.
    {{transfer_choice_}}
    transfer_losses_ : dict of str to float or None
        Out-of-fold log loss on the labelled target rows of each candidate
        (with ``teacher_pool="tabular"``, after its temperature) and of the
        chosen ``"blend"``; ``None`` when the guard did not run.
    student_ : skorch.NeuralNet
        The fitted student, used by ``predict``. Its module outputs logits.
    input_scaler_ : sklearn.preprocessing.StandardScaler
        Standardises the inputs of both networks, fitted on every row.
    {{history_}}
    {{n_iter_}}
    {{n_features_in_}}
    {{feature_names_in_}}

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

    __metadata_request__predict_proba = {"sample_domain": True}
    __metadata_request__predict_log_proba = {"sample_domain": True}

    # Before ClassifierMixin's in the MRO: the base's also takes sample_domain.
    score = BaseTransferDistill.score

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
        teacher_pool="tabular",
        transfer_set="munge",
        temperature=4.0,
        alpha=0.9,
        distillation_loss="kl",
        hint_weight=0.0,
        consistent_teaching=None,
        noise_scale=0.1,
        learning_rate_init=1e-3,
        batch_size="auto",
        max_iter=200,
        student_max_iter=None,
        weight_decay=0.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        random_state=None,
        verbose=0,
        device="cpu",
        torch_threads="auto",
    ):
        super().__init__(**_base_arguments(locals()))
        self.temperature = temperature
        self.distillation_loss = distillation_loss

    def predict(self, X, sample_domain=None):
        """Predict class labels with the student.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows to classify.
        sample_domain : array-like, default=None
            Accepted for Pipelines and cross-validation, and ignored:
            predictions are always for the target task.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Predicted labels from ``classes_``.
        """
        return self._outputs_to_predictions(
            *self._outputs(X, sample_domain=sample_domain)
        )

    def predict_proba(self, X, sample_domain=None):
        """Class probabilities from the student.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows to classify.
        sample_domain : array-like, default=None
            Accepted and ignored, as in :meth:`predict`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_``.
        """
        outputs, _ = self._outputs(X, sample_domain=sample_domain)
        return softmax(outputs.astype(np.float64))

    def predict_proba_teacher(self, X):
        """Class probabilities from the teacher (after transfer).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows to classify.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_``.
        """
        outputs, _ = self._outputs(X, "teacher_")
        return softmax(outputs.astype(np.float64))

    def predict_log_proba(self, X, sample_domain=None):
        """Log of :meth:`predict_proba`."""
        logits, _ = self._outputs(X, sample_domain=sample_domain)
        logits = logits.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags

    # -- hooks used by the base class

    def _encode_labels(self, y, is_source, target_label_name, sample_weight=None):
        if y.ndim != 1:
            y = column_or_1d(y, warn=True)
        is_labelled = is_source | ~is_unlabelled_class(y)
        hint = "Classifiers mark unlabelled target rows with -1."
        for rows, name in (
            (is_source, "y"),
            (is_labelled & ~is_source, target_label_name),
        ):
            labels = as_label_array(y[rows], name)
            check_finite_labels(labels, name, hint)
            try:
                check_classification_targets(labels)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from error
            if labels.dtype.kind in "OU" and "-1" in set(labels.tolist()):
                warnings.warn(
                    f"{name} holds the string '-1', taken as a class; unlabelled "
                    "target rows are marked with the number -1 (or None).",
                    UserWarning,
                    stacklevel=4,
                )
        labelled = as_label_array(y[is_labelled], "y and y_target")
        classes = np.unique(labelled)
        if len(classes) < 2:
            hint = (
                " Rows labelled -1 are unlabelled: recode a class named -1."
                if not is_labelled.all()
                else ""
            )
            raise ValueError(
                "TransferDistillClassifier needs labelled rows of at least 2 "
                f"classes; got 1 class ({classes[0]!r}).{hint}"
            )
        self._warn_if_labels_look_re_encoded(
            y, is_source, is_labelled, target_label_name
        )
        encoded = np.full(len(y), -1, dtype=np.int64)
        encoded[is_labelled] = np.searchsorted(classes, labelled)
        return encoded, is_labelled, {"classes_": classes, "n_outputs_": len(classes)}

    def _unlabelled_marker(self):
        return -1

    @staticmethod
    def _warn_if_labels_look_re_encoded(y, is_source, is_labelled, target_name):
        """Warn when the stacked form's -1 looks turned into a class.

        Meta-estimators that encode ``y`` themselves (``BaggingClassifier``,
        ``VotingClassifier``, ``CalibratedClassifierCV``, ...) turn the
        unlabelled marker into a class, found on target rows only, and leave
        no target row unlabelled.
        """
        is_target = ~is_source
        if (
            target_name != "y"
            or not is_target.any()
            or not is_labelled[is_target].all()
        ):
            return
        source = set(as_label_array(y[is_source], "y").tolist())
        only_target = set(as_label_array(y[is_target], "y").tolist()) - source
        if only_target:
            warnings.warn(
                f"Every target row is labelled and the class(es) "
                f"{sorted(only_target, key=str)} appear on target rows only: if a "
                "meta-estimator re-encoded y (BaggingClassifier, VotingClassifier, "
                "CalibratedClassifierCV, ...), the unlabelled marker -1 became a "
                "class. Give such meta-estimators the split form (X_target, "
                "y_target), or fit sktd directly.",
                UserWarning,
                stacklevel=5,
            )

    def _supervised_criterion(self):
        return nn.CrossEntropyLoss

    def _distillation_criterion(self):
        return ClassificationDistillationLoss(
            self.temperature, self.alpha, kind=self.distillation_loss
        )

    def _outputs_to_predictions(self, outputs, state):
        return state["classes_"][np.argmax(outputs, axis=1)]

    def _score_predictions(self, y, predictions, sample_weight=None):
        return accuracy_score(y, predictions, sample_weight=sample_weight)


@fill_docstring
class TransferDistillRegressor(RegressorMixin, BaseTransferDistill):
    """Pretrain on a source domain, fine-tune on the target, distil a student.

    The regression counterpart of :class:`TransferDistillClassifier`. The
    student is trained on ``(1 - alpha) * MSE(student, y) + alpha *
    MSE(student, teacher)``; rows whose label is ``NaN`` use the teacher term
    only. Targets are standardised internally.

    Parameters
    ----------
    teacher : None, torch.nn.Module, skorch.NeuralNet or Pretrained, \
            default=None
        Teacher network; see :class:`TransferDistillClassifier`. A module must
        map ``n_features`` inputs to ``n_outputs`` values, shape ``(n_rows,
        n_outputs)`` even for one target (checked before any training).
    {{student}}
    teacher_pretrained : "auto" or bool, default="auto"
        Whether ``teacher`` is already trained, so that the source stage is
        skipped. ``"auto"``: true for an initialized (fitted) skorch net and
        for :class:`~sktd.Pretrained`, which wraps a pretrained network so
        that ``clone`` (and so ``GridSearchCV``) keeps its weights. A
        pretrained teacher receives rows in the units given to ``fit`` (the
        estimator's scaling is undone for it) and returns values in the units of
        ``y``. If its output width differs from the task's, its last
        ``nn.Linear`` is re-initialised at the right width and learnt on the
        labelled target rows.
    {{teacher_hidden_layer_sizes}}
    {{student_hidden_layer_sizes}}
    {{transfer_strategy}}
    {{l2sp_strength}}
    {{negative_transfer_guard}}
    {{teacher_pool}}
    {{transfer_set}}
    {{alpha}}
    {{hint_weight}}
    {{consistent_teaching}}
    {{noise_scale}}
    {{training}}

    Attributes
    ----------
    teacher_ : skorch.NeuralNet
        The fitted teacher (after transfer), on standardised targets.
        Absent from an estimator :func:`sktd.load` read from a file whose
        teacher blends scikit-learn models, which model files do not store.
    transfer_weights_ : dict of str to float
        The teacher's blend weights of ``"pretrained"`` (source network),
        ``"transferred"``, ``"rehearsed"`` (fine-tuned on the target rows
        replayed among source rows), ``"target_linear"`` (ridge model of the
        target rows) and ``"target_network"`` (bag of networks trained on
        folds of the target rows alone), summing to 1.
    {{transfer_choice_}}
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
    {{history_}}
    {{n_iter_}}
    {{n_features_in_}}
    {{feature_names_in_}}

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

    # Before RegressorMixin's in the MRO: the base's also takes sample_domain.
    score = BaseTransferDistill.score

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
        teacher_pool="tabular",
        transfer_set="munge",
        alpha=0.9,
        hint_weight=0.0,
        consistent_teaching=None,
        noise_scale=0.1,
        learning_rate_init=1e-3,
        batch_size="auto",
        max_iter=200,
        student_max_iter=None,
        weight_decay=0.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        random_state=None,
        verbose=0,
        device="cpu",
        torch_threads="auto",
    ):
        super().__init__(**_base_arguments(locals()))

    def predict(self, X, sample_domain=None):
        """Predict targets with the student.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Rows to predict.
        sample_domain : array-like, default=None
            Accepted for Pipelines and cross-validation, and ignored.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions, in the units of the training targets.
        """
        return self._outputs_to_predictions(
            *self._outputs(X, sample_domain=sample_domain)
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    # -- hooks used by the base class

    def _encode_labels(self, y, is_source, target_label_name, sample_weight=None):
        # Source and target parts apart, so the message names the argument
        # that holds the value that is not a number.
        for rows, name in ((is_source, "y"), (~is_source, target_label_name)):
            if rows.any():
                _as_numbers(y[rows], name)
        y = _as_numbers(y, "y")
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
        target_scaler = StandardScaler().fit(
            columns[is_labelled],
            sample_weight=take(sample_weight, is_labelled),
        )
        labelled = columns[is_labelled]
        if (
            (target_scaler.var_ == 0) & (labelled.max(axis=0) != labelled.min(axis=0))
        ).any():
            warnings.warn(
                "y has targets whose values differ but whose spread is below "
                "float64 precision (variance 0): they are learnt as constants. "
                "Rescale them.",
                UserWarning,
                stacklevel=4,
            )
        encoded = np.full_like(columns, np.nan)
        encoded[is_labelled] = target_scaler.transform(columns[is_labelled])
        fitted = {"n_outputs_": columns.shape[1], "target_scaler_": target_scaler}
        return encoded.astype(np.float32), is_labelled, fitted

    def _unlabelled_marker(self):
        return np.nan

    def _supervised_criterion(self):
        return nn.MSELoss

    def _distillation_criterion(self):
        return RegressionDistillationLoss(self.alpha)

    def _outputs_to_predictions(self, outputs, state):
        scaler = state["target_scaler_"]
        predictions = scaler.inverse_transform(outputs.astype(np.float64))
        return predictions.ravel() if state["n_outputs_"] == 1 else predictions

    def _score_predictions(self, y, predictions, sample_weight=None):
        return r2_score(y, predictions, sample_weight=sample_weight)


def _base_arguments(arguments):
    """Return the base class's parameters among an ``__init__``'s ``locals()``."""
    names = inspect.signature(BaseTransferDistill.__init__).parameters
    return {name: arguments[name] for name in names if name != "self"}


def _as_numbers(y, name):
    """Return a regressor's labels as float64, or say which argument is wrong."""
    try:
        return check_array(
            y, ensure_2d=False, dtype=np.float64, ensure_all_finite=False
        )
    except (TypeError, ValueError) as error:
        message = f"{name} must hold numbers for a regressor: {error}"
        raise ValueError(message) from error
