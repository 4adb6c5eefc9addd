import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.model_selection import (
    GridSearchCV,
    cross_val_predict,
    cross_val_score,
    cross_validate,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktd import TransferDistillClassifier, TransferDistillRegressor, stack_domains
from sktd.model_selection import TargetKFold, TargetShuffleSplit


@pytest.fixture(scope="module")
def stacked(classification_domains):
    X, y, X_target, y_target = classification_domains
    # 20 labelled and 60 unlabelled (-1) target rows after 160 source rows.
    X_all, y_all, domain = stack_domains(X, y, X_target, y_target)
    return X_all, y_all, domain


def test_target_kfold_tests_labelled_target_rows_only(stacked):
    X, y, domain = stacked
    labelled_target = np.flatnonzero((domain < 0) & (y != -1))
    always_train = np.setdiff1d(np.arange(len(X)), labelled_target)
    tested = []
    for train, test in TargetKFold(5).split(X, y, groups=domain):
        assert np.all(domain[test] < 0) and np.all(y[test] != -1)
        assert np.all(np.isin(always_train, train))
        assert not np.intersect1d(train, test).size
        tested.append(test)
    np.testing.assert_array_equal(np.sort(np.concatenate(tested)), labelled_target)


def test_target_kfold_stratifies_target_labels():
    domain = np.array([1] * 10 + [-2] * 20)
    y = np.array([0] * 10 + [0] * 10 + [1] * 10)
    for _, test in TargetKFold(5).split(np.zeros((30, 1)), y, domain):
        assert np.bincount(y[test]).tolist() == [2, 2]


def test_target_kfold_reads_sample_domain_before_groups(stacked):
    X, y, domain = stacked
    by_groups = list(TargetKFold(3).split(X, y, groups=domain))
    by_domain = list(
        TargetKFold(3).split(X, y, groups=np.ones(len(X)), sample_domain=domain)
    )
    for (a_train, a_test), (b_train, b_test) in zip(by_groups, by_domain):
        np.testing.assert_array_equal(a_test, b_test)


def test_target_shuffle_split(stacked):
    X, y, domain = stacked
    cv = TargetShuffleSplit(n_splits=4, test_size=5, random_state=0)
    splits = list(cv.split(X, y, groups=domain))
    assert len(splits) == cv.get_n_splits() == 4
    for train, test in splits:
        assert len(test) == 5 and np.all(domain[test] < 0)
        assert np.all(domain[train[domain[train] > 0]] > 0)
        assert np.sum(domain[train] > 0) == np.sum(domain > 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "needs the domains of the rows"),
        (dict(groups=np.ones(5)), "sample_domain has 5 entries, but X has"),
        (
            dict(groups=None, sample_domain="ones"),
            "needs at least n_splits=5 labelled target",
        ),
    ],
)
def test_target_kfold_errors_name_the_argument(stacked, kwargs, message):
    X, y, domain = stacked
    if kwargs.get("sample_domain") == "ones":
        kwargs["sample_domain"] = np.ones(len(X), dtype=int)
    with pytest.raises(ValueError, match=message):
        list(TargetKFold(5).split(X, y, **kwargs))


def test_target_kfold_rejects_bad_n_splits():
    with pytest.raises(ValueError, match="n_splits must be an integer >= 2"):
        TargetKFold(1)


def test_cross_val_score_with_routing_off(stacked, fast_params):
    X, y, domain = stacked
    is_target = domain < 0
    pipe = make_pipeline(
        StandardScaler(), TransferDistillClassifier(random_state=0, **fast_params)
    )
    seen = []

    def target_accuracy(estimator, X_test, y_test):
        # Target rows are the last rows of the stacked X: find them by value.
        rows = [np.flatnonzero((X == row).all(axis=1))[0] for row in X_test]
        seen.extend(rows)
        return np.mean(estimator.predict(X_test) == y_test)

    scores = cross_val_score(
        pipe,
        X,
        y,
        groups=domain,
        cv=TargetKFold(5),
        scoring=target_accuracy,
        params={"transferdistillclassifier__sample_domain": domain},
    )
    assert scores.shape == (5,) and np.all(np.isfinite(scores))
    assert np.all(is_target[seen]) and np.all(y[seen] != -1)


