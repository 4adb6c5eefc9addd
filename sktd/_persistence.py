"""Saving and loading fitted estimators without pickle.

:func:`save` writes one ``.safetensors`` file: the networks' weights and the
scalers' statistics as tensors, and the estimator's parameters and fitted
metadata as JSON in the file's header. :func:`load` reads it back with
``safetensors`` and ``json`` only: no ``pickle``, so a file from an untrusted
source cannot run code. A SHA-256 digest over the header and every tensor is
checked on load, so an edited or corrupted file is refused.

:func:`~sktd.export_onnx` (in ``_onnx``) writes the student as ONNX.
"""

import hashlib
import json

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from ._estimators import TransferDistillClassifier, TransferDistillRegressor
from ._guard import bag_size, teacher_architecture
from ._nets import DistillationNet, SupervisedNet
from ._networks import MLP

FORMAT = "sktd-safetensors"
FORMAT_VERSION = 1


ESTIMATORS = {
    cls.__name__: cls for cls in (TransferDistillClassifier, TransferDistillRegressor)
}


def save(estimator, path):
    """Save a fitted sktd estimator to ``path`` without pickle.

    Parameters
    ----------
    estimator : TransferDistillClassifier or TransferDistillRegressor
        A fitted estimator whose teacher and student are sktd's default MLPs
        (``teacher=None``, ``student=None``). Custom torch modules cannot be
        rebuilt without running their code: pickle those instead.
    path : str or path-like
        File to write, conventionally ending in ``.safetensors``.

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
    """
    from safetensors.torch import save_file

    if type(estimator).__name__ not in ESTIMATORS:
        raise TypeError(
            "save expects a TransferDistillClassifier or TransferDistillRegressor, "
            f"got {type(estimator).__name__}."
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
    params = estimator.get_params(deep=False)
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None
    params["device"] = str(params["device"])
    tensors = {
        "input_scaler.mean": torch.from_numpy(estimator.input_scaler_.mean_),
        "input_scaler.scale": torch.from_numpy(estimator.input_scaler_.scale_),
    }
    if hasattr(estimator, "target_scaler_"):
        tensors["target_scaler.mean"] = torch.from_numpy(estimator.target_scaler_.mean_)
        tensors["target_scaler.scale"] = torch.from_numpy(
            estimator.target_scaler_.scale_
        )
    for name in ("teacher", "student"):
        module = getattr(estimator, f"{name}_").module_
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "estimator": type(estimator).__name__,
        "params": params,
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
        "target_network_bag_size": bag_size(
            estimator.teacher_.module_,
            estimator.transfer_choice_,
            estimator.transfer_weights_,
        ),
    }
    header = json.dumps(metadata, sort_keys=True)
    save_file(
        tensors,
        str(path),
        metadata={"sktd": header, "sha256": _digest(header, tensors)},
    )


