"""Saving and loading fitted estimators without pickle.

:func:`save` writes one ``.safetensors`` file: the networks' weights and the
scalers' statistics as tensors, and the estimator's parameters, fitted
metadata and per-epoch training history as JSON in the file's header.
:func:`load` reads it back with ``safetensors`` and ``json`` only: no
``pickle``, so opening a file runs no code from it.

What the checks guarantee (the threat model of formats such as safetensors
and skops: loading is safe to run; authenticity needs a signature):

* Every file carries a SHA-256 digest of its header and tensors. It detects
  corruption (a truncated copy, a flipped bit), **not tampering**: whoever
  edits a file can recompute it.
* A file saved with a secret ``key`` also carries an HMAC-SHA256 of the same
  bytes, which only a holder of the key can compute. Load a file from a source
  you do not control only with ``key=``: then an edited or forged file is
  refused.
* Whatever its origin, a file is validated before anything is built from it:
  every header field, then the name, dtype and shape of every tensor against
  what the header implies. A malformed file gets a ``ValueError`` naming the
  field, at a cost in time and memory proportional to the file's size.

:func:`~sktd.export_onnx` (in ``_onnx``) writes the student as ONNX.
"""

import hashlib
import hmac
import json

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from ._guard import bag_size, teacher_architecture
from ._model_file import (
    _CLASS_DTYPES,
    _HEX_DIGEST,
    _HIDDEN_SIZES,
    _HISTORY_MAX_ENTRIES,
    _HISTORY_MAX_TEXT,
    _STAGES,
    _STORED_DTYPES,
    ESTIMATORS,
    FORMAT,
    FORMAT_VERSION,
    _check_device,
    _check_file,
    _is_available,
    _parse_header,
    _show,
    teacher_is_stored,
)
from ._nets import DistillationNet, SupervisedNet
from ._networks import MLP

# Entries of the safetensors metadata: the JSON header and its checks.
_HEADER = "sktd"


_DIGEST = "sha256"


_HMAC = "hmac_sha256"


