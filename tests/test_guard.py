"""The negative-transfer guard (``sktd._guard``), from arrays and through ``fit``."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from torch import nn

from sktd import TransferDistillClassifier, TransferDistillRegressor
from sktd._arrays import softmax
from sktd._guard import (
    CANDIDATES,
    blend_loss,
    calibrate,
    choose_weights,
    fit_temperature,
    guard,
    select_ensemble,
    simplex_grid,
    teacher_architecture,
)
from sktd._nets import SupervisedNet
from sktd._seeds import Seeds
from sktd._strategies import TransferStrategy


@pytest.fixture(scope="module")
def useless_source(make_trainer):
    """A source network trained on shuffled labels, and clean target rows."""
    X, y = make_classification(
        400, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    trainer = make_trainer()
    source = np.arange(300)
    shuffled = np.random.RandomState(0).permutation(y[source])
    module = trainer.new_module(None, (16,), 6, seed=0)
    net = trainer.net(SupervisedNet, module, None, stage="pretrain", seed=0)
    pretrained = trainer.fit(net, X[source], shuffled, stratify=True).module_
    y_pool = y.copy()
    y_pool[source] = shuffled
    target = np.arange(300, 340)
    return (
        trainer,
        pretrained,
        X,
        y_pool,
        source,
        X[target],
        y[target],
        X[340:],
        y[340:],
    )


def _run_guard(useless_source, strategy_name, seed, fine_tune=True):
    trainer, pretrained, X_pool, y_pool, source, X, y, *_ = useless_source
    strategy = TransferStrategy(strategy_name, 0.01, trainer, None)
    transferred = pretrained
    if fine_tune:
        transferred = strategy.fine_tune(pretrained, X, y, seed=1).module_
    return guard(
        pretrained,
        transferred,
        X,
        y,
        X_pool=X_pool,
        y_pool=y_pool,
        source_rows=source,
        transfer=strategy,
        network_spec=None,
        hidden_layer_sizes=(16,),
        seeds=Seeds(seed),
    )


def test_guard_on_arrays_weighs_a_useless_source_down(useless_source):
    *_, X_test, y_test = useless_source
    weights, losses, teacher = _run_guard(useless_source, "l2sp", seed=0)
    assert set(weights) == set(CANDIDATES)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert set(losses) == set(CANDIDATES) | {"blend"}
    # Out of fold, the network that learnt noise predicts worst; it gets
    # (almost) no weight, and the teacher beats chance on new target rows.
    assert losses["pretrained"] == max(losses[n] for n in CANDIDATES)
    assert weights["pretrained"] <= 0.1
    with torch.no_grad():
        predicted = teacher(torch.as_tensor(X_test)).argmax(1).numpy()
    assert np.mean(predicted == y_test) > 0.5


def test_guard_is_reproducible_from_its_seeds(useless_source):
    def run(seed):
        return _run_guard(useless_source, "finetune", seed, fine_tune=False)[:2]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_teacher_architecture_matches_what_the_guard_builds(useless_source):
    weights = dict.fromkeys(CANDIDATES, 0.2)
    blend = teacher_architecture("blend", weights, 6, 3, (16,), 5, True)
    assert sorted(blend.members) == sorted(CANDIDATES)
    assert len(blend.members["target_network"].members) == 5
    single = teacher_architecture(
        "target_linear", {"target_linear": 1.0}, 6, 3, (16,), 0, True
    )
    assert isinstance(single, nn.Linear)


@pytest.mark.parametrize(
    "guard_on, n_labelled", [(False, 20), (True, 5)], ids=["off", "too few rows"]
)
def test_transferred_network_teaches_when_the_guard_does_not_run(
    guard_on, n_labelled, classification_domains, fast_params
):
    X, y, X_target, y_target = classification_domains
    y_target = y_target.copy()
    y_target[n_labelled:] = -1
    fast_params["negative_transfer_guard"] = guard_on
    model = TransferDistillClassifier(random_state=0, **fast_params).fit(
        X, y, X_target=X_target, y_target=y_target
    )
    assert model.transfer_choice_ == "transferred"
    assert model.transfer_losses_ is None


def test_regressor_guard_reports_its_choice(regression_domains, fast_params):
    X, y, X_target, y_target = regression_domains
    fast_params["negative_transfer_guard"] = True
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


def test_stand_ins_are_source_rows_of_the_classes_the_target_lacks(make_trainer):
    from sktd._guard import _stand_ins

    y_pool = np.array([0, 1, 2] * 20 + [0, 1] * 5)
    source_rows = np.arange(60)
    y_target = y_pool[60:]
    picked = _stand_ins(y_target, y_pool, source_rows, make_trainer(), seed=0)
    assert np.isin(picked, source_rows).all()
    assert (y_pool[picked] == 2).all() and len(picked) == 5
    # Nothing when every class is present, nor for regression.
    assert not len(_stand_ins(y_pool[:60], y_pool, source_rows, make_trainer(), 0))
    regression = make_trainer(classification=False, n_outputs=1)
    assert not len(_stand_ins(y_target, y_pool, source_rows, regression, 0))


def test_a_class_the_labelled_target_rows_lack_is_kept():
    """Labelled target rows of two wine classes only; the source has three."""
    from sklearn.datasets import load_wine
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_wine(return_X_y=True)
    order = np.random.RandomState(0).permutation(len(X))
    X, y = X[order], y[order]
    source = np.arange(len(X)) % 2 == 0
    X_target, y_true = X[~source] * 1.1 + 0.3 * X.std(0), y[~source]
    labelled = np.flatnonzero(y_true < 2)[:25]
    y_target = np.full(len(X_target), -1)
    y_target[labelled] = y_true[labelled]
    test = np.setdiff1d(np.arange(len(X_target)), labelled)
    absent = y_true[test] == 2
    model = TransferDistillClassifier(random_state=0).fit(
        X[source], y[source], X_target=X_target, y_target=y_target
    )
    pooled = make_pipeline(
        StandardScaler(), MLPClassifier(max_iter=1000, random_state=0)
    ).fit(
        np.vstack([X[source], X_target[labelled]]), np.r_[y[source], y_true[labelled]]
    )

    def recall(predictions):
        return np.mean(predictions[absent] == 2)

    student = recall(model.predict(X_target[test]))
    teacher = recall(model.predict_teacher(X_target[test]))
    # (Student and teacher 0.67 and 0.76, pooled MLP 1.00, before source rows
    # stood in for the absent class in the guard; 0.95, 0.95 and 1.00 after.)
    assert abs(student - teacher) <= 0.05
    assert teacher >= recall(pooled.predict(X_target[test])) - 0.05


def test_blend_search_memory_does_not_grow_with_the_outputs():
    import tracemalloc

    def peak(n_outputs):
        rng = np.random.RandomState(0)
        y = rng.normal(size=(300, n_outputs))
        outputs = {name: rng.normal(size=(300, n_outputs)) for name in CANDIDATES}
        tracemalloc.start()
        choose_weights(outputs, y, classification=False, n_bootstraps=5)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    # The inputs themselves grow (40 x 300 x 8 bytes per output); the search's
    # working memory must not.
    assert peak(40) < 2 * peak(1) + 40 * 5 * 300 * 8 * 2


def test_many_output_regression_with_the_guard_stays_small(fast_params):
    import tracemalloc

    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 5))
    y = X @ rng.normal(size=(5, 200)) + 0.1 * rng.normal(size=(300, 200))
    X_target, y_target = X[200:] + 0.3, y[200:].copy()
    y_target[60:] = np.nan

    def peak(guard):
        model = TransferDistillRegressor(
            random_state=0, **dict(fast_params, negative_transfer_guard=guard)
        )
        tracemalloc.start()
        model.fit(X[:200], y[:200], X_target=X_target, y_target=y_target)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return model, top

    guarded, with_guard = peak(True)
    _, without_guard = peak(False)
    # The guard holds its candidates' outputs and, while its fold networks
    # train side by side, every fold's rows at once: a few times the rows,
    # never a copy per target (200 boosted models per fold would be).
    assert with_guard < 2.5 * without_guard
    # Gradient boosting fits a model per target: with 200 it is left out.
    assert "linear_pooled" in guarded.transfer_weights_
    assert not any(name.startswith("hgb") for name in guarded.transfer_weights_)


class _RowWise(nn.Module):
    """A network of the user's, with its own forward: never stacked."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(6, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, X):
        return self.head(torch.relu(self.body(X)))


