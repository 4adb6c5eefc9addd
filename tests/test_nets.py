"""The stage nets' losses and perturbations (``sktd._nets``)."""

import pytest
import torch
from torch import nn

from sktd._nets import ConsistentDistillationNet, DistillationNet


def test_hint_term_adds_weighted_feature_error_to_the_distillation_loss():
    class Loss(nn.Module):
        def forward(self, outputs, teacher, labels):
            return ((outputs - teacher) ** 2).mean() + labels.sum()

    net = DistillationNet(
        module=nn.Linear(2, 2), criterion=Loss, hint_weight=0.5, n_hint_columns=3
    ).initialize()
    torch.manual_seed(0)
    outputs, hints = torch.randn(4, 2), torch.randn(4, 3)
    teacher, labels, teacher_hints = (
        torch.randn(4, 2),
        torch.zeros(4, 1),
        torch.randn(4, 3),
    )
    labels[0] = 1.0
    loss = net.get_loss(
        torch.cat([outputs, hints], 1),
        {"teacher": teacher, "labels": labels, "hints": teacher_hints},
    )
    expected = (
        ((outputs - teacher) ** 2).mean()
        + 1.0
        + 0.5 * ((hints - teacher_hints) ** 2).mean()
    )
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_mixup_rows_lose_their_hard_labels():
    net = ConsistentDistillationNet(
        module=nn.Linear(2, 2),
        criterion=nn.MSELoss,
        perturbation="mixup",
        unlabelled_marker=float("nan"),
    ).initialize()
    X = torch.randn(6, 2)
    mixed, labels, _ = net.perturb(X, torch.ones(6, 1))
    assert torch.isnan(labels).all()
    assert mixed.shape == X.shape and not torch.equal(mixed, X)


def test_noise_perturbation_keeps_labels_and_is_seeded():
    def perturbed(seed):
        net = ConsistentDistillationNet(
            module=nn.Linear(2, 2),
            criterion=nn.MSELoss,
            noise_scale=0.5,
            perturbation_seed=seed,
        ).initialize()
        return net.perturb(torch.zeros(4, 2), torch.arange(4.0)[:, None])[:2]

    (X_a, labels), (X_b, _) = perturbed(1), perturbed(1)
    torch.testing.assert_close(X_a, X_b)
    assert torch.equal(labels[:, 0], torch.arange(4.0))
    assert 0.1 < float(X_a.std()) < 1.5
