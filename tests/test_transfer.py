"""Transfer strategies, pretrained teachers, custom modules, the guard."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier, NeuralNetRegressor
from torch import nn

import sktd._estimators
from sktd import TransferDistillClassifier, TransferDistillRegressor
from sktd._domains import Domains
from sktd._networks import MLP
from sktd._training import ConsistentDistillationNet, SupervisedNet, TensorBatches
from sktd._transfer import (
    CANDIDATES,
    BlendedTeacher,
    TeacherFeatures,
    blend_loss,
    choose_weights,
    fit_head,
    has_features,
    linear_module,
    simplex_grid,
    strategy_settings,
    weighted_layers,
)


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


@pytest.mark.parametrize("strategy", ["finetune", "gradual", "l2sp", "discriminative"])
def test_every_strategy_transfers_through_the_estimator(
    strategy, classification_domains, fast_params
):
    X, y, X_target, y_target = classification_domains
    model = TransferDistillClassifier(
        transfer_strategy=strategy, random_state=0, **fast_params
    ).fit(X, y, X_target=X_target, y_target=y_target)
    assert len(model.history_["transfer"]) > 0
    assert set(model.transfer_weights_) == set(CANDIDATES)
    assert sum(model.transfer_weights_.values()) == pytest.approx(1.0)
    labelled = y_target != -1
    assert model.score(X_target[labelled], y_target[labelled]) > 0.5


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


# ------------------------------------------------------- pretrained teacher


def _source_and_target(seed=0):
    X, y = make_classification(
        400, n_features=8, n_informative=5, n_classes=3, random_state=seed
    )
    # Raw, unscaled units: the pretrained net must see them as they are.
    X = X * 50 + 100
    return X[:300], y[:300], X[300:], y[300:]


def test_pretrained_skorch_classifier_is_used_as_it_is():
    X, y, X_target, y_target = _source_and_target()
    user_net = NeuralNetClassifier(
        nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3), nn.Softmax(-1)),
        max_epochs=5,
        lr=0.1,
        train_split=None,
        verbose=0,
    )
    user_net.fit(((X - 100) / 50).astype(np.float32), y)
    # The user's net expects its own scaling: wrap it to take raw rows.
    module = nn.Sequential(_Affine(-100 / 50, 1 / 50), user_net.module_)
    user_net.module_ = module
    model = TransferDistillClassifier(
        user_net, random_state=0, max_iter=5, student_hidden_layer_sizes=(8,)
    ).fit(X, y)
    assert model.history_["pretrain"] is None
    assert model.transfer_choice_ == "pretrained"
    expected = user_net.predict(X_target.astype(np.float32))
    teacher_logits = model.teacher_.module_(
        torch.tensor(model.input_scaler_.transform(X_target), dtype=torch.float32)
    )
    np.testing.assert_array_equal(teacher_logits.argmax(1).numpy(), expected)
    # skorch's classifier outputs probabilities; the teacher gives their log.
    np.testing.assert_allclose(
        torch.softmax(teacher_logits, 1).detach().numpy(),
        user_net.predict_proba(X_target.astype(np.float32)),
        atol=1e-5,
    )
    # The user's net is not trained in place.
    assert len(user_net.history) == 5


class _Affine(nn.Module):
    def __init__(self, shift, scale):
        super().__init__()
        self.shift = torch.as_tensor(shift, dtype=torch.float32)
        self.scale = torch.as_tensor(scale, dtype=torch.float32)

    def forward(self, X):
        return X * self.scale + self.shift


def test_pretrained_module_with_other_classes_gets_a_new_head():
    X, y, X_target, y_target = _source_and_target()
    pretrained = MLP(8, 2, (16,))
    model = TransferDistillClassifier(
        pretrained,
        teacher_pretrained=True,
        random_state=0,
        max_iter=10,
        student_hidden_layer_sizes=(8,),
    )
    model.fit(X, y, X_target=X_target[:40], y_target=y_target[:40])
    assert model.history_["pretrain"] is None
    assert len(model.history_["transfer"]) > 0
    assert model.predict_proba(X_target).shape == (100, 3)
    assert pretrained.head.out_features == 2  # the user's module is untouched


def test_pretrained_module_with_other_classes_needs_target_labels():
    X, y, _, _ = _source_and_target()
    model = TransferDistillClassifier(MLP(8, 2, (16,)), teacher_pretrained=True)
    with pytest.raises(ValueError, match="head is re-initialised.*y_target"):
        model.fit(X, y)


def test_teacher_pretrained_true_needs_a_teacher():
    X, y, _, _ = _source_and_target()
    with pytest.raises(ValueError, match="teacher_pretrained=True needs a teacher"):
        TransferDistillClassifier(teacher_pretrained=True).fit(X, y)


def test_pretrained_regressor_keeps_the_users_units():
    X, y = make_regression(300, n_features=4, noise=0.1, random_state=0)
    y = y * 10 + 500
    user_net = NeuralNetRegressor(
        nn.Linear(4, 1), max_epochs=300, lr=0.05, train_split=None, verbose=0
    )
    scaler = StandardScaler().fit(X)
    user_net.fit(scaler.transform(X).astype(np.float32), y.reshape(-1, 1) / 1000)
    module = nn.Sequential(
        _Affine(-scaler.mean_ / scaler.scale_, 1 / scaler.scale_),
        user_net.module_,
        _Affine(0.0, 1000.0),
    )
    model = TransferDistillRegressor(
        module, teacher_pretrained=True, max_iter=5, random_state=0
    ).fit(X, y)
    with torch.no_grad():
        expected = module(torch.tensor(X, dtype=torch.float32)).numpy().ravel()
        outputs = model.teacher_.module_(
            torch.tensor(model.input_scaler_.transform(X), dtype=torch.float32)
        ).numpy()
    teacher_predictions = model.target_scaler_.inverse_transform(outputs).ravel()
    np.testing.assert_allclose(teacher_predictions, expected, rtol=1e-4, atol=1e-3)


# ----------------------------------------------------------- custom modules


class SmallCNN(nn.Module):
    """A convolutional network for 8x8 digit images given as 64-column rows."""

    def __init__(self, n_classes=10, channels=8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Linear(channels * 16, n_classes)

    def forward(self, X):
        images = X.reshape(-1, 1, 8, 8)
        return self.head(self.features(images).flatten(1))


def test_custom_cnn_teacher_and_student_on_image_rows():
    X, y = load_digits(return_X_y=True)
    rng = np.random.RandomState(0)
    order = rng.permutation(len(X))
    X, y = X[order], y[order]
    model = TransferDistillClassifier(
        SmallCNN(channels=8),
        SmallCNN(channels=4),
        max_iter=8,
        learning_rate_init=0.01,
        random_state=0,
    ).fit(X[:600], y[:600], X_target=X[600:800], y_target=y[600:800])
    assert isinstance(model.student_.module_, SmallCNN)
    assert model.student_.module_.features[0].out_channels == 4
    assert model.score(X[1000:], y[1000:]) > 0.8


# ------------------------------------------------- negative-transfer guard


def test_pure_noise_source_does_not_hurt():
    X, y = make_classification(
        700, n_features=10, n_informative=6, n_classes=3, random_state=1
    )
    X_target, y_target = X[:60], y[:60]
    X_test, y_test = X[300:], y[300:]
    rng = np.random.RandomState(0)
    X_source = rng.normal(size=(600, 10))
    y_source = rng.randint(0, 3, 600)
    y_transfer = np.concatenate([y_target, np.full(240, -1)])
    model = TransferDistillClassifier(
        max_iter=60, learning_rate_init=0.01, random_state=0
    ).fit(
        X_source,
        y_source,
        X_target=np.vstack([X_target, X[60:300]]),
        y_target=y_transfer,
    )
    # The source network is worthless on the target: the guard weighs it out.
    assert model.transfer_weights_["pretrained"] <= 0.1
    assert model.transfer_losses_["pretrained"] > model.transfer_losses_["blend"]
    target_only = LogisticRegression(max_iter=1000).fit(
        StandardScaler().fit(X_target).transform(X_target), y_target
    )
    baseline = target_only.score(
        StandardScaler().fit(X_target).transform(X_test), y_test
    )
    assert model.score(X_test, y_test) >= baseline - 0.03


def test_guard_can_be_turned_off(classification_domains, fast_params):
    X, y, X_target, y_target = classification_domains
    model = TransferDistillClassifier(
        negative_transfer_guard=False, random_state=0, **fast_params
    ).fit(X, y, X_target=X_target, y_target=y_target)
    assert model.transfer_choice_ == "transferred"
    assert model.transfer_losses_ is None


def test_guard_needs_enough_labelled_rows(classification_domains, fast_params):
    X, y, X_target, y_target = classification_domains
    y_few = y_target.copy()
    y_few[5:] = -1
    model = TransferDistillClassifier(random_state=0, **fast_params).fit(
        X, y, X_target=X_target, y_target=y_few
    )
    assert model.transfer_choice_ == "transferred"
    assert model.transfer_losses_ is None


def test_regressor_guard_reports_its_choice(regression_domains, fast_params):
    X, y, X_target, y_target = regression_domains
    model = TransferDistillRegressor(random_state=0, **fast_params).fit(
        X, y, X_target=X_target, y_target=y_target
    )
    assert model.transfer_choice_ in set(CANDIDATES) | {"blend"}
    chosen = [n for n, w in model.transfer_weights_.items() if w > 0]
    if model.transfer_choice_ != "blend":
        assert chosen == [model.transfer_choice_]
    # Both losses are convex in the blend weights: a blend is never worse
    # than its members' weighted losses.
    losses, weights = model.transfer_losses_, model.transfer_weights_
    assert losses["blend"] <= sum(weights[n] * losses[n] for n in CANDIDATES) + 1e-9


def test_choose_weights_finds_the_right_candidate():
    rng = np.random.RandomState(0)
    y = rng.randint(0, 3, 50)
    truth = np.eye(3)[y] * 10
    outputs = {"pretrained": rng.normal(size=(50, 3)), "transferred": truth}
    weights, losses = choose_weights(outputs, y, classification=True)
    assert weights == {"pretrained": 0.0, "transferred": 1.0}
    assert losses["blend"] == losses["transferred"] < losses["pretrained"]
    # Regression: two half-right candidates blend into the right one.
    target = rng.normal(size=(50, 1))
    outputs = {"a": target + 1.0, "b": target - 1.0}
    weights, losses = choose_weights(outputs, target, classification=False)
    assert weights == {"a": 0.5, "b": 0.5}
    assert losses["blend"] == pytest.approx(0.0, abs=1e-12)


def _brute_force_best(outputs, y, classification):
    names = list(outputs)
    losses = [
        blend_loss(outputs, dict(zip(names, w)), y, classification)
        for w in simplex_grid(len(names))
    ]
    return simplex_grid(len(names))[int(np.argmin(losses))]


@pytest.mark.parametrize("classification", [True, False])
def test_choose_weights_averages_the_best_blends_of_bootstrap_resamples(
    classification,
):
    rng = np.random.RandomState(0)
    n = 40
    y = rng.randint(0, 3, n) if classification else rng.normal(size=(n, 2))
    signal = np.eye(3)[y] * 2 if classification else y
    outputs = {
        name: signal + rng.normal(scale=scale, size=signal.shape)
        for name, scale in [("a", 1.0), ("b", 1.2), ("c", 3.0)]
    }
    # Without resampling: the grid's best blend on the rows as they are.
    weights, _ = choose_weights(outputs, y, classification, n_bootstraps=0)
    expected = _brute_force_best(outputs, y, classification)
    np.testing.assert_allclose(list(weights.values()), expected)
    # With resampling: the mean of the best blends of the same resamples.
    weights, losses = choose_weights(outputs, y, classification, n_bootstraps=8, seed=3)
    draws = np.random.default_rng(3)
    best = []
    for _ in range(8):
        rows = draws.integers(0, n, n)
        resampled = {name: out[rows] for name, out in outputs.items()}
        best.append(_brute_force_best(resampled, y[rows], classification))
    np.testing.assert_allclose(list(weights.values()), np.mean(best, axis=0))
    assert sum(weights.values()) == pytest.approx(1.0)
    assert losses["blend"] == pytest.approx(
        blend_loss(outputs, weights, y, classification)
    )
    assert choose_weights(outputs, y, classification, n_bootstraps=8, seed=3) == (
        weights,
        losses,
    )


def _rehearsal_problem():
    """A source covering [-2, 2], labelled target rows only in [1, 2]."""
    rng = np.random.RandomState(0)
    X_source = rng.uniform(-2, 2, (400, 1)).astype(np.float32)
    X_target = rng.uniform(1, 2, (20, 1)).astype(np.float32)
    X = np.vstack([X_source, X_target])
    y = np.sin(2 * X)
    is_source = np.arange(len(X)) < len(X_source)
    domains = Domains(
        X=X, y=y, is_source=is_source, is_labelled=np.ones(len(X), bool), seed=0
    )
    model = TransferDistillRegressor(
        teacher_hidden_layer_sizes=(32, 32),
        transfer_strategy="finetune",
        learning_rate_init=0.01,
        max_iter=100,
    )
    model.n_outputs_, model.history_ = 1, {}
    pretrained = model._pretrain(domains)
    return model, pretrained.module_, domains, X[~is_source], y[~is_source]


def test_rehearsal_replays_source_rows_among_repeated_target_rows(monkeypatch):
    model, pretrained, domains, X, y = _rehearsal_problem()
    seen = {}

    def fit_net(net, X, y, stratify, validate_on=None):
        seen.update(X=X, y=y, max_epochs=net.max_epochs)
        return net

    monkeypatch.setattr(model, "_fit_net", fit_net)
    monkeypatch.setattr(sktd._estimators, "_REHEARSAL_SOURCE_ROWS", 300)
    model._rehearse(pretrained, domains, X, y, seed=0)
    # 300 of the 400 source rows, each once; the 20 target rows 10 times
    # (300 // 20 = 15, capped at 10); 20 epochs, fewer than max_iter.
    assert len(seen["X"]) == 300 + 10 * 20
    replayed = seen["X"][:300]
    assert len(np.unique(replayed)) == 300
    assert np.isin(replayed, domains.X[domains.is_source]).all()
    np.testing.assert_array_equal(seen["X"][300:], np.tile(X, (10, 1)))
    np.testing.assert_array_equal(seen["y"][300:], np.tile(y, (10, 1)))
    assert seen["max_epochs"] == 20


def test_rehearsal_remembers_the_source_where_target_rows_are_absent():
    model, pretrained, domains, X, y = _rehearsal_problem()
    fine_tuned = model._fine_tune(pretrained, X, y, seed=1).module_
    rehearsed = model._rehearse(pretrained, domains, X, y, seed=1).module_
    uncovered = np.linspace(-2, 1, 200, dtype=np.float32)[:, None]

    def error(module, rows):
        with torch.no_grad():
            outputs = module(torch.as_tensor(rows)).numpy()
        return float(np.mean((outputs - np.sin(2 * rows)) ** 2))

    # Fine-tuning on [1, 2] alone forgets the rest of the source's function;
    # rehearsal keeps it and still fits the target rows.
    assert error(rehearsed, uncovered) < 0.2 * error(fine_tuned, uncovered)
    assert error(rehearsed, X) < 0.01


@pytest.mark.parametrize("n_classes", [2, 3])
def test_linear_module_reproduces_logistic_regression(n_classes):
    X, y = make_classification(100, n_features=5, n_classes=n_classes, n_informative=3)
    model = LogisticRegression().fit(X, y)
    layer = linear_module(model, 5, classes=np.arange(n_classes + 1))
    with torch.no_grad():
        proba = torch.softmax(layer(torch.tensor(X, dtype=torch.float32)), 1).numpy()
    # The class the model never saw has (almost) no probability.
    assert proba[:, -1].max() < 1e-6
    np.testing.assert_allclose(proba[:, :-1], model.predict_proba(X), atol=1e-5)


def test_blended_teacher_blends_probabilities():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 4), nn.Linear(3, 4)
    X = torch.randn(10, 3)
    blend = BlendedTeacher({"a": a, "b": b}, {"a": 0.25, "b": 0.75}, True)
    expected = 0.25 * torch.softmax(a(X), 1) + 0.75 * torch.softmax(b(X), 1)
    torch.testing.assert_close(torch.softmax(blend(X), 1), expected)
    regression = BlendedTeacher({"a": a, "b": b}, {"a": 0.25, "b": 0.75}, False)
    torch.testing.assert_close(regression(X), 0.25 * a(X) + 0.75 * b(X))


# ------------------------------------------------------ consistent teaching


@pytest.mark.parametrize("perturbation", ["noise", "mixup"])
def test_consistent_teaching_keeps_the_teacher_out_of_the_optimizer(
    perturbation, classification_domains, fast_params
):
    X, y, X_target, y_target = classification_domains
    fast_params["max_iter"] = 40
    model = TransferDistillClassifier(
        consistent_teaching=perturbation, random_state=0, **fast_params
    ).fit(X, y, X_target=X_target, y_target=y_target)
    assert isinstance(model.student_, ConsistentDistillationNet)
    student_ids = {id(p) for p in model.student_.module_.parameters()}
    learnable = {id(p) for _, p in model.student_.get_all_learnable_params()}
    assert learnable == student_ids
    teacher_ids = {id(p) for p in model.teacher_.module_.parameters()}
    assert not teacher_ids & learnable
    # The student learnt the teacher's function well enough to agree with it.
    X_all = model.input_scaler_.transform(X_target).astype(np.float32)
    with torch.no_grad():
        teacher = model.teacher_.module_(torch.tensor(X_all)).argmax(1).numpy()
    assert np.mean(model.classes_[teacher] == model.predict(X_target)) > 0.7


def test_mixup_rows_lose_their_hard_labels():
    net = ConsistentDistillationNet(
        module=nn.Linear(2, 2),
        criterion=nn.MSELoss,
        perturbation="mixup",
        unlabelled_marker=float("nan"),
    ).initialize()
    X = torch.randn(6, 2)
    mixed, labels = net.perturb(X, torch.ones(6, 1))
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
        return net.perturb(torch.zeros(4, 2), torch.arange(4.0)[:, None])

    (X_a, labels), (X_b, _) = perturbed(1), perturbed(1)
    torch.testing.assert_close(X_a, X_b)
    assert torch.equal(labels[:, 0], torch.arange(4.0))
    assert 0.1 < float(X_a.std()) < 1.5


def test_teacher_features_of_a_blend_weigh_each_network_member():
    torch.manual_seed(0)
    first, second = MLP(4, 3, (5,)), MLP(4, 3, (6,))
    linear = nn.Linear(4, 3)
    blend = BlendedTeacher(
        {"a": first, "b": second, "c": linear},
        {"a": 0.25, "b": 0.5, "c": 0.25},
        classification=True,
    )
    rows = torch.randn(7, 4)
    with torch.no_grad():
        features = TeacherFeatures(blend)(rows)
        # Members side by side in name order, scaled by sqrt(weight); the
        # linear member has no hidden layer and is left out.
        expected = torch.cat(
            [0.5 * first.features(rows), 0.5**0.5 * second.features(rows)], dim=1
        )
    torch.testing.assert_close(features, expected)
    assert has_features(blend) and has_features(first)
    assert not has_features(linear)
    assert not has_features(
        BlendedTeacher({"c": linear}, {"c": 1.0}, classification=True)
    )
