"""In-memory batches, forward passes and standardisation (``sktd._arrays``)."""

import numpy as np
import pytest
import torch
from skorch.dataset import Dataset

from sktd._arrays import TensorBatches, fit_scaler, forward_rows, softmax, standardise
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
