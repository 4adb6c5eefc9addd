"""skada's usual workflow with sktd swapped in for a skada estimator."""

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.preprocessing import StandardScaler

from sktd import TransferDistillClassifier


@pytest.fixture
def skada():
    # skada turns metadata routing on when imported; give the other tests
    # the setting they had.
    before = sklearn.get_config()["enable_metadata_routing"]
    pytest.importorskip("skada")
    import skada.datasets
    import skada.metrics
    import skada.model_selection

    yield skada
    sklearn.set_config(enable_metadata_routing=before)


@pytest.fixture
def shifted(skada):
    """A small covariate shift from skada's generators: X, y, sample_domain."""
    return skada.datasets.make_shifted_datasets(
        n_samples_source=30,
        n_samples_target=20,
        shift="covariate_shift",
        noise=0.3,
        random_state=0,
    )


def test_skada_workflow_runs_unchanged(skada, shifted, fast_params):
    X, y, sample_domain = shifted
    with sklearn.config_context(enable_metadata_routing=True):
        # As a skada user writes it: no set_*_request call.
        pipe = skada.make_da_pipeline(
            StandardScaler(), TransferDistillClassifier(random_state=0, **fast_params)
        )
        cv = skada.model_selection.SourceTargetShuffleSplit(n_splits=2, random_state=0)
        for scorer in (
            skada.metrics.PredictionEntropyScorer(),
            skada.metrics.MixValScorer(),
            skada.metrics.ImportanceWeightedScorer(),
        ):
            scores = cross_validate(
                pipe,
                X,
                y,
                cv=cv,
                scoring=scorer,
                params={"sample_domain": sample_domain},
            )["test_score"]
            assert np.isfinite(scores).all()
        # Each domain in turn is the target, packed as skada packs domains
        # for it: every domain both as a source (+d) and as a target (-d).
        source = sample_domain > 0
        packed_X = np.vstack([X[source], X[~source]] * 2)
        packed_y = np.concatenate([y[source], y[~source]] * 2)
        packed_domains = np.repeat([1, 2, -1, -2], [source.sum(), (~source).sum()] * 2)
        scores = cross_validate(
            pipe,
            packed_X,
            packed_y,
            cv=skada.model_selection.LeaveOneDomainOut(test_size=0.3, random_state=0),
            params={"sample_domain": packed_domains},
        )["test_score"]
        assert len(scores) == 2
        assert np.isfinite(scores).all() and (scores > 0.5).all()
        grid = GridSearchCV(
            pipe,
            {"transferdistillclassifier__temperature": [2.0, 4.0]},
            cv=cv,
            scoring=skada.metrics.PredictionEntropyScorer(),
        ).fit(X, y, sample_domain=sample_domain)
        assert np.isfinite(grid.cv_results_["mean_test_score"]).all()


def test_skada_scorers_reading_module_say_to_use_a_pipeline(
    skada, shifted, fast_params
):
    """DeepEmbeddedValidation and MaNoScorer read ``module_`` outside a Pipeline."""
    X, y, sample_domain = shifted
    model = TransferDistillClassifier(random_state=0, **fast_params)
    with sklearn.config_context(enable_metadata_routing=True):
        scorers = (skada.metrics.DeepEmbeddedValidation(), skada.metrics.MaNoScorer())
        fitted = model.fit(X, y, sample_domain=sample_domain)
        for scorer in scorers:
            with pytest.raises(AttributeError, match="make_da_pipeline"):
                scorer(fitted, X, y, sample_domain=sample_domain)
        pipe = skada.make_da_pipeline(StandardScaler(), model)
        pipe.fit(X, y, sample_domain=sample_domain)
        for scorer in scorers:
            assert np.isfinite(scorer(pipe, X, y, sample_domain=sample_domain))
