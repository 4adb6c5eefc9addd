"""Transfer strategies, head resizing and rehearsal (``sktd._strategies``)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from torch import nn

import sktd._strategies
from sktd._arrays import TensorBatches
from sktd._callbacks import weighted_layers
from sktd._nets import SupervisedNet
from sktd._networks import MLP
from sktd._strategies import TransferStrategy, fit_head, strategy_settings
from sktd._trainer import StageTrainer


def _net(module, net_class=SupervisedNet, callbacks=(), **kwargs):
    return net_class(
        module=module,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.05,
        batch_size=32,
        iterator_train=TensorBatches,
        iterator_valid=TensorBatches,
        train_split=None,
        callbacks=list(callbacks),
        verbose=0,
        **kwargs,
    )


@pytest.fixture
def rows():
    X, y = make_classification(120, n_features=6, n_classes=3, n_informative=4)
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y)


def _weights(module):
    return {name: w.detach().clone() for name, w in module.named_parameters()}


def _fine_tune(strategy, rows, max_epochs, **settings):
    torch.manual_seed(0)
    module = MLP(6, 3, (8, 8))
    before = _weights(module)
    defaults = dict(lr=0.05, l2sp_strength=0.0, n_iter_no_change=4)
    defaults.update(settings)
    net_class, extra, callbacks = strategy_settings(strategy, module, **defaults)
    net = _net(module, net_class, callbacks, max_epochs=max_epochs, **extra)
    net.fit(*rows)
    return net, before


def test_gradual_trains_the_head_alone_then_unfreezes_downwards(rows):
    # n_iter_no_change=4: one more layer every 2 epochs.
    net, before = _fine_tune("gradual", rows, max_epochs=2)
    after = _weights(net.module_)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"head.weight", "head.bias"}
    net, before = _fine_tune("gradual", rows, max_epochs=3)
    after = _weights(net.module_)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"head.weight", "head.bias", "body.2.weight", "body.2.bias"}
    # Training ends with every weight trainable again.
    assert all(w.requires_grad for w in net.module_.parameters())


def test_l2sp_keeps_weights_near_their_source_values(rows):
    def distance(strength):
        net, before = _fine_tune("l2sp", rows, max_epochs=20, l2sp_strength=strength)
        after = _weights(net.module_)
        return sum(float(((after[n] - before[n]) ** 2).sum()) for n in before)

    assert distance(10.0) < 0.2 * distance(0.0)


def test_l2sp_replaces_weight_decay(rows):
    module = MLP(6, 3, (8,))
    _, extra, _ = strategy_settings("l2sp", module, 0.01, 0.5, 4)
    assert extra["optimizer__weight_decay"] == 0.0
    assert extra["l2sp_strength"] == 0.5


def test_discriminative_halves_the_learning_rate_per_layer_down(rows):
    net, _ = _fine_tune("discriminative", rows, max_epochs=1, lr=0.08)
    rates = {
        frozenset(id(p) for p in group["params"]): group["lr"]
        for group in net.optimizer_.param_groups
    }
    module = net.module_
    expected = {
        module.head: 0.08,
        module.body[2]: 0.04,
        module.body[0]: 0.02,
    }
    for layer, lr in expected.items():
        key = frozenset(id(p) for p in layer.parameters())
        assert rates[key] == pytest.approx(lr)


def test_fit_head_resizes_only_a_mismatched_head():
    module = MLP(4, 3, (5,))
    head, body = module.head, module.body[0].weight.detach().clone()
    assert not fit_head(module, 3, seed=0)
    assert module.head is head
    assert fit_head(module, 5, seed=0)
    assert module.head.out_features == 5 and module.head.in_features == 5
    assert torch.equal(module.body[0].weight, body)


def test_fit_head_names_a_head_that_cannot_be_resized():
    module = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match="BatchNorm1d.*torch.nn.Linear"):
        fit_head(module, 2, seed=0)


def test_weighted_layers_lists_leaves_with_weights_in_order():
    module = MLP(4, 2, (3, 3))
    names = [name for name, _ in weighted_layers(module)]
    assert names == ["body.0", "body.2", "head"]


def _rehearsal_problem(trainer):
    """A source covering [-2, 2], labelled target rows only in [1, 2]."""
    rng = np.random.RandomState(0)
    X_source = rng.uniform(-2, 2, (400, 1)).astype(np.float32)
    X_target = rng.uniform(1, 2, (20, 1)).astype(np.float32)
    X = np.vstack([X_source, X_target])
    y = np.sin(2 * X)
    source_rows = np.arange(len(X_source))
    module = trainer.new_module(None, (32, 32), 1, seed=0)
    net = trainer.net(SupervisedNet, module, None, stage="pretrain", seed=0)
    pretrained = trainer.fit(net, X_source, y[source_rows], stratify=True).module_
    return pretrained, X, y, source_rows, X_target, y[len(X_source) :]


def test_rehearsal_replays_source_rows_among_repeated_target_rows(
    make_trainer, monkeypatch
):
    seen = {}

    class Recording(StageTrainer):
        def fit(self, net, X, y, **kwargs):
            seen.update(X=X, y=y, max_epochs=net.max_epochs)
            return net

    trainer = make_trainer(nn.MSELoss, False, 1, max_epochs=100)
    pretrained, X_pool, y_pool, source_rows, X, y = _rehearsal_problem(trainer)
    recording = Recording(trainer.settings, nn.MSELoss, False, 1)
    monkeypatch.setattr(sktd._strategies, "REHEARSAL_SOURCE_ROWS", 300)
    strategy = TransferStrategy("finetune", 0.01, recording, None)
    strategy.rehearse(pretrained, X_pool, y_pool, source_rows, X, y, seed=0)
    # 300 of the 400 source rows, each once; the 20 target rows 10 times
    # (300 // 20 = 15, capped at 10); 20 epochs, fewer than max_iter.
    assert len(seen["X"]) == 300 + 10 * 20
    replayed = seen["X"][:300]
    assert len(np.unique(replayed)) == 300
    assert np.isin(replayed, X_pool[source_rows]).all()
    np.testing.assert_array_equal(seen["X"][300:], np.tile(X, (10, 1)))
    np.testing.assert_array_equal(seen["y"][300:], np.tile(y, (10, 1)))
    assert seen["max_epochs"] == 20


def test_rehearsal_remembers_the_source_where_target_rows_are_absent(make_trainer):
    trainer = make_trainer(nn.MSELoss, False, 1, max_epochs=100)
    pretrained, X_pool, y_pool, source_rows, X, y = _rehearsal_problem(trainer)
    strategy = TransferStrategy("finetune", 0.01, trainer, None)
    fine_tuned = strategy.fine_tune(pretrained, X, y, seed=1).module_
    rehearsed = strategy.rehearse(
        pretrained, X_pool, y_pool, source_rows, X, y, seed=1
    ).module_
    uncovered = np.linspace(-2, 1, 200, dtype=np.float32)[:, None]

    def error(module, rows):
        with torch.no_grad():
            outputs = module(torch.as_tensor(rows)).numpy()
        return float(np.mean((outputs - np.sin(2 * rows)) ** 2))

    # Fine-tuning on [1, 2] alone forgets the rest of the source's function;
    # rehearsal keeps it and still fits the target rows.
    assert error(rehearsed, uncovered) < 0.2 * error(fine_tuned, uncovered)
    assert error(rehearsed, X) < 0.01
    # The source network itself is never trained in place.
    assert pretrained is not fine_tuned and pretrained is not rehearsed


def _fold_parts(classification, n_folds=3, weighted=False):
    """Folds of different sizes (20 to 24 rows), as the guard's are."""
    rng = np.random.RandomState(1)
    parts = []
    for fold in range(n_folds):
        n = 20 + 2 * fold
        X = rng.normal(size=(n, 6)).astype(np.float32)
        if classification:
            y = rng.randint(0, 3, n)
        else:
            y = rng.normal(size=(n, 2)).astype(np.float32)
        weights = rng.uniform(0.5, 2, n).astype(np.float32) if weighted else None
        parts.append((X, y, weights))
    return parts


