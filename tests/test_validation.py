"""Every bad input gets a clear error naming the argument; each row is in the docs."""

import pathlib
import pickle
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

from sktd import (
    Pretrained,
    TransferDistillClassifier,
    TransferDistillRegressor,
    stack_domains,
)

DOCS_TABLE = pathlib.Path(__file__).parents[1] / "docs" / "user_guide" / "errors.rst"
TINY = dict(
    teacher_hidden_layer_sizes=(4,),
    student_hidden_layer_sizes=(4,),
    max_iter=2,
    random_state=0,
)
rng = np.random.RandomState(0)
X = rng.normal(size=(40, 3))
y = np.arange(40) % 2
Xt = rng.normal(size=(10, 3))
yt = np.arange(10) % 2
yr, ytr = X[:, 0].copy(), Xt[:, 0].copy()


def _with(array, row, value):
    array = np.array(array, dtype=float)
    array[(row,) if array.ndim == 1 else (row, 0)] = value
    return array


def clf():
    return TransferDistillClassifier(**TINY)


def reg():
    return TransferDistillRegressor(**TINY)


# (bad input, call, error type, message fragment): the docs table has one row
# per entry, in the form "| bad input | ErrorType | fragment |".
BAD_INPUTS = [
    (
        "sparse y_target",
        lambda: clf().fit(X, y, X_target=Xt, y_target=sp.csr_matrix(yt)),
        TypeError,
        "Sparse data was passed for y_target",
    ),
    (
        "early_stopping with one labelled target row",
        lambda: (
            clf()
            .set_params(early_stopping=True)
            .fit(X, y, X_target=Xt[:1], y_target=yt[:1])
        ),
        ValueError,
        "early_stopping=True holds out validation_fraction=0.1",
    ),
    (
        "ragged X_target",
        lambda: clf().fit(
            X, y, X_target=[[1.0, 2.0, 3.0], [1.0, 2.0]], y_target=yt[:2]
        ),
        ValueError,
        "X_target: setting an array element with a sequence",
    ),
    (
        "bool y with int labels in y_target",
        lambda: clf().fit(
            X, y.astype(bool), X_target=Xt, y_target=np.array([1] * 10, dtype=object)
        ),
        ValueError,
        "y and y_target mixes labels of kinds ['bool', 'int']",
    ),
    (
        "predict on values beyond float32",
        lambda: clf().fit(X, y).predict(_with(Xt, 0, 1e39)),
        ValueError,
        "X holds values that overflow float32 once standardised",
    ),
    (
        "device torch knows but sktd cannot train on",
        lambda: clf().set_params(device="meta").fit(X, y),
        ValueError,
        "sktd trains on 'cpu', 'cuda' or 'mps' devices, not 'meta'",
    ),
    (
        "sample_domain beyond the int64 range",
        lambda: clf().fit(X, y, sample_domain=np.r_[[1e20] * 20, [-1e20] * 20]),
        ValueError,
        "sample_domain holds values beyond the int64 range",
    ),
    (
        "distillation_report with n_repeats=0",
        lambda: clf().fit(X, y).distillation_report(Xt, yt, n_repeats=0),
        ValueError,
        "n_repeats must be a positive integer, got 0",
    ),
    (
        "device that is not a torch device",
        lambda: clf().set_params(device="gpu").fit(X, y),
        ValueError,
        "device='gpu' is not a torch device",
    ),
    (
        "NaN in X",
        lambda: clf().fit(_with(X, 0, np.nan), y, X_target=Xt, y_target=yt),
        ValueError,
        "Input X contains NaN",
    ),
    (
        "infinity in X",
        lambda: clf().fit(_with(X, 0, np.inf), y, X_target=Xt, y_target=yt),
        ValueError,
        "Input X contains infinity",
    ),
    (
        "NaN in X_target",
        lambda: clf().fit(X, y, X_target=_with(Xt, 0, np.nan), y_target=yt),
        ValueError,
        "Input X_target contains NaN",
    ),
    (
        "infinity in X_target",
        lambda: clf().fit(X, y, X_target=_with(Xt, 0, -np.inf), y_target=yt),
        ValueError,
        "Input X_target contains infinity",
    ),
    (
        "NaN in y (classifier)",
        lambda: clf().fit(X, _with(y, 0, np.nan)),
        ValueError,
        "Input y contains NaN",
    ),
    (
        "NaN in y_target (classifier)",
        lambda: clf().fit(X, y, X_target=Xt, y_target=_with(yt, 0, np.nan)),
        ValueError,
        "Input y_target contains NaN. Classifiers mark unlabelled",
    ),
    (
        "NaN in y on a source row (regressor)",
        lambda: reg().fit(X, _with(yr, 0, np.nan), X_target=Xt, y_target=ytr),
        ValueError,
        "Input y contains NaN. Only target rows may be unlabelled",
    ),
    (
        "infinity in y_target (regressor)",
        lambda: reg().fit(X, yr, X_target=Xt, y_target=_with(ytr, 0, np.inf)),
        ValueError,
        "Input y_target contains infinity",
    ),
    (
        "NaN in some outputs of a target row (regressor)",
        lambda: reg().fit(
            X, np.c_[yr, yr], X_target=Xt, y_target=np.c_[_with(ytr, 0, np.nan), ytr]
        ),
        ValueError,
        "NaN in some outputs but not all",
    ),
    (
        "X_target with other feature count than X",
        lambda: clf().fit(X, y, X_target=Xt[:, :2], y_target=yt),
        ValueError,
        "X_target has 2 features, but X has 3",
    ),
    (
        "predict with other feature count",
        lambda: clf().fit(X, y).predict(Xt[:, :2]),
        ValueError,
        "X has 2 features, but TransferDistillClassifier is expecting 3",
    ),
    (
        "y shorter than X",
        lambda: clf().fit(X, y[:-1], X_target=Xt, y_target=yt),
        ValueError,
        "y has 39 rows, but X has 40",
    ),
    (
        "y_target shorter than X_target",
        lambda: clf().fit(X, y, X_target=Xt, y_target=yt[:-1]),
        ValueError,
        "y_target has 9 rows, but X_target has 10",
    ),
    (
        "sample_domain shorter than X",
        lambda: clf().fit(X, y, sample_domain=np.ones(39, int)),
        ValueError,
        "sample_domain has 39 entries, but X has 40 rows",
    ),
    (
        "y_target without X_target",
        lambda: clf().fit(X, y, y_target=yt),
        ValueError,
        "y_target was given without X_target",
    ),
    (
        "sample_domain together with X_target",
        lambda: clf().fit(
            X, y, X_target=Xt, y_target=yt, sample_domain=np.ones(40, int)
        ),
        ValueError,
        "either as X_target (split form) or through sample_domain",
    ),
    (
        "empty X_target",
        lambda: clf().fit(X, y, X_target=Xt[:0], y_target=yt[:0]),
        ValueError,
        "X_target is empty",
    ),
    (
        "string column in X",
        lambda: clf().fit(np.c_[X[:, :2], ["a"] * 40], y),
        ValueError,
        "X: could not convert string to float",
    ),
    (
        "string column in X_target",
        lambda: clf().fit(X, y, X_target=np.c_[Xt[:, :2], ["a"] * 10], y_target=yt),
        ValueError,
        "X_target: could not convert string to float",
    ),
    (
        "continuous y (classifier)",
        lambda: clf().fit(X, X[:, 0]),
        ValueError,
        "y: Unknown label type: continuous",
    ),
    (
        "continuous y_target (classifier)",
        lambda: clf().fit(X, y, X_target=Xt, y_target=Xt[:, 0]),
        ValueError,
        "y_target: Unknown label type: continuous",
    ),
    (
        "a single class",
        lambda: clf().fit(X, np.zeros(40, int)),
        ValueError,
        "needs labelled rows of at least 2 classes",
    ),
    (
        "string y (regressor)",
        lambda: reg().fit(X, np.array(["a", "b"] * 20)),
        ValueError,
        "y must hold numbers for a regressor",
    ),
    (
        "string y_target (regressor)",
        lambda: reg().fit(X, yr, X_target=Xt, y_target=np.array(["a"] * 10)),
        ValueError,
        "y_target must hold numbers for a regressor",
    ),
    (
        "y_target with other outputs than y",
        lambda: reg().fit(X, yr, X_target=Xt, y_target=np.c_[ytr, ytr]),
        ValueError,
        "y_target has shape (2,) per row, but y has ()",
    ),
    (
        "sample_domain with a 0",
        lambda: clf().fit(X, y, sample_domain=np.zeros(40, int)),
        ValueError,
        "sample_domain contains 0",
    ),
    (
        "sample_domain of fractions",
        lambda: clf().fit(X, y, sample_domain=np.full(40, 0.5)),
        TypeError,
        "sample_domain must hold integers",
    ),
    (
        "sample_domain with no source row",
        lambda: clf().fit(X, y, sample_domain=-np.ones(40, int)),
        ValueError,
        "sample_domain marks no row as source",
    ),
    (
        "2-D sample_domain",
        lambda: clf().fit(X, y, sample_domain=np.ones((40, 1), int)),
        ValueError,
        "sample_domain must be 1-D",
    ),
    (
        "predict with a wrong-length sample_domain",
        lambda: clf().fit(X, y).predict(Xt, sample_domain=np.ones(3, int)),
        ValueError,
        "sample_domain has 3 entries, but X has 10 rows",
    ),
    (
        "stack_domains: y_source shorter than X_source",
        lambda: stack_domains(X, y[:-1]),
        ValueError,
        "y_source has 39 rows, but X_source has 40",
    ),
    (
        "stack_domains: feature counts differ",
        lambda: stack_domains(X, y, Xt[:, :2]),
        ValueError,
        "X_target has 2 features, but X_source has 3",
    ),
    (
        "stack_domains: y_target without X_target",
        lambda: stack_domains(X, y, None, yt),
        ValueError,
        "y_target was given without X_target",
    ),
    (
        "a parameter out of range",
        lambda: TransferDistillClassifier(alpha=1.5).fit(X, y),
        ValueError,
        "The 'alpha' parameter of TransferDistillClassifier must be",
    ),
    (
        "complex X",
        lambda: clf().fit(X.astype(complex), y, X_target=Xt, y_target=yt),
        ValueError,
        "X: Complex data not supported",
    ),
    (
        "3-D X",
        lambda: clf().fit(X[:, :, None], y, X_target=Xt, y_target=yt),
        ValueError,
        "X: Found array with dim 3",
    ),
    (
        "a teacher width that is not a positive integer",
        lambda: clf().set_params(teacher_hidden_layer_sizes=(8.5,)).fit(X, y),
        ValueError,
        "teacher_hidden_layer_sizes must be positive integers",
    ),
    (
        "a student width that is not a positive integer",
        lambda: clf().set_params(student_hidden_layer_sizes=(4, 0)).fit(X, y),
        ValueError,
        "student_hidden_layer_sizes must be positive integers",
    ),
    (
        "a student module of the wrong input width",
        lambda: clf().set_params(student=nn.Linear(2, 2)).fit(X, y),
        ValueError,
        "student: the module cannot take rows of 3 features",
    ),
    (
        "a teacher module with a wrong number of outputs",
        lambda: clf().set_params(teacher=nn.Linear(3, 5)).fit(X, y),
        ValueError,
        "teacher: the module returns outputs of shape (5,) per row",
    ),
    (
        "a pretrained teacher of the wrong input width",
        lambda: clf().set_params(teacher=Pretrained(nn.Linear(2, 2))).fit(X, y),
        ValueError,
        "teacher: the module cannot take rows of 3 features",
    ),
    (
        "a regression student with two outputs for one",
        lambda: reg().set_params(student=nn.Linear(3, 2)).fit(X, yr),
        ValueError,
        "student: the module returns outputs of shape (2,) per row",
    ),
    (
        "a student that predicts NaN",
        lambda: clf().set_params(student=_NaNModule()).fit(X, y),
        ValueError,
        "Training diverged: the training loss became nan",
    ),
    (
        "hint_weight with consistent_teaching",
        lambda: (
            clf()
            .set_params(hint_weight=1.0, consistent_teaching="noise")
            .fit(X, y, X_target=Xt, y_target=yt)
        ),
        ValueError,
        "hint_weight=1.0 cannot be combined with consistent_teaching",
    ),
    (
        "hint_weight with a student without features(X)",
        lambda: clf().set_params(hint_weight=1.0, student=_NaNModule()).fit(X, y),
        ValueError,
        "hint_weight=1.0 needs a student with a features(X) method",
    ),
]


