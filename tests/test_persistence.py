import copy
import hashlib
import hmac
import json
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import sktd
from sktd import TransferDistillClassifier, TransferDistillRegressor, load, save
from sktd._guard import CANDIDATES
from sktd._tabular import TABULAR_CANDIDATES


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
    # The networks' pool: every teacher of it is stored.
    fast_params.update(negative_transfer_guard=True, teacher_pool="networks")
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


def test_round_trip_of_a_calibrated_teacher(
    classification_domains, fast_params, tmp_path, monkeypatch
):
    import sktd._guard

    # The tabular pool calibrates its candidates; with the weight on sktd's
    # networks only, the file stores the teacher, temperatures included.
    def select(outputs, y, classification, **kwargs):
        forced = {"transferred": 0.5, "target_linear": 0.2, "target_network": 0.3}
        weights = {name: forced.get(name, 0.0) for name in outputs}
        return weights, {name: 0.0 for name in [*outputs, "blend"]}

    monkeypatch.setattr(sktd._guard, "select_ensemble", select)
    monkeypatch.setattr(sktd._guard, "fit_temperature", lambda *a, **k: 2.5)
    fast_params.update(negative_transfer_guard=True, teacher_pool="tabular")
    X, y, X_target, y_target = classification_domains
    models = {}
    for calibrated in (True, False):
        monkeypatch.setattr(sktd._guard, "CALIBRATE_CANDIDATES", calibrated)
        models[calibrated] = TransferDistillClassifier(
            random_state=0, **fast_params
        ).fit(X, y, X_target=X_target, y_target=y_target)
    monkeypatch.undo()
    model = models[True]
    path = tmp_path / "model.safetensors"
    save(model, path)
    restored = load(path)
    rows = torch.randn(16, X.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        teacher_outputs = [m.teacher_.module_(rows).numpy() for m in (model, restored)]
        # The same refitted linear member, at temperature 2.5 and at one.
        members = [
            models[c].teacher_.module_.members["target_linear"](rows) for c in models
        ]
    np.testing.assert_array_equal(*teacher_outputs)
    torch.testing.assert_close(members[0] * 2.5, members[1], rtol=1e-5, atol=1e-5)


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


def test_a_missing_path_or_an_unwritable_one_is_an_os_error(saved, tmp_path):
    model, _, _ = saved["regressor"]
    with pytest.raises(FileNotFoundError, match="No sktd file at"):
        load(tmp_path / "missing.safetensors")
    with pytest.raises(OSError, match="save could not write"):
        save(model, tmp_path)


def test_truncated_file_is_refused(saved, tmp_path):
    _, _, path = saved["regressor"]
    data = path.read_bytes()
    for size in (len(data) - 1, len(data) // 2, 9):
        truncated = tmp_path / "truncated.safetensors"
        truncated.write_bytes(data[:size])
        with pytest.raises(ValueError, match="not a readable sktd file"):
            load(truncated)


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


# --------------------------------------------------------------------------
# Hardening: keys, validation of every header field, devices, round trips.


FAST_SAVED = dict(
    teacher_hidden_layer_sizes=(16,),
    student_hidden_layer_sizes=(8,),
    learning_rate_init=0.01,
    max_iter=5,
    negative_transfer_guard=False,
    random_state=0,
)


@pytest.fixture(scope="module")
def saved(classification_domains, regression_domains, tmp_path_factory):
    """A fitted classifier and regressor, each saved once: (model, X, path)."""
    folder = tmp_path_factory.mktemp("saved")
    models = {}
    for kind, cls, domains in (
        ("classifier", TransferDistillClassifier, classification_domains),
        ("regressor", TransferDistillRegressor, regression_domains),
    ):
        X, y, X_target, y_target = domains
        model = cls(**FAST_SAVED).fit(X, y, X_target=X_target, y_target=y_target)
        path = folder / f"{kind}.safetensors"
        save(model, path)
        models[kind] = (model, X_target, path)
    return models


def _stream_digest(header, tensors, key=None):
    """The documented byte stream, hashed here independently of sktd."""
    if key is None:
        hasher = hashlib.sha256()
    else:
        hasher = hmac.new(key, digestmod=hashlib.sha256)
    hasher.update(header.encode())
    for name in sorted(tensors):
        value = tensors[name].contiguous()
        hasher.update(name.encode())
        hasher.update(str(value.dtype).encode() + str(tuple(value.shape)).encode())
        hasher.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def _read_file(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    return metadata, tensors


def _rewrite(path, out, edit=None, *, text=None, tensors_edit=None, sign=None):
    """Rewrite a saved file as a forger would: edit, then recompute the digest.

    ``sign``: recompute an HMAC with this key too (a forger who has the key).
    Without it, an HMAC the file carried is kept as it was.
    """
    from safetensors.torch import save_file

    metadata, tensors = _read_file(path)
    header = metadata["sktd"]
    if edit is not None:
        meta = json.loads(header)
        edit(meta)
        header = json.dumps(meta, sort_keys=True)
    if text is not None:
        header = text(header)
    if tensors_edit is not None:
        tensors_edit(tensors)
    metadata = dict(metadata, sktd=header, sha256=_stream_digest(header, tensors))
    if sign is not None:
        metadata["hmac_sha256"] = _stream_digest(header, tensors, sign)
    save_file(tensors, str(out), metadata=metadata)
    return out


def _set(where, value):
    def edit(meta):
        *parents, last = where.split(".")
        node = meta
        for name in parents:
            node = node[name]
        node[last] = value

    return edit


def _delete(where):
    def edit(meta):
        *parents, last = where.split(".")
        node = meta
        for name in parents:
            node = node[name]
        del node[last]

    return edit


def _edits(*edits):
    def edit(meta):
        for one in edits:
            one(meta)

    return edit


def _tensor_edit(name, change):
    def edit(tensors):
        tensors[name] = change(tensors[name])

    return edit


def _bag_of(size):
    return _edits(
        _set("transfer_weights", {name: 0.0 for name in CANDIDATES}),
        _set("transfer_weights.target_network", 1.0),
        _set("transfer_choice", "target_network"),
        _set("target_network_bag_size", size),
    )


def _case(name, field, edit=None, *, kind="classifier", text=None, tensors=None):
    """A crafted file: edits of a saved model's file, and the field named."""
    return pytest.param(kind, edit, text, tensors, field, id=name)


def _nest(header):
    return header.replace('"n_iter": 5', '"n_iter": ' + "[" * 100000 + "]" * 100000)


HUGE = [60000, 60000]
TEACHER = "params.teacher_hidden_layer_sizes"
STUDENT = "params.student_hidden_layer_sizes"
STRUCTURE = "transfer_choice and transfer_weights"
HOSTILE = [
    # Headers claiming huge networks: refused from the stored shapes, fast.
    _case("huge student", STUDENT, _set(STUDENT, HUGE)),
    _case("huge teacher", TEACHER, _set(TEACHER, HUGE)),
    _case("huge regressor teacher", TEACHER, _set(TEACHER, HUGE), kind="regressor"),
    _case("2**31 features", "n_features_in", _set("n_features_in", 2**31)),
    _case(
        "2**31 regressor features",
        "n_features_in",
        _set("n_features_in", 2**31),
        kind="regressor",
    ),
    _case("10**7 bag", "target_network_bag_size", _bag_of(10**7)),
    _case(
        "10**7 bag, no weight",
        "target_network_bag_size",
        _set("target_network_bag_size", 10**7),
    ),
    _case("10**9 classes", "n_outputs", _set("n_outputs", 10**9)),
    _case("10**9 outputs", "n_outputs", _set("n_outputs", 10**9), kind="regressor"),
    _case("extra teacher layer", TEACHER, _set(TEACHER, [16, 16])),
    _case("other student width", STUDENT, _set(STUDENT, [9]), kind="regressor"),
    # Malformed JSON.
    _case("not JSON", "header", text=lambda h: h[:-1]),
    _case("not an object", "header", text=lambda h: "[]"),
    _case("deep nesting", "header", text=_nest),
    _case(
        "4301-digit integer",
        "header",
        text=lambda h: h.replace('"n_iter": 5', '"n_iter": ' + "9" * 4301),
    ),
    _case(
        "repeated key",
        "header",
        text=lambda h: h.replace('"n_iter": 5', '"n_iter": 5, "n_iter": 6'),
    ),
    # Top-level fields.
    _case("unknown field", "'reduce'", _set("reduce", "os.system")),
    _case("missing field", "n_iter", _delete("n_iter")),
    _case("other format", "format", _set("format", "pickle")),
    _case("newer version", "format_version", _set("format_version", 99)),
    _case("version as text", "format_version", _set("format_version", "2")),
    _case("unknown estimator", "estimator", _set("estimator", "os.system")),
    _case("estimator as list", "estimator", _set("estimator", ["x"])),
    _case("features as text", "n_features_in", _set("n_features_in", "6")),
    _case("no features", "n_features_in", _set("n_features_in", 0)),
    _case("outputs as bool", "n_outputs", _set("n_outputs", True), kind="regressor"),
    _case("one class", "n_outputs", _set("n_outputs", 1)),
    _case("negative n_iter", "n_iter", _set("n_iter", -1)),
    _case("one feature name", "feature_names_in", _set("feature_names_in", ["a"])),
    _case(
        "numbers as feature names",
        "feature_names_in",
        _set("feature_names_in", list(range(6))),
    ),
    # Parameters.
    _case("params as list", "params", _set("params", [])),
    _case("unknown parameter", "params", _set("params.evil", 1)),
    _case("missing parameter", "params", _delete("params.alpha")),
    _case("teacher object", "params.teacher", _set("params.teacher", {"m": "os"})),
    _case("negative max_iter", "params.max_iter", _set("params.max_iter", -1)),
    _case("bool max_iter", "params.max_iter", _set("params.max_iter", True)),
    _case(
        "learning rate as text",
        "params.learning_rate_init",
        _set("params.learning_rate_init", "x"),
    ),
    _case(
        "learning rate as list",
        "params.learning_rate_init",
        _set("params.learning_rate_init", [1]),
    ),
    _case(
        "unknown strategy",
        "params.transfer_strategy",
        _set("params.transfer_strategy", "evil"),
    ),
    _case(
        "random_state 2**40",
        "params.random_state",
        _set("params.random_state", 2**40),
    ),
    _case("device gpu", "params.device", _set("params.device", "gpu")),
    _case("device as number", "params.device", _set("params.device", 0)),
    _case("zero width", STUDENT, _set(STUDENT, [0])),
    _case("bool width", STUDENT, _set(STUDENT, [True])),
    _case("float width", TEACHER, _set(TEACHER, [1.5])),
    _case("widths as text", TEACHER, _set(TEACHER, "16")),
    # Classes.
    _case("fewer classes", "classes", _set("classes.values", [0, 1])),
    _case("unsorted classes", "classes", _set("classes.values", [2, 1, 0])),
    _case("class kind", "classes", _set("classes.kind", "pickle")),
    _case("class kind as list", "classes", _set("classes.kind", ["int"])),
    _case("class dtype", "classes", _set("classes.dtype", "object")),
    _case(
        "class out of int8",
        "classes",
        _edits(_set("classes.dtype", "int8"), _set("classes.values", [0, 1, 1000])),
    ),
    _case(
        "classes of a regressor",
        "classes",
        _set("classes", {"kind": "int", "values": [0]}),
        kind="regressor",
    ),
    # The teacher's structure.
    _case("unknown choice", "transfer_choice", _set("transfer_choice", "evil")),
    _case(
        "choice against weights", "transfer_choice", _set("transfer_choice", "blend")
    ),
    _case(
        "negative weight",
        "transfer_weights",
        _edits(
            _set("transfer_weights.transferred", 1.5),
            _set("transfer_weights.pretrained", -0.5),
        ),
    ),
    _case(
        "weights not summing to 1",
        "transfer_weights",
        _set("transfer_weights.transferred", 0.5),
    ),
    _case("unknown candidate", "transfer_weights", _set("transfer_weights.evil", 0.0)),
    _case(
        "infinite weight",
        "transfer_weights",
        _set("transfer_weights.transferred", float("inf")),
    ),
    _case(
        "losses of an unknown candidate",
        "transfer_losses",
        _set("transfer_losses", {"evil": 1.0}),
    ),
    _case(
        "other teacher structure",
        STRUCTURE,
        _edits(
            _set("transfer_weights.transferred", 0.0),
            _set("transfer_weights.target_linear", 1.0),
            _set("transfer_choice", "target_linear"),
        ),
    ),
    _case(
        "a bag in a teacher the file does not store",
        "target_network_bag_size",
        _edits(
            _set("transfer_weights", {"transferred": 0.5, "hgb_pooled": 0.5}),
            _set("transfer_choice", "blend"),
            _set("target_network_bag_size", 3),
        ),
    ),
    _case(
        "teacher tensors of a teacher the file does not store",
        "transfer_choice, transfer_weights",
        _edits(
            _set("transfer_weights", {"hgb_target": 1.0}),
            _set("transfer_choice", "hgb_target"),
            _set("target_network_bag_size", 0),
        ),
    ),
    # History.
    _case("history as list", "history", _set("history", [])),
    _case("history without a stage", "history", _delete("history.pretrain")),
    _case(
        "nested history",
        r"history.distil\[0\]",
        _set("history.distil", [{"x": [1]}] * 5),
    ),
    _case("history of other length", "history.distil", _set("history.distil", [])),
    # Tensors.
    _case(
        "extra tensor",
        "teacher_hidden_layer",
        tensors=lambda t: t.update({"teacher.evil": torch.zeros(1)}),
    ),
    _case(
        "missing tensor",
        STRUCTURE,
        tensors=lambda t: t.pop("teacher.head.bias"),
    ),
    _case(
        "reshaped weight",
        STUDENT,
        tensors=_tensor_edit("student.body.0.weight", lambda w: torch.zeros(8, 7)),
    ),
    _case(
        "float64 weight",
        "dtype",
        tensors=_tensor_edit("student.head.weight", lambda w: w.double()),
    ),
    _case(
        "bfloat16 weight",
        "dtype",
        tensors=_tensor_edit("student.head.weight", lambda w: w.bfloat16()),
        kind="regressor",
    ),
]


@pytest.mark.parametrize("kind, edit, text, tensors_edit, field", HOSTILE)
def test_malformed_files_are_refused_fast_naming_the_field(
    saved, kind, edit, text, tensors_edit, field, tmp_path
):
    _, _, path = saved[kind]
    crafted = _rewrite(
        path,
        tmp_path / "crafted.safetensors",
        edit,
        text=text,
        tensors_edit=tensors_edit,
    )
    start = time.perf_counter()
    with pytest.raises(ValueError, match=field) as error:
        load(crafted)
    elapsed = time.perf_counter() - start
    # A plain ValueError: no KeyError, TypeError, RecursionError, ... leaks.
    assert type(error.value) is ValueError
    assert elapsed < 0.5, f"refused in {elapsed:.3f} s"


def test_an_untouched_rewrite_loads(saved, tmp_path):
    # The forger's tool itself is faithful: without edits, the file loads.
    model, X, path = saved["classifier"]
    restored = load(_rewrite(path, tmp_path / "same.safetensors"))
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))


def _same_weights(a, b):
    for name in ("teacher_", "student_"):
        state_a = getattr(a, name).module_.state_dict()
        state_b = getattr(b, name).module_.state_dict()
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert state_a[key].dtype == state_b[key].dtype
            assert torch.equal(state_a[key].cpu(), state_b[key].cpu()), key


@pytest.mark.parametrize("key", [b"\x00secret\xff", "a passphrase"])
def test_signed_file_round_trips_bit_for_bit(fitted, key, tmp_path):
    model, X = fitted
    path = tmp_path / "signed.safetensors"
    save(model, path, key=key)
    metadata, _ = _read_file(path)
    assert set(metadata) == {"sktd", "sha256", "hmac_sha256"}
    restored = load(path, key=key)
    _same_weights(restored, model)
    np.testing.assert_array_equal(_outputs(restored, X), _outputs(model, X))
    assert restored.get_params() == model.get_params()


def test_a_str_key_is_its_utf8_bytes(saved, tmp_path):
    model, X, _ = saved["classifier"]
    path = tmp_path / "signed.safetensors"
    save(model, path, key="clé")
    load(path, key="clé".encode())
    load(path, key=bytearray("clé".encode()))


def test_wrong_key_is_refused(saved, tmp_path):
    model, _, _ = saved["classifier"]
    path = tmp_path / "signed.safetensors"
    save(model, path, key=b"right")
    with pytest.raises(ValueError, match="failed its authenticity check"):
        load(path, key=b"wrong")


def test_signed_file_without_key_is_refused(saved, tmp_path):
    model, _, _ = saved["classifier"]
    path = tmp_path / "signed.safetensors"
    save(model, path, key=b"k")
    with pytest.raises(ValueError, match="is signed.*key="):
        load(path)


def test_key_given_for_an_unsigned_file_is_refused(saved):
    _, _, path = saved["classifier"]
    with pytest.raises(ValueError, match="not signed"):
        load(path, key=b"k")


def test_plain_digest_detects_corruption_not_tampering(saved, tmp_path):
    model, X, path = saved["classifier"]

    def tamper(tensors):
        tensors["student.head.bias"] = tensors["student.head.bias"] + 5.0

    # The limit of the plain digest, documented: a forger recomputes it, and
    # the edited file loads without key.
    forged = _rewrite(path, tmp_path / "forged.safetensors", tensors_edit=tamper)
    restored = load(forged)
    assert not np.array_equal(
        restored.student_.module_.head.bias.detach().numpy(),
        model.student_.module_.head.bias.detach().numpy(),
    )
    # Signed, the same edit is refused with the key, whether the forger
    # keeps the old HMAC, strips it, or signs with another key.
    signed = tmp_path / "signed.safetensors"
    save(model, signed, key=b"k")
    kept = _rewrite(signed, tmp_path / "kept.safetensors", tensors_edit=tamper)
    with pytest.raises(ValueError, match="failed its authenticity check"):
        load(kept, key=b"k")
    resigned = _rewrite(
        signed, tmp_path / "resigned.safetensors", tensors_edit=tamper, sign=b"x"
    )
    with pytest.raises(ValueError, match="failed its authenticity check"):
        load(resigned, key=b"k")
    stripped = tmp_path / "stripped.safetensors"
    from safetensors.torch import save_file

    metadata, tensors = _read_file(kept)
    del metadata["hmac_sha256"]
    save_file(tensors, str(stripped), metadata=metadata)
    load(stripped)  # without key, anything with a valid digest loads
    with pytest.raises(ValueError, match="not signed"):
        load(stripped, key=b"k")


def test_edited_header_is_refused_with_a_key(saved, tmp_path):
    model, _, _ = saved["classifier"]
    signed = tmp_path / "signed.safetensors"
    save(model, signed, key=b"k")
    edited = _rewrite(
        signed, tmp_path / "edited.safetensors", _set("params.max_iter", 7)
    )
    with pytest.raises(ValueError, match="failed its authenticity check"):
        load(edited, key=b"k")


@pytest.mark.parametrize(
    "key, error, match",
    [(123, TypeError, "key must be bytes or str"), (b"", ValueError, "key must not")],
)
def test_bad_keys_are_refused(saved, key, error, match, tmp_path):
    model, _, path = saved["classifier"]
    with pytest.raises(error, match=match):
        save(model, tmp_path / "m.safetensors", key=key)
    with pytest.raises(error, match=match):
        load(path, key=key)


def test_malformed_digest_entries_are_refused(saved, tmp_path):
    from safetensors.torch import save_file

    _, _, path = saved["classifier"]
    metadata, tensors = _read_file(path)
    for entry, value in (("sha256", "é" * 64), ("hmac_sha256", "zz")):
        save_file(
            tensors,
            str(tmp_path / "m.safetensors"),
            metadata=dict(metadata, **{entry: value}),
        )
        with pytest.raises(ValueError, match=f"its {entry} entry"):
            load(tmp_path / "m.safetensors", key=b"k" if "hmac" in entry else None)
    save_file(
        tensors, str(tmp_path / "m.safetensors"), metadata=dict(metadata, extra="x")
    )
    with pytest.raises(ValueError, match="metadata sktd does not write"):
        load(tmp_path / "m.safetensors")


# ------------------------------------------------------------------ devices


@pytest.mark.parametrize("saved_device", ["cuda", "cuda:1", "mps", "meta", "xpu"])
def test_a_device_this_machine_lacks_falls_back_to_cpu(saved, saved_device, tmp_path):
    parsed = torch.device(saved_device)
    if parsed.type == "cuda" and torch.cuda.device_count() > (parsed.index or 0):
        pytest.skip("this machine has the device")
    if parsed.type == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has the device")
    for kind in ("classifier", "regressor"):
        model, X, path = saved[kind]
        crafted = _rewrite(
            path, tmp_path / "m.safetensors", _set("params.device", saved_device)
        )
        restored = load(crafted)
        assert restored.device == "cpu"
        assert {p.device.type for p in restored.student_.module_.parameters()} == {
            "cpu"
        }
        np.testing.assert_array_equal(_outputs(restored, X), _outputs(model, X))


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_load_on_a_given_device(saved, device):
    model, X, path = saved["regressor"]
    restored = load(path, device=device)
    assert restored.device == "cpu"
    for net in (restored.teacher_, restored.student_):
        assert {p.device.type for p in net.module_.parameters()} == {"cpu"}
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))


