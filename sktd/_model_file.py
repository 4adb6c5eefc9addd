"""The sktd model file's format: what its header may hold and what it implies.

A file written by :func:`sktd.save` is a safetensors file whose metadata holds
a JSON header (the estimator's parameters, fitted facts and histories) and a
digest. This module knows the format: it turns an estimator's facts into JSON
values and back, checks every header field against a schema, and derives from
a valid header the exact names, dtypes and shapes of the tensors the file must
hold, without building anything. ``_persistence`` reads and writes files and
builds the estimator once these checks pass.
"""

import json
import math
import re

import numpy as np
import torch
from sklearn.utils._param_validation import (
    InvalidParameterError,
    validate_parameter_constraints,
)

from ._estimators import TransferDistillClassifier, TransferDistillRegressor
from ._guard import CANDIDATES, choice_of
from ._tabular import TABULAR_CANDIDATES

FORMAT = "sktd-safetensors"


# Version 2 adds the training history, the HMAC and exact class dtypes;
# version 3 the scikit-learn candidates of ``teacher_pool="tabular"`` among
# the blend weights; version 4 Pipelines (sktd steps, and skops' bytes of the
# others). Files of earlier versions still load.
FORMAT_VERSION = 4


# A Pipeline's steps, as stored.
_STEP_KINDS = ("sktd", "skops", "passthrough")


_MAX_STEPS = 100


ESTIMATORS = {
    cls.__name__: cls for cls in (TransferDistillClassifier, TransferDistillRegressor)
}


_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


_REQUIRED_FIELDS = {
    "format",
    "format_version",
    "estimator",
    "params",
    "n_features_in",
    "feature_names_in",
    "n_outputs",
    "n_iter",
    "classes",
}


# Files written before the guard existed hold a plain transferred teacher;
# version 1 files have no history.
_OPTIONAL_FIELDS = {
    "transfer_choice": "transferred",
    "transfer_weights": {"transferred": 1.0},
    "transfer_losses": None,
    "target_network_bag_size": 0,
    "history": None,
}


# Parameters the estimators gained after files were first written: a file
# without one gets this value, the behaviour from before it existed. A new
# estimator parameter belongs here, or files saved before it stop loading.
_LATER_PARAMETERS = {
    "teacher_pool": "networks",
    "transfer_set": "given",
    "torch_threads": "auto",
    "student_max_iter": None,
}


_ALL_CANDIDATES = CANDIDATES + TABULAR_CANDIDATES


_HIDDEN_SIZES = ("teacher_hidden_layer_sizes", "student_hidden_layer_sizes")


_TEACHER_FIELDS = (
    "transfer_choice, transfer_weights, target_network_bag_size or "
    "params.teacher_hidden_layer_sizes"
)


# Tensor dtypes: the networks hold float32; the scalers float64 (or float32).
_NETWORK_DTYPES = (torch.float32,)


_SCALER_DTYPES = (torch.float64, torch.float32)


# uint8: the bytes of a Pipeline's skops steps.
_STORED_DTYPES = {"F32", "F64", "U8"}


_CLASS_DTYPES = {
    "int": ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
    "float": ("float16", "float32", "float64"),
}


_STAGES = ("pretrain", "transfer", "distil")


# Each epoch of a saved history holds at most this many entries, each key and
# string value at most this many characters.
_HISTORY_MAX_ENTRIES = 256


_HISTORY_MAX_TEXT = 1024


# Blend weights are stored as floats summing to one up to this tolerance.
_WEIGHT_SUM_TOLERANCE = 1e-6


def _invalid(field, why):
    if field == "header":
        return ValueError(f"the header {why}")
    return ValueError(f"header field {field} {why}")


def _show(value, limit=80):
    """``repr(value)``, cut short: messages stay small whatever a file holds."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_header(text):
    """Parse the header's JSON; refuse duplicate keys and runaway nesting."""

    def unique(pairs):
        keys = [name for name, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"repeats a key among {_show(sorted(keys))}")
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=unique)
    except RecursionError:
        raise _invalid("header", "nests too deeply to be sktd's JSON.") from None
    except ValueError as error:
        raise _invalid("header", f"is not valid JSON: {error}.") from None


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(value, field, low=1):
    if not _is_int(value) or value < low:
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise _invalid(field, f"must be {kind}; got {_show(value)}.")
    return value


