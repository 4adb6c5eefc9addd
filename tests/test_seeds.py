"""Seeds drawn by name from one SeedSequence (``sktd._seeds``)."""

import numpy as np
import torch

from sktd._seeds import STREAMS, Seeds, seeded_torch


def test_every_stream_and_fold_gets_its_own_seed():
    seeds = Seeds(0)
    drawn = [seeds(stream) for stream in STREAMS]
    drawn += [seeds("guard_fold", fold) for fold in range(5)]
    assert len(set(drawn)) == len(drawn)
    assert all(0 <= seed < 2**31 for seed in drawn)


def test_same_random_state_same_seeds_and_other_state_other_seeds():
    assert Seeds(3)("distil") == Seeds(3)("distil")
    assert Seeds(3)("distil") != Seeds(4)("distil")
    # A RandomState instance is drawn from once, like scikit-learn's estimators.
    state = np.random.RandomState(7)
    assert Seeds(state)("pretrain") != Seeds(state)("pretrain")


def test_seeded_torch_restores_the_global_generator():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with seeded_torch(5):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected)
    with seeded_torch(5):
        assert torch.equal(torch.rand(3), inside)
