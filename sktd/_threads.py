"""How many intra-op threads torch uses while sktd trains and predicts.

sktd's networks are small: a (128, 64) MLP on batches of 200 rows gains nothing
from splitting each matrix product over threads, and torch's worker threads
spin-wait. When another process holds a core, which is the normal state of a
laptop, a CI runner or ``GridSearchCV(n_jobs=...)``, the waiting collapses: a
small fit measured 221 s with torch's default 2 threads next to one busy
process, and 2.1 s with one thread. So ``fit`` and ``predict`` run with the
estimator's ``torch_threads`` (``"auto"``: one thread), and give the caller's
setting back afterwards.

Fits may run at once in threads (joblib's threading backend, Dask workers),
and torch's count is shared by the computations of all threads: a fit that
gave its caller's count back while another fit computed would change that
fit's arithmetic mid-way. So the blocks share one count: the first to begin
records the setting, while any runs the smallest request holds, and the last
to end restores what the first recorded.
"""

import contextlib
import os
import threading

import torch

_LOCK = threading.Lock()
_active = []  # the requests of the blocks running now, in any thread
_recorded = None  # the setting when the first of them began


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
    """Run the block with ``n_threads`` intra-op threads (see the module)."""
    global _recorded
    with _LOCK:
        if not _active:
            _recorded = torch.get_num_threads()
        _active.append(n_threads)
        torch.set_num_threads(min(_active))
    try:
        yield
    finally:
        with _LOCK:
            _active.remove(n_threads)
            torch.set_num_threads(min(_active) if _active else _recorded)
