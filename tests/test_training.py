import numpy as np
import pytest
import torch
from skorch.dataset import Dataset

from sktd._networks import MLP
from sktd._training import TensorBatches, fit_scaler, forward_rows, standardise


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
    import sktd._training as training

    monkeypatch.setattr(training, "_PREDICT_CHUNK", 128)
    module = MLP(4, 2, (8,))
    X = np.random.RandomState(1).normal(size=(300, 4)).astype(np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(forward_rows(module, X, "cpu"), expected, rtol=1e-6)


def test_chunked_standardisation_matches_scikit_learn(monkeypatch):
    import sktd._training as training

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


def test_hint_term_adds_weighted_feature_error_to_the_distillation_loss():
    from torch import nn

    from sktd._training import DistillationNet

    class Loss(nn.Module):
        def forward(self, outputs, teacher, labels):
            return ((outputs - teacher) ** 2).mean() + labels.sum()

    net = DistillationNet(
        module=nn.Linear(2, 2), criterion=Loss, hint_weight=0.5, n_hint_columns=3
    ).initialize()
    torch.manual_seed(0)
    outputs, hints = torch.randn(4, 2), torch.randn(4, 3)
    teacher, labels, teacher_hints = (
        torch.randn(4, 2),
        torch.zeros(4, 1),
        torch.randn(4, 3),
    )
    labels[0] = 1.0
    loss = net.get_loss(
        torch.cat([outputs, hints], 1), torch.cat([teacher, labels, teacher_hints], 1)
    )
    expected = (
        ((outputs - teacher) ** 2).mean()
        + 1.0
        + 0.5 * ((hints - teacher_hints) ** 2).mean()
    )
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
