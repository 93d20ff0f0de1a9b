"""The benchmark scripts' own logic: slopes, pivots and the docs tables they write."""

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402
import longest_sequence  # noqa: E402
import make_figures  # noqa: E402
import pytest  # noqa: E402
import reversible_memory  # noqa: E402
import train_step  # noqa: E402


def memory_rows():
    mib = {
        ("reversible", 2): 100.0,
        ("reversible", 4): 104.0,
        ("reversible", 12): 120.0,
        ("plain", 2): 200.0,
        ("plain", 4): 400.0,
        ("plain", 12): 1200.0,
        ("reversible", 1): 50.0,
    }
    return [
        {
            "variant": variant,
            "backend": "jax",
            "length": 4096,
            "depth": depth,
            "backend_peak_mib": value,
            "status": "ok",
        }
        for (variant, depth), value in mib.items()
    ]


def test_slope_runs_from_depth_two_to_the_deepest():
    assert reversible_memory.mib_per_extra_layer({1: 50.0, 2: 100.0, 12: 120.0}) == 2.0
    assert reversible_memory.mib_per_extra_layer({1: 50.0, 2: 100.0}) != 2.0  # NaN: one depth


def test_depth_pivot_has_one_row_per_stack_and_length():
    pivot = {row["variant"]: row for row in make_figures.depth_pivot(memory_rows())}
    assert pivot["reversible"]["d12"] == 120.0 and pivot["reversible"]["d1"] == 50.0
    assert pivot["reversible"]["mib_per_extra_layer"] == 2.0
    assert pivot["plain"]["mib_per_extra_layer"] == 100.0


