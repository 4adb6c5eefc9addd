"""The distillation stage on arrays (``sktd._distillation``)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from skorch import NeuralNet
from torch import nn

from sktd._distillation import check_hint, distil
from sktd._losses import ClassificationDistillationLoss
from sktd._nets import DistillationNet
from sktd._networks import MLP
from sktd._seeds import Seeds


@pytest.fixture(scope="module")
def transfer_set():
    X, y = make_classification(
        200, n_features=5, n_informative=3, n_classes=3, random_state=0
    )
    labels = y.astype(np.int64)
    labels[50:] = -1
    torch.manual_seed(0)
    teacher = MLP(5, 3, (16,)).eval()
    return X.astype(np.float32), labels, teacher


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _distil(teacher, X, labels, trainer, spec=None, **kwargs):
    return distil(
        teacher,
        X,
        labels,
        trainer=trainer,
        criterion=ClassificationDistillationLoss(4.0, 0.9),
        spec=spec,
        hidden_layer_sizes=(8,),
        seeds=Seeds(0),
        **kwargs,
    )


def test_teacher_stays_frozen_and_out_of_the_optimizer(make_trainer, transfer_set):
    X, labels, teacher = transfer_set
    before = _weights(teacher)
    initial_student = MLP(5, 3, (8,))
    initial = _weights(initial_student)
    student = _distil(teacher, X, labels, make_trainer(), spec=initial_student)
    for name, value in _weights(teacher).items():
        assert torch.equal(value, before[name]), name
    trained = _weights(student.module_)
    assert any(not torch.equal(initial[k], trained[k]) for k in trained)
    # The module handed in is copied, not trained in place.
    for name, value in _weights(initial_student).items():
        assert torch.equal(value, initial[name])
    teacher_ids = {id(p) for p in teacher.parameters()}
    optimised = {id(p) for g in student.optimizer_.param_groups for p in g["params"]}
    assert not teacher_ids & optimised
    assert not teacher.training


def test_teacher_outputs_stay_aligned_with_rows_under_shuffling(
    make_trainer, transfer_set, monkeypatch
):
    X, labels, teacher = transfer_set
    checked = []
    original_get_loss = DistillationNet.get_loss

    def checking_get_loss(self, y_pred, y_true, X=None, training=False):
        if training:
            with torch.no_grad():
                torch.testing.assert_close(y_true["teacher"], teacher(X))
            rows = X.numpy()
            # Labels travel with their rows too: row i's label is labels[i].
            index = [int(np.flatnonzero((rows_all == r).all(1))[0]) for r in rows]
            assert torch.equal(y_true["labels"], torch.as_tensor(labels[index]))
            checked.append(len(X))
        return original_get_loss(self, y_pred, y_true, X=X, training=training)

    rows_all = X
    monkeypatch.setattr(DistillationNet, "get_loss", checking_get_loss)
    _distil(teacher, X, labels, make_trainer(max_epochs=2, batch_size=16))
    # Every row of the transfer set was checked in every epoch.
    assert sum(checked) == 2 * len(X)


def test_student_learns_the_teacher_on_unlabelled_rows(make_trainer, transfer_set):
    X, labels, teacher = transfer_set
    unlabelled = np.full_like(labels, -1)
    student = _distil(teacher, X, unlabelled, make_trainer(max_epochs=60))
    with torch.no_grad():
        agree = (student.module_(torch.as_tensor(X)).argmax(1)) == teacher(
            torch.as_tensor(X)
        ).argmax(1)
    assert float(agree.float().mean()) > 0.8


def test_hint_with_a_teacher_without_hidden_layers_warns_and_trains_without(
    make_trainer,
    transfer_set,
):
    X, labels, _ = transfer_set
    linear = nn.Linear(5, 3).eval()
    with pytest.warns(UserWarning, match="'target_linear'.*no hidden layer"):
        student = _distil(
            linear,
            X,
            labels,
            make_trainer(max_epochs=2),
            hint_weight=1.0,
            teacher_name="target_linear",
        )
    assert type(student.module_) is MLP


def test_hint_trains_an_adapter_then_keeps_the_plain_student(
    make_trainer, transfer_set
):
    X, labels, teacher = transfer_set
    student = _distil(teacher, X, labels, make_trainer(max_epochs=2), hint_weight=1.0)
    assert type(student.module_) is MLP
    assert student.module_(torch.zeros(1, 5)).shape == (1, 3)


def test_check_hint_refuses_what_distillation_cannot_use():
    check_hint(0.0, "mixup", nn.Linear(2, 2))  # no hint: nothing to refuse
    with pytest.raises(ValueError, match="hint_weight=1.0 cannot be combined"):
        check_hint(1.0, "mixup", None)
    with pytest.raises(ValueError, match="the student Linear has none"):
        check_hint(1.0, None, nn.Linear(2, 2))


@pytest.mark.parametrize("batch_size", ["auto", 16])
def test_auto_batches_bound_the_steps_of_a_distillation_epoch(
    make_trainer, transfer_set, monkeypatch, batch_size
):
    import sktd._distillation

    X, labels, teacher = transfer_set
    X, labels = np.concatenate([X, X]), np.concatenate([labels, labels])
    # 400 rows stand for a large transfer set: one step an epoch.
    monkeypatch.setattr(sktd._distillation, "DISTIL_STEPS_PER_EPOCH", 1)
    steps = []
    original = DistillationNet.train_step

    def counting(self, batch, **fit_params):
        steps.append(len(batch[0]))
        return original(self, batch, **fit_params)

    monkeypatch.setattr(DistillationNet, "train_step", counting)
    _distil(teacher, X, labels, make_trainer(max_epochs=1, batch_size=batch_size))
    # "auto": one batch of every row (200 a batch without the bound); a batch
    # size given is kept.
    assert steps == ([400] if batch_size == "auto" else [16] * 25)


def test_distillation_batches_grow_only_past_100_steps_an_epoch():
    from sktd._distillation import distillation_batch_size

    sizes = [distillation_batch_size(n) for n in (50, 4_000, 20_000, 20_001, 103_000)]
    # MLPClassifier's min(200, n) up to 20,000 rows; 100 steps an epoch beyond.
    assert sizes == [50, 200, 200, 201, 1030]


@pytest.mark.parametrize("max_epochs, expected", [(None, 15), (4, 4), (50, 50)])
def test_the_students_epoch_budget_is_the_one_given(
    make_trainer, transfer_set, max_epochs, expected
):
    X, labels, teacher = transfer_set
    # No plateau can stop it early: every epoch of the budget runs.
    trainer = make_trainer(max_epochs=15, n_iter_no_change=100)
    net = _distil(teacher, X, labels, trainer, max_epochs=max_epochs)
    assert len(net.history) == expected


def test_a_skorch_student_keeps_its_own_epoch_budget(make_trainer, transfer_set):
    X, labels, teacher = transfer_set
    trainer = make_trainer(max_epochs=15, n_iter_no_change=100)
    spec = NeuralNet(
        MLP,
        criterion=nn.MSELoss,
        module__n_features=X.shape[1],
        module__n_outputs=3,
        module__hidden_layer_sizes=(8,),
        max_epochs=6,
    )
    net = _distil(teacher, X, labels, trainer, spec=spec, max_epochs=4)
    assert len(net.history) == 6


@pytest.mark.parametrize(
    "student_max_iter, max_iter, expected",
    [(None, 200, 200), (150, 200, 150), (300, 200, 300)],
)
def test_student_max_iter_is_the_students_budget_and_none_is_max_iter(
    student_max_iter, max_iter, expected
):
    from sktd._distillation import student_epochs

    assert student_epochs(student_max_iter, max_iter) == expected


@pytest.mark.parametrize("estimator", ["classifier", "regressor"])
def test_student_max_iter_bounds_the_students_epochs_only(
    estimator, classification_domains, regression_domains
):
    from sktd import TransferDistillClassifier, TransferDistillRegressor

    cls, data = {
        "classifier": (TransferDistillClassifier, classification_domains),
        "regressor": (TransferDistillRegressor, regression_domains),
    }[estimator]
    X, y, X_target, y_target = data
    params = dict(
        teacher_hidden_layer_sizes=(8,),
        student_hidden_layer_sizes=(4,),
        negative_transfer_guard=False,
        max_iter=9,
        n_iter_no_change=100,
        random_state=0,
    )
    model = cls(**params).fit(X, y, X_target=X_target, y_target=y_target)
    # Every stage runs its whole budget (no plateau can stop it).
    assert len(model.history_["pretrain"]) == 9
    assert model.n_iter_ == 9
    model.set_params(student_max_iter=4).fit(X, y, X_target=X_target, y_target=y_target)
    assert len(model.history_["pretrain"]) == 9
    assert model.n_iter_ == 4
