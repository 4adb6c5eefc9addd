"""Speed of sktd against a hand-written PyTorch loop and scikit-learn's MLP.

Run from the repository root::

    python benchmarks/bench_speed.py            # prints the table, writes the docs
    python benchmarks/bench_speed.py --quick    # smaller sizes, not written
    python benchmarks/bench_speed.py --million  # the default fit at 1M rows too

Every ratio is measured side by side in one run, as medians of repeats.
"""

import argparse
import copy
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPClassifier
from torch import nn

from sktd import TransferDistillClassifier
from sktd._losses import hinton_distillation_loss
from sktd._networks import MLP

warnings.filterwarnings("ignore", category=ConvergenceWarning)
DOCS = Path(__file__).parents[1] / "docs" / "benchmarks" / "speed.rst"
BATCH = 200


def median_time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def hand_written_epoch_seconds(module, X, y, epochs):
    """The loop a PyTorch user writes: shuffle, slice, step."""
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    module.train()
    durations = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(X))
        for first in range(0, len(X), BATCH):
            index = order[first : first + BATCH]
            optimizer.zero_grad()
            criterion(module(X[index]), y[index]).backward()
            optimizer.step()
        durations.append(time.perf_counter() - start)
    return float(np.median(durations))


def sktd_teacher_epoch_seconds(X, y, epochs):
    """Median epoch of sktd's pretraining stage, as skorch's history records it."""
    model = TransferDistillClassifier(
        max_iter=epochs, n_iter_no_change=epochs, batch_size=BATCH, random_state=0
    )
    model.fit(X, y)
    return float(np.median(model.history_["pretrain"][:, "dur"]))


def epoch_comparison(n_rows, epochs):
    X, y = make_classification(
        n_rows, n_features=20, n_classes=5, n_informative=10, random_state=0
    )
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    torch.manual_seed(0)
    module = MLP(20, 5, (128, 64))
    rows = []
    for _ in range(3):
        hand = hand_written_epoch_seconds(copy.deepcopy(module), X, y, epochs)
        ours = sktd_teacher_epoch_seconds(X, y, epochs)
        rows.append((hand, ours))
    hand, ours = np.median(rows, axis=0)
    return hand, ours


def fit_comparison(n_rows, epochs):
    X, y = make_classification(
        n_rows, n_features=20, n_classes=5, n_informative=10, random_state=0
    )
    sktd_model = TransferDistillClassifier(
        max_iter=epochs, n_iter_no_change=epochs, batch_size=BATCH, random_state=0
    )

    def sklearn_pair():
        # The same work as sktd's fit on source rows: a (128, 64) teacher and
        # a (64, 32) student, each for the same epochs and batch size.
        for sizes in ((128, 64), (64, 32)):
            MLPClassifier(
                sizes,
                max_iter=epochs,
                n_iter_no_change=epochs,
                batch_size=BATCH,
                random_state=0,
                tol=0.0,
            ).fit(X, y)

    return median_time(lambda: sktd_model.fit(X, y), 3), median_time(sklearn_pair, 3)


