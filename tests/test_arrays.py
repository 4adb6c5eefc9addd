"""In-memory batches, forward passes and standardisation (``sktd._arrays``)."""

import numpy as np
import pytest
import torch
from skorch.dataset import Dataset

from sktd._arrays import (
    TensorBatches,
    fit_scaler,
    forward_rows,
    softmax,
    stack_rows,
    standardise,
)
from sktd._networks import MLP


def _dataset(n=103):
    X = torch.arange(n, dtype=torch.float32).reshape(-1, 1).repeat(1, 3)
    y = torch.arange(n, dtype=torch.float32).reshape(-1, 1) * 10
    return Dataset(X, y)


def test_shuffled_batches_keep_rows_aligned_and_cover_every_row():
    batches = TensorBatches(_dataset(), batch_size=16, shuffle=True, seed=0)
    assert len(batches) == 7
    seen = []
    for X, y in batches:
        np.testing.assert_array_equal(y[:, 0].numpy(), X[:, 0].numpy() * 10)
        seen.extend(X[:, 0].tolist())
    assert sorted(seen) == list(range(103))
    assert seen != sorted(seen)


def test_seeded_shuffling_is_reproducible_and_changes_per_epoch():
    first = [X[:, 0].tolist() for X, _ in TensorBatches(_dataset(), 16, True, seed=3)]
    second = [X[:, 0].tolist() for X, _ in TensorBatches(_dataset(), 16, True, seed=3)]
    assert first == second
    batches = TensorBatches(_dataset(), 16, True, seed=3)
    epoch_1 = [X[:, 0].tolist() for X, _ in batches]
    epoch_2 = [X[:, 0].tolist() for X, _ in batches]
    assert epoch_1 != epoch_2


def test_unshuffled_batches_are_slices_in_order():
    batches = list(TensorBatches(_dataset(10), batch_size=4))
    assert [len(X) for X, _ in batches] == [4, 4, 2]
    assert batches[2][0][0, 0].item() == 8


def test_subset_datasets_are_supported():
    subset = torch.utils.data.Subset(_dataset(), [5, 1, 7])
    ((X, y),) = list(TensorBatches(subset, batch_size=8))
    assert X[:, 0].tolist() == [5.0, 1.0, 7.0]
    assert y[:, 0].tolist() == [50.0, 10.0, 70.0]


def test_forward_rows_does_not_depend_on_the_other_rows():
    torch.manual_seed(0)
    module = MLP(20, 3, (64, 32))
    X = np.random.RandomState(0).normal(size=(1000, 20)).astype(np.float32)
    full = forward_rows(module, X, "cpu")
    assert full.shape == (1000, 3) and full.dtype == np.float32
    for rows in (slice(0, 1), slice(5, 6), slice(3, 70), slice(100, 357)):
        np.testing.assert_array_equal(forward_rows(module, X[rows], "cpu"), full[rows])
    assert not module.training


def test_forward_rows_across_chunks(monkeypatch):
    import sktd._arrays as training

    monkeypatch.setattr(training, "_PREDICT_CHUNK", 128)
    module = MLP(4, 2, (8,))
    X = np.random.RandomState(1).normal(size=(300, 4)).astype(np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(forward_rows(module, X, "cpu"), expected, rtol=1e-6)


def test_chunked_standardisation_matches_scikit_learn(monkeypatch):
    import sktd._arrays as training

    monkeypatch.setattr(training, "_PREDICT_CHUNK", 7)
    X = np.random.RandomState(2).normal(5, 3, size=(50, 4))
    X[:, 2] = 1.0
    scaler = fit_scaler(X)
    from sklearn.preprocessing import StandardScaler

    reference = StandardScaler().fit(X)
    np.testing.assert_allclose(scaler.mean_, reference.mean_)
    np.testing.assert_allclose(scaler.scale_, reference.scale_)
    out = standardise(X, scaler)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference.transform(X), rtol=1e-6, atol=1e-6)


def test_named_targets_are_batched_with_one_index():
    X = torch.arange(10.0)[:, None]
    y = {"teacher": torch.arange(10.0)[:, None] * 2, "labels": torch.arange(10)}
    batches = list(TensorBatches(Dataset(X, y), batch_size=4, shuffle=True, seed=0))
    assert [len(Xb) for Xb, _ in batches] == [4, 4, 2]
    for Xb, yb in batches:
        torch.testing.assert_close(yb["teacher"], Xb * 2)
        assert torch.equal(yb["labels"], Xb[:, 0].long())


def test_softmax_keeps_the_dtype_and_sums_to_one():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]], dtype=np.float32)
    proba = softmax(logits)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert proba[1, 0] == pytest.approx(1.0)


# -- sparse X: standardised when read, a few rows at a time


def _sparse_problem(n_rows=400, n_features=8, seed=0):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_rows, n_features, random_state=seed)
    X[np.abs(X) < 0.7] = 0.0
    return X, y


