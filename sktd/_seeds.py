"""Where every random seed of a fit comes from.

One :class:`Seeds` per fit, made from ``random_state``; each stage, and each
fold of the guard, asks it for its own seed by name. Nothing else in sktd
draws a seed, so two fits with the same ``random_state`` make the same draws,
and adding a stage does not shift the seeds of the others.
"""

import contextlib

import numpy as np
import torch
from sklearn.utils import check_random_state

from ._trainer import INIT_LOCK

#: The named consumers of randomness in a fit. A name's position is its
#: spawn key: append new names, never reorder.
STREAMS = (
    "torch",  # torch's global generator during the fit
    "pretrain",  # the teacher's initialisation and batch order
    "head",  # a pretrained teacher's re-initialised head
    "transfer",  # fine-tuning on every labelled target row
    "rehearse",  # the rehearsed candidate, its source sample and batches
    "guard_folds",  # the guard's folds of the labelled target rows
    "guard_fold",  # one fold's fits (with a fold index)
    "guard_weights",  # the bootstrap resamples of the blend search
    "distil",  # the student's initialisation and batch order
    "perturbation",  # consistent teaching's noise / mixup
    "hint_adapter",  # the hint loss's adapter
    "guard_stand_ins",  # source rows standing in for classes the target lacks
    "guard_pooled_sample",  # the source sample of the pooled tabular candidates
    "guard_tabular",  # the tabular candidates refitted on every labelled row
    "munge",  # synthetic rows of the transfer set
)


class Seeds:
    """Seeds for the named stages of one fit, from one ``SeedSequence``.

    Parameters
    ----------
    random_state : int, RandomState instance or None
        The estimator's ``random_state``; one integer is drawn from it, the
        entropy of the fit's ``numpy.random.SeedSequence``.

    Examples
    --------
    >>> from sktd._seeds import Seeds
    >>> seeds = Seeds(0)
    >>> seeds("distil") == Seeds(0)("distil") != seeds("pretrain")
    True
    >>> seeds("guard_fold", 0) != seeds("guard_fold", 1)
    True
    """

    def __init__(self, random_state):
        self.entropy = int(check_random_state(random_state).randint(2**31 - 1))

    def __call__(self, stream, index=None):
        """Return the seed of ``stream`` (and of its ``index``-th fold), an int."""
        key = (STREAMS.index(stream),) + (() if index is None else (int(index),))
        sequence = np.random.SeedSequence(self.entropy, spawn_key=key)
        # 31 bits: valid for torch, numpy and scikit-learn's random_state alike.
        return int(sequence.generate_state(1, np.uint32)[0] >> 1)


@contextlib.contextmanager
def seeded_torch(seed):
    """Seed torch's global generator for one fit, then restore it.

    Initialisation happens on the CPU; the CPU generator is the only one used
    by the default networks (custom modules' dropout draws from it too). The
    state is saved and restored under the lock that seeded initialisations
    hold: restoring it while a fit in another thread draws its initial
    weights would change them.
    """
    with INIT_LOCK:
        state = torch.get_rng_state()
        torch.manual_seed(seed)
    try:
        yield
    finally:
        with INIT_LOCK:
            torch.set_rng_state(state)
