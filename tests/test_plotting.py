import builtins

import matplotlib
import numpy as np
import pytest

from sktd import (
    TransferDistillClassifier,
    TransferDistillRegressor,
    plot_agreement,
    plot_learning_curves,
)

matplotlib.use("Agg")


@pytest.fixture(params=["classifier", "regressor"])
def fitted(request, classification_domains, regression_domains, fast_params):
    if request.param == "classifier":
        X, y, X_target, y_target = classification_domains
        model = TransferDistillClassifier(random_state=0, **fast_params)
    else:
        X, y, X_target, y_target = regression_domains
        model = TransferDistillRegressor(random_state=0, **fast_params)
    return model.fit(X, y, X_target=X_target, y_target=y_target), X_target


def test_learning_curves_draw_every_stage(fitted):
    model, _ = fitted
    ax = plot_learning_curves(model)
    curves = [line for line in ax.get_lines() if "loss" in line.get_label()]
    assert [line.get_label() for line in curves] == [
        "pretrain train loss",
        "transfer train loss",
        "distil train loss",
    ]
    # Stages follow one another: the last epoch drawn is the total.
    total = sum(len(h) for h in model.history_.values())
    assert curves[-1].get_xdata()[-1] == total
    np.testing.assert_allclose(
        curves[0].get_ydata(), model.history_["pretrain"][:, "train_loss"]
    )


def test_agreement_plot(fitted):
    model, X = fitted
    ax = plot_agreement(model, X)
    if hasattr(model, "classes_"):
        image = ax.get_images()[0].get_array()
        assert image.sum() == len(X)
        assert ax.get_title().startswith("agreement")
    else:
        assert len(ax.collections[0].get_offsets()) == len(X)


def test_missing_matplotlib_names_the_extra(fitted, monkeypatch):
    model, _ = fitted
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"sktd\[plots\]"):
        plot_learning_curves(model)


def test_unfitted_estimator_is_refused():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        plot_learning_curves(TransferDistillClassifier())