class _NaNModule(nn.Module):
    def __init__(self, n_features=3, n_outputs=2):
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)

    def forward(self, X):
        return self.linear(X) * float("nan")


@pytest.mark.parametrize(
    "call, error, fragment",
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_gets_clear_error(call, error, fragment):
    with pytest.raises(error) as raised:
        call()
    assert fragment in str(raised.value)


def test_docs_table_lists_every_bad_input():
    text = DOCS_TABLE.read_text()
    for name, _, error, fragment in BAD_INPUTS:
        row = f"| {name} | ``{error.__name__}`` | {fragment} |"
        assert row.replace(" ", "") in text.replace(" ", ""), row


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda_is_refused_before_training():
    model = clf().set_params(device="cuda")
    with pytest.raises(ValueError, match=r"device='cuda', but this machine"):
        model.fit(X, y)
    assert not hasattr(model, "student_")


# ------------------------------------------------------------ cases that work


def test_all_target_rows_unlabelled():
    model = clf().fit(X, y, X_target=Xt, y_target=np.full(10, -1))
    assert model.predict(Xt).shape == (10,)


def test_stacked_form_with_source_rows_only():
    model = clf().fit(X, y, sample_domain=np.ones(40, int))
    np.testing.assert_array_equal(model.predict(Xt), clf().fit(X, y).predict(Xt))


def test_stacked_regressor_with_unlabelled_target_rows_matches_split_form():
    y_target = _with(ytr, slice(3, None), np.nan)
    split = reg().fit(X, yr, X_target=Xt, y_target=y_target)
    X_all, y_all, domain = stack_domains(X, yr, Xt, y_target)
    stacked = reg().fit(X_all, y_all, sample_domain=domain)
    np.testing.assert_array_equal(split.predict(Xt), stacked.predict(Xt))


def test_constant_features():
    X_const = np.c_[X, np.full(40, 7.0)]
    model = reg().fit(X_const, yr)
    assert np.all(np.isfinite(model.predict(X_const)))


@pytest.mark.parametrize("scale", [1e-12, 1e12])
def test_extreme_feature_scales_give_finite_predictions(scale):
    model = clf().fit(X * scale, y, X_target=Xt * scale, y_target=yt)
    assert np.all(np.isfinite(model.predict_proba(Xt * scale)))
    model = reg().fit(X * scale, yr * scale)
    assert np.all(np.isfinite(model.predict(Xt * scale)))


# ------------------------------------------------------------ training health


class _FlakyModule(nn.Module):
    """Outputs NaN during its first training forward calls, then behaves."""

    n_nan_calls = 0

    def __init__(self, n_features=3, n_outputs=2):
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)

    def forward(self, X):
        out = self.linear(X)
        if self.training and type(self).n_nan_calls > 0:
            type(self).n_nan_calls -= 1
            return out * float("nan")
        return out


