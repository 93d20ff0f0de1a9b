"""The benchmark scripts' own logic: slopes, pivots and the docs tables they write."""

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402
import make_figures  # noqa: E402
import reversible_memory  # noqa: E402


def memory_rows():
    mib = {("reversible", 2): 100.0, ("reversible", 4): 104.0, ("reversible", 12): 120.0,
           ("plain", 2): 200.0, ("plain", 4): 400.0, ("plain", 12): 1200.0,
           ("reversible", 1): 50.0}
    return [{"variant": variant, "backend": "jax", "length": 4096, "depth": depth,
             "backend_peak_mib": value, "status": "ok"}
            for (variant, depth), value in mib.items()]


def test_slope_runs_from_depth_two_to_the_deepest():
    assert reversible_memory.mib_per_extra_layer({1: 50.0, 2: 100.0, 12: 120.0}) == 2.0
    assert reversible_memory.mib_per_extra_layer({1: 50.0, 2: 100.0}) != 2.0  # NaN: one depth


def test_depth_pivot_has_one_row_per_stack_and_length():
    pivot = {row["variant"]: row for row in make_figures.depth_pivot(memory_rows())}
    assert pivot["reversible"]["d12"] == 120.0 and pivot["reversible"]["d1"] == 50.0
    assert pivot["reversible"]["mib_per_extra_layer"] == 2.0
    assert pivot["plain"]["mib_per_extra_layer"] == 100.0


def test_make_figures_writes_the_memory_table(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    result = common.make_result("reversible_memory", "jax", memory_rows(), command="python x.py")
    common.write_result(result, directory=results)
    make_figures.main(["--results", str(results), "--docs", str(docs)])
    table = (docs / "benchmarks" / "tables" / "memory_vs_depth.md").read_text()
    assert "| jax | 4096 | reversible | 50 | 100 | 104 | 120 | 2 |" in table
    assert "| jax | 4096 | plain | - | 200 | 400 | 1200 | 100 |" in table
    assert (docs / "figures" / "benchmarks" / "reversible_memory.png").exists()
    assert json.loads(next(results.glob("*.json")).read_text())["benchmark"] == "reversible_memory"