def _check_file(meta, tensors):
    """Validate a parsed header and the file's tensors; return what to build.

    An estimator's file gives the fields of :func:`_check_header`; a
    Pipeline's (a header with a ``pipeline`` field) gives ``{"steps": [(name,
    kind, fields)], "verbose": bool}``, each sktd step checked as an
    estimator's file is, against its own tensors (``steps.{i}.``).
    """
    if not (isinstance(meta, dict) and "pipeline" in meta):
        fields = _check_header(meta)
        _check_tensors(fields, tensors)
        return fields
    unknown = sorted(set(meta) - {"format", "format_version", "pipeline"})
    if unknown:
        raise _invalid(_show(unknown[0]), "is not a field of a Pipeline's file.")
    _check_format(meta)
    pipeline = meta["pipeline"]
    if not isinstance(pipeline, dict) or set(pipeline) != {"steps", "verbose"}:
        raise _invalid("pipeline", "must be an object with steps and verbose.")
    if not _is_bool(pipeline["verbose"]):
        raise _invalid("pipeline.verbose", "must be true or false.")
    steps = pipeline["steps"]
    if not isinstance(steps, list) or not 1 <= len(steps) <= _MAX_STEPS:
        raise _invalid("pipeline.steps", f"must be a list of 1 to {_MAX_STEPS} steps.")
    checked, seen_names, claimed = [], set(), set()
    for index, step in enumerate(steps):
        field = f"pipeline.steps[{index}]"
        kind = step.get("kind") if isinstance(step, dict) else None
        if kind not in _STEP_KINDS:
            raise _invalid(
                field, f"must be an object whose kind is one of {_STEP_KINDS}."
            )
        keys = {"name", "kind", "header"} if kind == "sktd" else {"name", "kind"}
        if set(step) != keys:
            raise _invalid(field, f"must hold exactly {sorted(keys)}.")
        name = step["name"]
        if not _is_str(name) or not name or "__" in name or name in seen_names:
            raise _invalid(
                f"{field}.name",
                f"must be a new non-empty name without '__'; got {_show(name)}.",
            )
        seen_names.add(name)
        prefix = f"steps.{index}."
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        claimed.update(prefix + k for k in own)
        fields = None
        if kind == "sktd":
            try:
                fields = _check_file(step["header"], own)
            except ValueError as error:
                raise ValueError(f"Pipeline step {name!r}: {error}") from None
            if "steps" in fields:
                raise _invalid(
                    f"{field}.header", "must be an estimator's, not a Pipeline's."
                )
        elif kind == "skops":
            data = own.get("skops")
            if set(own) != {"skops"} or data.dtype != torch.uint8 or data.ndim != 1:
                raise _invalid(
                    field, f"implies one 1-D uint8 tensor {prefix}skops and no other."
                )
        elif own:
            raise _invalid(
                field, "is a passthrough step; the file stores tensors for it."
            )
        checked.append((name, kind, fields))
    extra = sorted(set(tensors) - claimed)
    if extra:
        raise _invalid(
            "pipeline.steps",
            f"does not match the stored tensors: {extra[0]!r} belongs to no step.",
        )
    return {"steps": checked, "verbose": pipeline["verbose"]}


def _check_format(meta):
    """Check the ``format`` and ``format_version`` fields."""
    if meta.get("format") != FORMAT:
        raise _invalid("format", f"is {_show(meta.get('format'))}, not {FORMAT!r}.")
    version = _positive_int(meta.get("format_version"), "format_version")
    if version > FORMAT_VERSION:
        raise _invalid(
            "format_version",
            f"is {version}: the file was written by a newer sktd; this one reads "
            f"{FORMAT!r} up to version {FORMAT_VERSION}.",
        )
    return version


