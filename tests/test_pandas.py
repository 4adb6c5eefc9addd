import numpy as np
import pandas as pd
import pytest

from sktd import TransferDistillClassifier, stack_domains


@pytest.fixture
def frames(classification_domains):
    X, y, X_target, y_target = classification_domains
    columns = [f"feature_{i}" for i in range(X.shape[1])]
    return (
        pd.DataFrame(X, columns=columns),
        pd.Series(y, name="label"),
        pd.DataFrame(X_target, columns=columns),
        pd.Series(y_target, name="label"),
    )


def test_dataframes_in_feature_names_kept(frames, fast_params):
    X, y, X_target, y_target = frames
    model = TransferDistillClassifier(random_state=0, **fast_params)
    model.fit(X, y, X_target=X_target, y_target=y_target)
    assert model.feature_names_in_.tolist() == list(X.columns)
    np.testing.assert_array_equal(
        model.predict(X_target), model.predict(X_target.to_numpy())
    )


def test_predict_with_reordered_columns_is_refused(frames, fast_params):
    X, y, X_target, y_target = frames
    model = TransferDistillClassifier(random_state=0, **fast_params).fit(X, y)
    with pytest.raises(ValueError, match="feature names should match"):
        model.predict(X_target[X_target.columns[::-1]])


def test_predict_without_names_warns(frames, fast_params):
    X, y, X_target, _ = frames
    model = TransferDistillClassifier(random_state=0, **fast_params).fit(X, y)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        model.predict(X_target.to_numpy())


def test_x_target_with_other_columns_is_refused(frames, fast_params):
    X, y, X_target, y_target = frames
    renamed = X_target.rename(columns={"feature_0": "other"})
    model = TransferDistillClassifier(random_state=0, **fast_params)
    with pytest.raises(ValueError, match="X_target.*feature names"):
        model.fit(X, y, X_target=renamed, y_target=y_target)


def test_stacked_dataframes(frames, fast_params):
    X, y, X_target, y_target = frames
    X_all, y_all, domain = stack_domains(X, y, X_target, y_target)
    model = TransferDistillClassifier(random_state=0, **fast_params)
    assert isinstance(X_all, pd.DataFrame) and len(X_all) == len(X) + len(X_target)
    model.fit(X_all, y_all, sample_domain=domain)
    assert model.feature_names_in_.tolist() == list(X.columns)
