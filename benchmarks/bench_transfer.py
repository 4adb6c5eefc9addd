"""sktd's student and teacher against what a user would pick instead.

Run from the repository root::

    python benchmarks/bench_transfer.py           # 6 seeds (~17 min), writes the docs
    python benchmarks/bench_transfer.py --quick   # one seed, not written
    python benchmarks/bench_transfer.py --set learning_rate_init=0.003  # explore

Scores are accuracy (classification) or R² (regression), in points (x100),
averaged over seeds, on held-out target rows.
"""

import argparse
import ast
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).parent))
from tasks import TASKS  # noqa: E402

from sktd import TransferDistillClassifier, TransferDistillRegressor  # noqa: E402

warnings.filterwarnings("ignore", category=ConvergenceWarning)
DOCS = Path(__file__).parents[1] / "docs" / "benchmarks" / "transfer.rst"
BASELINES = ("MLP", "linear", "HGB")


def baseline(name, kind, seed):
    classification = kind == "classification"
    if name == "MLP":
        cls = MLPClassifier if classification else MLPRegressor
        model = cls(hidden_layer_sizes=(128, 64), max_iter=500, random_state=seed)
    elif name == "linear":
        model = LogisticRegression(max_iter=2000) if classification else RidgeCV()
    else:
        cls = (
            HistGradientBoostingClassifier
            if classification
            else HistGradientBoostingRegressor
        )
        model = cls(random_state=seed)
    return make_pipeline(StandardScaler(), model)


def run_task(builder, seed, params):
    data = builder(seed)
    kind = data["kind"]
    labelled = (
        (data["y_target"] != -1)
        if kind == "classification"
        else ~np.isnan(data["y_target"])
    )
    X_lab, y_lab = data["X_target"][labelled], data["y_target"][labelled]
    X_test, y_test = data["X_test"], data["y_test"]
    scores = {}
    for name in BASELINES:
        target_only = baseline(name, kind, seed).fit(X_lab, y_lab)
        scores[f"{name} target"] = 100 * target_only.score(X_test, y_test)
        pooled = baseline(name, kind, seed).fit(
            np.vstack([data["X_source"], X_lab]),
            np.concatenate([data["y_source"], y_lab]),
        )
        scores[f"{name} pooled"] = 100 * pooled.score(X_test, y_test)
    cls = (
        TransferDistillClassifier
        if kind == "classification"
        else TransferDistillRegressor
    )
    start = time.perf_counter()
    model = cls(random_state=seed, **params).fit(
        data["X_source"],
        data["y_source"],
        X_target=data["X_target"],
        y_target=data["y_target"],
    )
    seconds = time.perf_counter() - start
    report = model.distillation_report(X_test, y_test, n_repeats=1)
    scores["sktd teacher"] = 100 * report["teacher"]["score"]
    scores["sktd student"] = 100 * report["student"]["score"]
    size_ratio = report["teacher"]["n_params"] / report["student"]["n_params"]
    # The same fit without the unlabelled target rows: what they add.
    labelled_only = cls(random_state=seed, **params).fit(
        data["X_source"], data["y_source"], X_target=X_lab, y_target=y_lab
    )
    scores["sktd student, labelled only"] = 100 * labelled_only.score(X_test, y_test)
    return scores, size_ratio, seconds, getattr(model, "transfer_choice_", None)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--only", default="", help="run tasks whose name has this")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="PARAM=VALUE",
        help="non-default sktd parameters, to explore (the docs are not written)",
    )
    args = parser.parse_args()
    params = {k: ast.literal_eval(v) for k, v in (p.split("=", 1) for p in args.set)}
    seeds = [0] if args.quick else list(range(args.seeds))
    baselines = [f"{b} {w}" for b in BASELINES for w in ("target", "pooled")]
    columns = ["sktd student", "sktd teacher", "sktd student, labelled only"]
    columns += baselines
    rows = []
    for task, builder in TASKS.items():
        if args.only not in task:
            continue
        runs = [run_task(builder, seed, params) for seed in seeds]
        mean = {c: float(np.mean([r[0][c] for r in runs])) for c in columns}
        best = max(mean[c] for c in baselines)
        rows.append(
            (
                task,
                mean,
                best,
                np.mean([r[1] for r in runs]),
                np.mean([r[2] for r in runs]),
                [r[3] for r in runs],
            )
        )
        print(
            f"{task:<34} student {mean['sktd student']:6.1f} teacher "
            f"{mean['sktd teacher']:6.1f} best baseline {best:6.1f} "
            f"({max(baselines, key=mean.get)}) fit {rows[-1][4]:.1f}s "
            f"choices {rows[-1][5]}",
            flush=True,
        )
    margins = [r[1]["sktd student"] - r[2] for r in rows]
    gaps = [r[1]["sktd student"] - r[1]["sktd teacher"] for r in rows]
    labelled_only = [r[1]["sktd student, labelled only"] - r[2] for r in rows]
    summary = (
        f"Student minus best baseline per task: mean {np.mean(margins):+.1f} "
        f"points, worst {min(margins):+.1f}. Student minus teacher: mean "
        f"{np.mean(gaps):+.1f}. Teacher/student parameters: "
        f"{np.mean([r[3] for r in rows]):.1f}x. Without the unlabelled target "
        f"rows, student minus best baseline: mean {np.mean(labelled_only):+.1f}, "
        f"worst {min(labelled_only):+.1f}."
    )
    print(summary)
    header = ["task"] + columns + ["best baseline", "student - best"]
    lines = [".. list-table::", "   :header-rows: 1", ""]
    lines.append("   * - " + "\n     - ".join(header))
    for task, mean, best, *_ in rows:
        cells = (
            [task]
            + [f"{mean[c]:.1f}" for c in columns]
            + [f"{best:.1f}", f"{mean['sktd student'] - best:+.1f}"]
        )
        lines.append("   * - " + "\n     - ".join(cells))
    table = "\n".join(lines)
    if not (args.quick or args.only or params):
        DOCS.write_text(
            "Transfer and distillation against the usual alternatives\n"
            "========================================================\n\n"
            "Produced by ``python benchmarks/bench_transfer.py`` "
            f"({len(seeds)} seeds) on {platform.platform()}, {os.cpu_count()} CPU "
            f"cores, torch {torch.__version__}, scikit-learn {sklearn.__version__}. "
            "Scores are accuracy or R² on held-out target rows, in points; "
            "*labelled only* is the student fitted without the unlabelled "
            "target rows (the baselines never use them); the "
            "tasks are built in ``benchmarks/tasks.py``. Every sktd model uses "
            "its defaults.\n\n" + summary + "\n\n" + table + "\n"
        )


if __name__ == "__main__":
    main()