def _check_header(meta):
    """Validate every field of a parsed header; return the fields to build from."""
    if not isinstance(meta, dict):
        raise _invalid("header", "must be a JSON object.")
    unknown = sorted(set(meta) - _REQUIRED_FIELDS - set(_OPTIONAL_FIELDS))
    if unknown:
        raise _invalid(_show(unknown[0]), "is not a field sktd writes.")
    missing = sorted(_REQUIRED_FIELDS - set(meta))
    if missing:
        raise _invalid(missing[0], "is missing.")
    meta = {**_OPTIONAL_FIELDS, **meta}
    _check_format(meta)
    name = meta["estimator"]
    if not isinstance(name, str) or name not in ESTIMATORS:
        raise _invalid(
            "estimator", f"is {_show(name)}, not one of {sorted(ESTIMATORS)}."
        )
    cls = ESTIMATORS[name]
    classification = cls is TransferDistillClassifier
    fields = {"cls": cls, "params": _check_params(meta["params"], cls)}
    n_features = fields["n_features_in"] = _positive_int(
        meta["n_features_in"], "n_features_in"
    )
    names = meta["feature_names_in"]
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _invalid("feature_names_in", "must be null or a list of strings.")
        if len(names) != n_features:
            raise _invalid(
                "feature_names_in",
                f"has {len(names)} names, but n_features_in is {n_features}.",
            )
    fields["feature_names_in"] = names
    n_outputs = fields["n_outputs"] = _positive_int(
        meta["n_outputs"], "n_outputs", low=2 if classification else 1
    )
    fields["n_iter"] = _positive_int(meta["n_iter"], "n_iter", low=0)
    if classification:
        fields["classes"] = _classes_from_json(meta["classes"], n_outputs)
    elif meta["classes"] is not None:
        raise _invalid("classes", "must be null for a regressor.")
    else:
        fields["classes"] = None
    weights = fields["transfer_weights"] = _check_weights(meta["transfer_weights"])
    choice = meta["transfer_choice"]
    if not isinstance(choice, str) or choice not in (*_ALL_CANDIDATES, "blend"):
        raise _invalid(
            "transfer_choice",
            f"is {_show(choice)}, not one of {[*_ALL_CANDIDATES, 'blend']}.",
        )
    if choice != choice_of(weights):
        raise _invalid(
            "transfer_choice",
            f"is {choice!r}, but transfer_weights make it {choice_of(weights)!r}.",
        )
    fields["transfer_choice"] = choice
    fields["transfer_losses"] = _check_losses(meta["transfer_losses"])
    bag = _positive_int(
        meta["target_network_bag_size"], "target_network_bag_size", low=0
    )
    if not teacher_is_stored(weights):
        if bag:
            raise _invalid(
                "target_network_bag_size",
                f"is {bag}, but the file does not store the teacher (its "
                "transfer_weights give scikit-learn models weight): it must be 0.",
            )
    elif bool(bag) != bool(weights.get("target_network")):
        raise _invalid(
            "target_network_bag_size",
            f"is {bag}, but transfer_weights give target_network a weight of "
            f"{weights.get('target_network', 0.0)}: a bag exists iff it has weight.",
        )
    fields["target_network_bag_size"] = bag
    fields["history"] = _check_history(meta["history"], fields["n_iter"])
    return fields


def _check_params(params, cls):
    """Validate the saved parameters against the estimator's; return them."""
    if not isinstance(params, dict):
        raise _invalid("params", "must be a JSON object.")
    expected = list(cls().get_params(deep=False))
    params = {
        **{k: v for k, v in _LATER_PARAMETERS.items() if k in expected},
        **params,
    }
    missing = sorted(set(expected) - set(params))
    if missing:
        raise _invalid("params", f"lacks {cls.__name__}'s parameters {missing}.")
    unknown = sorted(set(params) - set(expected))
    if unknown:
        raise _invalid(
            "params", f"has parameters {cls.__name__} does not take: {_show(unknown)}."
        )
    constraints = cls._parameter_constraints
    checked = {}
    for name in expected:
        value, field = params[name], f"params.{name}"
        if name in ("teacher", "student"):
            if value is not None:
                raise _invalid(
                    field, "must be null: sktd files hold the default networks only."
                )
        elif name in _HIDDEN_SIZES:
            if not isinstance(value, list) or not all(
                _is_int(size) and size > 0 for size in value
            ):
                raise _invalid(
                    field, f"must be a list of positive integers; got {_show(value)}."
                )
            value = tuple(value)
        elif name == "device":
            if not isinstance(value, str):
                raise _invalid(field, f"must be a string; got {_show(value)}.")
            _check_device(value, field)
        elif isinstance(value, (list, dict)):
            raise _invalid(
                field, f"must be a number, string, boolean or null; got {_show(value)}."
            )
        elif isinstance(value, bool) and not any(
            c in ("boolean", "verbose") for c in constraints.get(name, ())
        ):
            raise _invalid(field, f"must not be a boolean; got {value}.")
        if name in constraints:
            try:
                validate_parameter_constraints(
                    {name: constraints[name]}, {name: value}, cls.__name__
                )
            except InvalidParameterError as error:
                raise _invalid(field, f"is invalid: {_show(str(error), 300)}") from None
        checked[name] = value
    return checked