def latency_comparison():
    X, y = make_classification(
        2000, n_features=20, n_classes=3, n_informative=10, random_state=0
    )
    ours = TransferDistillClassifier(max_iter=3, random_state=0).fit(X, y)
    theirs = MLPClassifier((64, 32), max_iter=3, random_state=0).fit(X, y)
    one, many = X[:1], np.random.RandomState(1).normal(size=(10_000, 20))
    result = {}
    for name, rows, repeats in (("1 row", one, 2000), ("10k rows", many, 100)):
        pairs = [
            (
                median_time(lambda: ours.predict_proba(rows), repeats // 5),
                median_time(lambda: theirs.predict_proba(rows), repeats // 5),
            )
            for _ in range(5)
        ]
        result[name] = tuple(np.median(pairs, axis=0))
    return result


def grid_search_comparison():
    X, y = make_classification(3000, n_features=20, random_state=0)
    grid = dict(temperature=[2.0, 4.0], alpha=[0.5, 0.9])

    def search(n_jobs):
        GridSearchCV(
            TransferDistillClassifier(max_iter=10, random_state=0),
            grid,
            cv=3,
            n_jobs=n_jobs,
        ).fit(X, y)

    search(2)  # start joblib's worker processes once, as a session would
    return median_time(lambda: search(1), 3), median_time(lambda: search(2), 3)


def timed_default_fit(X, y, X_target, y_target, y_truth=None):
    """Fit sktd's defaults; return the total and per-stage seconds.

    Also the guard's parts (``"guard: ..."``: its fold networks, each kind
    of tabular candidate over its folds and refit, the blend's selection)
    and the student's updates (``"student updates"``). With ``y_truth``
    (every target row's label), the student's accuracy on the unlabelled
    target rows, under ``"accuracy"``.
    """
    import sktd._base
    import sktd._guard

    times = {}

    def timed(name, function):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                times[name] = times.get(name, 0.0) + time.perf_counter() - start

        return run

    class Timed(TransferDistillClassifier):
        _pretrain = timed("pretrain", TransferDistillClassifier._pretrain)
        _transfer = timed("transfer", TransferDistillClassifier._transfer)
        _distil = timed("distil", TransferDistillClassifier._distil)

    fit_tabular = sktd._guard._fit_tabular

    def tabular(name, *args, **kwargs):
        part = name if name.startswith("hgb") else "linear"
        return timed(f"guard: {part}", fit_tabular)(name, *args, **kwargs)

    patches = [
        (sktd._base, "guard", timed("guard", sktd._base.guard)),
        (sktd._guard, "_fit_tabular", tabular),
        (
            sktd._guard,
            "_fold_networks",
            timed("guard: fold networks", sktd._guard._fold_networks),
        ),
        (
            sktd._guard,
            "_target_linear",
            timed("guard: linear", sktd._guard._target_linear),
        ),
        (
            sktd._guard,
            "select_ensemble",
            timed("guard: selection", sktd._guard.select_ensemble),
        ),
    ]
    originals = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, patched in patches:
        setattr(module, name, patched)
    try:
        start = time.perf_counter()
        model = Timed(random_state=0).fit(X, y, X_target=X_target, y_target=y_target)
        times["fit"] = time.perf_counter() - start
    finally:
        for module, name, original in originals:
            setattr(module, name, original)
    epochs = model.history_["distil"]
    times["student updates"] = sum(len(epoch["batches"]) for epoch in epochs)
    # The epochs alone: the stage also queries the teacher on every row.
    times["student epochs"] = sum(epoch["dur"] for epoch in epochs)
    times["student batch"] = model.student_.batch_size
    if y_truth is not None:
        unlabelled = y_target == -1
        times["accuracy"] = model.score(X_target[unlabelled], y_truth[unlabelled])
    return times


def hand_written_student_step_seconds(batch_size, steps=2000):
    """Seconds per update of the default student in the loop a PyTorch user writes.

    sktd's (32, 16) student on 20 features and 3 classes, sktd's own Hinton
    loss (temperature 4, ``alpha=0.9``) against fixed teacher logits, fused
    Adam; shuffle, slice, step, as :func:`hand_written_epoch_seconds`: the
    distil stage's update with no engine around it. The first 100 updates
    warm up and are not timed.
    """
    torch.manual_seed(0)
    student = MLP(20, 3, (32, 16))
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3, fused=True)
    n_rows = batch_size * 50
    X, teacher = torch.randn(n_rows, 20), torch.randn(n_rows, 3)
    y = torch.randint(-1, 3, (n_rows,))

    def batches():
        while True:
            order = torch.randperm(n_rows)
            for first in range(0, n_rows, batch_size):
                yield order[first : first + batch_size]

    warm_up = 100
    for step, index in zip(range(warm_up + steps), batches()):
        if step == warm_up:
            start = time.perf_counter()
        loss = hinton_distillation_loss(
            student(X[index]), teacher[index], y[index], 4.0, 0.9
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def shifted_task(n_source, seed=0, with_truth=False):
    """20 features, 3 classes; 100 labelled and 500 unlabelled target rows.

    ``with_truth`` also returns every target row's label.
    """
    X, y = make_classification(
        n_source + 600, n_features=20, n_informative=10, n_classes=3, random_state=seed
    )
    X_target = X[n_source:] * 1.2 + 0.5
    y_truth = y[n_source:]
    y_target = y_truth.copy()
    y_target[100:] = -1
    task = X[:n_source], y[:n_source], X_target, y_target
    return (*task, y_truth) if with_truth else task


def default_fit_comparison(sizes):
    """Default fit against one ``MLPClassifier((128, 64))`` on the pooled rows."""
    import sktd._distillation
    from sktd._transfer_set import MUNGE_ROWS_PER_TARGET_ROW

    rows = []
    for n_source in sizes:
        X, y, X_target, y_target, y_truth = shifted_task(n_source, with_truth=True)
        labelled = y_target != -1
        times = timed_default_fit(X, y, X_target, y_target, y_truth)
        # The student's transfer set: every row and the MUNGE rows around the
        # target rows (some unlabelled, so four per target row).
        n_transfer_set = len(X) + len(X_target) * (1 + MUNGE_ROWS_PER_TARGET_ROW)
        if sktd._distillation.distillation_batch_size(n_transfer_set) > 200:
            # What the student's larger batches save and cost: the same fit
            # with MLPClassifier's 200-row batches in the distil stage too.
            steps = sktd._distillation.DISTIL_STEPS_PER_EPOCH
            sktd._distillation.DISTIL_STEPS_PER_EPOCH = len(X)
            try:
                small = timed_default_fit(X, y, X_target, y_target, y_truth)
            finally:
                sktd._distillation.DISTIL_STEPS_PER_EPOCH = steps
            times["distil, 200-row batches"] = small["distil"]
            times["accuracy, 200-row batches"] = small["accuracy"]
        times["hand-written step"] = hand_written_student_step_seconds(
            times["student batch"]
        )
        start = time.perf_counter()
        MLPClassifier((128, 64), random_state=0).fit(
            np.vstack([X, X_target[labelled]]), np.r_[y, y_target[labelled]]
        )
        times["mlp"] = time.perf_counter() - start
        rows.append((n_source, times))
        print(f"{n_source:>9} source rows: {times}", flush=True)
    return rows


_BUSY = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"


def busy_comparison():
    """A default fit idle, then beside one busy process the benchmark starts."""
    X, y, X_target, y_target = shifted_task(1000)
    timed_default_fit(X, y, X_target, y_target)  # warm up
    idle = timed_default_fit(X, y, X_target, y_target)["fit"]
    # Bounded: the busy process stops by itself even if this one dies.
    busy = subprocess.Popen([sys.executable, "-c", _BUSY.format(seconds=600)])
    try:
        time.sleep(0.5)
        loaded = timed_default_fit(X, y, X_target, y_target)["fit"]
    finally:
        busy.kill()
        busy.wait()
    return loaded, idle


_FIT_ONE_EPOCH = """
import resource, sys, time, numpy as np
from sktd import TransferDistillClassifier
n, f = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.RandomState(0)
X = rng.normal(size=(n, f))
y = (X[:, 0] + 0.1 * rng.normal(size=n) > 0).astype(int)
# Warm torch up (thread pool, lazy initialisation) so only the fit is timed.
TransferDistillClassifier(max_iter=1, random_state=0).fit(X[:50], y[:50])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
TransferDistillClassifier(max_iter=1, batch_size=200, random_state=0).fit(X, y)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, before / 1024, peak / 1024)
"""


def scaling(sizes, n_features):
    rows = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, "-c", _FIT_ONE_EPOCH, str(n), str(n_features)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        seconds, before_mb, peak_mb = map(float, out)
        rows.append((n, seconds, before_mb, peak_mb))
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--million", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    n_rows, epochs = (4000, 3) if quick else (20_000, 5)
    sizes = [1_000, 10_000, 100_000] if quick else [1_000, 10_000, 100_000, 1_000_000]

    hand, ours = epoch_comparison(n_rows, epochs)
    sktd_fit, sklearn_fit = fit_comparison(n_rows // 2, epochs)
    latency = latency_comparison()
    serial, parallel = grid_search_comparison()
    growth = scaling(sizes, 100)
    loaded, idle = busy_comparison()
    default_sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    if args.million:
        default_sizes.append(1_000_000)
    defaults = default_fit_comparison(default_sizes)

    lines = [
        f"Measured with ``python benchmarks/bench_speed.py`` on {platform.platform()}, "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"scikit-learn {sklearn.__version__}.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - what",
        "     - sktd",
        "     - reference",
        "     - ratio (sktd / reference)",
    ]

    def row(what, a, b, unit):
        lines.extend(
            [
                f"   * - {what}",
                f"     - {a:.3g} {unit}",
                f"     - {b:.3g} {unit}",
                f"     - {a / b:.2f}",
            ]
        )

    row(
        f"teacher epoch, {n_rows} rows x 20, MLP (128, 64), batch {BATCH} "
        "(reference: hand-written PyTorch loop)",
        ours,
        hand,
        "s",
    )
    row(
        f"fit on {n_rows // 2} rows, {epochs} epochs per network: teacher (128, 64) + "
        "student (64, 32) (reference: two MLPClassifier of those sizes)",
        sktd_fit,
        sklearn_fit,
        "s",
    )
    for name, (a, b) in latency.items():
        row(
            f"student predict_proba, {name} (reference: MLPClassifier (64, 32))",
            a * 1e3,
            b * 1e3,
            "ms",
        )
    row(
        "GridSearchCV, 4 candidates x 3 folds, n_jobs=2 (reference: n_jobs=1)",
        parallel,
        serial,
        "s",
    )
    row(
        "default fit, 1k source rows, beside one busy process started by the "
        "benchmark (reference: the same fit, idle)",
        loaded,
        idle,
        "s",
    )
    lines += [
        "",
        "Default fit (``TransferDistillClassifier(random_state=0)``, early stopping"
        " as set) by stage, against one ``MLPClassifier((128, 64))`` (its defaults)"
        " on the pooled labelled rows; 20 features, 3 classes, 100 labelled and 500"
        " unlabelled target rows; seconds, and the student's accuracy on the"
        " unlabelled target rows:",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - source rows",
        "     - sktd fit",
        "     - pretrain",
        "     - transfer (guard)",
        "     - distil",
        "     - MLPClassifier",
        "     - ratio",
        "     - student accuracy (%)",
    ]
    for n_source, times in defaults:
        lines += [
            f"   * - {n_source:,}",
            f"     - {times['fit']:.1f}",
            f"     - {times['pretrain']:.1f}",
            f"     - {times['transfer']:.1f} ({times.get('guard', 0.0):.1f})",
            f"     - {times['distil']:.1f}",
            f"     - {times['mlp']:.1f}",
            f"     - {times['fit'] / times['mlp']:.1f}",
            f"     - {100 * times['accuracy']:.1f}",
        ]
    lines += [
        "",
        "Where the same fits' time goes: the guard's parts (seconds over its five"
        " folds and the refit of the candidates it keeps; *linear* is the four"
        " linear candidates, *selection* the blend's search), and the student's"
        " updates (its epochs' time over their number; the distil stage also"
        " queries the teacher on every row), each against the same update in a"
        " hand-written PyTorch loop (``hand_written_student_step_seconds``):",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - source rows",
        "     - guard: fold networks",
        "     - guard: hgb_pooled",
        "     - guard: hgb_target",
        "     - guard: linear",
        "     - guard: selection",
        "     - student updates (rows each)",
        "     - ms per update (hand-written loop)",
    ]
    for n_source, times in defaults:
        lines += [
            f"   * - {n_source:,}",
            *(
                f"     - {times.get('guard: ' + part, 0.0):.2f}"
                for part in (
                    "fold networks",
                    "hgb_pooled",
                    "hgb_target",
                    "linear",
                    "selection",
                )
            ),
            f"     - {times['student updates']:,} ({times['student batch']})",
            f"     - {1e3 * times['student epochs'] / times['student updates']:.2f} "
            f"({1e3 * times['hand-written step']:.2f})",
        ]
    larger = [(n, t) for n, t in defaults if "distil, 200-row batches" in t]
    if larger:
        lines += [
            "",
            'Where the student\'s ``"auto"`` batches grow past 200 rows (transfer'
            " sets over 20,000 rows), the same fit with 200-row batches in the"
            " distil stage too:",
            "",
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - source rows",
            "     - distil seconds (auto / 200-row batches)",
            "     - student accuracy, % (auto / 200-row batches)",
        ]
        for n_source, times in larger:
            lines += [
                f"   * - {n_source:,}",
                f"     - {times['distil']:.1f} / "
                f"{times['distil, 200-row batches']:.1f}",
                f"     - {100 * times['accuracy']:.1f} / "
                f"{100 * times['accuracy, 200-row batches']:.1f}",
            ]
    lines += [
        "",
        "Fit time (one epoch per stage, 100 features) and peak memory:",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - rows",
        "     - fit seconds",
        "     - seconds per 1k rows",
        "     - data (float64) MB",
        "     - peak RSS MB (before fit)",
    ]
    for n, seconds, before_mb, peak_mb in growth:
        lines += [
            f"   * - {n:,}",
            f"     - {seconds:.2f}",
            f"     - {1000 * seconds / n:.3f}",
            f"     - {n * 100 * 8 / 2**20:.0f}",
            f"     - {peak_mb:.0f} ({before_mb:.0f})",
        ]
    table = "\n".join(lines)
    print(table)
    if not quick:
        DOCS.write_text(
            "Speed and memory\n================\n\n"
            "Produced by ``benchmarks/bench_speed.py``; rerun it to refresh it.\n\n"
            + table
            + "\n"
        )


if __name__ == "__main__":
    main()
