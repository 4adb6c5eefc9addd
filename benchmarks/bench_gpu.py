"""Fit and predict on the GPU against the CPU: same predictions, and how fast.

A prepared check for a machine with CUDA (it exits with a message without)::

    python benchmarks/bench_gpu.py               # 100k and 1M source rows
    python benchmarks/bench_gpu.py --rows 20000  # a quick look
    python benchmarks/bench_gpu.py --rows 100000 1000000 --cpu-max-rows 100000
    python benchmarks/bench_gpu.py --rows --save-models tests/data

``--save-models DIR`` also fits a small classifier (teacher of sktd's networks)
and regressor (default teacher pool) on the GPU and saves them with their
predictions, so that a machine without CUDA can check it loads them
(``tests/test_persistence.py`` does, from ``tests/data``).

For each size it fits the default classifier once on ``device="cpu"`` and once
on ``device="cuda"`` (same seed) and prints fit and predict times and each
student's accuracy on the unlabelled target rows. Two checks:

* The same weights predict the same on both devices: the GPU-fitted model,
  saved and loaded onto the CPU, gives the GPU's probabilities within 1e-4.
* The two fits are equally good: accuracies within 1 point. They are not the
  same model: the GPU's kernels add in another order, and over thousands of
  optimiser steps those rounding differences grow into other weights (on an
  H200, 100k rows: 98.5 % of labels agreed, probabilities differed by up to
  0.73), as between two CPU builds of torch.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_classification, make_regression

from sktd import TransferDistillClassifier, TransferDistillRegressor, load, save


def task(n_rows, seed=0):
    X, y = make_classification(
        n_rows + 2_000, n_features=20, n_informative=10, n_classes=3, random_state=seed
    )
    X_target = X[n_rows:] + 0.5
    y_target = y[n_rows:].copy()
    y_target[100:] = -1
    return X[:n_rows], y[:n_rows], X_target, y_target, y[n_rows:]


def save_models(directory, device="cuda"):
    """Fit small models on ``device``; save them and their predictions."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    small = dict(max_iter=10, random_state=0, device=device)
    X, y, X_target, y_target, _ = task(300, seed=1)
    classifier = TransferDistillClassifier(teacher_pool="networks", **small)
    classifier.fit(X, y, X_target=X_target[:200], y_target=y_target[:200])
    X, y = make_regression(500, n_features=6, noise=1.0, random_state=1)
    X_target, y_target = X[300:] * 1.2, y[300:].copy()
    y_target[40:] = np.nan
    regressor = TransferDistillRegressor(**small)
    regressor.fit(X[:300], y[:300], X_target=X_target, y_target=y_target)
    save(classifier, directory / "gpu_classifier.safetensors")
    save(regressor, directory / "gpu_regressor.safetensors")
    rows, rows_regression = task(300, seed=1)[2][:50], X_target[:50]
    np.savez(
        directory / "gpu_predictions.npz",
        rows=rows,
        proba=classifier.predict_proba(rows),
        proba_teacher=classifier.predict_proba_teacher(rows),
        rows_regression=rows_regression,
        regression=regressor.predict(rows_regression),
    )
    print(
        f"saved {device}-fitted models to {directory}: classifier weights "
        f"{classifier.transfer_weights_}, regressor weights "
        f"{regressor.transfer_weights_}",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--max-iter", type=int, default=20)
    parser.add_argument(
        "--cpu-max-rows",
        type=int,
        default=None,
        help="above this many rows, fit on the GPU only (no comparison)",
    )
    parser.add_argument("--save-models", default=None, metavar="DIR")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("No CUDA device: this check needs one (see the device tool).")
    if args.save_models:
        save_models(args.save_models)
    for n_rows in args.rows:
        X, y, X_target, y_target, y_test = task(n_rows)
        results = {}
        devices = ("cpu", "cuda")
        if args.cpu_max_rows is not None and n_rows > args.cpu_max_rows:
            devices = ("cuda",)
        for device in devices:
            model = TransferDistillClassifier(
                max_iter=args.max_iter, random_state=0, device=device
            )
            start = time.perf_counter()
            model.fit(X, y, X_target=X_target, y_target=y_target)
            fit_seconds = time.perf_counter() - start
            start = time.perf_counter()
            model.predict_proba(X)
            predict_seconds = time.perf_counter() - start
            unlabelled = y_target == -1
            accuracy = model.score(X_target[unlabelled], y_test[unlabelled])
            results[device] = model, accuracy
            print(
                f"{n_rows:>9} rows  {device:<4}  fit {fit_seconds:7.1f} s  "
                f"predict {predict_seconds:6.2f} s  target accuracy {accuracy:.4f}",
                flush=True,
            )
        on_gpu, _ = results["cuda"]
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "model.safetensors"
            save(on_gpu, path)
            on_cpu = load(path, device="cpu")
        rows = X[:10_000]
        gap = np.abs(on_cpu.predict_proba(rows) - on_gpu.predict_proba(rows)).max()
        print(f"{n_rows:>9} rows  GPU weights on the CPU: max |p difference| {gap:.2e}")
        if gap > 1e-4:
            sys.exit("The same weights predict differently on the CPU and the GPU.")
        if len(results) < 2:
            continue
        difference = results["cuda"][1] - results["cpu"][1]
        points = 100 * difference
        print(f"{n_rows:>9} rows  accuracy GPU - CPU fit {points:+.2f} points")
        if abs(difference) > 0.01:
            sys.exit("The GPU fit is more than 1 point worse or better than the CPU's.")


if __name__ == "__main__":
    main()
