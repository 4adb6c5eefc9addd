"""Model selection runs unchanged under joblib's Dask backend."""

import threading

import numpy as np
import pytest
import torch
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV

from sktd import TransferDistillClassifier, stack_domains
from sktd.model_selection import TargetKFold

distributed = pytest.importorskip("distributed")

FIT_THREADS = []


class ThreadRecordingClassifier(TransferDistillClassifier):
    """Records the thread each fit runs in."""

    def fit(self, X, y, **params):
        FIT_THREADS.append(threading.current_thread().name)
        return super().fit(X, y, **params)


@pytest.fixture
def one_torch_thread():
    # Bit-for-bit equality between the cluster's threads and a sequential run
    # holds with one intra-op thread per fit (see the scaling guide): a product
    # split over threads may add its parts in another order on a busy machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_grid_search_under_dask_local_cluster(
    classification_domains, fast_params, one_torch_thread
):
    X, y, X_target, y_target = classification_domains
    X_all, y_all, domain = stack_domains(X, y, X_target, y_target)
    grid = GridSearchCV(
        ThreadRecordingClassifier(random_state=0, **fast_params),
        {"temperature": [2.0, 4.0]},
        cv=TargetKFold(2),
        n_jobs=2,
    )
    FIT_THREADS.clear()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with parallel_backend("dask"):
            grid.fit(X_all, y_all, groups=domain, sample_domain=domain)
        # The work really ran on the cluster's workers: the 2 x 2 fits of
        # the search in Dask's worker threads, the final refit here.
        assert len(cluster.workers) == 2 and client.status == "running"
    assert sum("Dask" in name for name in FIT_THREADS) == 4
    assert FIT_THREADS[-1] == threading.current_thread().name

    sequential = GridSearchCV(
        TransferDistillClassifier(random_state=0, **fast_params),
        {"temperature": [2.0, 4.0]},
        cv=TargetKFold(2),
    ).fit(X_all, y_all, groups=domain, sample_domain=domain)
    np.testing.assert_allclose(
        grid.cv_results_["mean_test_score"], sequential.cv_results_["mean_test_score"]
    )
