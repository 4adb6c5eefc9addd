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


class _Modes(nn.Module):
    """A linear layer that records whether it ran in training mode."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 2)
        self.modes = []

    def forward(self, X):
        self.modes.append(self.training)
        return self.layer(X)


def _supervised_net(make_trainer, callbacks=(), early_stopping=False):
    from sktd._nets import SupervisedNet

    trainer = make_trainer(
        n_outputs=2, max_epochs=3, batch_size=10, early_stopping=early_stopping
    )
    return trainer, trainer.net(
        SupervisedNet, _Modes(), None, stage="transfer", seed=0, callbacks=callbacks
    )


def _rows():
    rng = torch.Generator().manual_seed(0)
    return torch.randn(40, 3, generator=rng).numpy(), (torch.arange(40) % 2).numpy()


def test_callbacks_that_act_on_batches_hear_every_batch(make_trainer):
    from skorch.callbacks import Callback

    class Batches(Callback):
        def initialize(self):
            self.events = []
            return self

        def on_batch_end(self, net, training=False, **kwargs):
            self.events.append(("end", training))

        def on_grad_computed(self, net, named_parameters, **kwargs):
            self.events.append(("grad", len(list(named_parameters))))

    class Epochs(Callback):
        def on_epoch_end(self, net, **kwargs):
            pass

    batches = Batches()
    trainer, net = _supervised_net(
        make_trainer, callbacks=[("batches", batches), ("epochs", Epochs())]
    )
    net = trainer.fit(net, *_rows(), stratify=True)
    heard = dict(net.callbacks_)["batches"]
    # 3 epochs of 4 batches: each batch's end and gradient (two weights).
    assert heard.events == [("grad", 2), ("end", True)] * 12
    listeners = net.batch_listeners_
    assert listeners["on_batch_end"] == listeners["on_grad_computed"] == [heard]
    assert listeners["on_batch_begin"] == []


def test_training_and_validation_batches_run_in_their_modes(make_trainer):
    trainer, net = _supervised_net(make_trainer, early_stopping=True)
    net = trainer.fit(net, *_rows(), stratify=True)
    # Per epoch: 36 training rows in 4 batches, then 4 validation rows in one.
    assert net.module_.modes == ([True] * 4 + [False]) * 3
    assert not net.module_.training