@pytest.mark.parametrize("device", ["gpu", "", "cuda:-1", 3, b"cpu"])
def test_invalid_devices_are_refused(saved, device):
    _, _, path = saved["classifier"]
    with pytest.raises(ValueError, match="device"):
        load(path, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_an_unavailable_device_is_refused(saved):
    _, _, path = saved["classifier"]
    with pytest.raises(ValueError, match="device='cuda' is not available"):
        load(path, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_load_onto_and_from_a_gpu(saved, tmp_path):
    model, X, path = saved["classifier"]
    on_gpu = load(path, device="cuda")
    assert on_gpu.device == "cuda"
    for net in (on_gpu.teacher_, on_gpu.student_):
        assert {p.device.type for p in net.module_.parameters()} == {"cuda"}
    np.testing.assert_allclose(
        on_gpu.predict_proba(X), model.predict_proba(X), rtol=1e-5, atol=1e-6
    )
    # Saved from the GPU, it loads back there by default, and on the CPU
    # when asked, with the same weights.
    save(on_gpu, tmp_path / "gpu.safetensors")
    again = load(tmp_path / "gpu.safetensors")
    assert again.device == "cuda"
    on_cpu = load(tmp_path / "gpu.safetensors", device="cpu")
    _same_weights(on_cpu, model)


# -------------------------------------------------------------- round trips


def test_numpy_typed_parameters_round_trip(classification_domains, tmp_path):
    X, y, X_target, y_target = classification_domains
    model = TransferDistillClassifier(
        teacher_hidden_layer_sizes=np.arange(4, 6),
        student_hidden_layer_sizes=np.array([8]),
        max_iter=np.int64(3),
        learning_rate_init=np.float64(0.01),
        alpha=np.float32(0.5),
        batch_size=np.int32(64),
        random_state=np.int64(3),
        negative_transfer_guard=np.bool_(False),
    ).fit(X, y, X_target=X_target, y_target=y_target)
    path = tmp_path / "m.safetensors"
    save(model, path)
    restored = load(path)
    params = restored.get_params()
    assert params["teacher_hidden_layer_sizes"] == (4, 5)
    assert params["student_hidden_layer_sizes"] == (8,)
    expected = dict(
        max_iter=3,
        learning_rate_init=0.01,
        alpha=0.5,
        batch_size=64,
        random_state=3,
        negative_transfer_guard=False,
    )
    for name, value in expected.items():
        assert params[name] == value and type(params[name]) is type(value), name
    np.testing.assert_array_equal(
        restored.predict_proba(X_target), model.predict_proba(X_target)
    )


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("random_state", np.random.RandomState(0), TypeError),
        ("tol", [1e-4], TypeError),
        ("student_hidden_layer_sizes", ("8",), ValueError),
        ("max_iter", True, ValueError),
    ],
)
def test_a_parameter_that_cannot_be_saved_is_named(saved, name, value, error, tmp_path):
    model, _, _ = saved["classifier"]
    model = copy.deepcopy(model).set_params(**{name: value})
    with pytest.raises(error, match=name):
        save(model, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize(
    "labels",
    [
        np.array([False, True]),
        np.array([3, 7], dtype=np.int32),
        np.array([250, 251], dtype=np.uint8),
        np.array([1.0, 2.0], dtype=np.float32),
    ],
    ids=["bool", "int32", "uint8", "float32"],
)
def test_class_labels_come_back_with_their_dtype(labels, tmp_path):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 3))
    y = labels[(X[:, 0] > 0).astype(int)]
    model = TransferDistillClassifier(max_iter=3, random_state=0).fit(X, y)
    path = tmp_path / "m.safetensors"
    save(model, path)
    restored = load(path)
    assert restored.classes_.dtype == model.classes_.dtype == labels.dtype
    np.testing.assert_array_equal(restored.classes_, model.classes_)
    predictions = restored.predict(X)
    assert predictions.dtype == labels.dtype
    np.testing.assert_array_equal(predictions, model.predict(X))