def save(estimator, path, *, key=None):
    """Save a fitted sktd estimator to ``path`` without pickle.

    The file holds the weights (safetensors), the parameters, fitted metadata
    and per-epoch training history (JSON), and a SHA-256 digest of both. The
    digest detects corruption, not tampering: anyone who edits the file can
    recompute it. Pass a secret ``key`` to also sign the file with an
    HMAC-SHA256, which :func:`load` then verifies.

    Parameters
    ----------
    estimator : TransferDistillClassifier, TransferDistillRegressor or Pipeline
        A fitted estimator whose teacher and student are sktd's default MLPs
        (``teacher=None``, ``student=None``). Custom torch modules cannot be
        rebuilt without running their code: pickle those instead. A fitted
        ``Pipeline`` stores its sktd steps so, and its other steps with skops
        (the ``persistence`` extra), which must hold only types skops trusts
        by default.
    path : str or path-like
        File to write, conventionally ending in ``.safetensors``.
    key : bytes or str, default=None
        Secret key of the HMAC-SHA256 signature (a ``str`` is encoded as
        UTF-8). A signed file loads only with the same key. ``None`` writes an
        unsigned file.

    Raises
    ------
    TypeError
        If the estimator is not an sktd estimator (or a Pipeline holding
        one), holds a custom network, or has a parameter (named in the
        message) that JSON cannot hold, such as a ``RandomState`` instance; if
        a Pipeline step holds types skops does not trust by default, or the
        Pipeline has a ``memory``; or if ``key`` is not bytes or str.
    ValueError
        If ``key`` is empty, or a parameter (named in the message) has a value
        :func:`load` would refuse.
    OSError
        If ``path`` cannot be written (a folder, no permission).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sktd import TransferDistillClassifier, save, load
    >>> X = np.random.RandomState(0).normal(size=(60, 3))
    >>> y = (X[:, 0] > 0).astype(int)
    >>> model = TransferDistillClassifier(max_iter=3, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> save(model, path)
    >>> bool((load(path).predict_proba(X) == model.predict_proba(X)).all())
    True

    A signed file needs its key to load:

    >>> save(model, path, key=b"a secret")
    >>> bool((load(path, key=b"a secret").predict(X) == model.predict(X)).all())
    True
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    key = _check_key(key)
    if isinstance(estimator, Pipeline):
        metadata, tensors = _pipeline_payload(estimator)
    else:
        metadata, tensors = _estimator_payload(estimator)
    header = json.dumps(metadata, sort_keys=True)
    # Never write a file that load would refuse.
    try:
        _check_file(_parse_header(header), tensors)
    except ValueError as error:
        raise ValueError(f"save cannot write this estimator: {error}") from None
    checks = {_DIGEST: _digest(header, tensors)}
    if key is not None:
        checks[_HMAC] = _digest(header, tensors, key)
    try:
        save_file(tensors, str(path), metadata={_HEADER: header, **checks})
    except SafetensorError as error:
        # safetensors reports an unwritable path (a folder, no permission)
        # as its own error type; callers catch OSError for these.
        raise OSError(f"save could not write {path}: {error}") from error


def _estimator_payload(estimator):
    """Return the header fields and tensors of a fitted sktd estimator."""
    if type(estimator).__name__ not in ESTIMATORS:
        raise TypeError(
            "save expects a TransferDistillClassifier or TransferDistillRegressor, "
            f"or a Pipeline holding one; got {type(estimator).__name__}."
        )

    check_is_fitted(estimator)
    for name in ("teacher", "student"):
        if getattr(estimator, name) is not None:
            raise TypeError(
                f"save supports sktd's default networks only; this estimator's "
                f"{name} is a custom {type(getattr(estimator, name)).__name__}, "
                "which cannot be rebuilt without running its code. Use pickle "
                "(or torch.save) for it."
            )
    tensors = {
        "input_scaler.mean": torch.from_numpy(estimator.input_scaler_.mean_),
        "input_scaler.scale": torch.from_numpy(estimator.input_scaler_.scale_),
    }
    if hasattr(estimator, "target_scaler_"):
        tensors["target_scaler.mean"] = torch.from_numpy(estimator.target_scaler_.mean_)
        tensors["target_scaler.scale"] = torch.from_numpy(
            estimator.target_scaler_.scale_
        )
    stored = ["student"]
    if teacher_is_stored(estimator.transfer_weights_):
        stored.append("teacher")
    for name in stored:
        module = getattr(estimator, f"{name}_").module_
        for name_in_module, value in module.state_dict().items():
            tensors[f"{name}.{name_in_module}"] = value.detach().cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "estimator": type(estimator).__name__,
        "params": _params_to_json(estimator.get_params(deep=False)),
        "n_features_in": int(estimator.n_features_in_),
        "feature_names_in": (
            estimator.feature_names_in_.tolist()
            if hasattr(estimator, "feature_names_in_")
            else None
        ),
        "n_outputs": int(estimator.n_outputs_),
        "n_iter": int(estimator.n_iter_),
        "classes": _classes_to_json(getattr(estimator, "classes_", None)),
        "transfer_choice": estimator.transfer_choice_,
        "transfer_weights": estimator.transfer_weights_,
        "transfer_losses": estimator.transfer_losses_,
        "target_network_bag_size": (
            bag_size(
                estimator.teacher_.module_,
                estimator.transfer_choice_,
                estimator.transfer_weights_,
            )
            if "teacher" in stored
            else 0
        ),
        "history": _history_to_json(getattr(estimator, "history_", None)),
    }
    return metadata, tensors


def _pipeline_payload(pipeline):
    """Return the header fields and tensors of a fitted Pipeline holding sktd.

    sktd steps are stored as sktd stores an estimator, their tensors under
    ``steps.{i}.``; every other step as skops writes it (skops' format runs no
    code when read, and loads only types it trusts by default), its bytes in
    one uint8 tensor ``steps.{i}.skops``.
    """
    check_is_fitted(pipeline)
    for name in ("memory", "transform_input"):
        if getattr(pipeline, name, None) is not None:
            raise TypeError(
                f"save stores a Pipeline's steps and verbose, not its {name}: set "
                f"{name}=None before saving."
            )
    steps, tensors = [], {}
    for index, (name, step) in enumerate(pipeline.steps):
        prefix = f"steps.{index}."
        if step is None or (isinstance(step, str) and step == "passthrough"):
            steps.append({"name": name, "kind": "passthrough"})
        elif type(step).__name__ in ESTIMATORS:
            metadata, step_tensors = _estimator_payload(step)
            steps.append({"name": name, "kind": "sktd", "header": metadata})
            tensors.update({prefix + k: v for k, v in step_tensors.items()})
        else:
            steps.append({"name": name, "kind": "skops"})
            tensors[prefix + "skops"] = _skops_bytes(name, step)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "pipeline": {"steps": steps, "verbose": bool(pipeline.verbose)},
    }
    return metadata, tensors


def _skops_bytes(name, step):
    """Serialise a scikit-learn step with skops; refuse what load would refuse."""
    skops_io = _skops()
    try:
        data = skops_io.dumps(step)
    except Exception as error:
        raise TypeError(
            f"save cannot store Pipeline step {name!r} "
            f"({type(step).__name__}) with skops: {error}"
        ) from error
    untrusted = skops_io.get_untrusted_types(data=data)
    if untrusted:
        raise TypeError(
            f"Pipeline step {name!r} ({type(step).__name__}) holds types skops "
            f"does not trust by default ({_show(untrusted)}), so load would "
            "refuse them: keep such a pipeline with pickle, or replace the step."
        )
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _skops():
    try:
        import skops.io
    except ImportError as error:
        raise ImportError(
            "Saving or loading a Pipeline stores its scikit-learn steps with "
            "skops: pip install 'sktd[persistence]' (or skops)."
        ) from error
    return skops.io


def load(path, *, key=None, device=None):
    """Load an estimator written by :func:`save`; never unpickles.

    The file is checked before anything is built from it: its SHA-256 digest
    (or, with ``key``, its HMAC-SHA256), then every field of its header, then
    the name, dtype and shape of every tensor against what the header implies.
    Loading costs time and memory proportional to the file's size.

    The SHA-256 digest detects corruption, not tampering: anyone who edits a
    file can recompute it. Load a file from a source you do not control only
    with the ``key`` it was signed with.

    Parameters
    ----------
    path : str or path-like
        File written by :func:`save`.
    key : bytes or str, default=None
        The secret key the file was signed with (``save(..., key=key)``).
        With a key, a file without a signature or whose signature does not
        verify is refused. Without one, a signed file is refused too: it was
        signed to be verified.
    device : str or torch.device, default=None
        Where the networks' weights go and the estimator predicts, e.g.
        ``"cpu"`` or ``"cuda"``. ``None``: the device the estimator was saved
        with if this machine has it, else ``"cpu"``.

    Returns
    -------
    estimator : TransferDistillClassifier, TransferDistillRegressor or Pipeline
        The fitted estimator (or Pipeline); its predictions equal the saved
        one's. Its
        ``history_`` holds each stage's per-epoch records (without skorch's
        per-batch ones); files of format version 1 have none.

    Raises
    ------
    ValueError
        If the file is not an sktd file or not readable, was written by a
        newer format, fails its integrity check (corrupted) or authenticity
        check (wrong key, or edited), is signed but no key is given (or the
        other way round), or holds a malformed header field or tensor (named
        in the message); if ``device`` is not a torch device or not available
        on this machine; or if ``key`` is empty.
    TypeError
        If ``key`` is not bytes or str.
    FileNotFoundError
        If there is no file at ``path``.
    """
    key = _check_key(key)
    if device is not None:
        device = _check_device(device, "device")
        if not _is_available(torch.device(device)):
            raise ValueError(
                f"device={device!r} is not available on this machine (or this "
                "torch build); use device='cpu' or leave device=None."
            )
    header, checks, tensors = _read(path)
    _verify(path, header, checks, tensors, key)
    try:
        fields = _check_file(_parse_header(header), tensors)
    except ValueError as error:
        raise ValueError(f"{path} is not a valid sktd file: {error}") from None
    if "steps" in fields:
        return _build_pipeline(fields, tensors, device)
    return _build(fields, tensors, _device_for(fields, device))


def _device_for(fields, device):
    """``device``, or the saved one if this machine has it, else the CPU."""
    if device is not None:
        return device
    saved = fields["params"]["device"]
    return saved if _is_available(torch.device(saved)) else "cpu"


def _build_pipeline(fields, tensors, device):
    """Rebuild a Pipeline from validated fields: sktd steps, then skops steps."""
    steps = []
    for index, (name, kind, step_fields) in enumerate(fields["steps"]):
        prefix = f"steps.{index}."
        if kind == "passthrough":
            steps.append((name, "passthrough"))
        elif kind == "sktd":
            step_tensors = {
                k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)
            }
            steps.append(
                (
                    name,
                    _build(step_fields, step_tensors, _device_for(step_fields, device)),
                )
            )
        else:
            steps.append((name, _skops_step(name, tensors[prefix + "skops"])))
    return Pipeline(steps, verbose=fields["verbose"])


def _skops_step(name, tensor):
    """Load a step skops wrote, trusting only skops' default types."""
    skops_io = _skops()
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        # Without ``trusted``, skops loads its default-trusted types only.
        return skops_io.loads(tensor.numpy().tobytes())
    except UntrustedTypesFoundException as error:
        raise ValueError(
            f"Pipeline step {name!r} holds types skops does not trust by default "
            f"({error}); sktd.save never writes those, so the file was not "
            "written by sktd.save. It is not loaded."
        ) from None


