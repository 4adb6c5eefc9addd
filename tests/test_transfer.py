"""Transfer through ``fit``: strategies, pretrained teachers, custom modules."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier, NeuralNetRegressor
from torch import nn

from sktd import TransferDistillClassifier, TransferDistillRegressor
from sktd._guard import CANDIDATES
from sktd._nets import ConsistentDistillationNet
from sktd._networks import MLP


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


# ------------------------------------------------------- pretrained teacher


def _source_and_target(seed=0):
    X, y = make_classification(
        400, n_features=8, n_informative=5, n_classes=3, random_state=seed
    )
    # Raw, unscaled units: the pretrained net must see them as they are.
    X = X * 50 + 100
    return X[:300], y[:300], X[300:], y[300:]


def test_pretrained_skorch_classifier_is_used_as_it_is():
    user_net, X, y, X_target, y_target = _fitted_user_net()
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


def _fitted_user_net():
    """A skorch classifier the user trained, wrapped to take raw rows."""
    X, y, X_target, y_target = _source_and_target()
    user_net = NeuralNetClassifier(
        nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3), nn.Softmax(-1)),
        max_epochs=5,
        lr=0.1,
        train_split=None,
        verbose=0,
    ).fit(((X - 100) / 50).astype(np.float32), y)
    # The user's net expects its own scaling: wrap it to take raw rows.
    user_net.module_ = nn.Sequential(_Affine(-100 / 50, 1 / 50), user_net.module_)
    return user_net, X, y, X_target, y_target


def test_pretrained_wrapper_keeps_the_weights_through_clone_and_grid_search():
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    from sktd import Pretrained

    user_net, X, y, X_target, y_target = _fitted_user_net()
    params = dict(random_state=0, max_iter=5, student_hidden_layer_sizes=(8,))
    direct = TransferDistillClassifier(Pretrained(user_net), **params).fit(X, y)
    cloned = clone(TransferDistillClassifier(Pretrained(user_net), **params))
    cloned.fit(X, y)
    assert cloned.history_["pretrain"] is None
    np.testing.assert_array_equal(
        direct.predict_proba_teacher(X_target), cloned.predict_proba_teacher(X_target)
    )
    # The teacher predicts as the user's net does (no pretraining happened).
    np.testing.assert_array_equal(
        cloned.predict_teacher(X_target), user_net.predict(X_target.astype(np.float32))
    )
    grid = GridSearchCV(
        TransferDistillClassifier(Pretrained(user_net), **params),
        {"temperature": [2.0, 4.0]},
        cv=2,
    ).fit(X, y)
    assert grid.best_estimator_.history_["pretrain"] is None


def test_a_cloned_skorch_teacher_marked_pretrained_is_refused_with_the_remedy():
    from sklearn.base import clone

    user_net, X, y, *_ = _fitted_user_net()
    model = clone(TransferDistillClassifier(user_net, teacher_pretrained=True))
    with pytest.raises(ValueError, match=r"sktd.Pretrained\(net\)"):
        model.fit(X, y)