def _check_weights(weights):
    field = "transfer_weights"
    if not isinstance(weights, dict) or not weights:
        raise _invalid(field, "must be a non-empty JSON object.")
    for name, weight in weights.items():
        if name not in _ALL_CANDIDATES:
            raise _invalid(
                field,
                f"names {_show(name)}, not one of the candidates {_ALL_CANDIDATES}.",
            )
        if not _is_number(weight) or not 0 <= weight <= 1:
            raise _invalid(
                field, f"gives {name} {_show(weight)}; weights are numbers in [0, 1]."
            )
    total = math.fsum(weights.values())
    if abs(total - 1) > _WEIGHT_SUM_TOLERANCE:
        raise _invalid(field, f"sum to {total}, not 1.")
    return {name: float(weight) for name, weight in weights.items()}


def _check_losses(losses):
    field = "transfer_losses"
    if losses is None:
        return None
    if not isinstance(losses, dict):
        raise _invalid(field, "must be null or a JSON object.")
    for name, loss in losses.items():
        if name not in (*_ALL_CANDIDATES, "blend"):
            raise _invalid(field, f"names {_show(name)}, not a candidate or 'blend'.")
        if not _is_number(loss):
            raise _invalid(field, f"gives {name} {_show(loss)}, not a number.")
    return {name: float(loss) for name, loss in losses.items()}


def _check_history(history, n_iter):
    """Validate a saved history: per stage, null or a list of flat epoch records."""
    if history is None:
        return None
    if not isinstance(history, dict) or set(history) != set(_STAGES):
        raise _invalid("history", f"must be null or map exactly {_STAGES}.")
    for stage in _STAGES:
        epochs, field = history[stage], f"history.{stage}"
        if epochs is None:
            continue
        if not isinstance(epochs, list):
            raise _invalid(field, "must be null or a list of epoch records.")
        for number, epoch in enumerate(epochs):
            if not _is_history_record(epoch):
                raise _invalid(
                    f"{field}[{number}]",
                    f"must be a JSON object of at most {_HISTORY_MAX_ENTRIES} "
                    "numbers, booleans, nulls or short strings.",
                )
    distil = history["distil"]
    if distil is None or len(distil) != n_iter:
        raise _invalid(
            "history.distil",
            f"has {None if distil is None else len(distil)} epochs, but n_iter is "
            f"{n_iter}.",
        )
    return history


def _is_history_record(epoch):
    return (
        isinstance(epoch, dict)
        and len(epoch) <= _HISTORY_MAX_ENTRIES
        and all(
            len(name) <= _HISTORY_MAX_TEXT
            and (
                value is None
                or isinstance(value, (bool, int, float))
                or (isinstance(value, str) and len(value) <= _HISTORY_MAX_TEXT)
            )
            for name, value in epoch.items()
        )
    )


def _check_device(device, field):
    """Return ``device`` as a string torch parses, or raise naming ``field``."""
    if isinstance(device, torch.device):
        return str(device)
    if not isinstance(device, str):
        raise ValueError(
            f"{field}={_show(device)} is not a torch device; use 'cpu', 'cuda', "
            "'cuda:1', 'mps', ..."
        )
    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"{field}={_show(device)} is not a torch device; use 'cpu', 'cuda', "
            "'cuda:1', 'mps', ..."
        ) from None
    return device