@pytest.mark.parametrize("spec", [None, _RowWise()], ids=["MLP", "own module"])
def test_fold_networks_train_side_by_side_where_they_stack(
    useless_source, monkeypatch, spec
):
    from sktd._trainer import StageTrainer

    trainer, pretrained, X_pool, y_pool, source, X, y, *_ = useless_source
    stacks, nets = [], []
    fit_stack, fit = StageTrainer.fit_stack, StageTrainer.fit

    def recording_fit_stack(self, net_class, stack, template, parts, *args, **kwargs):
        stacks.append(len(parts))
        return fit_stack(self, net_class, stack, template, parts, *args, **kwargs)

    def recording_fit(self, net, *args, **kwargs):
        nets.append(self.label)
        return fit(self, net, *args, **kwargs)

    monkeypatch.setattr(StageTrainer, "fit_stack", recording_fit_stack)
    monkeypatch.setattr(StageTrainer, "fit", recording_fit)
    if spec is not None:
        pretrained = trainer.new_module(spec, (16,), 6, seed=0)
    weights, losses, _ = guard(
        pretrained,
        pretrained,
        X,
        y,
        X_pool=X_pool,
        y_pool=y_pool,
        source_rows=source,
        transfer=TransferStrategy("finetune", 0.01, trainer, None),
        network_spec=spec,
        hidden_layer_sizes=(16,),
        seeds=Seeds(0),
    )
    assert set(losses) == set(CANDIDATES) | {"blend"}
    fold_nets = [label for label in nets if label.startswith("guard")]
    if spec is None:
        # Transferred, rehearsed and target networks: one stack of 5 each.
        assert stacks == [5, 5, 5]
        assert len(fold_nets) == 3
    else:
        assert stacks == []
        assert len(fold_nets) == 15


