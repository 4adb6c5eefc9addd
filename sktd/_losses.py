"""Distillation losses: plain functions, ``nn.Module`` wrappers, a registry.

Every loss takes the student's outputs, the teacher's outputs and the labels
of the same rows, and optionally the rows' weights. Unlabelled rows (label
``-1`` for classes, ``NaN`` for regression) contribute only the teacher term.
"""

import torch
import torch.nn.functional as F
from torch import nn


def weighted_mean(losses, sample_weight=None):
    """Mean of per-row ``losses``, weighted by ``sample_weight`` when given.

    ``sum(w * loss) / sum(w)``: a row of integer weight ``k`` counts as ``k``
    copies of it; a batch whose rows all weigh zero contributes nothing.
    """
    if sample_weight is None:
        return losses.mean()
    sample_weight = sample_weight.to(losses.dtype)
    total = sample_weight.sum()
    return (losses * sample_weight).sum() / torch.clamp(total, min=1e-12)


def soft_target_loss(student_logits, teacher_logits, temperature):
    """Per-row ``T**2 * KL(softmax(t / T) || softmax(s / T))``.

    The ``T**2`` factor keeps the gradient magnitude independent of the
    temperature (Hinton et al., 2015, section 2).
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_student, p_teacher, reduction="none").sum(dim=1)
    return kl * temperature**2


def hard_label_loss(student_logits, y):
    """Per-row cross-entropy on rows with a label, zero where ``y == -1``."""
    # One kernel, the same values and gradients as masking the labelled rows
    # (tested), at half the cost of a small student's masked loss.
    return F.cross_entropy(student_logits, y, ignore_index=-1, reduction="none")


def hinton_distillation_loss(
    student_logits, teacher_logits, y, temperature, alpha, sample_weight=None
):
    """Hinton's knowledge-distillation loss, averaged over the (weighted) rows.

    ``(1 - alpha) * CE(y, s) + alpha * T**2 * KL(softmax(t/T) || softmax(s/T))``
    on labelled rows; only the second term on rows whose label is ``-1``.

    Examples
    --------
    >>> import torch
    >>> s, t = torch.zeros(2, 3), torch.zeros(2, 3)
    >>> float(hinton_distillation_loss(s, t, torch.tensor([-1, -1]), 4.0, 0.5))
    0.0
    """
    hard = hard_label_loss(student_logits, y)
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    return weighted_mean((1.0 - alpha) * hard + alpha * soft, sample_weight)


def logit_matching_loss(
    student_logits, teacher_logits, y, temperature, alpha, sample_weight=None
):
    """Ba & Caruana's logit regression mixed with cross-entropy on labelled rows.

    ``temperature`` is accepted for a common signature and not used.
    """
    del temperature
    hard = hard_label_loss(student_logits, y)
    soft = ((student_logits - teacher_logits) ** 2).mean(dim=1)
    return weighted_mean((1.0 - alpha) * hard + alpha * soft, sample_weight)


def regression_distillation_loss(
    student_out, teacher_out, y, alpha, sample_weight=None
):
    """``(1 - alpha) * MSE(s, y) + alpha * MSE(s, t)`` (Saputra et al., 2019).

    Rows whose label is ``NaN`` contribute only the teacher term.

    Examples
    --------
    >>> import torch
    >>> s, t = torch.ones(2, 1), torch.zeros(2, 1)
    >>> y = torch.tensor([[1.0], [float("nan")]])
    >>> float(regression_distillation_loss(s, t, y, alpha=0.5))
    0.5
    """
    labelled = ~torch.isnan(y).any(dim=1)
    teacher_term = ((student_out - teacher_out) ** 2).mean(dim=1)
    label_term = ((student_out - torch.nan_to_num(y)) ** 2).mean(dim=1)
    label_term = torch.where(labelled, label_term, torch.zeros_like(label_term))
    return weighted_mean(
        (1.0 - alpha) * label_term + alpha * teacher_term, sample_weight
    )


class ClassificationDistillationLoss(nn.Module):
    """Module form of a classification distillation loss.

    Parameters
    ----------
    temperature : float
        Softening temperature ``T`` of both distributions.
    alpha : float
        Weight of the teacher term; ``1 - alpha`` weighs the labels.
    kind : {"kl", "logit_mse"}, default="kl"
        ``"kl"`` is Hinton's soft-target loss, ``"logit_mse"`` matches logits.
    """

    def __init__(self, temperature, alpha, kind="kl"):
        super().__init__()
        self.temperature = temperature
        self.alpha = alpha
        self.loss_function = CLASSIFICATION_LOSSES[kind]

    def forward(self, student_logits, teacher_logits, y, sample_weight=None):
        """Return the (weighted) mean loss over the batch; ``y`` may be a column."""
        if y.ndim == 2:
            y = y[:, 0]
        y = y.long()
        return self.loss_function(
            student_logits,
            teacher_logits,
            y,
            self.temperature,
            self.alpha,
            sample_weight=sample_weight,
        )


class RegressionDistillationLoss(nn.Module):
    """Module form of :func:`regression_distillation_loss`."""

    def __init__(self, alpha):
        super().__init__()
        self.alpha = alpha

    def forward(self, student_out, teacher_out, y, sample_weight=None):
        """Return the (weighted) mean loss over the batch."""
        return regression_distillation_loss(
            student_out, teacher_out, y, self.alpha, sample_weight=sample_weight
        )


CLASSIFICATION_LOSSES = {
    "kl": hinton_distillation_loss,
    "logit_mse": logit_matching_loss,
}