def test_history_round_trips_and_plots(fitted, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, _ = fitted
    path = tmp_path / "m.safetensors"
    save(model, path)
    restored = load(path)
    assert set(restored.history_) == {"pretrain", "transfer", "distil"}
    for stage, history in model.history_.items():
        if history is None:
            assert restored.history_[stage] is None
            continue
        saved_epochs = [
            {k: v for k, v in epoch.items() if k != "batches"} for epoch in history
        ]
        assert list(restored.history_[stage]) == saved_epochs
        assert restored.history_[stage][:, "train_loss"] == history[:, "train_loss"]
    assert restored.n_iter_ == len(restored.history_["distil"])
    axes = [sktd.plot_learning_curves(m) for m in (model, restored)]
    lines = [[list(line.get_ydata()) for line in ax.get_lines()] for ax in axes]
    assert lines[0] == lines[1]
    plt.close("all")


def test_early_stopping_history_keeps_validation_losses(
    classification_domains, tmp_path
):
    X, y, X_target, y_target = classification_domains
    model = TransferDistillClassifier(**dict(FAST_SAVED, early_stopping=True)).fit(
        X, y, X_target=X_target, y_target=y_target
    )
    save(model, tmp_path / "m.safetensors")
    restored = load(tmp_path / "m.safetensors")
    for stage in ("pretrain", "distil"):
        assert (
            restored.history_[stage][:, "valid_loss"]
            == model.history_[stage][:, "valid_loss"]
        )


def test_format_version_1_files_still_load(saved, tmp_path):
    def as_version_1(meta):
        meta["format_version"] = 1
        del meta["history"]
        del meta["classes"]["dtype"]

    model, X, path = saved["classifier"]
    old = load(_rewrite(path, tmp_path / "v1.safetensors", as_version_1))
    assert not hasattr(old, "history_")
    assert old.classes_.dtype == np.int64
    np.testing.assert_array_equal(old.predict_proba(X), model.predict_proba(X))


def test_loading_leaves_torch_random_state_alone(saved):
    _, _, path = saved["classifier"]
    before = torch.get_rng_state()
    load(path)
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize(
    "weights",
    [
        {"target_network": 1.0},
        {"target_linear": 1.0},
        {"pretrained": 0.5, "transferred": 0.5},
        {
            "transferred": 0.4,
            "rehearsed": 0.1,
            "target_linear": 0.2,
            "target_network": 0.3,
        },
    ],
    ids=["bag", "linear", "pair", "four"],
)
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_every_teacher_structure_is_checked_and_rebuilt(saved, kind, weights, tmp_path):
    """Every structure the guard builds, made without the guard's training."""
    from sktd._guard import all_weights, choice_of, teacher_architecture

    model, X, _ = saved[kind]
    model = copy.deepcopy(model)
    weights = all_weights(weights)
    torch.manual_seed(0)
    module = teacher_architecture(
        choice_of(weights),
        weights,
        model.n_features_in_,
        model.n_outputs_,
        (16,),
        3 if weights["target_network"] else 0,
        classification=kind == "classifier",
    ).eval()
    model.teacher_.module_ = module
    model.transfer_weights_, model.transfer_choice_ = weights, choice_of(weights)
    path = tmp_path / "m.safetensors"
    save(model, path)
    restored = load(path)
    _same_weights(restored, model)
    rows = torch.randn(8, model.n_features_in_)
    with torch.no_grad():
        np.testing.assert_array_equal(
            restored.teacher_.module_(rows).numpy(), module(rows).numpy()
        )
    if choice_of(weights) == "blend":
        # Blend weights stored as tensors must agree with the header's.
        name = next(n for n in sorted(weights) if weights[n])
        edited = dict(weights)
        other = next(n for n in sorted(weights) if n != name and weights[n])
        edited[name], edited[other] = weights[other], weights[name]
        if edited != weights:
            crafted = _rewrite(
                path, tmp_path / "c.safetensors", _set("transfer_weights", edited)
            )
            with pytest.raises(ValueError, match="transfer_weights"):
                load(crafted)
    if weights["target_network"]:
        for size in (2, 4):
            crafted = _rewrite(
                path,
                tmp_path / "c.safetensors",
                _set("target_network_bag_size", size),
            )
            with pytest.raises(ValueError, match="target_network_bag_size"):
                load(crafted)


def test_a_parameter_added_later_gets_its_former_behaviour(
    saved, tmp_path, monkeypatch
):
    import sktd._model_file

    model, X, path = saved["classifier"]
    crafted = _rewrite(path, tmp_path / "old.safetensors", _delete("params.alpha"))
    with pytest.raises(ValueError, match="params lacks"):
        load(crafted)
    monkeypatch.setattr(sktd._model_file, "_LATER_PARAMETERS", {"alpha": 0.25})
    assert load(crafted).alpha == 0.25


def test_a_file_without_student_max_iter_says_its_student_trained_max_iter(
    saved, tmp_path
):
    # sktd 0.5 and earlier trained every student max_iter epochs: None.
    model, X, path = saved["classifier"]
    crafted = _rewrite(
        path, tmp_path / "old.safetensors", _delete("params.student_max_iter")
    )
    restored = load(crafted)
    assert restored.student_max_iter is None
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))