def _is_available(device):
    """Whether this machine has ``device`` (a parsed ``torch.device``)."""
    if device.type == "cpu":
        return True
    if device.type == "mps":
        return torch.backends.mps.is_available() and device.index in (None, 0)
    backend = getattr(torch, device.type, None)
    try:
        return bool(backend.is_available()) and (
            device.index is None or device.index < backend.device_count()
        )
    except (AttributeError, TypeError, RuntimeError):
        return False


def _check_tensors(fields, tensors):
    """Compare the stored tensors with those the header implies; build nothing.

    Every tensor the header implies is looked up in turn, so the work is
    bounded by the number stored, whatever sizes the header claims.
    """
    seen = set()
    for name, shape, dtypes, value, field in _expected_tensors(fields):
        tensor = tensors.get(name)
        if tensor is None:
            raise _invalid(
                field, f"implies a tensor {name!r}, which the file does not store."
            )
        if tuple(tensor.shape) != shape:
            raise _invalid(
                field,
                f"implies {name!r} of shape {_show(shape)}; the file stores "
                f"{tuple(tensor.shape)}.",
            )
        if tensor.dtype not in dtypes:
            raise ValueError(
                f"tensor {name!r} has dtype {tensor.dtype}; sktd writes {dtypes[0]}."
            )
        if value is not None:
            expected = torch.tensor(value, dtype=torch.float32)
            if not torch.equal(tensor, expected):
                raise _invalid(
                    field,
                    f"implies {name!r} = {float(expected)}; the file stores "
                    f"{float(tensor)}.",
                )
        seen.add(name)
    extra = sorted(set(tensors) - seen)
    if extra:
        owner = {
            "teacher": _TEACHER_FIELDS,
            "student": "params.student_hidden_layer_sizes",
        }.get(extra[0].split(".")[0], "estimator")
        raise _invalid(
            owner,
            f"does not match the stored tensors: the file stores {len(extra)} "
            f"tensors the header does not imply, such as {extra[0]!r}.",
        )


def _expected_tensors(fields):
    """Yield ``(name, shape, dtypes, value, field)`` of each tensor implied.

    Mirrors :func:`~sktd._guard.teacher_architecture` and
    :class:`~sktd._networks.MLP` (``body.{2i}`` is the i-th hidden layer);
    ``value`` is a blend weight's, ``field`` the header field the tensor
    follows from.
    """
    n_features, n_outputs = fields["n_features_in"], fields["n_outputs"]
    for stat in ("mean", "scale"):
        name = f"input_scaler.{stat}"
        yield name, (n_features,), _SCALER_DTYPES, None, "n_features_in"
    if fields["classes"] is None:
        for stat in ("mean", "scale"):
            name = f"target_scaler.{stat}"
            yield name, (n_outputs,), _SCALER_DTYPES, None, "n_outputs"
    student = fields["params"]["student_hidden_layer_sizes"]
    field = "params.student_hidden_layer_sizes"
    yield from _mlp_tensors("student.", n_features, n_outputs, student, field)
    yield from _teacher_tensors(fields)


def _mlp_tensors(prefix, n_features, n_outputs, sizes, field, head="n_outputs"):
    # The head's bias first: its absence or shape is the fault of ``head``
    # (the number of outputs, or a member the structure lacks).
    yield f"{prefix}head.bias", (n_outputs,), _NETWORK_DTYPES, None, head
    width = n_features
    for layer, size in enumerate(sizes):
        name = f"{prefix}body.{2 * layer}"
        yield f"{name}.weight", (size, width), _NETWORK_DTYPES, None, field
        yield f"{name}.bias", (size,), _NETWORK_DTYPES, None, field
        width = size
    yield f"{prefix}head.weight", (n_outputs, width), _NETWORK_DTYPES, None, field


