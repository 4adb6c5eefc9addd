"""Command line: ``python -m sktd demo``."""

import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import TransferDistillClassifier, make_shifted_digits


def _latency_ms(predict, X, n_repeats=7):
    times = []
    for _ in range(n_repeats):
        start = time.perf_counter()
        predict(X)
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def _n_params(estimator):
    model = estimator[-1] if hasattr(estimator, "steps") else estimator
    if hasattr(model, "coefs_"):
        return sum(w.size for w in model.coefs_ + model.intercepts_)
    return model.coef_.size + model.intercept_.size


def demo(n_labelled=50, n_unlabelled=450, random_state=0):
    """Run the whole recipe on shifted digits and print what each model scores."""
    data = make_shifted_digits(n_labelled, n_unlabelled, random_state=random_state)
    X_test, y_test = data["X_test"], data["y_test"]
    print(
        f"Source: {len(data['X_source'])} digits. Target: shifted, dimmed, noisy "
        f"digits, {n_labelled} labelled + {n_unlabelled} unlabelled for training, "
        f"{len(X_test)} for testing."
    )
    start = time.perf_counter()
    model = TransferDistillClassifier(random_state=random_state)
    model.fit(
        data["X_source"],
        data["y_source"],
        X_target=data["X_target"],
        y_target=data["y_target"],
    )
    fit_seconds = time.perf_counter() - start
    report = model.distillation_report(X_test, y_test)

    labelled = data["y_target"] != -1
    X_labelled, y_labelled = data["X_target"][labelled], data["y_target"][labelled]
    X_pooled = np.vstack([data["X_source"], X_labelled])
    y_pooled = np.concatenate([data["y_source"], y_labelled])
    alternatives = {
        "MLPClassifier, target rows only": (
            MLPClassifier(random_state=random_state, max_iter=1000),
            X_labelled,
            y_labelled,
        ),
        "MLPClassifier, source + target": (
            MLPClassifier(random_state=random_state, max_iter=1000),
            X_pooled,
            y_pooled,
        ),
        "LogisticRegression, target only": (
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
            X_labelled,
            y_labelled,
        ),
    }
    rows = [
        (f"sktd teacher ({model.transfer_choice_})", report["teacher"]),
        ("sktd student (32, 16)", report["student"]),
    ]
    for name, (estimator, X, y) in alternatives.items():
        estimator.fit(X, y)
        rows.append(
            (
                name,
                {
                    "score": estimator.score(X_test, y_test),
                    "n_params": _n_params(estimator),
                    "latency_ms": _latency_ms(estimator.predict, X_test),
                },
            )
        )
    print(f"sktd fit (pretrain + transfer + distil): {fit_seconds:.1f} s\n")
    print(f"{'model':<34}{'accuracy':>9}{'params':>9}{'latency ms':>12}")
    for name, row in rows:
        print(
            f"{name:<34}{row['score']:>9.3f}{row['n_params']:>9d}"
            f"{row['latency_ms']:>12.2f}"
        )
    return rows


def main(argv=None):
    """Entry point of ``python -m sktd``."""
    parser = argparse.ArgumentParser(prog="python -m sktd")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="transfer + distil on shifted digits")
    run.add_argument("--n-labelled", type=int, default=50)
    run.add_argument("--n-unlabelled", type=int, default=450)
    run.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    demo(args.n_labelled, args.n_unlabelled, args.random_state)


if __name__ == "__main__":
    main()