def test_a_teacher_with_unknown_candidates_is_refused_by_save(saved, tmp_path):
    model = copy.deepcopy(saved["classifier"][0])
    model.transfer_weights_ = dict(model.transfer_weights_, sklearn_model=0.0)
    with pytest.raises(ValueError, match="cannot write.*sklearn_model"):
        save(model, tmp_path / "m.safetensors")


def test_loaded_nets_predict_like_the_fitted_ones(fitted, tmp_path):
    model, X = fitted
    path = tmp_path / "model.safetensors"
    save(model, path)
    restored = load(path)
    rows = model.input_scaler_.transform(np.asarray(X, dtype=np.float64))
    for name in ("teacher_", "student_"):
        np.testing.assert_array_equal(
            getattr(restored, name).predict_proba(rows),
            getattr(model, name).predict_proba(rows),
        )


@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_onnx_matches_at_large_feature_offsets(
    offset, classification_domains, fast_params, tmp_path
):
    ort = pytest.importorskip("onnxruntime")
    X, y, X_target, y_target = classification_domains
    model = TransferDistillClassifier(random_state=0, **fast_params).fit(
        X + offset, y, X_target=X_target + offset, y_target=y_target
    )
    path = tmp_path / "student.onnx"
    model.export_onnx(path)
    rows = np.asarray(X_target + offset, dtype=np.float32)
    (outputs,) = ort.InferenceSession(str(path)).run(None, {"X": rows})
    # The same float32 rows through sktd and through onnxruntime.
    np.testing.assert_allclose(
        outputs, model.predict_proba(rows.astype(np.float64)), atol=1e-5
    )


