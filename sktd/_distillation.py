"""The distillation stage: a student trained on a frozen teacher's outputs.

:func:`distil` takes the transfer set (every row, labelled or not), the
teacher module and a stage trainer, and returns the fitted student net. The
teacher's outputs, the labels and, with a hint loss, the teacher's features
travel as named targets (see :class:`~sktd._nets.DistillationNet`); with
consistent teaching, the teacher is queried on each perturbed batch instead.
"""

import warnings

import numpy as np
import torch
from skorch import NeuralNet
from torch import nn

from ._arrays import forward_rows
from ._nets import ConsistentDistillationNet, DistillationNet
from ._networks import HintedStudent, TeacherFeatures, has_features
from ._trainer import INIT_LOCK

# With ``batch_size="auto"`` the student's batches hold ``min(200, n)`` rows,
# as every stage's, or more on a transfer set so large that an epoch would
# take more than this many steps: a small student's step costs little more
# on 1,000 rows than on 200, and 100 steps an epoch still give it thousands
# of updates (a small set trained in a few big batches an epoch gets far
# fewer, and underfits: concrete's student lost 4 to 13 points).
DISTIL_STEPS_PER_EPOCH = 100


def student_epochs(student_max_iter, max_iter):
    """Return the distillation's epoch budget for ``student_max_iter``.

    ``None`` is ``max_iter``. A 100-epoch default for classifiers' students
    (their accuracy stops rising by 75-100 epochs on the development half)
    was adopted in sktd 0.6 and withdrawn: on the held-out half it took
    mlc_churn's student to 2.5 points below its teacher (see
    ``docs/benchmarks/real_data.rst``).
    """
    return max_iter if student_max_iter is None else int(student_max_iter)


def check_hint(hint_weight, consistent_teaching, student):
    """Refuse, before any training, a hint loss the distillation cannot use."""
    if not hint_weight:
        return
    if consistent_teaching is not None:
        raise ValueError(
            f"hint_weight={hint_weight!r} cannot be combined with "
            f"consistent_teaching={consistent_teaching!r}: the teacher's "
            "features are computed once, on the unperturbed rows. Set "
            "hint_weight=0 or consistent_teaching=None."
        )
    module = student.module if isinstance(student, NeuralNet) else student
    if module is not None and not callable(getattr(module, "features", None)):
        name = getattr(module, "__name__", type(module).__name__)
        raise ValueError(
            f"hint_weight={hint_weight!r} needs a student with a "
            f"features(X) method returning its last hidden layer; the student "
            f"{name} has none. Add one, or set hint_weight=0."
        )