def test_pipeline_scaler_sees_source_and_target_rows(stacked, fast_params):
    X, y, domain = stacked
    pipe = make_pipeline(
        StandardScaler(), TransferDistillClassifier(random_state=0, **fast_params)
    )
    pipe.fit(X, y, transferdistillclassifier__sample_domain=domain)
    scaler = pipe.named_steps["standardscaler"]
    assert scaler.n_samples_seen_ == len(X)
    np.testing.assert_allclose(scaler.mean_, X.mean(axis=0))
    assert np.sum(domain < 0) > 0


def test_grid_search_over_temperature_with_routing_off(stacked, fast_params):
    X, y, domain = stacked
    pipe = make_pipeline(
        StandardScaler(), TransferDistillClassifier(random_state=0, **fast_params)
    )
    grid = GridSearchCV(
        pipe,
        {
            "transferdistillclassifier__temperature": [1.0, 4.0],
            "transferdistillclassifier__student_hidden_layer_sizes": [(4,), (8,)],
        },
        cv=TargetKFold(3),
    )
    grid.fit(X, y, groups=domain, transferdistillclassifier__sample_domain=domain)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.cv_results_["split2_test_score"].shape == (4,)
    assert grid.best_estimator_.predict(X).shape == (len(X),)


def test_cross_validate_with_routing_on(stacked, fast_params):
    X, y, domain = stacked
    with sklearn.config_context(enable_metadata_routing=True):
        model = TransferDistillClassifier(random_state=0, **fast_params)
        pipe = make_pipeline(
            StandardScaler(), model.set_fit_request(sample_domain=True)
        )
        results = cross_validate(
            pipe,
            X,
            y,
            cv=TargetKFold(5),
            scoring=["accuracy", "recall_macro", "f1_macro"],
            params={"sample_domain": domain},
        )
        assert results["test_f1_macro"].shape == (5,)
        grid = GridSearchCV(
            pipe,
            {"transferdistillclassifier__temperature": [2.0, 4.0]},
            cv=TargetKFold(3),
        ).fit(X, y, sample_domain=domain)
        # The search scored each temperature as cross-validation by hand does,
        # so sample_domain reached every fit, and kept the better one.
        by_hand = [
            cross_val_score(
                clone(pipe).set_params(transferdistillclassifier__temperature=t),
                X,
                y,
                cv=TargetKFold(3),
                params={"sample_domain": domain},
            ).mean()
            for t in (2.0, 4.0)
        ]
        assert np.isfinite(by_hand).all()
        np.testing.assert_allclose(grid.cv_results_["mean_test_score"], by_hand)
        best = (2.0, 4.0)[int(np.argmax(by_hand))]
        assert grid.best_params_["transferdistillclassifier__temperature"] == best


def test_routed_fit_uses_the_domains(stacked, fast_params):
    # Had sample_domain not reached fit, every row would count as source and
    # the unlabelled marker -1 would become a fourth class.
    X, y, domain = stacked
    with sklearn.config_context(enable_metadata_routing=True):
        model = TransferDistillClassifier(random_state=0, **fast_params)
        pipe = make_pipeline(
            StandardScaler(), model.set_fit_request(sample_domain=True)
        )
        pipe.fit(X, y, sample_domain=domain)
    direct = TransferDistillClassifier(random_state=0, **fast_params)
    direct.fit(StandardScaler().fit_transform(X), y, sample_domain=domain)
    assert pipe[-1].classes_.tolist() == direct.classes_.tolist() == [0, 1, 2]


def test_split_form_inside_cross_validation_is_refused(
    classification_domains, fast_params
):
    X, y, X_target, y_target = classification_domains
    model = TransferDistillClassifier(random_state=0, **fast_params)
    with pytest.raises(ValueError, match="Use the stacked form instead"):
        cross_val_score(
            model,
            X,
            y,
            cv=3,
            params={"X_target": X_target, "y_target": y_target},
            error_score="raise",
        )
    # Its predictions would be of held-out source rows, the target never.
    with pytest.raises(ValueError, match="Use the stacked form instead"):
        cross_val_predict(
            model, X, y, cv=3, params={"X_target": X_target, "y_target": y_target}
        )