@pytest.mark.parametrize("cls", [TransferDistillClassifier, TransferDistillRegressor])
def test_a_teacher_with_scikit_learn_models_is_not_stored(
    cls, classification_domains, regression_domains, fast_params, tmp_path
):
    X, y, X_target, y_target = (
        classification_domains
        if cls is TransferDistillClassifier
        else regression_domains
    )
    fast_params.update(negative_transfer_guard=True, teacher_pool="tabular")
    model = cls(random_state=0, **fast_params).fit(
        X, y, X_target=X_target, y_target=y_target
    )
    assert any(model.transfer_weights_[name] for name in TABULAR_CANDIDATES)
    path = tmp_path / "model.safetensors"
    save(model, path)
    restored = load(path)
    # The student, what predicts, comes back exactly; the teacher does not.
    np.testing.assert_array_equal(
        _outputs(restored, X_target), _outputs(model, X_target)
    )
    assert restored.transfer_weights_ == model.transfer_weights_
    assert not hasattr(restored, "teacher_")
    with pytest.raises(ValueError, match="holds its student only.*pickle"):
        restored.predict_teacher(X_target)
    with pytest.raises(ValueError, match="holds its student only"):
        restored.distillation_report(X_target[:5], model.predict(X_target[:5]))
    # A loaded model saves again, to the same file.
    save(restored, tmp_path / "again.safetensors")
    again = load(tmp_path / "again.safetensors")
    np.testing.assert_array_equal(_outputs(again, X_target), _outputs(model, X_target))
    with open(path, "rb") as file:
        size = int.from_bytes(file.read(8), "little")
        stored = json.loads(file.read(size))
    assert not any(name.startswith("teacher.") for name in stored)


