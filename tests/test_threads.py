"""torch's thread count while sktd runs (``sktd._threads``)."""

import threading

import numpy as np
import pytest
import torch

from sktd import TransferDistillClassifier
from sktd._threads import resolve_threads, torch_threads


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_fit_and_predict_run_on_one_thread_and_restore_the_callers(
    two_threads, classification_domains, fast_params, monkeypatch
):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = []
    original = torch.nn.Linear.forward

    def recording(self, X):
        seen.append(torch.get_num_threads())
        return original(self, X)

    monkeypatch.setattr(torch.nn.Linear, "forward", recording)
    X, y, X_target, y_target = classification_domains
    model = TransferDistillClassifier(random_state=0, **fast_params)
    model.fit(X, y, X_target=X_target, y_target=y_target)
    model.predict(X_target)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2
    seen.clear()
    model.set_params(torch_threads=2).predict(X_target)
    assert set(seen) == {2}


def test_an_outer_limit_caps_an_explicit_count(monkeypatch):
    assert resolve_threads("auto") == 1
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert resolve_threads(4) == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert resolve_threads(4) == 2


def test_a_fit_in_another_thread_leaves_this_threads_count_alone(
    two_threads, classification_domains, fast_params
):
    X, y, X_target, y_target = classification_domains
    inside = []

    def fit():
        with torch_threads(3):
            inside.append(torch.get_num_threads())
            TransferDistillClassifier(random_state=0, **fast_params).fit(
                X, y, X_target=X_target, y_target=y_target
            )
            inside.append(torch.get_num_threads())

    worker = threading.Thread(target=fit)
    worker.start()
    worker.join()
    # The fit set one thread and gave its thread's 3 back; this thread kept 2.
    assert inside == [3, 3]
    assert torch.get_num_threads() == 2


def test_predictions_do_not_depend_on_the_thread_count(
    classification_domains, fast_params
):
    X, y, X_target, y_target = classification_domains
    one = TransferDistillClassifier(random_state=0, **fast_params)
    one.fit(X, y, X_target=X_target, y_target=y_target)
    two = TransferDistillClassifier(random_state=0, torch_threads=2, **fast_params)
    two.fit(X, y, X_target=X_target, y_target=y_target)
    np.testing.assert_allclose(
        one.predict_proba(X_target), two.predict_proba(X_target), atol=1e-5
    )
