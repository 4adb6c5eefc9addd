"""Tabular candidates of the guard (``sktd._tabular``) and their weighing."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge

from sktd import TransferDistillClassifier, TransferDistillRegressor
from sktd._guard import select_ensemble
from sktd._tabular import (
    TABULAR_CANDIDATES,
    ScikitLearnTeacher,
    augment,
    fit_tabular,
    importance_weights,
    model_size,
)


def test_scikit_learn_teacher_returns_log_probabilities_over_every_class():
    X, y = make_classification(80, n_features=4, n_classes=2, random_state=0)
    model = LogisticRegression().fit(X, y)
    teacher = ScikitLearnTeacher(model, n_outputs=3, classification=True)
    with torch.no_grad():
        outputs = teacher(torch.as_tensor(X, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(
        np.exp(outputs[:, :2]), model.predict_proba(X), rtol=1e-5, atol=1e-6
    )
    # The encoded class the model never saw gets (almost) no probability.
    assert (outputs[:, 2] == -30).all()
    assert sum(p.numel() for p in teacher.parameters()) == 0


def test_a_tempered_scikit_learn_teacher_divides_its_seen_classes_log_probabilities():
    X, y = make_classification(60, n_features=4, random_state=0)
    teacher = ScikitLearnTeacher(LogisticRegression().fit(X, y), 3, True)
    rows = torch.tensor(X, dtype=torch.float32)
    hotter = teacher.with_temperature(2.0)
    assert hotter.model is teacher.model and teacher.temperature == 1.0
    before, after = teacher(rows), hotter(rows)
    torch.testing.assert_close(after[:, :2], before[:, :2] / 2.0)
    # Class 2 was never seen: it stays impossible.
    torch.testing.assert_close(after[:, 2], torch.full((60,), -30.0))


@pytest.mark.parametrize("classification", [True, False])
def test_a_teacher_pickled_before_its_temperature_and_range_existed_still_predicts(
    classification,
):
    X, y = make_classification(60, n_features=4, random_state=0)
    rows = torch.tensor(X, dtype=torch.float32)
    model = (LogisticRegression() if classification else Ridge()).fit(X, y)
    teacher = ScikitLearnTeacher(model, 2 if classification else 1, classification)
    expected = teacher(rows)
    # sktd 0.5 pickled neither attribute, 0.6 no temperature.
    del teacher.temperature, teacher.output_range
    old = pickle.loads(pickle.dumps(teacher))
    torch.testing.assert_close(old(rows), expected)


@pytest.mark.parametrize("classification", [True, False])
@pytest.mark.parametrize("name", TABULAR_CANDIDATES)
def test_every_candidate_fits_and_predicts_every_output(name, classification):
    if classification:
        X, y = make_classification(120, n_features=5, n_classes=3, n_informative=3)
        n_outputs = 3
    else:
        X, y = make_regression(120, n_features=5, n_targets=2, random_state=0)
        y = (y - y.mean(0)) / y.std(0)
        n_outputs = 2
    X = X.astype(np.float32)
    teacher = fit_tabular(
        name, X[:30], y[:30], X[30:], y[30:], classification, n_outputs, seed=0
    )
    with torch.no_grad():
        outputs = teacher(torch.as_tensor(X)).numpy()
    assert outputs.shape == (120, n_outputs) and np.isfinite(outputs).all()
    pickle.loads(pickle.dumps(teacher))


@pytest.mark.parametrize("name", ["hgb_target", "hgb_pooled"])
def test_boosted_candidates_boost_the_guards_budget_of_rounds(name, monkeypatch):
    import sktd._tabular

    monkeypatch.setattr(sktd._tabular, "HGB_MAX_ITER", 7)
    monkeypatch.setattr(sktd._tabular, "HGB_LEARNING_RATE", 0.3)
    X, y = make_classification(120, n_features=5, random_state=0)
    teacher = fit_tabular(name, X[:40], y[:40], X[40:], y[40:], True, 2, seed=0)
    assert teacher.model.n_iter_ == 7
    assert teacher.model.learning_rate == 0.3


def test_augmented_rows_split_shared_and_domain_specific_parts():
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    rows = augment(X, is_source=np.array([True, False]))
    np.testing.assert_array_equal(rows, [[1, 2, 1, 2, 0, 0], [3, 4, 0, 0, 3, 4]])


def test_importance_weights_favour_target_like_source_rows():
    rng = np.random.RandomState(0)
    X_source = rng.normal(0, 1, (400, 1))
    X_target = rng.normal(1.5, 0.5, (100, 1))
    weights = importance_weights(X_source, X_target)
    assert weights.mean() == pytest.approx(1.0)
    near, far = X_source[:, 0] > 1.0, X_source[:, 0] < -1.0
    assert weights[near].mean() > 5 * weights[far].mean()


def test_ensemble_selection_is_shrunk_toward_the_best_single_candidate():
    rng = np.random.RandomState(0)
    target = rng.normal(size=(60, 1))
    outputs = {
        "good": target + 0.1 * rng.normal(size=(60, 1)),
        "fair": target + 0.5 * rng.normal(size=(60, 1)),
        "bad": rng.normal(size=(60, 1)),
    }
    weights, losses = select_ensemble(outputs, target, classification=False)
    assert sum(weights.values()) == pytest.approx(1.0)
    # Half the weight goes to the best single candidate (best on every
    # resample here), the rest to the selected ensemble, which drops the bad.
    assert weights["good"] >= 0.5
    assert weights["bad"] < 0.05
    assert losses["blend"] <= losses["good"] + 1e-9
    y = rng.randint(0, 3, 60)
    outputs = {"right": np.eye(3)[y] * 5.0, "noise": rng.normal(size=(60, 3))}
    weights, _ = select_ensemble(outputs, y, classification=True)
    assert weights["right"] > 0.9


def test_candidates_the_rows_cannot_tell_apart_share_the_best_ones_weight(
    monkeypatch,
):
    import sktd._guard

    rng = np.random.RandomState(0)
    target = rng.normal(size=(40, 1))
    # Two candidates erring on different rows, whose squared errors on these
    # 40 rows differ by 1 %: which is better is noise.
    errors = rng.normal(size=(2, 40, 1))
    errors *= 0.3 / np.sqrt((errors**2).mean(axis=(1, 2), keepdims=True))
    errors[1] *= np.sqrt(1.01)
    outputs = {
        "one": target + errors[0],
        "other": target + errors[1],
        "bad": rng.normal(size=(40, 1)),
    }
    weights, losses = select_ensemble(outputs, target, classification=False)
    assert min(weights["one"], weights["other"]) > 0.3
    assert weights["bad"] < 0.05
    # The former rule gave the one with the lower loss at least half.
    monkeypatch.setattr(sktd._guard, "SHRINK_TOWARD", "best")
    former, _ = select_ensemble(outputs, target, classification=False)
    luckier = min(("one", "other"), key=losses.get)
    assert former[luckier] >= 0.5
    assert former[luckier] > weights[luckier]


@pytest.mark.parametrize("cls", [TransferDistillClassifier, TransferDistillRegressor])
def test_tabular_pool_through_fit(cls, classification_domains, regression_domains):
    X, y, X_target, y_target = (
        classification_domains
        if cls is TransferDistillClassifier
        else regression_domains
    )
    model = cls(
        teacher_pool="tabular",
        teacher_hidden_layer_sizes=(16,),
        student_hidden_layer_sizes=(8,),
        learning_rate_init=0.01,
        max_iter=15,
        random_state=0,
    ).fit(X, y, X_target=X_target, y_target=y_target)
    assert set(TABULAR_CANDIDATES) <= set(model.transfer_weights_)
    assert sum(model.transfer_weights_.values()) == pytest.approx(1.0)
    # The candidate with the best out-of-fold loss is among the blend's.
    losses = {k: v for k, v in model.transfer_losses_.items() if k != "blend"}
    assert model.transfer_weights_[min(losses, key=losses.get)] > 0.1
    assert model.predict_teacher(X_target).shape == model.predict(X_target).shape
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(X_target), model.predict(X_target))


def test_a_teacher_of_scikit_learn_models_only(
    classification_domains, fast_params, monkeypatch
):
    import sktd._guard

    # The guard may give all the weight to tabular candidates, whose blend has
    # no torch weights at all; the estimator must still fit and predict.
    def choose(outputs, y, classification, **kwargs):
        weights = {
            name: 0.5 * (name in ("hgb_target", "linear_pooled")) for name in outputs
        }
        return weights, dict.fromkeys([*outputs, "blend"], 0.0)

    monkeypatch.setattr(sktd._guard, "select_ensemble", choose)
    X, y, X_target, y_target = classification_domains
    fast_params.update(negative_transfer_guard=True, teacher_pool="tabular")
    model = TransferDistillClassifier(random_state=0, **fast_params).fit(
        X, y, X_target=X_target, y_target=y_target
    )
    assert model.transfer_choice_ == "blend"
    assert sum(p.numel() for p in model.teacher_.module_.parameters()) == 0
    proba = model.predict_proba_teacher(X_target)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert model.predict(X_target).shape == (len(X_target),)


def test_the_tabular_models_fit_within_the_fits_thread_budget(
    classification_domains, fast_params, monkeypatch
):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    original_fit = HistGradientBoostingClassifier.fit

    def fit(self, *args, **kwargs):
        seen.append({pool["num_threads"] for pool in threadpool_info()})
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(HistGradientBoostingClassifier, "fit", fit)
    X, y, X_target, y_target = classification_domains
    fast_params.update(negative_transfer_guard=True, teacher_pool="tabular")
    # Even where the process allows every pool two threads, the guard's
    # boosting gets the fit's one ("auto").
    with threadpool_limits(limits=2):
        TransferDistillClassifier(random_state=0, **fast_params).fit(
            X, y, X_target=X_target, y_target=y_target
        )
    assert seen and all(threads == {1} for threads in seen)


def test_pooled_boosting_stops_early_only_where_its_split_is_possible(monkeypatch):
    import sktd._tabular

    monkeypatch.setattr(sktd._tabular, "HGB_POOLED_EARLY_STOPPING", True)
    # Noisy labels: validation stops the boosting long before 100 rounds.
    X, y = make_classification(600, n_features=5, flip_y=0.5, random_state=0)
    X_target, y_target = X[:20], y[:20].copy()

    def rounds(y_target):
        teacher = fit_tabular(
            "hgb_pooled", X_target, y_target, X[20:], y[20:], True, 3, seed=0
        )
        return teacher.model.n_iter_

    assert rounds(y_target) < 100
    # A third class of one row cannot be split into training and validation
    # rows: the boosting then runs its every round rather than fail.
    y_target[0] = 2
    assert rounds(y_target) == 100


@pytest.mark.parametrize("name", TABULAR_CANDIDATES)
def test_regression_candidates_never_predict_beyond_their_labels(name):
    rng = np.random.RandomState(0)
    X_source = rng.normal(size=(200, 3))
    y_source = X_source @ np.array([[1.0], [2.0], [-1.0]])
    X = rng.normal(0.5, 1.0, size=(30, 3))
    y = X @ np.array([[1.5], [2.0], [-1.0]]) + 0.3
    teacher = fit_tabular(name, X, y, X_source, y_source, False, 1, seed=0)
    labels = y if name == "hgb_target" else np.concatenate([y_source, y])
    # Rows far outside every row fitted on: a linear model would go far
    # beyond the labels.
    far = torch.as_tensor(np.vstack([X * 30, -X * 30]), dtype=torch.float32)
    outputs = teacher(far).numpy()
    assert outputs.min() >= labels.min() - 1e-5
    assert outputs.max() <= labels.max() + 1e-5
    # Within the labels' range predictions are the model's own.
    near = torch.as_tensor(X[:5], dtype=torch.float32)
    inner = teacher.model.predict(
        augment(X[:5], np.zeros(5, bool)) if teacher.augment else X[:5]
    ).reshape(-1, 1)
    inner = np.clip(inner, labels.min(), labels.max())
    np.testing.assert_allclose(teacher(near).numpy(), inner, rtol=1e-5, atol=1e-5)


def test_a_tabular_models_size_counts_its_coefficients_or_its_tree_nodes():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.multioutput import MultiOutputRegressor

    X, y = make_classification(n_samples=400, n_features=4, random_state=0)
    assert model_size(LogisticRegression().fit(X, y)) == 4 + 1
    # Three rounds of one tree of three leaves (two splits): five nodes each.
    boosted = HistGradientBoostingClassifier(
        max_iter=3, max_leaf_nodes=3, early_stopping=False, random_state=0
    ).fit(X, y)
    assert model_size(boosted) == 3 * 5
    Y = np.c_[X[:, 0], X[:, 1]]
    assert model_size(MultiOutputRegressor(Ridge()).fit(X, Y)) == 2 * (4 + 1)