GPU_FILES = Path(__file__).parent / "data"


def test_models_saved_on_a_gpu_load_and_predict_here():
    # Written on an H200 by ``benchmarks/bench_gpu.py --save-models tests/data``;
    # on a machine without CUDA they load onto the CPU.
    expected = np.load(GPU_FILES / "gpu_predictions.npz")
    for name in ("gpu_classifier", "gpu_regressor"):
        metadata, _ = _read_file(GPU_FILES / f"{name}.safetensors")
        assert json.loads(metadata["sktd"])["params"]["device"] == "cuda"
    classifier = load(GPU_FILES / "gpu_classifier.safetensors")
    regressor = load(GPU_FILES / "gpu_regressor.safetensors")
    here = "cuda" if torch.cuda.is_available() else "cpu"
    for model in (classifier, regressor):
        assert model.device == here
        devices = {p.device.type for p in model.student_.module_.parameters()}
        assert devices == {here}
    rows = expected["rows"]
    # The GPU's kernels add in another order than the CPU's: equal up to
    # float32 rounding, not bit for bit.
    tolerance = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        classifier.predict_proba(rows), expected["proba"], **tolerance
    )
    np.testing.assert_allclose(
        classifier.predict_proba_teacher(rows), expected["proba_teacher"], **tolerance
    )
    np.testing.assert_allclose(
        regressor.predict(expected["rows_regression"]),
        expected["regression"],
        **tolerance,
    )