def test_split_form_behind_pipeline_steps_is_refused(
    classification_domains, fast_params
):
    # The scaler would transform the source rows only: X_target would reach
    # sktd on another scale.
    X, y, X_target, y_target = classification_domains
    pipe = make_pipeline(
        StandardScaler(), TransferDistillClassifier(random_state=0, **fast_params)
    )
    with pytest.raises(ValueError, match=r"steps before sktd \(standardscaler\)"):
        pipe.fit(
            X,
            y,
            transferdistillclassifier__X_target=X_target,
            transferdistillclassifier__y_target=y_target,
        )
    # With no step before it, the Pipeline fits as sktd alone does.
    alone = make_pipeline(TransferDistillClassifier(random_state=0, **fast_params))
    alone.fit(
        X,
        y,
        transferdistillclassifier__X_target=X_target,
        transferdistillclassifier__y_target=y_target,
    )
    direct = TransferDistillClassifier(random_state=0, **fast_params)
    direct.fit(X, y, X_target=X_target, y_target=y_target)
    np.testing.assert_array_equal(
        alone.predict_proba(X_target), direct.predict_proba(X_target)
    )


def test_split_form_behind_a_target_transform_is_refused(
    regression_domains, fast_params
):
    X, y, X_target, y_target = regression_domains
    # Labelled target rows only: the wrapper refuses NaN labels.
    X_target, y_target = X_target[:20], y_target[:20]
    wrapper = TransformedTargetRegressor(
        TransferDistillRegressor(random_state=0, **fast_params),
        func=np.cbrt,
        inverse_func=lambda v: v**3,
    )
    with pytest.raises(ValueError, match="transforms y only"):
        wrapper.fit(X, y, X_target=X_target, y_target=y_target)
    # The stacked form goes through it: every label transformed alike.
    X_all, y_all, domain = stack_domains(X, y, X_target, y_target)
    wrapper.fit(X_all, y_all, sample_domain=domain)
    assert wrapper.regressor_.n_features_in_ == X.shape[1]


def test_split_and_stacked_forms_give_identical_predictions(
    classification_domains, fast_params
):
    X, y, X_target, y_target = classification_domains
    split = TransferDistillClassifier(random_state=0, **fast_params)
    split.fit(X, y, X_target=X_target, y_target=y_target)
    X_all, y_all, domain = stack_domains(X, y, X_target, y_target)
    stacked = TransferDistillClassifier(random_state=0, **fast_params)
    stacked.fit(X_all, y_all, sample_domain=domain)
    np.testing.assert_array_equal(
        split.predict_proba(X_target), stacked.predict_proba(X_target)
    )


def test_predict_ignores_sample_domain(stacked, fast_params):
    X, y, domain = stacked
    model = TransferDistillRegressor(random_state=0, **fast_params)
    model.fit(X, np.where(y == -1, np.nan, y).astype(float), sample_domain=domain)
    np.testing.assert_array_equal(
        model.predict(X), model.predict(X, sample_domain=-np.ones(len(X), int))
    )


def test_sample_domain_is_requested_by_default_like_skada(stacked, fast_params):
    X, y, domain = stacked
    with sklearn.config_context(enable_metadata_routing=True):
        # No set_*_request call: fit, predict and score request sample_domain.
        pipe = make_pipeline(
            StandardScaler(), TransferDistillClassifier(random_state=0, **fast_params)
        )
        results = cross_validate(
            pipe, X, y, cv=TargetKFold(3), params={"sample_domain": domain}
        )
        assert np.isfinite(results["test_score"]).all()
        pipe.fit(X, y, sample_domain=domain)
        target = domain < 0
        labelled = target & (y != -1)
        score = pipe.score(X[labelled], y[labelled], sample_domain=domain[labelled])
        assert score == pipe.score(X[labelled], y[labelled])
    model = TransferDistillClassifier(random_state=0, **fast_params)
    model.fit(X, y, sample_domain=domain)
    with pytest.raises(ValueError, match="sample_domain has 3 entries"):
        model.score(X[labelled], y[labelled], sample_domain=domain[:3])
