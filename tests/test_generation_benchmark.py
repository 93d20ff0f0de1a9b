"""benchmarks/generation.py's own logic: its rows, ratios, targets and the docs table."""

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402
import generation  # noqa: E402
import make_figures  # noqa: E402
import pytest  # noqa: E402


def _row(implementation, mode, backend, length, ms, status="ok"):
    return {
        "implementation": implementation,
        "mode": mode,
        "backend": backend,
        "length": length,
        "status": status,
        "ms_per_token": ms,
        "new_tokens": length // 2,
        "prompt_length": length // 2,
        "first_call_seconds": 9.0,
        "compile_seconds": 8.0,
        "one_token_seconds": 0.5,
    }


def generation_rows():
    """jax meets every target, tensorflow misses every one; HF in between."""
    return [
        _row("keras_reformer", "cached", "jax", 1024, 2.0),
        _row("keras_reformer", "uncached", "jax", 1024, 20.0),
        _row("keras_reformer", "cached", "jax", 16384, 2.5),
        _row("keras_reformer", "uncached", "jax", 16384, 400.0),
        _row("keras_reformer", "cached", "tensorflow", 1024, 2.0),
        _row("keras_reformer", "uncached", "tensorflow", 1024, 20.0),
        _row("keras_reformer", "cached", "tensorflow", 16384, 40.0),
        _row("keras_reformer", "uncached", "tensorflow", 16384, 400.0),
        _row("keras_reformer", "cached", "torch", 1024, 10.0),
        _row("keras_reformer", "uncached", "torch", 1024, 0.0, status="timeout"),
        _row("hf_reformer", "cached", "torch", 1024, 8.0),
        _row("hf_reformer", "cached", "torch", 16384, 10.0),
    ]


def test_summary_puts_uncached_and_hf_beside_cached():
    summary = {(r["backend"], r["length"]): r for r in generation.summary_rows(generation_rows())}
    assert [key for key in summary] == [
        ("jax", 1024),
        ("jax", 16384),
        ("tensorflow", 1024),
        ("tensorflow", 16384),
        ("torch", 1024),
    ]
    jax_long = summary[("jax", 16384)]
    assert jax_long["speedup"] == 160.0 and jax_long["vs_hf"] == 4.0
    assert jax_long["hf_cached_ms"] == 10.0
    torch_short = summary[("torch", 1024)]
    assert torch_short["uncached_ms"] is None and "speedup" not in torch_short  # timed out
    assert torch_short["vs_hf"] == 0.8


def test_targets_pass_and_fail_as_the_issue_says():
    lines = generation.target_lines(generation_rows())
    assert "PASS: jax cached ms/token at L=16384 <= 1.5x that at L=1024 (1.25x)" in lines
    assert "FAIL: tensorflow cached ms/token at L=16384 <= 1.5x that at L=1024 (20.00x)" in lines
    assert "PASS: jax L=16384 cached >= 20x faster than uncached (160.0x)" in lines
    assert "FAIL: tensorflow L=16384 cached >= 20x faster than uncached (10.0x)" in lines
    assert "PASS: jax L=1024 cached faster than HF's cached (4.00x)" in lines
    assert "FAIL: tensorflow L=16384 cached faster than HF's cached (0.25x)" in lines
    assert not any(
        line.startswith(("PASS: torch", "FAIL: torch")) and "HF" in line for line in lines
    )  # the HF target is for JAX and TensorFlow
    assert len(lines) == 2 + 2 + 4  # torch: one length only, no uncached row


def test_a_failed_child_gives_one_row_per_mode():
    config = dict(implementation="keras_reformer", backend="jax", length=1024)
    rows = generation.expand(
        config,
        {"status": "timeout", "error": "no result", "wall_seconds": 900.0},
        0.5,
        ["cached", "uncached"],
    )
    assert [(r["mode"], r["status"]) for r in rows] == [
        ("cached", "timeout"),
        ("uncached", "timeout"),
    ]
    ok = generation.expand(
        config,
        {
            "status": "ok",
            "threads": 2,
            "rows": {"cached": {"ms_per_token": 1.0}, "uncached": {"status": "skipped"}},
        },
        0.5,
        ["cached"],
    )
    assert [(r["mode"], r["status"], r["threads"]) for r in ok] == [
        ("cached", "ok", 2),
        ("uncached", "skipped", 2),
    ]