def _read(path):
    """Return the header text, its digests and the tensors of an sktd file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if _HEADER not in metadata or _DIGEST not in metadata:
                raise _Refused(f"{path} is a safetensors file, but not one sktd wrote.")
            names = list(handle.keys())
            for name in names:
                dtype = handle.get_slice(name).get_dtype()
                if dtype not in _STORED_DTYPES:
                    raise _Refused(
                        f"{path} stores tensor {_show(name)} of dtype {dtype}; "
                        "sktd writes float32 and float64 tensors only."
                    )
            tensors = {name: handle.get_tensor(name) for name in names}
    except _Refused as refusal:
        raise ValueError(str(refusal)) from None
    except FileNotFoundError as error:
        # A path that is not there is not a bad file: say so as open() does.
        raise FileNotFoundError(f"No sktd file at {path}: {error}") from error
    except (OSError, RuntimeError, ValueError, SafetensorError) as error:
        raise ValueError(f"{path} is not a readable sktd file: {error}") from error
    unknown = sorted(set(metadata) - {_HEADER, _DIGEST, _HMAC})
    if unknown:
        raise ValueError(
            f"{path} carries metadata sktd does not write ({_show(unknown)}); "
            "it is not a file sktd.save wrote."
        )
    checks = {name: metadata[name] for name in (_DIGEST, _HMAC) if name in metadata}
    for name, value in checks.items():
        if not _HEX_DIGEST.fullmatch(value):
            raise ValueError(
                f"{path} failed its integrity check: its {name} entry is not a "
                "hexadecimal SHA-256 digest."
            )
    return metadata[_HEADER], checks, tensors


class _Refused(Exception):
    """A file refused while it is open; re-raised as a ``ValueError``."""


def _verify(path, header, checks, tensors, key):
    """Check the file's HMAC (with a key) or its SHA-256 digest (without)."""
    signed = _HMAC in checks
    if key is None:
        if signed:
            raise ValueError(
                f"{path} is signed with a key (it carries an HMAC-SHA256): pass "
                "the key it was signed with, load(path, key=...), so that the "
                "signature is verified."
            )
        if not hmac.compare_digest(_digest(header, tensors), checks[_DIGEST]):
            raise ValueError(
                f"{path} failed its integrity check: its contents do not match "
                "the digest written by sktd.save (the file was edited or "
                "corrupted)."
            )
        return
    if not signed:
        raise ValueError(
            f"{path} is not signed, but a key was given: the file carries no "
            "HMAC-SHA256, so nothing proves who wrote it. Sign it with "
            "save(estimator, path, key=...), or load a file you trust without "
            "key."
        )
    if not hmac.compare_digest(_digest(header, tensors, key), checks[_HMAC]):
        raise ValueError(
            f"{path} failed its authenticity check: its HMAC-SHA256 does not "
            "verify with this key (wrong key, or the file was edited or "
            "corrupted)."
        )