@pytest.mark.backend_independent
def test_make_figures_writes_the_memory_table(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    result = common.make_result("reversible_memory", "jax", memory_rows(), command="python x.py")
    common.write_result(result, directory=results)
    make_figures.main(["--results", str(results), "--docs", str(docs)])
    table = (docs / "benchmarks" / "tables" / "memory_vs_depth.md").read_text()
    # One backend: said once above the table instead of in every row.
    assert "- In every row: backend jax." in table
    assert "| 4096 | reversible | 50 | 100 | 104 | 120 | 2 |" in table
    assert "| 4096 | plain | - | 200 | 400 | 1200 | 100 |" in table
    assert (docs / "figures" / "benchmarks" / "reversible_memory.png").exists()
    assert json.loads(next(results.glob("*.json")).read_text())["benchmark"] == "reversible_memory"


@pytest.mark.backend_independent
def test_make_figures_shows_gpu_results_apart(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    rows = [
        {
            "implementation": "keras_reformer",
            "backend": "jax",
            "length": 4096,
            "depth": 2,
            "status": "ok",
            "tokens_per_second": 2000.0,
            "peak_rss_mib": 900.0,
            "training_rss_mib": 300.0,
            "device_peak_mib": 250.0,
        },
        {
            "implementation": "hf_reformer",
            "backend": "torch",
            "length": 4096,
            "depth": 2,
            "status": "ok",
            "tokens_per_second": 1000.0,
            "peak_rss_mib": 800.0,
            "training_rss_mib": 300.0,
            "device_peak_mib": 500.0,
        },
    ]
    result = common.make_result(
        "train_step", "jax,torch", rows, command="python x.py", config={"peers": ["hf_reformer"]}
    )
    result["machine"]["accelerator"] = "Some GPU"
    common.write_result(result, directory=results / "gpu")
    make_figures.main(["--results", str(results), "--docs", str(docs)])
    table = (docs / "benchmarks" / "tables" / "gpu.md").read_text()
    assert "GPU: Some GPU." in table
    assert "| keras_reformer | jax | 4096 | 2 | ok | 2000 |" in table
    assert "| jax | 4096 | 2 | hf_reformer | 2 |" in table  # the speed ratio ...
    assert "| 0.5 |" in table  # ... and the GPU memory ratio
    assert (
        "speed >= 2x HF met (2.00x)" in table and "0.5x HF" not in table
    )  # memory target withdrawn
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
        "python benchmarks/train_step.py --lengths 4096"
    )
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert common.command_line().startswith(
        "XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-reduce TF_ENABLE_ONEDNN_OPTS=0 python "
    )


def test_jax_cpu_flags_summary_takes_medians_over_rounds_and_compares_with_default():
    import jax_cpu_flags

    runs = [
        dict(length=4096, depth=2, variant=variant, status="ok", step_seconds_median=s,
             training_rss_mib=100 * s)
        for variant, s in [
            ("default", 2.0),
            ("default", 2.4),
            ("default", 9.0),
            ("no_ynn_reduce", 1.6),
            ("no_ynn_reduce", 1.5),
            ("no_ynn_reduce", 1.7),
        ]
    ]  # fmt: skip
    runs.append(dict(length=4096, depth=2, variant="no_ynn", status="ok", step_seconds_median=1.2))
    runs.append(dict(length=4096, depth=2, variant="no_ynn_reduce", status="timeout"))
    rows = {row["variant"]: row for row in jax_cpu_flags.summarise(runs)}
    assert rows["default"]["step_seconds_median"] == 2.4 and rows["default"]["speedup"] == 1.0
    assert rows["no_ynn_reduce"]["rounds"] == 3
    assert rows["no_ynn_reduce"]["speedup"] == 1.5  # 2.4 / 1.6
    assert rows["no_ynn_reduce"]["xla_flags"] == jax_cpu_flags.NO_YNN_REDUCE
    assert rows["default"]["training_rss_mib"] == 240.0
    assert rows["no_ynn_reduce"]["training_rss_mib"] == 160.0
    # A run without a memory record: no memory column value, the speed ratio still.
    assert rows["no_ynn"]["training_rss_mib"] is None and rows["no_ynn"]["speedup"] == 2.0


def test_best_of_rounds_keeps_each_configurations_fastest_round():
    def row(implementation, round_index, tokens, status="ok"):
        return dict(
            implementation=implementation,
            backend="torch",
            length=4096,
            depth=2,
            round=round_index,
            status=status,
            tokens_per_second=tokens,
            peak_rss_mib=100.0 + round_index,
        )

    rows = [
        row("hf_reformer", 0, 900.0),
        row("hf_reformer", 1, 1200.0),
        row("keras_reformer", 0, 1500.0),
        row("keras_reformer", 1, 0.0, "timeout"),
        dict(row("reformer_pytorch", 0, None, "skipped")),
    ]
    best = {
        r["implementation"]: r
        for r in common.best_of_rounds(rows, train_step.CONFIG_KEYS, "tokens_per_second")
    }
    assert best["hf_reformer"]["tokens_per_second"] == 1200.0
    assert best["hf_reformer"]["peak_rss_mib"] == 101.0  # the chosen round's own memory
    assert best["hf_reformer"]["tokens_per_second_rounds"] == [900.0, 1200.0]
    assert best["keras_reformer"]["tokens_per_second"] == 1500.0
    assert best["reformer_pytorch"]["status"] == "skipped"
    assert len(best) == 3


def test_best_of_rounds_can_keep_the_lowest_measure():
    rows = [
        dict(implementation="ours", depth=2, status="ok", host_ms=30.0, aten_ops=10),
        dict(implementation="ours", depth=2, status="ok", host_ms=20.0, aten_ops=10),
        dict(implementation="ours", depth=6, status="ok", host_ms=50.0, aten_ops=30),
    ]
    best = common.best_of_rounds(rows, ("implementation", "depth"), "host_ms", False)
    assert [r["host_ms"] for r in best] == [20.0, 50.0]
    assert best[0]["host_ms_rounds"] == [30.0, 20.0] and "host_ms_rounds" not in best[1]


def test_int_list_parses_comma_separated_integers():
    assert common.int_list("1024,4096,") == [1024, 4096]
    args = train_step.parse_args(["--lengths", "4096,16384", "--depths", "2"])
    assert args.lengths == [4096, 16384] and args.depths == [2]


def test_malloc_option_chooses_the_childrens_allocator_environment():
    def env(*argv):
        return train_step.child_env(train_step.parse_args(["--lengths", "4096", *argv]))

    assert env() == {"MALLOC_MMAP_THRESHOLD_": "131072"}  # RSS follows live tensors
    assert env("--malloc", "default") == env("--default-malloc") == {}
    assert env("--malloc", "no-mmap")["MALLOC_MMAP_MAX_"] == "0"
    with pytest.raises(SystemExit):
        env("--malloc", "jemalloc")


def test_columns_shared_by_every_row_are_said_once():
    rows = [
        dict(backend="torch", status="ok", threads=2, load_average_before=1.5, length=4096),
        dict(backend="torch", status="ok", threads=2, load_average_before=1.25, length=16384),
    ]
    columns = ["backend", "length", "status", "threads", "load_average_before"]
    assert make_figures._shared_columns(rows, columns) == (
        "backend torch, status ok, threads 2, load average before 1.25-1.5"
    )
    rows[1]["backend"] = "jax"  # a column that differs keeps them all in the table
    assert make_figures._shared_columns(rows, columns) == ""


def test_torch_speed_target_is_one_and_a_half_hf_on_a_cpu_and_one_on_a_gpu():
    def row(implementation, seconds):
        return dict(
            implementation=implementation,
            backend="torch",
            length=4096,
            depth=2,
            status="ok",
            tokens_per_second=4096 / seconds,
            peak_rss_mib=1.0,
            training_rss_mib=1.0,
            step_peak_rss_mib=1.0,
        )

    rows = [row("keras_reformer", 1.0), row("hf_reformer", 1.4)]  # 1.4x
    (cpu,) = train_step.target_lines(rows)
    (gpu,) = train_step.target_lines(rows, on_gpu=True)
    assert "speed >= 1.5x HF MISSED (1.40x)" in cpu
    assert "speed >= 1x HF met (1.40x)" in gpu


def test_lsh_attention_builds_the_duplicate_corrected_variant():
    import lsh_attention

    layers = {name: lsh_attention._build(name, 128)[0] for name in ("lsh", "lsh_dedup")}
    assert layers["lsh_dedup"].correct_duplicates and not layers["lsh"].correct_duplicates
    assert set(lsh_attention.IMPLEMENTATIONS) == {"lsh", "lsh_dedup", "full"}


# === benchmarks/ablations.py: the paper's ablations ===


def _ablation_result(benchmark, variant, rows, directory, steps=100, date=None):
    import ablations

    args = ablations.parse_args(["--quick", "--steps", str(steps)])
    config_of = {
        "ablation_duplication": ablations.duplication_config,
        "ablation_lm": ablations.lm_config,
        "ablation_cost": ablations.cost_config,
    }
    result = common.make_result(
        benchmark,
        "jax",
        rows,
        command="python benchmarks/ablations.py",
        config=config_of[benchmark](args, variant, "jax"),
    )
    if date:
        result["date"] = date
    return common.write_result(result, directory, stem=f"{benchmark}_{variant}")


def _duplication_rows(trained, accuracy):
    return [
        {
            "trained_with": trained,
            "evaluated_with": evaluated,
            "accuracy": accuracy + i / 100,
            "training_seconds": 10.0,
            "status": "ok",
        }
        for i, evaluated in enumerate(("full", "lsh1", "lsh2", "lsh4", "lsh8"))
    ]


def _curve_rows(variant, final_bits):
    rows = [
        {
            "variant": variant,
            "step": step,
            "bits_per_byte": final_bits + 1.0 / step,
            "training_seconds": step / 10,
            "status": "ok",
        }
        for step in (5, 10)
    ]
    rows[-1].update(final=True, steps_per_second=10.0)
    return rows


def test_ablation_arguments_fill_sizes_from_defaults_or_quick():
    import ablations

    args = ablations.parse_args([])
    assert args.experiments == list(ablations.EXPERIMENTS)
    assert args.dup_length == 256 and args.length == 512 and args.chunk_length == 32
    quick = ablations.parse_args(["--quick", "--length", "256", "--experiments", "lm,cost"])
    assert quick.length == 256 and quick.steps == ablations.QUICK["steps"]  # flags win
    assert quick.experiments == ["lm", "cost"]
    assert ablations.parse_args(["--cost-lengths", "512,1024"]).cost_lengths == [512, 1024]
    for bad in (
        ["--experiments", "lm,nope"],
        ["--steps", "7", "--eval-every", "5"],
        ["--cost-variants", "lsh0"],
        ["--dup-length", "255"],
    ):
        try:
            ablations.parse_args(bad)
        except SystemExit:
            continue
        raise AssertionError(f"accepted {bad}")


def test_ablation_variants_map_to_model_arguments_and_share_the_full_run():
    import ablations

    assert ablations.variant_options("lsh8") == {
        "attention_layers": "lsh",
        "num_hashes": 8,
        "shared_qk": True,
        "reversible": True,
    }
    assert ablations.variant_options("full_separate_qk")["shared_qk"] is False
    assert ablations.variant_options("full_nonreversible")["reversible"] is False
    assert ablations.lm_variants(["lm", "shared_qk", "reversible"]) == [
        "full",
        "lsh1",
        "lsh2",
        "lsh4",
        "lsh8",
        "full_separate_qk",
        "full_nonreversible",
    ]
    assert ablations.lm_variants(["reversible"]) == ["full", "full_nonreversible"]
    plan = ablations.plan(
        ablations.parse_args(["--quick", "--experiments", "shared_qk,cost"]), "jax"
    )
    assert [(benchmark, variant) for _, benchmark, variant, _ in plan] == [
        ("ablation_lm", "full"),
        ("ablation_lm", "full_separate_qk"),
        ("ablation_cost", "full"),
        ("ablation_cost", "lsh4"),
    ]


def test_ablation_reruns_skip_only_results_of_the_same_configuration(tmp_path):
    import ablations

    _ablation_result("ablation_lm", "lsh4", _curve_rows("lsh4", 2.0), tmp_path, steps=10)
    failed = [dict(row, status="failed") for row in _curve_rows("lsh2", 2.0)]
    _ablation_result("ablation_lm", "lsh2", failed, tmp_path, steps=10)
    results = ablations.quiet_load_results(tmp_path)
    same = ablations.parse_args(["--quick", "--steps", "10"])
    assert (
        ablations.existing_result(results, "ablation_lm", ablations.lm_config(same, "lsh4", "jax"))
        is not None
    )
    assert (
        ablations.existing_result(
            results,
            "ablation_lm",  # failed: rerun
            ablations.lm_config(same, "lsh2", "jax"),
        )
        is None
    )
    longer = ablations.parse_args(["--quick", "--steps", "20"])
    assert (
        ablations.existing_result(
            results, "ablation_lm", ablations.lm_config(longer, "lsh4", "jax")
        )
        is None
    )
    assert (
        ablations.existing_result(
            results, "ablation_lm", ablations.lm_config(same, "lsh4", "torch")
        )
        is None
    )
    assert ablations.quiet_load_results(tmp_path / "missing") == []


@pytest.mark.backend_independent
def test_make_figures_writes_the_ablation_grid_curves_and_cost(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    _ablation_result(
        "ablation_duplication",
        "lsh4",
        _duplication_rows("lsh4", 0.5),
        results,
        date="2026-01-01T00:00:00+00:00",
    )
    _ablation_result("ablation_duplication", "lsh4", _duplication_rows("lsh4", 0.9), results)
    _ablation_result("ablation_duplication", "full", _duplication_rows("full", 0.8), results)
    for variant, bits in (("full", 2.0), ("lsh2", 2.5), ("full_separate_qk", 2.1)):
        _ablation_result("ablation_lm", variant, _curve_rows(variant, bits), results, steps=10)
    cost = [
        {
            "variant": "lsh4",
            "length": length,
            "status": "ok",
            "step_seconds_median": s,
            "tokens_per_second": length / s,
            "backend_peak_mib": m,
            "backend": "jax",
        }
        for length, s, m in ((512, 0.1, 20.0), (1024, 0.2, 40.0))
    ]
    _ablation_result("ablation_cost", "lsh4", cost, results)
    make_figures.main(["--results", str(results), "--docs", str(docs)])
    tables = docs / "benchmarks" / "tables"
    grid = (tables / "ablation_duplication.md").read_text()
    assert grid.startswith("<!-- generated by python benchmarks/make_figures.py")
    assert "| trained with | full | LSH-1 | LSH-2 | LSH-4 | LSH-8 | steps | training s |" in grid
    assert "| full | 80.0% | 81.0% | 82.0% | 83.0% | 84.0% |" in grid
    assert "| LSH-4 | 90.0% | 91.0% |" in grid and "| LSH-4 | 50.0% |" not in grid  # newest run
    assert grid.index("| full | 80.0%") < grid.index("| LSH-4 | 90.0%")  # the paper's row order
    lm = (tables / "ablation_lm.md").read_text()
    assert "![ablation_lm_curves](../figures/benchmarks/ablation_lm_curves.png)" in lm
    assert "| full | 2.100 | 10 | 1 | 10 | jax |" in lm
    assert "| full, separate QK | 2.200 |" in lm and "| LSH-2 | 2.600 |" in lm
    assert "ablation_shared_qk_curves.png" in (tables / "ablation_shared_qk.md").read_text()
    assert "ablation_reversible_curves.png" in (tables / "ablation_reversible.md").read_text()
    assert "| LSH-4 | 1024 | ok | 0.2 | 5120 | 40 |" in (tables / "ablation_cost.md").read_text()
    figures = docs / "figures" / "benchmarks"
    for name in (
        "ablation_lm_curves",
        "ablation_shared_qk_curves",
        "ablation_cost_time",
        "ablation_cost_memory",
    ):
        assert (figures / f"{name}.png").exists(), name
    assert not (tables / "ablation_lm_.md").exists()


def test_transformer_comparison_page_includes_generated_or_placeholder_tables():
    import re

    docs = BENCHMARKS.parent / "docs"
    page = (docs / "benchmarks" / "transformer-comparison.md").read_text()
    included = re.findall(r'^--8<-- "([\w.-]+)"$', page, re.M)
    assert included == [
        "ablation_duplication.md",
        "ablation_lm.md",
        "ablation_shared_qk.md",
        "ablation_reversible.md",
        "ablation_cost.md",
    ]
    for name in included:
        text = (docs / "benchmarks" / "tables" / name).read_text()
        assert text.startswith("<!-- generated by ") or (
            text.startswith("<!-- placeholder") and "Not yet measured" in text
        ), name
    assert "## Reading" in page
    assert "benchmarks/transformer-comparison.md" in (BENCHMARKS.parent / "mkdocs.yml").read_text()


class _Event:
    """A stand-in for a torch.profiler event: a name and a parent."""

    def __init__(self, name, parent=None):
        self.name, self.cpu_parent = name, parent


@pytest.mark.backend_independent
def test_dispatch_attributes_each_op_to_our_innermost_frame_and_its_issuer():
    import dispatch

    ours = _Event("keras_reformer/ops/sorting.py(20): sort_by_bucket")
    keras_frame = _Event("keras/src/ops/numpy.py(9): argsort", ours)
    events = [
        _Event("aten::sort", keras_frame),
        _Event("aten::to", keras_frame),
        _Event("aten::add", ours),
        _Event("aten::mm"),
        _Event("Python call", ours),
    ]
    sites, issuers = dispatch.attribute(events, "keras_reformer/")
    assert sites == {"ops/sorting.py(20): sort_by_bucket": 3, "(outside)": 1}
    assert issuers == {"keras": 2, "keras_reformer": 1, "autograd engine": 1}


@pytest.mark.backend_independent
def test_dispatch_summary_and_docs_table_compare_ours_with_hf(tmp_path):
    import dispatch

    rows = [
        {
            "implementation": impl,
            "depth": depth,
            "status": "ok",
            "aten_ops": ops,
            "host_ms": ms,
            "threads": 1,
            "sites": {},
            "issuers": {},
        }
        for impl, depth, ops, ms in [
            ("keras_reformer", 2, 6000, 90.0),
            ("keras_reformer_torch_loop", 2, 4500, 54.0),
            ("hf_reformer", 2, 3000, 45.0),
            ("keras_reformer", 6, 15000, 300.0),
        ]
    ]
    # One row per way of driving ours, each beside HF at its depth (depth 6 has no HF row).
    assert dispatch.summary_rows(rows) == [
        {
            "depth": 2,
            "driven_by": "train_on_batch",
            "ours_aten_ops": 6000,
            "hf_aten_ops": 3000,
            "aten_ops_ratio": 2.0,
            "ours_host_ms": 90.0,
            "hf_host_ms": 45.0,
            "host_ms_ratio": 2.0,
        },
        {
            "depth": 2,
            "driven_by": "torch loop",
            "ours_aten_ops": 4500,
            "hf_aten_ops": 3000,
            "aten_ops_ratio": 1.5,
            "ours_host_ms": 54.0,
            "hf_host_ms": 45.0,
            "host_ms_ratio": 1.2,
        },
    ]
    results, docs = tmp_path / "results", tmp_path / "docs"
    common.write_result(
        common.make_result("dispatch", "torch", rows, command="python benchmarks/dispatch.py"),
        directory=results,
    )
    make_figures.main(["--results", str(results), "--docs", str(docs)])
    table = (docs / "benchmarks" / "tables" / "dispatch.md").read_text()
    assert "| 2 | train_on_batch | 6000 | 3000 | 2 | 90 | 45 | 2 |" in table
    assert "| 2 | torch loop | 4500 | 3000 | 1.5 | 54 | 45 | 1.2 |" in table
    assert "python benchmarks/dispatch.py" in table


# === The Benchmarks page: its first screen and the folded older runs ===


def _train_step_result(directory, date, ours, hf, backends=("jax", "torch"), gpu=False):
    """A train_step result at L 4096, depth 2: ours at `ours` tokens/s on each backend,
    HF at `hf`; training RSS 300 MiB for ours, 400 for HF (GPU peak 100 and 200)."""
    rows = [
        {
            "implementation": "keras_reformer",
            "backend": backend,
            "length": 4096,
            "depth": 2,
            "status": "ok",
            "tokens_per_second": ours,
            "peak_rss_mib": 900.0,
            "training_rss_mib": 300.0,
            "device_peak_mib": 100.0 if gpu else None,
        }
        for backend in backends
    ]
    rows.append(
        {
            "implementation": "hf_reformer",
            "backend": "torch",
            "length": 4096,
            "depth": 2,
            "status": "ok",
            "tokens_per_second": hf,
            "peak_rss_mib": 800.0,
            "training_rss_mib": 400.0,
            "device_peak_mib": 200.0 if gpu else None,
        }
    )
    result = common.make_result(
        "train_step",
        ",".join(backends),
        rows,
        command="python benchmarks/train_step.py",
        config={"peers": ["hf_reformer"]},
    )
    result["date"] = date
    if gpu:
        result["machine"]["accelerator"] = "Some GPU"
    return common.write_result(result, directory)


@pytest.mark.backend_independent
def test_summary_quotes_the_newest_ratios_per_backend_with_their_files(tmp_path):
    import summary

    results, docs = tmp_path / "results", tmp_path / "docs"
    old = _train_step_result(results, "2026-01-01T00:00:00+00:00", 3000.0, 1000.0)
    new = _train_step_result(
        results, "2026-01-02T00:00:00+00:00", 2000.0, 1000.0, backends=("jax",)
    )
    gpu = _train_step_result(
        results / "gpu", "2026-01-03T00:00:00+00:00", 500.0, 1000.0, backends=("torch",), gpu=True
    )
    lsh_rows = [
        {
            "implementation": kind,
            "backend": "jax",
            "length": length,
            "status": "ok",
            "step_seconds_median": seconds,
            "backend_peak_mib": mib,
        }
        for kind, length, seconds, mib in (
            ("lsh", 1024, 0.5, 50.0),
            ("full", 1024, 0.25, 25.0),
            ("lsh", 4096, 2.0, 200.0),
            ("full", 4096, 8.0, 800.0),
            ("lsh", 16384, 8.0, 800.0),
        )
    ]
    lsh_rows.append(
        {"implementation": "full", "backend": "jax", "length": 16384, "status": "skipped"}
    )
    attention = common.write_result(
        common.make_result("lsh_attention", "jax", lsh_rows, command="python x.py"), results
    )
    make_figures.main(["--results", str(results), "--docs", str(docs)])
    text = (docs / "benchmarks" / "tables" / summary.SUMMARY_FILE).read_text()
    assert text.startswith("<!-- generated by python benchmarks/make_figures.py from ")
    for path in (new, old, gpu, attention):
        assert path.name in text
    hf_part, full_part = text.split("**Against full attention (one attention layer)**")

    def table_rows(part):
        return {
            cells[0]: cells
            for cells in (
                [c.strip() for c in line.strip("|").split("|")]
                for line in part.splitlines()
                if line.startswith("| ")
            )
        }

    row = table_rows(hf_part)
    # JAX: the newest file's ratio (2000 / 1000), not the older 3
    assert row["JAX"][1:4] == ["L 4096: 2", "L 4096: 0.75", "2"] and new.name in row["JAX"][4]
    # PyTorch on a CPU: only the older file has it
    assert row["PyTorch"][1:3] == ["L 4096: 3", "L 4096: 0.75"] and old.name in row["PyTorch"][4]
    assert set(row) == {"backend", "JAX", "PyTorch", "PyTorch (GPU)"}  # no TensorFlow
    # on a GPU: the allocator's peak, and the GPU named
    assert row["PyTorch (GPU)"][1:3] == ["L 4096: 0.5", "L 4096: 0.5"]
    assert "Some GPU (GPU)" in row["PyTorch (GPU)"][4]
    # full attention: full time / LSH time and LSH / full memory, per length; the skip named
    full = table_rows(full_part)["JAX"]
    assert full[1:4] == ["1024 / 4096<br>(full attention skipped at 16384)", "0.5 / 4", "2 / 0.25"]
    assert attention.name in full[4]


def test_summary_shows_a_range_over_depths_at_each_length():
    import summary

    ratios = [{"length": 4096, "speed_ratio": r} for r in (1.852, 2.081)] + [
        {"length": 16384, "speed_ratio": 2.2}
    ]
    assert summary.per_length(ratios, "speed_ratio") == "L 4096: 1.85–2.08<br>L 16384: 2.2"
    assert (
        summary.short_machine(
            {"machine": {"cpu": "Intel(R) Xeon(R) Processor @ 2.80GHz", "cores": 2}}
        )
        == "Intel Xeon @ 2.80GHz, 2 cores"
    )


@pytest.mark.backend_independent
def test_older_runs_of_a_benchmark_are_folded_below_the_newest(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    _train_step_result(results, "2026-01-01T00:00:00+00:00", 3000.0, 1000.0)
    _train_step_result(results, "2026-01-02T00:00:00+00:00", 2000.0, 1000.0)
    _train_step_result(results, "2026-01-03T00:00:00+00:00", 1500.0, 1000.0)
    make_figures.main(["--results", str(results), "--docs", str(docs)])
    table = (docs / "benchmarks" / "tables" / "train_step.md").read_text()
    newest, folded = table.split('??? note "Older runs (2), newest first"\n')
    assert newest.count("#### train_step, ") == 1 and "2026-01-03" in newest
    assert "| keras_reformer | jax | 4096 | 2 | ok | 1500 |" in newest
    assert "| implementation | backend | L | depth | status | tokens / s |" in newest
    assert "#### " not in folded  # no headings in the page's contents that lead nowhere
    assert folded.index("**train_step, 2026-01-02") < folded.index("**train_step, 2026-01-01")
    assert all(line.startswith("    ") for line in folded.splitlines() if line)
    assert "    | keras_reformer | jax | 4096 | 2 | ok | 3000 |" in folded


def test_benchmarks_page_leads_with_the_summary_and_can_fold():
    import re

    import summary

    root = BENCHMARKS.parent
    page = (root / "docs" / "benchmarks" / "index.md").read_text()
    included = re.findall(r'^--8<-- "([\w.-]+)"$', page, re.M)
    assert included[0] == summary.SUMMARY_FILE
    first_section = page.index("\n## ", page.index("## "))  # the end of the first section
    assert page.index(f'--8<-- "{summary.SUMMARY_FILE}"') < first_section
    assert {"dispatch.md", "torch_compile.md", "train_step.md"} <= set(included)
    assert "pymdownx.details" in (root / "mkdocs.yml").read_text()  # `??? note` folds


def _longest_row(implementation, mode, length, status, training, backend="jax"):
    return dict(implementation=implementation, backend=backend, mode=mode, depth=2,
                length=length, status=status, step_seconds_median=float(length) / 1000,
                peak_rss_mib=training + 500.0, rss_after_build_mib=500.0,
                training_rss_mib=training)  # fmt: skip


@pytest.mark.backend_independent
def test_longest_sequence_summary_keeps_each_searchs_longest_ok_try_and_the_hf_ratio(tmp_path):
    rows = [
        _longest_row("keras_reformer", "on", 16384, "ok", 600.0),
        _longest_row("keras_reformer", "on", 32768, "ok", 1200.0),
        _longest_row("keras_reformer", "on", 65536, "killed", 20000.0),
        _longest_row("hf_reformer", "-", 16384, "ok", 2400.0, backend="torch"),
        _longest_row("hf_reformer", "-", 32768, "failed", 0.0, backend="torch"),
    ]
    summary = {(r["implementation"], r["mode"]): r for r in longest_sequence.summary_rows(rows)}
    ours, hf = summary[("keras_reformer", "on")], summary[("hf_reformer", "-")]
    assert (ours["longest_length"], ours["training_rss_mib"]) == (32768, 1200.0)
    assert ours["stopped_by"] == "killed at 65536: RSS 20500 MiB"
    assert hf["longest_length"] == 16384 and hf["stopped_by"].startswith("failed at 32768")
    (ratio,) = longest_sequence.ratio_rows(rows)
    assert (ratio["length"], ratio["ratio"]) == (16384, 0.25)

    results, docs = tmp_path / "results", tmp_path / "docs"
    result = common.make_result("longest_sequence", "jax,torch", rows, command="python x.py")
    common.write_result(result, directory=results)
    make_figures.main(["--results", str(results), "--docs", str(docs)])
    table = (docs / "benchmarks" / "tables" / "longest_sequence.md").read_text()
    assert "32768" in table and "killed at 65536" in table and "0.25" in table


@pytest.mark.backend_independent
def test_longest_sequence_over_runs_takes_each_searchs_longest_try_from_any_file():
    first = dict(_path="results/first.json", rows=[
        _longest_row("keras_reformer", "on", 16384, "ok", 600.0),
        _longest_row("keras_reformer", "on", 32768, "skipped", 0.0),
        _longest_row("keras_reformer", "off", 16384, "ok", 900.0),
        _longest_row("keras_reformer", "off", 32768, "killed", 9000.0),
    ])  # fmt: skip
    second = dict(_path="results/second.json", rows=[
        _longest_row("keras_reformer", "on", 32768, "ok", 1200.0),
        _longest_row("keras_reformer", "on", 65536, "ok", 2400.0),
    ])  # fmt: skip
    rows = {r["mode"]: r for r in longest_sequence.longest_over_runs([first, second])}
    on, off = rows["on"], rows["off"]
    # A later run can pass where an earlier one was skipped: its own longest try counts.
    assert (on["longest_length"], on["file"], on["stopped_by"]) == (
        65536,
        "second.json",
        "not tried longer",
    )
    assert on["peak_rss_mib"] == 2900.0
    assert (off["longest_length"], off["file"], off["stopped_by"]) == (
        16384,
        "first.json",
        "killed at 32768",
    )
