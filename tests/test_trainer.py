"""The stage trainer on arrays (``sktd._trainer``)."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch import NeuralNet
from torch import nn

from sktd._nets import SupervisedNet
from sktd._networks import MLP
from sktd._trainer import check_hidden_layer_sizes


@pytest.fixture
def rows():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(100, 3)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


def test_new_module_is_seeded_and_of_the_task_width(make_trainer):
    trainer = make_trainer(n_outputs=2, max_epochs=5)
    first = trainer.new_module(None, (4,), 3, seed=1)
    again = trainer.new_module(None, (4,), 3, seed=1)
    other = trainer.new_module(None, (4,), 3, seed=2)
    assert isinstance(first, MLP) and first.head.out_features == 2
    assert torch.equal(first.head.weight, again.head.weight)
    assert not torch.equal(first.head.weight, other.head.weight)
    given = nn.Linear(3, 2)
    assert trainer.new_module(given, (4,), 3, seed=1) is not given
    with pytest.raises(TypeError, match="teacher and student must be None"):
        trainer.new_module("mlp", (4,), 3, seed=1)


def test_a_skorch_spec_sets_the_optimizer_and_epochs(make_trainer, rows):
    spec = NeuralNet(nn.Linear, criterion=nn.MSELoss, lr=0.5, max_epochs=3)
    trainer = make_trainer(n_outputs=2, max_epochs=5)
    net = trainer.net(SupervisedNet, nn.Linear(3, 2), spec, stage="pretrain", seed=0)
    assert (net.lr, net.max_epochs) == (0.5, 3)
    assert trainer.learning_rate(spec) == 0.5 and trainer.max_epochs(spec) == 3
    assert trainer.learning_rate(None) == 0.01 and trainer.max_epochs(None) == 5
    fitted = trainer.fit(net, *rows, stratify=True)
    assert len(fitted.history) == 3 and not fitted.module_.training


def test_early_stopping_holds_out_a_stratified_validation_split(make_trainer, rows):
    trainer = make_trainer(
        n_outputs=2, validation_fraction=0.2, early_stopping=True, max_epochs=3
    )
    net = trainer.net(SupervisedNet, nn.Linear(3, 2), None, stage="pretrain", seed=0)
    net = trainer.fit(net, *rows, stratify=True)
    assert "valid_loss" in net.history[-1]
    # 20 of the 100 rows held out, so each epoch trains on 80.
    assert net.history[-1, "batches", 0, "train_batch_size"] == 80


def test_a_diverging_stage_restarts_with_a_smaller_step(make_trainer, rows):
    X, y = rows

    class Exploding(nn.Module):
        """Gives a NaN loss while its learning rate is above 0.1."""

        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 2)
            self.scale = 1.0

        def forward(self, X):
            return self.layer(X) * self.scale

    trainer = make_trainer(n_outputs=2, learning_rate=10.0, max_epochs=2)
    net = trainer.net(SupervisedNet, Exploding(), None, stage="pretrain", seed=0)
    original_fit = SupervisedNet.fit
    lrs = []

    def fit(self, X, y=None, **kwargs):
        lrs.append(self.lr)
        self.module.scale = float("nan") if self.lr > 0.1 else 1.0
        return original_fit(self, X, y, **kwargs)

    net.fit = fit.__get__(net)
    fitted = trainer.fit(net, X, y, stratify=True)
    assert lrs == [10.0, 1.0, 0.1]
    assert np.isfinite(fitted.history[-1, "train_loss"])


def test_a_stage_that_keeps_diverging_names_the_remedy(make_trainer, rows):
    X, y = rows

    class AlwaysNaN(nn.Linear):
        def forward(self, X):
            return super().forward(X) * float("nan")

    trainer = make_trainer(n_outputs=2, max_epochs=2)
    net = trainer.net(SupervisedNet, AlwaysNaN(3, 2), None, stage="pretrain", seed=0)
    with pytest.raises(ValueError, match="lower learning_rate_init"):
        trainer.fit(net, X, y, stratify=True)


def test_hidden_layer_sizes_are_checked():
    assert check_hidden_layer_sizes([3, 2]) == (3, 2)
    assert check_hidden_layer_sizes(5) == (5,)
    with pytest.raises(ValueError, match="positive integers"):
        check_hidden_layer_sizes((3, 0))


def test_callbacks_of_a_skorch_net_run_and_unhonoured_settings_are_refused(
    make_trainer,
):
    from skorch import NeuralNetClassifier
    from skorch.callbacks import LRScheduler
    from torch.optim.lr_scheduler import StepLR

    from sktd._nets import SupervisedNet

    trainer = make_trainer(n_outputs=2)
    X = np.random.RandomState(0).normal(size=(60, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    spec = NeuralNetClassifier(
        nn.Linear,
        module__in_features=4,
        module__out_features=2,
        lr=0.1,
        max_epochs=4,
        callbacks=[LRScheduler(policy=StepLR, step_size=1, gamma=0.5)],
    )
    net = trainer.net(SupervisedNet, nn.Linear(4, 2), spec, stage="distil", seed=0)
    trainer.fit(net, X, y, stratify=True)
    # Halved after each of the 4 epochs; the user's callback object untouched.
    assert net.optimizer_.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**4)
    assert not hasattr(spec.callbacks[0], "lr_scheduler_")
    for setting in (
        {"iterator_train__shuffle": False},
        {"predict_nonlinearity": None},
        {"callbacks__print_log__sink": print},
    ):
        refused = clone(spec).set_params(**setting)
        with pytest.raises(ValueError, match=next(iter(setting))):
            trainer.net(SupervisedNet, nn.Linear(4, 2), refused, stage="distil", seed=0)


def test_a_cap_bounds_a_stages_epoch_budget_and_never_raises_it(make_trainer):
    from skorch import NeuralNet
    from torch import nn

    trainer = make_trainer(max_epochs=15)
    assert trainer.max_epochs(None) == 15
    assert trainer.max_epochs(None, cap=5) == 5
    assert trainer.max_epochs(None, cap=50) == 15
    spec = NeuralNet(nn.Linear(2, 1), criterion=nn.MSELoss, max_epochs=3)
    assert trainer.max_epochs(spec, cap=100) == 3


def test_a_stack_of_networks_plateaus_on_its_summed_loss(make_trainer):
    # The stacked loss sums each network's: its plateau threshold scales with
    # them, so the stack stops when the networks' mean loss would.
    trainer = make_trainer(tol=1e-3)
    for n_networks in (1, 5):
        net = trainer.net(
            SupervisedNet,
            MLP(2, 3, (4,)),
            None,
            stage="transfer",
            seed=0,
            n_networks=n_networks,
        )
        stopper = dict(net.callbacks)["early_stopping"]
        assert stopper.threshold == pytest.approx(1e-3 * n_networks)
