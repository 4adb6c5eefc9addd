import torch
import torch.nn.functional as F

from sktd._losses import (
    ClassificationDistillationLoss,
    hinton_distillation_loss,
    regression_distillation_loss,
    soft_target_loss,
)


def _manual_kl(student, teacher, T):
    p = F.softmax(teacher / T, dim=1)
    q = F.softmax(student / T, dim=1)
    return (p * (p.log() - q.log())).sum(dim=1)


def test_soft_target_loss_is_kl_times_temperature_squared():
    torch.manual_seed(0)
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    for T in (1.0, 2.0, 4.0):
        expected = _manual_kl(s, t, T) * T * T
        torch.testing.assert_close(soft_target_loss(s, t, T), expected)


def test_temperature_squared_keeps_gradient_scale():
    # Without T**2 the soft-target gradient shrinks like 1/T**2 (Hinton 2015);
    # with it, the gradient norm stays of the same order as T grows.
    torch.manual_seed(0)
    t = torch.randn(64, 5) * 0.1
    norms = {}
    for T in (4.0, 16.0):
        s = (torch.randn(64, 5) * 0.1).requires_grad_()
        soft_target_loss(s, t, T).mean().backward()
        norms[T] = s.grad.norm().item()
    assert 0.5 < norms[16.0] / norms[4.0] < 2.0


def test_unlabelled_rows_only_get_teacher_term():
    torch.manual_seed(0)
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    unlabelled = torch.full((4,), -1)
    loss = hinton_distillation_loss(s, t, unlabelled, 3.0, alpha=0.3)
    expected = 0.3 * soft_target_loss(s, t, 3.0).mean()
    torch.testing.assert_close(loss, expected)


def test_labelled_rows_mix_cross_entropy():
    torch.manual_seed(0)
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    y = torch.tensor([0, 2, -1, 1])
    loss = hinton_distillation_loss(s, t, y, 2.0, alpha=0.25)
    ce = F.cross_entropy(s, y.clamp(min=0), reduction="none") * (y >= 0)
    expected = (0.75 * ce + 0.25 * soft_target_loss(s, t, 2.0)).mean()
    torch.testing.assert_close(loss, expected)


def test_classification_module_accepts_float_label_column():
    s, t = torch.randn(3, 3), torch.randn(3, 3)
    y = torch.tensor([[0.0], [-1.0], [2.0]])
    module = ClassificationDistillationLoss(temperature=2.0, alpha=0.5)
    torch.testing.assert_close(
        module(s, t, y), hinton_distillation_loss(s, t, y[:, 0].long(), 2.0, 0.5)
    )


def test_regression_loss_ignores_labels_of_unlabelled_rows():
    s = torch.tensor([[1.0], [2.0]])
    t = torch.tensor([[0.0], [0.0]])
    y = torch.tensor([[3.0], [float("nan")]])
    loss = regression_distillation_loss(s, t, y, alpha=0.2)
    expected = ((0.8 * 4.0 + 0.2 * 1.0) + 0.2 * 4.0) / 2
    assert abs(loss.item() - expected) < 1e-6
    assert torch.isfinite(loss)


def test_hard_label_loss_is_each_labelled_rows_cross_entropy_and_zero_elsewhere():
    from sktd._losses import hard_label_loss

    torch.manual_seed(0)
    logits = torch.randn(50, 4, requires_grad=True)
    y = torch.randint(-1, 4, (50,))
    labelled = y >= 0
    losses = hard_label_loss(logits, y)
    assert torch.equal(losses[~labelled], torch.zeros(int((~labelled).sum())))
    expected = F.cross_entropy(logits[labelled], y[labelled], reduction="none")
    torch.testing.assert_close(losses[labelled], expected, rtol=0, atol=0)
    # The unlabelled rows' logits get no gradient from it.
    (grad,) = torch.autograd.grad(losses.sum(), logits)
    assert torch.equal(grad[~labelled], torch.zeros_like(grad[~labelled]))
    assert hard_label_loss(logits, torch.full((50,), -1)).abs().sum() == 0