def _digest(header, tensors, key=None):
    """SHA-256 (or, with ``key``, HMAC-SHA256) of the header and every tensor.

    The bytes hashed: the header's UTF-8 text, then for each tensor in name
    order its name, its dtype and shape (``"torch.float32(16, 6)"``) and its
    raw bytes.
    """
    if key is None:
        hasher = hashlib.sha256()
    else:
        hasher = hmac.new(key, digestmod=hashlib.sha256)
    hasher.update(header.encode())
    for name in sorted(tensors):
        value = tensors[name].contiguous()
        hasher.update(name.encode())
        hasher.update(str(value.dtype).encode() + str(tuple(value.shape)).encode())
        hasher.update(value.numpy().tobytes())
    return hasher.hexdigest()


def _check_key(key):
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode()
    elif isinstance(key, (bytes, bytearray)):
        key = bytes(key)
    else:
        raise TypeError(f"key must be bytes or str, got {type(key).__name__}.")
    if not key:
        raise ValueError(
            "key must not be empty: pass the secret the file is signed with."
        )
    return key


def _build(fields, tensors, device):
    """Build the estimator from validated fields and tensors, on ``device``."""
    from skorch.history import History

    params = dict(fields["params"], device=device)
    estimator = fields["cls"](**params)
    estimator.n_features_in_ = fields["n_features_in"]
    if fields["feature_names_in"] is not None:
        estimator.feature_names_in_ = np.asarray(fields["feature_names_in"], object)
    estimator.n_outputs_ = fields["n_outputs"]
    estimator.n_iter_ = fields["n_iter"]
    if fields["classes"] is not None:
        estimator.classes_ = fields["classes"]
    estimator.input_scaler_ = _scaler(tensors, "input_scaler")
    if "target_scaler.mean" in tensors:
        estimator.target_scaler_ = _scaler(tensors, "target_scaler")
    estimator.transfer_choice_ = fields["transfer_choice"]
    estimator.transfer_weights_ = fields["transfer_weights"]
    estimator.transfer_losses_ = fields["transfer_losses"]
    if fields["history"] is not None:
        estimator.history_ = {
            stage: None if epochs is None else History(epochs)
            for stage, epochs in fields["history"].items()
        }
    architectures = {
        "teacher": lambda: teacher_architecture(
            fields["transfer_choice"],
            fields["transfer_weights"],
            fields["n_features_in"],
            fields["n_outputs"],
            params["teacher_hidden_layer_sizes"],
            fields["target_network_bag_size"],
            classification=fields["classes"] is not None,
        ),
        "student": lambda: MLP(
            fields["n_features_in"],
            fields["n_outputs"],
            params["student_hidden_layer_sizes"],
        ),
    }
    if not teacher_is_stored(fields["transfer_weights"]):
        del architectures["teacher"]
    for name, architecture in architectures.items():
        # Built on the meta device (no memory, no random initialisation), then
        # given memory on the target device and every weight from the file.
        with torch.device("meta"):
            module = architecture()
        module = module.to_empty(device=device)
        prefix = f"{name}."
        state = {
            k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)
        }
        module.load_state_dict(state)
        setattr(estimator, f"{name}_", _fitted_net(estimator, name, module))
    return estimator