def test_checking_a_skorch_students_widths_leaves_torchs_generator_alone():
    from skorch import NeuralNetClassifier

    student = NeuralNetClassifier(
        nn.Linear, module__in_features=3, module__out_features=2
    )
    before = torch.get_rng_state()
    clf().set_params(student=student).fit(X, y)
    assert torch.equal(before, torch.get_rng_state())


def test_nan_loss_recovers_with_smaller_learning_rate():
    _FlakyModule.n_nan_calls = 1
    model = clf().set_params(student=_FlakyModule(), learning_rate_init=0.01)
    model.fit(X, y)
    assert model.student_.lr == pytest.approx(0.001)
    assert np.all(np.isfinite(model.predict_proba(Xt)))


def test_nan_loss_that_persists_raises_and_leaves_estimator_unfitted():
    model = clf().set_params(student=_NaNModule())
    with pytest.raises(ValueError, match="lower learning_rate_init"):
        model.fit(X, y)
    with pytest.raises(NotFittedError):
        model.predict(Xt)


class _InterruptingModule(nn.Module):
    def __init__(self, n_features=3, n_outputs=2):
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)

    def forward(self, X):
        raise KeyboardInterrupt


def test_keyboard_interrupt_keeps_previous_fitted_state():
    model = clf().fit(X, y)
    expected = model.predict_proba(Xt)
    with pytest.raises(KeyboardInterrupt):
        model.set_params(student=_InterruptingModule()).fit(X[:30], y[:30])
    np.testing.assert_array_equal(model.predict_proba(Xt), expected)