def distil(
    teacher,
    X,
    labels,
    *,
    trainer,
    criterion,
    spec,
    hidden_layer_sizes,
    seeds,
    validate_on=None,
    consistent_teaching=None,
    noise_scale=0.1,
    unlabelled_marker=-1,
    hint_weight=0.0,
    teacher_name="teacher",
    sample_weight=None,
    max_epochs=None,
):
    """Train a student on ``teacher``'s outputs over rows ``X``; return its net.

    Parameters
    ----------
    teacher : torch.nn.Module
        The frozen teacher, in ``eval`` mode; never trained here.
    X : ndarray of shape (n_rows, n_features)
        The transfer set, standardised.
    labels : ndarray
        Encoded labels of ``X``, ``-1`` / ``NaN`` on rows without a hard label.
    trainer : StageTrainer
        Builds and fits the student's net.
    criterion : torch.nn.Module
        The distillation loss ``(student, teacher, labels)``.
    spec : None, torch.nn.Module or skorch.NeuralNet
        The user's ``student``.
    hidden_layer_sizes : tuple of int
        Hidden widths of the default student.
    seeds : Seeds
        Seeds of the student, its batches, perturbations and hint adapter.
    validate_on : ndarray of bool, default=None
        Rows early stopping may hold out (all when ``None``).
    consistent_teaching : {None, "noise", "mixup"}, default=None
        Perturb each batch and query the teacher on it.
    noise_scale : float, default=0.1
        Standard deviation of the ``"noise"`` perturbation.
    unlabelled_marker : int or float, default=-1
        The label of a mixed row.
    hint_weight : float, default=0.0
        Weight of the hint (feature) term; 0 turns it off.
    teacher_name : str, default="teacher"
        Named in the warning when the teacher has no features for a hint.
    sample_weight : ndarray of shape (n_rows,), default=None
        Weight of each row in the loss.
    max_epochs : int, default=None
        The student's epoch budget (``None``: the trainer's); a skorch
        ``spec`` keeps its own.
    """
    device = trainer.settings.device
    teacher_outputs = forward_rows(teacher, X, device)
    if not np.isfinite(teacher_outputs).all():
        raise ValueError(
            "The teacher predicts NaN or infinity on some rows; check the "
            "inputs for extreme values or lower learning_rate_init."
        )
    targets = {"teacher": teacher_outputs, "labels": labels}
    seed = seeds("distil")
    module = trainer.new_module(spec, hidden_layer_sizes, X.shape[1], seed=seed)
    extra = {}
    if _hints_from(teacher, hint_weight, teacher_name):
        hints = teacher_hints(teacher, X, device)
        targets["hints"] = hints
        module = hinted(module, X.shape[1], hints.shape[1], seed=seeds("hint_adapter"))
        extra = {"hint_weight": hint_weight, "n_hint_columns": hints.shape[1]}
    net_class = DistillationNet
    if consistent_teaching is not None:
        net_class = ConsistentDistillationNet
        extra = {
            "teacher_module": teacher,
            "perturbation": consistent_teaching,
            "noise_scale": noise_scale,
            "perturbation_seed": seeds("perturbation"),
            "unlabelled_marker": float(unlabelled_marker),
        }
    net = trainer.net(
        net_class,
        module,
        spec,
        stage="distil",
        seed=seed,
        criterion=criterion,
        **extra,
    )
    if net.batch_size == "auto":
        net.batch_size = distillation_batch_size(len(X))
    if max_epochs is not None and not isinstance(spec, NeuralNet):
        net.max_epochs = max_epochs
    net = trainer.fit(
        net,
        X,
        targets,
        stratify=False,
        validate_on=validate_on,
        sample_weight=sample_weight,
    )
    if isinstance(net.module_, HintedStudent):
        # The adapter served training only: the student is what predicts.
        net.module_ = net.module_.student
    return net


def distillation_batch_size(n_rows):
    """Return the student's rows per batch when ``batch_size="auto"``."""
    return min(n_rows, max(200, -(-n_rows // DISTIL_STEPS_PER_EPOCH)))


def _hints_from(teacher, hint_weight, teacher_name):
    """Whether the distillation adds a hint loss: the teacher must allow it."""
    if not hint_weight:
        return False
    if not has_features(teacher):
        warnings.warn(
            f"hint_weight={hint_weight!r} has no effect: the teacher "
            f"({teacher_name!r}) has no hidden layer to match.",
            UserWarning,
            stacklevel=4,
        )
        return False
    return True


def teacher_hints(teacher, X, device):
    """Return the teacher's features on every row, each column standardised."""
    hints = forward_rows(TeacherFeatures(teacher), X, device)
    scale = hints.std(axis=0)
    # A unit that never fires (a dead ReLU) carries nothing to match.
    scale[scale < 1e-6] = 1.0
    return (hints - hints.mean(axis=0)) / scale


def hinted(student, n_features, n_hints, seed):
    """Wrap ``student`` with a linear adapter from its features to the hints."""
    device = next(student.parameters()).device
    with torch.no_grad():
        row = torch.zeros(1, n_features, device=device)
        width = student.features(row).flatten(1).shape[1]
    with INIT_LOCK:
        torch.manual_seed(seed)
        adapter = nn.Linear(width, n_hints).to(device)
    return HintedStudent(student, adapter)