def _fitted_net(estimator, name, module):
    """Return the stage net around a loaded module, as ``fit`` builds it."""
    trainer = estimator._trainer(estimator.n_outputs_)
    if name == "teacher":
        return trainer.fitted(SupervisedNet, module, None, stage="transfer")
    net = trainer.net(
        DistillationNet,
        module,
        None,
        stage="distil",
        seed=0,
        criterion=estimator._distillation_criterion(),
    )
    net.initialize()
    net.module_.eval()
    return net


def _scaler(tensors, prefix):
    scaler = StandardScaler()
    scaler.mean_ = tensors[f"{prefix}.mean"].numpy().astype(np.float64)
    scaler.scale_ = tensors[f"{prefix}.scale"].numpy().astype(np.float64)
    scaler.var_ = scaler.scale_**2
    scaler.n_features_in_ = len(scaler.mean_)
    return scaler


def _params_to_json(params):
    """Return the parameters as JSON values; refuse one that is not, naming it."""
    saved = {}
    for name, value in params.items():
        if name in _HIDDEN_SIZES:
            sizes = np.atleast_1d(np.asarray(value, dtype=object)).ravel().tolist()
            if not all(
                isinstance(size, (int, np.integer)) and not isinstance(size, bool)
                for size in sizes
            ):
                raise ValueError(
                    f"save cannot store {name}={_show(value)}: hidden layer sizes "
                    "must be integers."
                )
            saved[name] = [int(size) for size in sizes]
            continue
        if name == "device":
            value = str(value)
        if isinstance(value, np.generic):
            value = value.item()
        if value is not None and not isinstance(value, (bool, int, float, str)):
            hint = (
                " Set random_state to an int or None before saving: it seeds "
                "future fits only."
                if name == "random_state"
                else ""
            )
            raise TypeError(
                f"save cannot store the parameter {name}={_show(value)} of type "
                f"{type(value).__name__}: JSON holds numbers, strings, booleans "
                f"and None.{hint}"
            )
        saved[name] = value
    return saved


