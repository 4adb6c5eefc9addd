import numpy as np

from sktd import TransferDistillClassifier


def _fit(verbose, X_target_labels=True, guard=False):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 3))
    y = (X[:, 0] > 0).astype(int)
    y_target = y[60:] if X_target_labels else None
    model = TransferDistillClassifier(
        max_iter=3, verbose=verbose, negative_transfer_guard=guard, random_state=0
    )
    return model.fit(X[:60], y[:60], X_target=X[60:], y_target=y_target)


def test_verbose_0_prints_nothing(capsys):
    _fit(0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_1_prints_one_line_per_stage(capsys):
    model = _fit(1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["pretrain", "transfer", "distil"]
    assert all("epoch    3/3" in line and "train_loss" in line for line in lines)
    assert set(model.history_) == {"pretrain", "transfer", "distil"}
    assert len(model.history_["distil"]) == 3


def test_skipped_stage_has_no_history_and_no_line(capsys):
    model = _fit(1, X_target_labels=False)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["pretrain", "distil"]
    assert model.history_["transfer"] is None


def test_verbose_1_reports_each_fold_of_the_guard(capsys):
    _fit(1, guard=True)
    lines = capsys.readouterr().out.splitlines()
    stages = [line.split()[1] for line in lines]
    assert stages == ["pretrain", "transfer"] + ["guard"] * 5 + ["distil"]
    folds = [line.split()[3] for line in lines if line.split()[1] == "guard"]
    assert folds == ["1/5", "2/5", "3/5", "4/5", "5/5"]


def test_without_a_terminal_a_line_comes_every_two_seconds(monkeypatch, capsys):
    import sktd._callbacks

    # A clock that advances one second per reading: a long stage, instantly.
    clock = iter(range(10**6))
    monkeypatch.setattr(sktd._callbacks.time, "perf_counter", lambda: next(clock))
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    TransferDistillClassifier(
        max_iter=12, n_iter_no_change=50, verbose=1, random_state=0
    ).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    pretrain = [line for line in lines if line.split()[1] == "pretrain"]
    # Each epoch reads the clock twice (check, then reset): a line every
    # epoch or two, never a silent stage; then the final line.
    assert len(pretrain) >= 6
    epochs = [int(line.split()[3].split("/")[0]) for line in pretrain]
    assert epochs == sorted(epochs) and epochs[-1] == 12


def test_verbose_2_titles_every_table_without_colour_codes_off_a_terminal(capsys):
    _fit(2, guard=True)
    out = capsys.readouterr().out
    assert "\x1b[" not in out
    titles = [line for line in out.splitlines() if line.startswith("[sktd] ")]
    titled = [line.split(maxsplit=1)[1] for line in titles if "epoch" not in line]
    assert titled[0] == "pretrain"
    # The guard's fold networks train side by side, five folds in one table.
    for candidate in ("transferred", "rehearsed", "target network"):
        assert f"transfer, guard folds 1-5: {candidate}" in titled
    assert titled[-1] == "distil"
    # Every table has a title: each header row follows one.
    lines = out.splitlines()
    headers = [i for i, line in enumerate(lines) if line.split()[:1] == ["epoch"]]
    assert headers and all(lines[i - 1].startswith("[sktd] ") for i in headers)


def test_a_fit_in_a_subprocess_shows_progress_as_it_runs():
    """Piped (no terminal, block-buffered stdout), lines still arrive live.

    A fit of several seconds (two stages of about 4 s each, twice the 2 s
    period) in a child process; each line is timestamped as the parent reads
    it. Lines must come while the fit runs, at most a couple
    of seconds apart, not all at the end.
    """
    import subprocess
    import sys
    import time

    script = (
        "import numpy as np\n"
        "from sktd import TransferDistillClassifier\n"
        "X = np.random.RandomState(0).normal(size=(12000, 20))\n"
        "y = (X[:, 0] > 0).astype(int)\n"
        "TransferDistillClassifier(max_iter=80, n_iter_no_change=100, tol=0,\n"
        "    verbose=1, random_state=0).fit(X, y)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    arrivals = []
    for line in child.stdout:
        if line.startswith("[sktd]"):
            arrivals.append(time.perf_counter())
    assert child.wait() == 0
    end = time.perf_counter()
    assert len(arrivals) >= 4
    # Live: the first lines arrive well before the fit ends, and no gap
    # between lines (or before the end) is much longer than the 2 s period
    # plus one epoch.
    gaps = np.diff(arrivals + [end])
    assert arrivals[0] < end - 2.0
    assert gaps.max() < 4.0, gaps
