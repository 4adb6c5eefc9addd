"""Compare candidate defaults of sktd on the development half, seed by seed.

Defaults are chosen here, on the development half only (see bench_transfer.py);
the held-out half is never run by this script. Each task and seed computes the
CV-picked baseline once and fits sktd once per configuration, with and without
the unlabelled target rows::

    python benchmarks/compare_defaults.py --seeds 3 --suite real \\
        --config default= --config munge=transfer_set='"munge"' \\
        --config tabular=teacher_pool='"tabular"'

Prints one line per task and seed and, per configuration, the mean margins over
the CV-picked baseline and the teacher; ``--json`` saves every score. A change
that only acts without unlabelled target rows is compared at half the cost with
``--fits labelled``.
"""

import argparse
import ast
import contextlib
import importlib
import json
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, str(Path(__file__).parent))
from bench_transfer import HALVES, SUITES, labelled_rows  # noqa: E402
from real_tasks import cv_picked_baseline  # noqa: E402

from sktd import TransferDistillClassifier, TransferDistillRegressor  # noqa: E402

warnings.filterwarnings("ignore", category=ConvergenceWarning)


def parse_config(text):
    """``name=key=value,...``: estimator parameters, or ``module.CONSTANT`` settings.

    A key with a dot sets a constant of one of sktd's modules for the fits of
    that configuration (``_transfer_set.MUNGE_ROWS_PER_TARGET_ROW=4``): how
    internal budgets are compared before one becomes the default.
    """
    name, _, settings = text.partition("=")
    params = {}
    # A comma starts a new setting only before ``key=``: values may hold
    # commas, as tuples do (``student_hidden_layer_sizes=(64,32)``).
    for item in filter(None, re.split(r",(?=[\w.]+=)", settings)):
        key, value = item.split("=", 1)
        params[key] = ast.literal_eval(value)
    return name, params


@contextlib.contextmanager
def constants(params):
    """Set the ``module.CONSTANT`` entries of ``params`` meanwhile."""
    saved = []
    for key, value in params.items():
        if "." in key:
            module_name, attribute = key.rsplit(".", 1)
            module = importlib.import_module(f"sktd.{module_name}")
            saved.append((module, attribute, getattr(module, attribute)))
            setattr(module, attribute, value)
    try:
        yield {key: value for key, value in params.items() if "." not in key}
    finally:
        for module, attribute, value in reversed(saved):
            setattr(module, attribute, value)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--suite", choices=["all", *SUITES], default="all")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only the tasks whose name holds this text (repeatable: any)",
    )
    parser.add_argument("--kind", choices=["classification", "regression"])
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument(
        "--fits",
        choices=["both", "all", "labelled"],
        default="both",
        help="fit with every target row, the labelled ones only, or both",
    )
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    configs = dict(parse_config(c) for c in args.config) or {"default": {}}
    tasks = {}
    for name, suite in SUITES.items():
        if args.suite in ("all", name):
            tasks.update(suite)
    rows = []
    for task in HALVES["development"]:
        if task not in tasks or not any(text in task for text in args.only or [""]):
            continue
        for seed in range(args.seeds):
            data = tasks[task](seed)
            if args.kind and data["kind"] != args.kind:
                break
            cls = (
                TransferDistillClassifier
                if data["kind"] == "classification"
                else TransferDistillRegressor
            )
            pick, picked, _, _ = cv_picked_baseline(data, seed)
            labelled = labelled_rows(data)
            row = {"task": task, "seed": seed, "cv_pick": picked, "pick": pick}
            for name, params in configs.items():
                given = {
                    "all": (data["X_target"], data["y_target"]),
                    "labelled": (
                        data["X_target"][labelled],
                        data["y_target"][labelled],
                    ),
                }
                for rows_given, (X_t, y_t) in given.items():
                    if args.fits not in ("both", rows_given):
                        continue
                    start = time.perf_counter()
                    with constants(params) as estimator_params:
                        model = cls(random_state=seed, **estimator_params).fit(
                            data["X_source"],
                            data["y_source"],
                            X_target=X_t,
                            y_target=y_t,
                        )
                    row[f"{name}/{rows_given}/seconds"] = time.perf_counter() - start
                    report = model.distillation_report(
                        data["X_test"], data["y_test"], n_repeats=1
                    )
                    row[f"{name}/{rows_given}/student"] = (
                        100 * report["student"]["score"]
                    )
                    row[f"{name}/{rows_given}/teacher"] = (
                        100 * report["teacher"]["score"]
                    )
            rows.append(row)
            print(
                f"{task[:34]:<34} {seed} CV {picked:6.1f} "
                + " ".join(_fit_line(row, n) for n in configs),
                flush=True,
            )
    for name in configs:
        print(_summary(rows, name))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def _fit_line(row, name):
    """``name: s ... t ... lo ... lt ... seconds`` for the fits that ran."""
    parts = [f"{name}:"]
    if f"{name}/all/student" in row:
        parts += [
            f"s {row[f'{name}/all/student']:.1f}",
            f"t {row[f'{name}/all/teacher']:.1f}",
        ]
    if f"{name}/labelled/student" in row:
        parts += [
            f"lo {row[f'{name}/labelled/student']:.1f}",
            f"lt {row[f'{name}/labelled/teacher']:.1f}",
        ]
    seconds = row.get(f"{name}/all/seconds", row.get(f"{name}/labelled/seconds"))
    return " ".join(parts) + f" {seconds:.1f}s"


def _summary(rows, name):
    """Mean margins of configuration ``name`` over ``rows``, worst task by task."""

    def mean_and_worst(student, reference):
        margins = {}
        for r in rows:
            margins.setdefault(r["task"], []).append(r[student] - r[reference])
        by_task = [np.mean(m) for m in margins.values()]
        return f"{np.mean(by_task):+.2f} (worst task {min(by_task):+.2f})"

    parts = []
    for given, label in (("all", "student"), ("labelled", "labelled-only")):
        if f"{name}/{given}/student" not in rows[0]:
            continue
        student, teacher = f"{name}/{given}/student", f"{name}/{given}/teacher"
        seconds = np.mean([r[f"{name}/{given}/seconds"] for r in rows])
        parts += [
            f"{label} - CV pick {mean_and_worst(student, 'cv_pick')}",
            f"{label} - teacher {mean_and_worst(student, teacher)}",
            f"{label} fit {seconds:.1f} s",
        ]
    return f"{name}: " + "; ".join(parts)


if __name__ == "__main__":
    main()