def test_fit_temperature_recovers_the_temperature_labels_were_drawn_at():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(logits / 2.5)])
    assert fit_temperature(logits, y) == pytest.approx(2.5, rel=0.1)
    # Weights count rows: the rows of weight zero are ignored.
    noisy = np.concatenate([y[:2000], rng.integers(0, 3, 2000)])
    weights = np.r_[np.ones(2000), np.zeros(2000)]
    assert fit_temperature(logits, noisy, weights) == pytest.approx(2.5, rel=0.15)


def test_rows_of_a_class_the_candidate_never_saw_do_not_set_its_temperature():
    # An underconfident scikit-learn candidate (log-probabilities; labels
    # drawn as if at temperature 0.3) that never saw class 2.
    rng = np.random.default_rng(1)
    scores = rng.normal(0, 1, (40, 2))
    y = np.array([rng.choice(2, p=p) for p in softmax(scores / 0.3)])
    logits = np.hstack([np.log(softmax(scores)), np.full((40, 1), -30.0)])
    alone = fit_temperature(logits, y)
    # A fold that holds the one row of class 2: a lower temperature lowers
    # that row's loss (the seen classes' logits sink below the unseen one),
    # and without the rule it pulled the temperature from 0.22 to 0.16.
    with_unseen = fit_temperature(np.vstack([logits, logits[:1]]), np.r_[y, 2])
    assert with_unseen == pytest.approx(alone, rel=1e-6)
    assert alone == pytest.approx(0.22, abs=0.02)
    assert fit_temperature(logits[:3], np.array([2, 2, 2])) == 1.0


def test_calibration_keeps_a_sure_candidate_from_being_diluted_by_a_weak_one():
    # 40 rows: "sure" is right on 36 with logits of +-8 and confidently wrong
    # on 4; "weak" is right on ~70 % with milder logits. Uncalibrated, the
    # blend's log loss buys softness from "weak"; calibrated, it weighs
    # what each knows.
    rng = np.random.default_rng(0)
    n = 40
    y = rng.integers(0, 2, n)
    predicted = np.where(np.arange(n) < 4, 1 - y, y)
    sure = np.zeros((n, 2), np.float32)
    sure[np.arange(n), predicted] = 8.0
    weak = np.zeros((n, 2), np.float32)
    weak[np.arange(n), np.where(rng.random(n) < 0.7, y, 1 - y)] = 1.0
    outputs = {"sure": sure, "weak": weak}
    raw, _ = select_ensemble(dict(outputs), y, True)
    assert raw["weak"] > 0.3
    stand_ins = {name: values[:2] for name, values in outputs.items()}
    temperatures = calibrate(outputs, stand_ins, y)
    assert temperatures["sure"] > 2
    # Applied to the out-of-fold rows and the stand-ins alike.
    np.testing.assert_allclose(outputs["sure"], sure / temperatures["sure"], rtol=1e-6)
    np.testing.assert_allclose(stand_ins["sure"], outputs["sure"][:2])
    calibrated, _ = select_ensemble(outputs, y, True)
    assert calibrated["sure"] >= 0.85


def test_calibration_leaves_unseen_class_logits_as_they_are():
    y = np.array([0, 1] * 10)
    logits = np.tile(np.array([[2.0, -2.0, -30.0], [-2.0, 2.0, -30.0]]), (10, 1))
    logits[:3, :2] *= -1  # three confident errors: a temperature above one
    outputs = {"linear": logits.astype(np.float32)}
    temperatures = calibrate(outputs, {"linear": logits[:0]}, y)
    assert temperatures["linear"] > 1
    np.testing.assert_array_equal(outputs["linear"][:, 2], -30.0)
