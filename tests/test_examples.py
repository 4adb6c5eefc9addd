"""Every example script runs (the docs gallery executes them too)."""

import pathlib
import runpy

import matplotlib
import pytest
import sklearn

EXAMPLES = sorted((pathlib.Path(__file__).parents[1] / "examples").rglob("plot_*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_runs(script, capsys):
    matplotlib.use("Agg")
    # An example may change scikit-learn's settings (skada turns metadata
    # routing on when imported); the tests after it get theirs back.
    with sklearn.config_context():
        runpy.run_path(str(script), run_name="__main__")
    assert capsys.readouterr().out.strip(), "an example prints what it shows"