@pytest.mark.parametrize("strategy", ["finetune", "gradual", "l2sp", "discriminative"])
@pytest.mark.parametrize("classification", [True, False])
def test_folds_fine_tuned_side_by_side_train_as_each_alone(
    make_trainer, strategy, classification
):
    # One full batch an epoch and no plateau: each network's steps are then
    # those it takes alone, whatever the other networks of the stack do.
    criterion = nn.CrossEntropyLoss if classification else nn.MSELoss
    n_outputs = 3 if classification else 2
    trainer = make_trainer(
        criterion, classification, n_outputs, max_epochs=8, weight_decay=1e-3
    )
    pretrained = trainer.new_module(None, (8, 8), 6, seed=0)
    transfer = TransferStrategy(strategy, 0.5, trainer, None)
    parts = _fold_parts(classification, weighted=strategy == "finetune")
    side_by_side = transfer.fine_tune_folds(pretrained, parts, seed=0)
    assert len(side_by_side) == len(parts)
    for (X, y, weights), network in zip(parts, side_by_side):
        alone = transfer.fine_tune(pretrained, X, y, seed=0, sample_weight=weights)
        trained = _weights(alone.module_)
        assert any(
            not torch.equal(trained[name], value)
            for name, value in _weights(pretrained).items()
        )
        for name, value in _weights(network).items():
            torch.testing.assert_close(value, trained[name], atol=1e-5, rtol=1e-4)
        assert not network.training


def test_folds_rehearsed_side_by_side_train_as_each_alone(make_trainer):
    trainer = make_trainer(
        nn.MSELoss, False, 1, max_epochs=30, batch_size=10_000, n_iter_no_change=50
    )
    pretrained, X_pool, y_pool, source_rows, X, y = _rehearsal_problem(trainer)
    transfer = TransferStrategy("finetune", 0.01, trainer, None)
    parts = [(X[:12], y[:12], np.ones(12)), (X[6:], y[6:], np.linspace(1, 2, 14))]
    pool_weight = np.linspace(0.5, 1.5, len(X_pool))
    side_by_side = transfer.rehearse_folds(
        pretrained, X_pool, y_pool, source_rows, parts, [3, 4], pool_weight
    )
    for (X_fold, y_fold, weights), seed, network in zip(parts, [3, 4], side_by_side):
        alone = transfer.rehearse(
            pretrained,
            X_pool,
            y_pool,
            source_rows,
            X_fold,
            y_fold,
            seed,
            sample_weight=weights,
            pool_weight=pool_weight,
        )
        trained = _weights(alone.module_)
        for name, value in _weights(network).items():
            torch.testing.assert_close(value, trained[name], atol=1e-5, rtol=1e-4)
