"""How many intra-op threads torch uses while sktd trains and predicts.

sktd's networks are small: a (128, 64) MLP on batches of 200 rows gains nothing
from splitting each matrix product over threads, and torch's worker threads
spin-wait. When another process holds a core, which is the normal state of a
laptop, a CI runner or ``GridSearchCV(n_jobs=...)``, the waiting collapses: a
small fit measured 221 s with torch's default 2 threads next to one busy
process, and 2.1 s with one thread. So ``fit`` and ``predict`` run with the
estimator's ``torch_threads`` (``"auto"``: one thread), and give the caller's
setting back afterwards.

torch's count is OpenMP's, kept per thread once a thread sets it: each block
records the calling thread's setting, sets its own and restores the recorded
one, so fits running in threads do not change one another's count.
"""

import contextlib
import os

import torch


def resolve_threads(torch_threads):
    """Return the thread count for an estimator's ``torch_threads``.

    ``"auto"`` is one thread. An integer is capped by an outer limit set in
    the environment (``OMP_NUM_THREADS``, as joblib's workers and
    ``threadpoolctl`` users set it).
    """
    if torch_threads == "auto":
        return 1
    outer = os.environ.get("OMP_NUM_THREADS", "")
    if outer.isdigit() and int(outer) > 0:
        return min(int(torch_threads), int(outer))
    return int(torch_threads)


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run the block with ``n_threads`` intra-op threads, then restore them."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