def load(path):
    """Load an estimator written by :func:`save`; never unpickles.

    Parameters
    ----------
    path : str or path-like
        File written by :func:`save`.

    Returns
    -------
    estimator : TransferDistillClassifier or TransferDistillRegressor
        The fitted estimator; its predictions equal the saved one's. Training
        histories are not saved.

    Raises
    ------
    ValueError
        If the file is not an sktd file, was written by a newer format, or
        fails its integrity check (edited or corrupted).
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            header_metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (OSError, RuntimeError, ValueError, SafetensorError) as error:
        raise ValueError(f"{path} is not a readable sktd file: {error}") from error
    header = header_metadata.get("sktd")
    if header is None or "sha256" not in header_metadata:
        raise ValueError(f"{path} is a safetensors file, but not one sktd wrote.")
    if _digest(header, tensors) != header_metadata["sha256"]:
        raise ValueError(
            f"{path} failed its integrity check: its contents do not match the "
            "digest written by sktd.save (the file was edited or corrupted)."
        )
    metadata = json.loads(header)
    if metadata.get("format") != FORMAT or metadata.get("format_version", 0) > (
        FORMAT_VERSION
    ):
        raise ValueError(
            f"{path} has format {metadata.get('format')!r} version "
            f"{metadata.get('format_version')}; this sktd reads {FORMAT!r} up to "
            f"version {FORMAT_VERSION}."
        )
    classes = ESTIMATORS
    if metadata["estimator"] not in classes:
        raise ValueError(
            f"{path} names an unknown estimator {metadata['estimator']!r}."
        )
    params = metadata["params"]
    for name in ("teacher_hidden_layer_sizes", "student_hidden_layer_sizes"):
        params[name] = tuple(params[name])
    estimator = classes[metadata["estimator"]](**params)
    estimator.n_features_in_ = metadata["n_features_in"]
    if metadata["feature_names_in"] is not None:
        estimator.feature_names_in_ = np.asarray(metadata["feature_names_in"], object)
    estimator.n_outputs_ = metadata["n_outputs"]
    estimator.n_iter_ = metadata["n_iter"]
    if metadata["classes"] is not None:
        estimator.classes_ = _classes_from_json(metadata["classes"])
    estimator.input_scaler_ = _scaler(tensors, "input_scaler")
    if "target_scaler.mean" in tensors:
        estimator.target_scaler_ = _scaler(tensors, "target_scaler")
    # Files written before the guard existed hold a plain transferred teacher.
    metadata.setdefault("transfer_choice", "transferred")
    metadata.setdefault("transfer_weights", {"transferred": 1.0})
    metadata.setdefault("transfer_losses", None)
    metadata.setdefault("target_network_bag_size", 0)
    estimator.transfer_choice_ = metadata["transfer_choice"]
    estimator.transfer_weights_ = metadata["transfer_weights"]
    estimator.transfer_losses_ = metadata["transfer_losses"]
    for name, module in (
        ("teacher", _teacher_module(estimator, metadata)),
        (
            "student",
            MLP(
                estimator.n_features_in_,
                estimator.n_outputs_,
                params["student_hidden_layer_sizes"],
            ),
        ),
    ):
        prefix = f"{name}."
        state = {
            k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)
        }
        module.load_state_dict(state)
        setattr(estimator, f"{name}_", _fitted_net(estimator, name, module))
    return estimator


def _teacher_module(estimator, metadata):
    """Rebuild the teacher's architecture: one candidate, or their blend."""
    return teacher_architecture(
        metadata["transfer_choice"],
        metadata["transfer_weights"],
        estimator.n_features_in_,
        estimator.n_outputs_,
        estimator.teacher_hidden_layer_sizes,
        metadata["target_network_bag_size"],
        classification=metadata["classes"] is not None,
    )


def _fitted_net(estimator, name, module):
    if name == "teacher":
        net = SupervisedNet(
            module=module,
            criterion=estimator._supervised_criterion(),
            device=estimator.device,
        )
    else:
        net = DistillationNet(
            module=module,
            criterion=estimator._distillation_criterion(),
            device=estimator.device,
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


def _classes_to_json(classes):
    if classes is None:
        return None
    kind = classes.dtype.kind
    if kind in "iub":
        return {"kind": "int", "values": [int(c) for c in classes]}
    if kind == "f":
        return {"kind": "float", "values": [float(c) for c in classes]}
    if all(isinstance(c, str) for c in classes):
        return {"kind": "str", "values": [str(c) for c in classes], "dtype": kind}
    raise TypeError(
        "save supports integer, float and string class labels; got labels of "
        f"types {sorted({type(c).__name__ for c in classes})}."
    )


def _classes_from_json(spec):
    if spec["kind"] == "int":
        return np.asarray(spec["values"], dtype=np.int64)
    if spec["kind"] == "float":
        return np.asarray(spec["values"], dtype=np.float64)
    return np.asarray(spec["values"], dtype=object if spec["dtype"] == "O" else str)


def _digest(header, tensors):
    sha = hashlib.sha256(header.encode())
    for key in sorted(tensors):
        value = tensors[key].contiguous()
        sha.update(key.encode())
        sha.update(str(value.dtype).encode() + str(tuple(value.shape)).encode())
        sha.update(value.numpy().tobytes())
    return sha.hexdigest()