def test_keyboard_interrupt_leaves_unfitted_estimator_unfitted():
    model = clf().set_params(student=_InterruptingModule())
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y)
    assert not hasattr(model, "teacher_")
    with pytest.raises(NotFittedError):
        model.predict(Xt)


# ------------------------------------------------------------ determinism


_FIT_IN_A_FRESH_PROCESS = """
import hashlib, numpy as np
from sklearn.datasets import make_classification
from sktd import TransferDistillClassifier
X, y = make_classification(120, random_state=0)
model = TransferDistillClassifier(max_iter=5, random_state=7)
model.fit(X[:80], y[:80], X_target=X[80:], y_target=y[80:])
print(hashlib.sha256(model.predict_proba(X).tobytes()).hexdigest())
"""


def test_same_seed_bit_identical_across_processes():
    # Both processes at once: the test waits for one start-up, not two.
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _FIT_IN_A_FRESH_PROCESS],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes)
    digests = {output.strip() for output in outputs}
    assert len(digests) == 1 and len(digests.pop()) == 64


def test_concurrent_predict_matches_sequential():
    model = clf().fit(X, y, X_target=Xt, y_target=yt)
    batches = [rng.normal(size=(n, 3)) for n in (1, 7, 50, 200) * 4]
    expected = [model.predict_proba(b) for b in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(model.predict_proba, batches))
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_pickled_model_predicts_identically_in_threads():
    original = clf().fit(X, y)
    model = pickle.loads(pickle.dumps(original))
    expected = original.predict_proba(Xt)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: model.predict_proba(Xt), range(8)))
    for got in results:
        np.testing.assert_array_equal(got, expected)