def test_difference_row_and_token_cap():
    row = generation._difference_row(
        n=11,
        prompt_length=5,
        target=11,
        calibration=3,
        first=10.0,
        full_times=[2.0, 2.2, 2.1],
        one_times=[1.0, 1.1, 0.9],
    )
    assert row["ms_per_token"] == pytest.approx(110.0)  # (2.1 - 1.0) / 10 s
    assert row["compile_seconds"] == pytest.approx(10.0 - 1.0 - 2 * 0.11)
    assert generation._cap_new_tokens(8192, 32, 0.01, 20.0) == 2000
    assert generation._cap_new_tokens(8192, 32, 1.0, 20.0) == 32  # never below calibration
    assert generation._cap_new_tokens(512, 32, 0.001, 20.0) == 512
    assert generation._cap_new_tokens(8192, 32, 0.01, 0) == 8192


def test_hf_gets_our_bucket_count():
    import keras_reformer

    for length in (1024, 4096, 16384, 65536, 1000):
        ours = keras_reformer.ops.default_bucket_factors(
            keras_reformer.ops.default_num_buckets(length, 64), 64
        )
        expected = ours[0] if len(ours) == 1 else list(ours)
        assert generation.hf_num_buckets(length, 64) == expected, length


def test_arguments():
    args = generation.parse_args([])
    assert args.lengths == [1024, 4096, 16384] and args.new_tokens is None
    assert args.backends == ["jax", "tensorflow", "torch"] and args.hf
    args = generation.parse_args(
        ["--lengths", "4096,1024", "--new-tokens", "64", "--no-hf", "--modes", "cached"]
    )
    assert args.lengths == [1024, 4096] and args.new_tokens == 64 and not args.hf
    assert [c["implementation"] for c in generation.plan(args)] == ["keras_reformer"] * 6
    for bad in (["--modes", "fast"], ["--backends", "numpy"], ["--repeats", "0"]):
        with pytest.raises(SystemExit):
            generation.parse_args(bad)


@pytest.mark.backend_independent
def test_make_figures_writes_the_generation_table(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    result = common.make_result(
        "generation",
        "jax,tensorflow,torch",
        generation_rows(),
        command="python benchmarks/generation.py",
    )
    common.write_result(result, directory=results)
    make_figures.main(["--results", str(results), "--docs", str(docs)])
    table = (docs / "benchmarks" / "tables" / "generation.md").read_text()
    assert table.startswith("<!-- generated by python benchmarks/make_figures.py")
    assert "python benchmarks/generation.py" in table
    assert "| keras_reformer | cached | jax | 16384 | ok | 8192 | 8192 | 2.5 |" in table
    assert "| backend | L | cached ms/token | uncached ms/token | uncached / cached |" in table
    assert "| jax | 16384 | 2.5 | 400 | 160 | 10 | 4 |" in table
    assert "- PASS: jax L=16384 cached >= 20x faster than uncached (160.0x)" in table
    assert "- timeout: implementation=keras_reformer, backend=torch, length=1024" in table


def test_the_generation_guide_shows_the_generated_table():
    import re

    root = BENCHMARKS.parent
    page = (root / "docs" / "how-to" / "generation.md").read_text()
    assert re.findall(r'^--8<-- "([\w.-]+)"$', page, re.M) == ["generation.md"]
    table = (root / "docs" / "benchmarks" / "tables" / "generation.md").read_text()
    assert table.startswith("<!-- generated by ") or (
        table.startswith("<!-- placeholder") and "Not yet measured" in table
    )
    assert "how-to/generation.md" in (root / "mkdocs.yml").read_text()