def teacher_is_stored(weights):
    """Whether a file stores the teacher: only one made of sktd's networks.

    A teacher blending scikit-learn models (``teacher_pool="tabular"``)
    cannot be rebuilt without unpickling them; the file then holds the
    student, which is what predicts.
    """
    return not any(weights.get(name) for name in TABULAR_CANDIDATES)


def _teacher_tensors(fields):
    if not teacher_is_stored(fields["transfer_weights"]):
        return
    n_features, n_outputs = fields["n_features_in"], fields["n_outputs"]
    sizes = fields["params"]["teacher_hidden_layer_sizes"]
    weights, bag = fields["transfer_weights"], fields["target_network_bag_size"]
    sizes_field = "params.teacher_hidden_layer_sizes"
    bag_field = "target_network_bag_size"

    def member(prefix, name, field):
        if name == "target_linear":
            yield (
                f"{prefix}weight",
                (n_outputs, n_features),
                _NETWORK_DTYPES,
                None,
                (field),
            )
            yield f"{prefix}bias", (n_outputs,), _NETWORK_DTYPES, None, field
        elif name != "target_network":
            yield from _mlp_tensors(
                prefix, n_features, n_outputs, sizes, sizes_field, field
            )
        else:
            # The bag's weights first: a wrong size is found in ~bag steps.
            for fold in range(bag):
                name = f"{prefix}weight_fold{fold}"
                yield name, (), _NETWORK_DTYPES, 1.0 / bag, bag_field
            for fold in range(bag):
                yield from member(f"{prefix}members.fold{fold}.", "fold", bag_field)

    if fields["transfer_choice"] != "blend":
        structure = "transfer_choice and transfer_weights"
        yield from member("teacher.", fields["transfer_choice"], structure)
        return
    for name in sorted(weights):
        if weights[name]:
            field = "transfer_weights"
            yield f"teacher.weight_{name}", (), _NETWORK_DTYPES, weights[name], field
            yield from member(f"teacher.members.{name}.", name, field)


def _classes_from_json(spec, n_outputs):
    """Validate the saved class labels; return them as an array."""
    field = "classes"
    kinds = {"int": _is_int, "float": _is_number, "bool": _is_bool, "str": _is_str}
    if not isinstance(spec, dict) or not (
        isinstance(spec.get("kind"), str) and spec["kind"] in kinds
    ):
        raise _invalid(
            field, f"must be an object whose kind is one of {sorted(kinds)}."
        )
    kind = spec["kind"]
    allowed = {"kind", "values"} | ({"dtype"} if kind != "bool" else set())
    if set(spec) - allowed:
        raise _invalid(field, f"has entries {_show(sorted(set(spec) - allowed))}.")
    values = spec.get("values")
    if not isinstance(values, list) or not all(map(kinds[kind], values)):
        raise _invalid(field, f"must hold a list of {kind} labels.")
    if len(values) != n_outputs:
        raise _invalid(
            field, f"has {len(values)} labels, but n_outputs is {n_outputs}."
        )
    if any(a >= b for a, b in zip(values, values[1:])):
        raise _invalid(field, "must be sorted and distinct.")
    if kind == "str":
        dtype = spec.get("dtype")
        if dtype not in ("O", "U"):
            raise _invalid(field, f"has string dtype {_show(dtype)}, not 'O' or 'U'.")
        return np.asarray(values, dtype=object if dtype == "O" else str)
    if kind == "bool":
        return np.asarray(values, dtype=bool)
    dtype = spec.get("dtype", f"{kind}64")
    if dtype not in _CLASS_DTYPES[kind]:
        raise _invalid(
            field, f"has dtype {_show(dtype)}, not one of {_CLASS_DTYPES[kind]}."
        )
    if kind == "int":
        info = np.iinfo(dtype)
        if not all(info.min <= value <= info.max for value in values):
            raise _invalid(field, f"holds labels outside the range of {dtype}.")
        return np.asarray(values, dtype=dtype)
    with np.errstate(over="ignore"):
        array = np.asarray(values, dtype=dtype)
    if not np.isfinite(array).all():
        raise _invalid(field, f"holds labels that are not finite {dtype} numbers.")
    return array


def _is_bool(value):
    return isinstance(value, bool)


def _is_str(value):
    return isinstance(value, str)