def test_a_finite_value_beyond_float32_never_becomes_nan():
    # Fitting standardises in float64 first: the feature's scale absorbs it.
    model = clf().fit(_with(X, 0, 1e39), y)
    assert np.isfinite(model.predict_proba(Xt)).all()
    # At prediction, a value that still overflows is refused, naming X.
    with pytest.raises(ValueError, match="X holds values that overflow float32"):
        model.predict_proba(_with(Xt, 0, 1e300))


def test_predict_during_a_refit_sees_the_old_model_or_the_new_one():
    labels_old, labels_new = np.array(["a", "b"]), np.array(["c", "d"])
    old = clf().fit(X, labels_old[y])
    new_model = clf().set_params(random_state=1).fit(X, labels_new[1 - y])
    expected = {tuple(old.predict(Xt)), tuple(new_model.predict(Xt))}
    model = clf().fit(X, labels_old[y])
    seen, stop = set(), threading.Event()

    def predict_throughout():
        while not stop.is_set():
            seen.add(tuple(model.predict(Xt)))

    worker = threading.Thread(target=predict_throughout)
    worker.start()
    try:
        for _ in range(3):
            model.set_params(random_state=1).fit(X, labels_new[1 - y])
            model.set_params(random_state=0).fit(X, labels_old[y])
    finally:
        stop.set()
        worker.join()
    # Every prediction is one model's whole answer, never old rows with new
    # classes (or the reverse).
    assert seen <= expected and len(seen) >= 1


@pytest.mark.parametrize(
    "y_source, y_target, classes",
    [
        (
            y.astype(bool),
            np.array([True, False] + [-1] * 8, dtype=object),
            [False, True],
        ),
        (y.astype(bool), None, [False, True]),
        (y, np.array([0, 1, -1, -1, 0, 1, -1, -1, 0, 1], dtype=object), [0, 1]),
        (y, np.array([0, 1, None, None, 0, 1, None, None, 0, 1], dtype=object), [0, 1]),
    ],
    ids=["bool and -1", "bool, no target labels", "object ints", "None unlabelled"],
)
def test_label_kinds_numpy_can_compare_work(y_source, y_target, classes):
    model = clf().fit(X, y_source, X_target=Xt, y_target=y_target)
    assert model.classes_.tolist() == classes
    assert model.classes_.dtype == np.asarray(classes).dtype
    assert set(model.predict(Xt).tolist()) <= set(classes)


def test_a_string_minus_one_among_string_labels_is_warned_about():
    names = np.array(["a", "b"])
    y_target = np.where(np.arange(10) % 3 == 0, "-1", names[yt])
    with pytest.warns(UserWarning, match="y_target holds the string '-1'"):
        model = clf().fit(X, names[y], X_target=Xt, y_target=y_target)
    assert "-1" in model.classes_


def test_spread_below_float_precision_is_warned_about():
    with pytest.warns(UserWarning, match="X has features whose values differ"):
        clf().fit(X * 1e-200, y)
    with pytest.warns(UserWarning, match="y has targets whose values differ"):
        reg().fit(X, yr * 1e-170)