def _history_to_json(history):
    """Return each stage's per-epoch records, without skorch's per-batch ones."""
    if history is None:
        return None
    saved = {}
    for stage in _STAGES:
        epochs = history.get(stage)
        saved[stage] = None if epochs is None else [_epoch_to_json(e) for e in epochs]
    return saved


def _epoch_to_json(epoch):
    record = {}
    for name, value in epoch.items():
        if isinstance(value, np.generic):
            value = value.item()
        keep = (
            value is None
            or isinstance(value, (bool, int, float))
            or (isinstance(value, str) and len(value) <= _HISTORY_MAX_TEXT)
        )
        if (
            keep
            and isinstance(name, str)
            and len(name) <= _HISTORY_MAX_TEXT
            and len(record) < _HISTORY_MAX_ENTRIES
        ):
            record[name] = value
    return record


def _classes_to_json(classes):
    if classes is None:
        return None
    kind = classes.dtype.kind
    if kind == "b":
        return {"kind": "bool", "values": [bool(c) for c in classes]}
    if kind in "iu" and classes.dtype.name in _CLASS_DTYPES["int"]:
        return {
            "kind": "int",
            "dtype": classes.dtype.name,
            "values": [int(c) for c in classes],
        }
    if kind == "f" and classes.dtype.name in _CLASS_DTYPES["float"]:
        return {
            "kind": "float",
            "dtype": classes.dtype.name,
            "values": [float(c) for c in classes],
        }
    if kind in "OU" and all(isinstance(c, str) for c in classes):
        return {"kind": "str", "values": [str(c) for c in classes], "dtype": kind}
    raise TypeError(
        "save supports integer, float, boolean and string class labels; got "
        f"labels of dtype {classes.dtype} and types "
        f"{sorted({type(c).__name__ for c in classes})}."
    )
