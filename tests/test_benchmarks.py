"""The benchmark scripts' own logic: slopes, pivots and the docs tables they write."""

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402
import make_figures  # noqa: E402
import reversible_memory  # noqa: E402
import train_step  # noqa: E402


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


def test_make_figures_shows_gpu_results_apart(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    rows = [{"implementation": "keras_reformer", "backend": "jax", "length": 4096, "depth": 2,
             "status": "ok", "tokens_per_second": 2000.0, "peak_rss_mib": 900.0,
             "training_rss_mib": 300.0, "device_peak_mib": 250.0},
            {"implementation": "hf_reformer", "backend": "torch", "length": 4096, "depth": 2,
             "status": "ok", "tokens_per_second": 1000.0, "peak_rss_mib": 800.0,
             "training_rss_mib": 300.0, "device_peak_mib": 500.0}]
    result = common.make_result("train_step", "jax,torch", rows, command="python x.py",
                                config={"peers": ["hf_reformer"]})
    result["machine"]["accelerator"] = "Some GPU"
    common.write_result(result, directory=results / "gpu")
    make_figures.main(["--results", str(results), "--docs", str(docs)])
    table = (docs / "benchmarks" / "tables" / "gpu.md").read_text()
    assert "GPU: Some GPU." in table
    assert "| keras_reformer | jax | 4096 | 2 | ok | 2000 |" in table
    assert "| jax | 4096 | 2 | hf_reformer | 2 |" in table  # the speed ratio ...
    assert "| 0.5 |" in table  # ... and the GPU memory ratio
    assert "speed >= 2x HF met (2.00x), GPU peak <= 0.5x HF met (0.50x)" in table
    assert not (docs / "benchmarks" / "tables" / "train_step.md").exists()  # CPU tables only


def test_device_memory_is_read_exactly_when_there_is_a_gpu():
    import keras

    peak = common.device_peak_mib(keras.backend.backend())
    assert (peak is None) == (common.accelerator_name() == "none")


def test_time_estimates_skip_only_on_a_cpu():
    assert "GiB" in train_step.skip_reason(2048, 10, limit_mib=1024, timeout=60)
    assert "timeout" in train_step.skip_reason(100, 500, limit_mib=1024, timeout=60)
    assert train_step.skip_reason(100, 500, limit_mib=1024, timeout=60, on_gpu=True) is None
    assert "GiB" in train_step.skip_reason(2048, 10, limit_mib=1024, timeout=60, on_gpu=True)
    assert train_step.skip_reason(100, 10, limit_mib=1024, timeout=60) is None


def test_command_line_carries_the_xla_flags_that_shaped_the_numbers(monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / "train_step.py"), "--lengths", "4096"])
    for name in common.RECORDED_ENV:
        monkeypatch.delenv(name, raising=False)
    assert common.command_line() == "python benchmarks/train_step.py --lengths 4096"
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=-reduce")
    assert common.command_line() == (
        "XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-reduce "
        "python benchmarks/train_step.py --lengths 4096")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert common.command_line().startswith("XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type"
                                            "=-reduce TF_ENABLE_ONEDNN_OPTS=0 python ")


def test_jax_cpu_flags_summary_takes_medians_over_rounds_and_compares_with_default():
    import jax_cpu_flags

    runs = [dict(length=4096, depth=2, variant=variant, status="ok", step_seconds_median=s)
            for variant, s in [("default", 2.0), ("default", 2.4), ("default", 9.0),
                               ("no_ynn_reduce", 1.6), ("no_ynn_reduce", 1.5),
                               ("no_ynn_reduce", 1.7)]]
    runs.append(dict(length=4096, depth=2, variant="no_ynn_reduce", status="timeout"))
    rows = {row["variant"]: row for row in jax_cpu_flags.summarise(runs)}
    assert rows["default"]["step_seconds_median"] == 2.4 and rows["default"]["speedup"] == 1.0
    assert rows["no_ynn_reduce"]["rounds"] == 3
    assert rows["no_ynn_reduce"]["speedup"] == 1.5  # 2.4 / 1.6
    assert rows["no_ynn_reduce"]["xla_flags"] == jax_cpu_flags.NO_YNN_REDUCE


def test_best_of_rounds_keeps_each_configurations_fastest_round():
    def row(implementation, round_index, tokens, status="ok"):
        return dict(implementation=implementation, backend="torch", length=4096, depth=2,
                    round=round_index, status=status, tokens_per_second=tokens,
                    peak_rss_mib=100.0 + round_index)

    rows = [row("hf_reformer", 0, 900.0), row("hf_reformer", 1, 1200.0),
            row("keras_reformer", 0, 1500.0), row("keras_reformer", 1, 0.0, "timeout"),
            dict(row("reformer_pytorch", 0, None, "skipped"))]
    best = {r["implementation"]: r for r in train_step.best_of_rounds(rows)}
    assert best["hf_reformer"]["tokens_per_second"] == 1200.0
    assert best["hf_reformer"]["peak_rss_mib"] == 101.0  # the chosen round's own memory
    assert best["hf_reformer"]["tokens_per_second_rounds"] == [900.0, 1200.0]
    assert best["keras_reformer"]["tokens_per_second"] == 1500.0
    assert best["reformer_pytorch"]["status"] == "skipped"
    assert len(best) == 3


def test_int_list_parses_comma_separated_integers():
    assert common.int_list("1024,4096,") == [1024, 4096]
    args = train_step.parse_args(["--lengths", "4096,16384", "--depths", "2"])
    assert args.lengths == [4096, 16384] and args.depths == [2]


def test_lsh_attention_builds_the_duplicate_corrected_variant():
    import lsh_attention

    layers = {name: lsh_attention._build(name, 128)[0] for name in ("lsh", "lsh_dedup")}
    assert layers["lsh_dedup"].correct_duplicates and not layers["lsh"].correct_duplicates
    assert set(lsh_attention.IMPLEMENTATIONS) == {"lsh", "lsh_dedup", "full"}
