"""Fit and predict on the GPU against the CPU: same predictions, and how fast.

A prepared check for a machine with CUDA (it exits with a message without)::

    python benchmarks/bench_gpu.py               # 100k and 1M source rows
    python benchmarks/bench_gpu.py --rows 20000  # a quick look

For each size it fits the default classifier once on ``device="cpu"`` and once
on ``device="cuda"`` (same seed), prints both fit and predict times, and checks
that the two students' probabilities agree within float tolerance (the GPU's
kernels add in another order, so bits may differ) and their labels on at least
99.5 % of the rows.
"""

import argparse
import sys
import time

import numpy as np
import torch
from sklearn.datasets import make_classification

from sktd import TransferDistillClassifier


def task(n_rows, seed=0):
    X, y = make_classification(
        n_rows + 2_000, n_features=20, n_informative=10, n_classes=3, random_state=seed
    )
    X_target = X[n_rows:] + 0.5
    y_target = y[n_rows:].copy()
    y_target[100:] = -1
    return X[:n_rows], y[:n_rows], X_target, y_target


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--max-iter", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("No CUDA device: this check needs one (see the device tool).")
    for n_rows in args.rows:
        X, y, X_target, y_target = task(n_rows)
        results = {}
        for device in ("cpu", "cuda"):
            model = TransferDistillClassifier(
                max_iter=args.max_iter, random_state=0, device=device
            )
            start = time.perf_counter()
            model.fit(X, y, X_target=X_target, y_target=y_target)
            fit_seconds = time.perf_counter() - start
            start = time.perf_counter()
            proba = model.predict_proba(X)
            predict_seconds = time.perf_counter() - start
            results[device] = proba
            print(
                f"{n_rows:>9} rows  {device:<4}  fit {fit_seconds:7.1f} s  "
                f"predict {predict_seconds:6.2f} s",
                flush=True,
            )
        agree = np.mean(results["cpu"].argmax(1) == results["cuda"].argmax(1))
        gap = np.abs(results["cpu"] - results["cuda"]).max()
        print(
            f"{n_rows:>9} rows  labels agree {agree:.4f}, max |p_cpu - p_gpu| {gap:.2e}"
        )
        if agree < 0.995:
            sys.exit("CPU and GPU students disagree on more than 0.5 % of rows.")


if __name__ == "__main__":
    main()