def test_sparse_rows_read_as_the_dense_standardised_rows():
    import scipy.sparse as sp

    from sktd._arrays import SparseRows, take_rows

    X, _ = _sparse_problem()
    scaler = fit_scaler(X)
    dense = standardise(X, scaler)
    rows = standardise(sp.csr_matrix(X), scaler)
    assert isinstance(rows, SparseRows) and rows.shape == X.shape
    for index in (slice(10, 50), np.array([3, 1, 399]), X[:, 0] > 0, torch.arange(7)):
        np.testing.assert_array_equal(rows[index], dense[index])
    # A selection stays sparse, appended dense rows follow in order.
    mask = np.arange(400) % 3 == 0
    kept = take_rows(rows, mask)
    assert isinstance(kept, SparseRows)
    np.testing.assert_array_equal(kept[:], dense[mask])
    extra = np.ones((5, 8), np.float32)
    both = rows.append(extra)
    np.testing.assert_array_equal(both[395:], np.concatenate([dense[395:], extra]))
    np.testing.assert_array_equal(both.subset(np.arange(398, 405))[:], both[398:])


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_a_sparse_fit_is_the_dense_fit(fmt):
    """Same model, bit for bit, from sparse or dense rows (guard and MUNGE on)."""
    import scipy.sparse as sp

    from sktd import TransferDistillClassifier

    X, y = _sparse_problem()
    X_target, y_target = X[300:] + 0.3 * (X[300:] != 0), y[300:].copy()
    y_target[20:] = -1
    params = dict(
        teacher_hidden_layer_sizes=(16,),
        student_hidden_layer_sizes=(8,),
        max_iter=15,
        random_state=0,
    )
    dense = TransferDistillClassifier(**params).fit(
        X[:300], y[:300], X_target=X_target, y_target=y_target
    )
    sparse = TransferDistillClassifier(**params).fit(
        sp.csr_matrix(X[:300]).asformat(fmt),
        y[:300],
        X_target=sp.csr_matrix(X_target).asformat(fmt),
        y_target=y_target,
    )
    assert sparse.transfer_choice_ == dense.transfer_choice_
    np.testing.assert_array_equal(
        sparse.predict_proba(sp.csr_matrix(X_target).asformat(fmt)),
        dense.predict_proba(X_target),
    )


def test_a_sparse_fit_never_densifies_the_whole_matrix():
    """A fit's peak memory does not grow with the rows of a sparse X.

    Batches and prediction chunks are densified a few rows at a time; twice
    the rows cost twice the dense copy (640 MB of float32 at 40,000 rows)
    but not twice the memory. (The guard, off here, densifies its samples: at
    most 5,000 source rows and the labelled target rows; MUNGE makes dense
    synthetic rows around the target rows.)
    """
    import tracemalloc

    import scipy.sparse as sp

    from sktd import TransferDistillRegressor

    n_features = 4_000
    params = dict(
        teacher_hidden_layer_sizes=(8,),
        student_hidden_layer_sizes=(4,),
        max_iter=1,
        batch_size=500,
        negative_transfer_guard=False,
        random_state=0,
    )

    def peak_bytes(n_rows):
        X = sp.random(n_rows, n_features, density=0.001, format="csr", random_state=0)
        y = X @ np.random.default_rng(0).normal(size=n_features)
        source, target = slice(0, n_rows - 100), slice(n_rows - 100, n_rows)
        tracemalloc.start()
        try:
            model = TransferDistillRegressor(**params).fit(
                X[source], y[source], X_target=X[target], y_target=y[target]
            )
            predictions = model.predict(X)
            return tracemalloc.get_traced_memory()[1], predictions
        finally:
            tracemalloc.stop()

    peak_bytes(1_000)  # imports and first-use allocations, not measured
    half, _ = peak_bytes(20_000)
    full, predictions = peak_bytes(40_000)
    assert np.isfinite(predictions).all()
    dense_bytes = 40_000 * n_features * 4
    assert full < dense_bytes / 5, f"peak {full / 1e6:.0f} MB"
    # The rows' sparse storage and per-row outputs grow; nothing of size
    # rows x features does.
    assert full - half < (dense_bytes / 2) / 20, (
        f"{half / 1e6:.0f} -> {full / 1e6:.0f} MB"
    )


def test_one_hot_encoded_columns_fit_sparse():
    """OneHotEncoder's sparse output in a ColumnTransformer , as for an MLP."""
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from sktd import TransferDistillClassifier

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 30, (300, 2))
    y = (codes[:, 0] % 2 == 0).astype(int)
    model = dict(
        teacher_hidden_layer_sizes=(16,),
        student_hidden_layer_sizes=(8,),
        max_iter=30,
        learning_rate_init=0.01,
        random_state=0,
    )
    fits = {}
    for sparse in (True, False):
        encode = make_column_transformer(
            (OneHotEncoder(sparse_output=sparse), [0, 1]), sparse_threshold=1.0
        )
        pipeline = make_pipeline(encode, TransferDistillClassifier(**model))
        fits[sparse] = pipeline.fit(codes[:200], y[:200])
    assert fits[True][0].transform(codes[:5]).format == "csr"
    np.testing.assert_array_equal(
        fits[True].predict_proba(codes[200:]), fits[False].predict_proba(codes[200:])
    )
    assert fits[True].score(codes[200:], y[200:]) > 0.9


def test_stack_rows_pads_smaller_sets_with_rows_of_weight_zero():
    parts = [
        (np.ones((3, 2)), np.array([0, 1, 2]), None),
        (2 * np.ones((5, 2)), np.arange(5), np.full(5, 0.5)),
    ]
    X, y, weights = stack_rows(parts)
    assert X.shape == (5, 2, 2) and X.dtype == np.float32
    np.testing.assert_array_equal(X[:3, 0], 1.0)
    np.testing.assert_array_equal(X[3:, 0], 0.0)
    np.testing.assert_array_equal(y[:, 1], np.arange(5))
    np.testing.assert_array_equal(weights[:, 0], [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(weights[:, 1], 0.5)
