import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import sktd
from sktd import TransferDistillClassifier, TransferDistillRegressor, load, save
from sktd._guard import CANDIDATES


@pytest.fixture(params=["classifier", "regressor", "strings", "dataframe"])
def fitted(request, classification_domains, regression_domains, fast_params):
    if request.param == "regressor":
        X, y, X_target, y_target = regression_domains
        model = TransferDistillRegressor(random_state=0, **fast_params)
    else:
        X, y, X_target, y_target = classification_domains
        model = TransferDistillClassifier(random_state=0, **fast_params)
        if request.param == "strings":
            names = np.array(["ant", "bee", "cat"], dtype=object)
            y = names[y]
            y_target = np.where(y_target == -1, -1, names[y_target.clip(0)])
        if request.param == "dataframe":
            columns = [f"f{i}" for i in range(X.shape[1])]
            X = pd.DataFrame(X, columns=columns)
            X_target = pd.DataFrame(X_target, columns=columns)
    model.fit(X, y, X_target=X_target, y_target=y_target)
    return model, X_target


def _outputs(model, X):
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)
    return model.predict(X)


def test_round_trip_predicts_identically_without_pickle(fitted, tmp_path, monkeypatch):
    model, X = fitted
    path = tmp_path / "model.safetensors"
    save(model, path)

    def refuse(*args, **kwargs):
        raise AssertionError("pickle must not be used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    restored = load(path)
    monkeypatch.undo()

    assert type(restored) is type(model)
    assert restored.get_params() == model.get_params()
    np.testing.assert_array_equal(_outputs(restored, X), _outputs(model, X))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    if hasattr(model, "classes_"):
        np.testing.assert_array_equal(restored.classes_, model.classes_)
    if hasattr(model, "feature_names_in_"):
        np.testing.assert_array_equal(
            restored.feature_names_in_, model.feature_names_in_
        )
    report = restored.distillation_report(X[:5], model.predict(X[:5]))
    assert report["student"]["score"] == 1.0


@pytest.mark.parametrize(
    "forced",
    [
        {"target_network": 1.0},
        {"rehearsed": 1.0},
        {
            "transferred": 0.4,
            "rehearsed": 0.1,
            "target_linear": 0.2,
            "target_network": 0.3,
        },
    ],
)
@pytest.mark.parametrize("cls", [TransferDistillClassifier, TransferDistillRegressor])
def test_round_trip_of_every_teacher_the_guard_builds(
    cls,
    forced,
    classification_domains,
    regression_domains,
    fast_params,
    tmp_path,
    monkeypatch,
):
    import sktd._guard

    # The guard's own search would pick one blend; each structure it can
    # build must round-trip, so the weights are forced.
    def choose(outputs, y, classification, **kwargs):
        weights = {name: forced.get(name, 0.0) for name in outputs}
        return weights, {name: 0.0 for name in [*outputs, "blend"]}

    monkeypatch.setattr(sktd._guard, "choose_weights", choose)
    fast_params["negative_transfer_guard"] = True
    domains = (
        classification_domains
        if cls is TransferDistillClassifier
        else regression_domains
    )
    X, y, X_target, y_target = domains
    model = cls(random_state=0, **fast_params).fit(
        X, y, X_target=X_target, y_target=y_target
    )
    monkeypatch.undo()
    assert model.transfer_weights_ == {
        name: forced.get(name, 0.0) for name in CANDIDATES
    }
    path = tmp_path / "model.safetensors"
    save(model, path)
    restored = load(path)
    assert restored.transfer_choice_ == model.transfer_choice_
    rows = torch.randn(16, X.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        teacher_outputs = [m.teacher_.module_(rows).numpy() for m in (model, restored)]
    np.testing.assert_array_equal(*teacher_outputs)
    np.testing.assert_array_equal(
        _outputs(restored, X_target), _outputs(model, X_target)
    )


def test_tampered_file_is_refused(fitted, tmp_path):
    model, _ = fitted
    path = tmp_path / "model.safetensors"
    save(model, path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="failed its integrity check"):
        load(path)


def test_not_an_sktd_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not one sktd wrote"):
        load(path)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="not a readable sktd file"):
        load(garbage)


def test_custom_modules_are_refused_by_save(classification_domains, tmp_path):
    X, y, _, _ = classification_domains
    model = TransferDistillClassifier(
        student=nn.Linear(X.shape[1], 3), max_iter=2, random_state=0
    ).fit(X, y)
    with pytest.raises(TypeError, match="default networks only"):
        save(model, tmp_path / "m.safetensors")


def test_pickle_keeps_working(fitted):
    model, X = fitted
    np.testing.assert_array_equal(
        _outputs(pickle.loads(pickle.dumps(model)), X), _outputs(model, X)
    )


def test_onnx_export_matches_within_tolerance(fitted, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, X = fitted
    path = tmp_path / "student.onnx"
    model.export_onnx(path)
    session = ort.InferenceSession(str(path))
    rows = np.asarray(X, dtype=np.float32)
    (outputs,) = session.run(None, {"X": rows})
    expected = _outputs(model, X)
    # Probabilities agree within 1e-5; regression outputs, in the units of y,
    # within a relative 1e-5 (float32 has about 7 significant digits).
    np.testing.assert_allclose(
        outputs.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5
    )
    if hasattr(model, "classes_"):
        np.testing.assert_array_equal(
            model.classes_[outputs.argmax(axis=1)], model.predict(X)
        )


def test_public_api():
    assert {"save", "load"} <= set(sktd.__all__)


def test_round_trip_of_a_student_trained_with_a_hint(
    classification_domains, fast_params, tmp_path
):
    X, y, X_target, y_target = classification_domains
    model = TransferDistillClassifier(
        hint_weight=1.0, random_state=0, **fast_params
    ).fit(X, y, X_target=X_target, y_target=y_target)
    path = tmp_path / "model.safetensors"
    save(model, path)
    restored = load(path)
    # The hint's adapter is not part of the student: nothing extra to store.
    assert restored.get_params() == model.get_params()
    np.testing.assert_array_equal(_outputs(restored, X), _outputs(model, X))