# -- Pipelines: sktd steps in sktd's format, scikit-learn steps through skops

FAST = dict(
    teacher_hidden_layer_sizes=(16,),
    student_hidden_layer_sizes=(8,),
    max_iter=5,
    negative_transfer_guard=False,
)


@pytest.fixture(scope="module")
def fitted_pipeline(classification_domains):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y, X_target, y_target = classification_domains
    X_all, y_all, domain = sktd.stack_domains(X, y, X_target, y_target)
    columns = [f"f{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X_all, columns=columns)
    frame["group"] = np.where(X_all[:, 0] > 0, "high", "low")
    prepare = ColumnTransformer(
        [
            ("numbers", StandardScaler(), columns),
            ("group", OneHotEncoder(sparse_output=False), ["group"]),
        ]
    )
    model = TransferDistillClassifier(random_state=0, **FAST)
    pipeline = make_pipeline(prepare, "passthrough", model)
    pipeline.fit(frame, y_all, transferdistillclassifier__sample_domain=domain)
    return pipeline, frame


def test_a_pipeline_round_trips_bit_for_bit_without_pickle(
    fitted_pipeline, tmp_path, monkeypatch
):
    pytest.importorskip("skops")
    pipeline, frame = fitted_pipeline
    path = tmp_path / "pipeline.safetensors"
    save(pipeline, path, key=b"secret")

    def refuse(*args, **kwargs):
        raise AssertionError("pickle must not be used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    restored = load(path, key=b"secret")
    monkeypatch.undo()

    assert [name for name, _ in restored.steps] == [n for n, _ in pipeline.steps]
    np.testing.assert_array_equal(
        restored.predict_proba(frame), pipeline.predict_proba(frame)
    )
    np.testing.assert_array_equal(restored.predict(frame), pipeline.predict(frame))
    # A signed pipeline file refuses an edit as an estimator's does.
    with pytest.raises(ValueError, match="wrong key"):
        load(path, key=b"other")


def test_a_pipeline_file_is_checked_step_by_step(fitted_pipeline, tmp_path):
    pytest.importorskip("skops")
    from safetensors.torch import load_file, save_file

    pipeline, _ = fitted_pipeline
    path = tmp_path / "pipeline.safetensors"
    save(pipeline, path)

    def rewritten(edit_header=None, edit_tensors=None):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            header = json.loads(handle.metadata()["sktd"])
        tensors = load_file(str(path))
        if edit_header:
            edit_header(header)
        if edit_tensors:
            edit_tensors(tensors)
        text = json.dumps(header, sort_keys=True)
        edited = tmp_path / "edited.safetensors"
        digest = hashlib.sha256(text.encode())
        for name in sorted(tensors):
            value = tensors[name].contiguous()
            digest.update(name.encode())
            digest.update(str(value.dtype).encode() + str(tuple(value.shape)).encode())
            digest.update(value.numpy().tobytes())
        save_file(
            tensors, str(edited), metadata={"sktd": text, "sha256": digest.hexdigest()}
        )
        return edited

    def drop_student_tensor(tensors):
        del tensors[next(k for k in tensors if k.startswith("steps.2.student."))]

    def untrusted_step(tensors):
        # A step of a type skops does not trust, in place of the scaler's.
        import skops.io
        from sklearn.preprocessing import FunctionTransformer

        data = skops.io.dumps(FunctionTransformer(_double))
        tensors["steps.0.skops"] = torch.frombuffer(bytearray(data), dtype=torch.uint8)

    def bad_step_param(header):
        header["pipeline"]["steps"][2]["header"]["params"]["alpha"] = 7

    for edit, message in [
        ({"edit_tensors": drop_student_tensor}, "Pipeline step 'transferdistill"),
        ({"edit_header": bad_step_param}, "Pipeline step 'transferdistill"),
        (
            {"edit_header": lambda h: h["pipeline"]["steps"][1].update(kind="pickle")},
            r"pipeline.steps\[1\]",
        ),
        (
            {"edit_tensors": lambda t: t.update(stray=torch.zeros(1))},
            "belongs to no step",
        ),
        ({"edit_tensors": untrusted_step}, "skops does not trust"),
    ]:
        with pytest.raises(ValueError, match=message):
            load(rewritten(**edit))
    # The untouched rewrite loads: the refusals come from the edits.
    assert isinstance(load(rewritten()), type(pipeline))
    # The digest covers the skops steps' bytes too.
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    tensors["steps.0.skops"][-1] ^= 1
    save_file(tensors, str(tmp_path / "flipped.safetensors"), metadata=metadata)
    with pytest.raises(ValueError, match="integrity check"):
        load(tmp_path / "flipped.safetensors")


def test_a_pipeline_step_skops_would_not_trust_is_refused_by_save(
    classification_domains, tmp_path
):
    pytest.importorskip("skops")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y, _, _ = classification_domains
    pipeline = make_pipeline(
        FunctionTransformer(_double), TransferDistillClassifier(random_state=0, **FAST)
    ).fit(X, y)
    with pytest.raises(TypeError, match="skops does not trust"):
        save(pipeline, tmp_path / "p.safetensors")
    cached = make_pipeline(
        TransferDistillClassifier(random_state=0, **FAST), memory=str(tmp_path)
    ).fit(X, y)
    with pytest.raises(TypeError, match="memory=None"):
        save(cached, tmp_path / "p.safetensors")


def _double(X):
    return 2 * X
