"""Figures and tables of the docs from every JSON result in `benchmarks/results/`.

Reads all result files (schema in `benchmarks/common.py`) of `train_step.py`,
`lsh_attention.py`, `reversible_memory.py` and any other benchmark, and writes

- `docs/figures/benchmarks/*.png`: throughput and memory vs length of the train
  step per backend and peer; memory vs length, LSH vs full attention; memory vs
  depth, reversible vs plain stack (whichever results exist);
- `docs/benchmarks/tables/<benchmark>.md`: one table per result file, dated,
  with the machine, the package versions and the command that reproduces it
  (`docs/benchmarks/index.md` includes these files; see `TABLE_FILES`), the
  newest run first and the older ones folded into a collapsible block; this
  includes the results of `examples/duplication.py` and `examples/char_lm.py`
  recorded by `example_results.py`;
- `docs/benchmarks/tables/gpu.md`: the results in `benchmarks/results/gpu/`
  (measured on a GPU machine), as tables only;
- `docs/benchmarks/tables/summary.md`: the page's first screen, the latest
  ratios per backend against Hugging Face's Reformer and against full
  attention (see `summary.py`);
- `docs/benchmarks/tables/ablation_*.md` and `docs/figures/benchmarks/ablation_*.png`:
  the results of `benchmarks/ablations.py` (duplication grid, bits-per-byte curves
  and final table, cost against length), included into
  `docs/benchmarks/transformer-comparison.md` (see `write_ablation_tables`).

Nothing is typed by hand: run it again after a benchmark to refresh the docs.

Usage:
    python benchmarks/make_figures.py [--results benchmarks/results] [--docs docs]
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ablations  # noqa: E402
import common  # noqa: E402
import dispatch  # noqa: E402
import generation  # noqa: E402
import jax_cpu_flags  # noqa: E402
import longest_sequence  # noqa: E402
import summary  # noqa: E402
import torch_compile  # noqa: E402
import train_step  # noqa: E402

# docs/benchmarks/tables/<file> per benchmark (placeholders named by the docs page).
TABLE_FILES = {
    "train_step": "train_step.md",
    "lsh_attention": "attention_speed.md",
    "reversible_memory": "memory_vs_depth.md",
    "duplication": "duplication.md",
    "char_lm": "char_lm.md",
    "jax_cpu_flags": "jax_cpu_flags.md",
    "generation": "generation.md",
    "longest_sequence": "longest_sequence.md",
}
# Results measured on a GPU machine: a subfolder, shown as tables on their own.
GPU_RESULTS = "gpu"
GPU_TABLE_FILE = "gpu.md"
SERIES_KEYS = ("implementation", "variant", "attention", "stack")
MEMORY_KEYS = ("peak_rss_mib", "training_rss_mib", "backend_peak_mib")
# The backend's own numbers first (lsh_attention, reversible_memory).
OWN_MEMORY_FIRST = ("backend_peak_mib", "training_rss_mib", "peak_rss_mib")
LINE_STYLES = {"jax": "-", "tensorflow": "--", "torch": ":"}
TABLE_FIRST = (
    "implementation",
    "variant",
    "attention",
    "stack",
    "backend",
    "length",
    "depth",
    "batch",
    "status",
    "tokens_per_second",
    "step_seconds_median",
    "peak_rss_mib",
    "training_rss_mib",
    "step_peak_rss_mib",
    "backend_peak_mib",
    "threads",
)
TABLE_COLUMNS = {
    "train_step": train_step.TABLE_COLUMNS,
    "reversible_memory": [
        "backend",
        "length",
        "variant",
        "d1",
        "d2",
        "d4",
        "d6",
        "d8",
        "d12",
        "mib_per_extra_layer",
        "memory",
    ],
    "duplication": ["backend", "hash_rounds", "accuracy", "training_seconds"],
    "char_lm": ["backend", "bits_per_character", "steps", "steps_this_run", "training_seconds"],
    "jax_cpu_flags": jax_cpu_flags.TABLE_COLUMNS,
    "generation": generation.ROW_COLUMNS,
    "longest_sequence": longest_sequence.SUMMARY_COLUMNS,
    "dispatch": [
        "implementation",
        "depth",
        "status",
        "aten_ops",
        "host_ms",
        "host_syncs",
        "threads",
    ],
    "torch_compile": torch_compile.TABLE_COLUMNS,
}
# Table headers with spaces, which a narrow page can wrap (the JSON keys cannot be);
# keys not named here are their own header.
TABLE_HEADERS = {
    "length": "L",
    "tokens_per_second": "tokens / s",
    "step_seconds_median": "step s (median)",
    "peak_rss_mib": "peak RSS MiB",
    "training_rss_mib": "training RSS MiB",
    "step_peak_rss_mib": "step peak RSS MiB",
    "backend_peak_mib": "backend peak MiB",
    "device_peak_mib": "GPU peak MiB",
    "load_average_before": "load before",
    "estimate_mib": "estimate MiB",
    "mib_per_extra_layer": "MiB per extra layer",
    "hash_rounds": "hash rounds",
    "training_seconds": "training s",
    "bits_per_character": "bits per character",
    "steps_this_run": "steps this run",
    "xla_flags": "XLA_FLAGS",
    "longest_length": "longest L",
    "stopped_by": "stopped by",
}
# Benchmarks whose tables keep their JSON keys as headers (pages name the columns so).
# Columns a table states once, above it, when every row has the same value.
SHARED_COLUMNS = ("backend", "status", "threads", "load_average_before")
KEY_HEADERS = ("generation", "dispatch", "torch_compile")
# Benchmarks whose settings are not all in their command (the examples' defaults): their
# sections list the result's `config`.
CONFIG_SHOWN = ("duplication", "char_lm")
TABLE_SKIP = (
    "losses",
    "step_seconds",
    "warmup_seconds",
    "error",
    "backend_memory_source",
    "process_start_rss_mib",
    "cpu_count",
    "finite_loss",
    "wall_seconds",
    "step_training_rss_mib",
    "jax_argument_mib",
)


# === Selecting rows ===


def series_name(row, result):
    """`implementation (backend)` for a row, e.g. `keras_reformer (jax)`."""
    kind = next((str(row[k]) for k in SERIES_KEYS if k in row), result["benchmark"])
    backend = row.get("backend", result.get("backend"))
    return f"{kind} ({backend})" if backend else kind


def latest_rows(results, benchmark):
    """The ok rows of `benchmark`, the newest measurement winning for each series and point."""
    chosen = {}
    for result in results:  # oldest first: later files overwrite
        if result["benchmark"] != benchmark:
            continue
        for row in result["rows"]:
            if row.get("status", "ok") != "ok":
                continue
            point = tuple(
                sorted(
                    (k, v)
                    for k, v in row.items()
                    if k in ("length", "depth", "batch", "num_heads", "key_dim")
                )
            )
            key = (series_name(row, result), point)
            chosen[key] = dict(row, _series=key[0], _date=result["date"])
    return list(chosen.values())


def memory_key(rows, preferred=MEMORY_KEYS):
    """The first memory column present in `rows` (or any `*_mib` column)."""
    for key in preferred:
        if any(isinstance(r.get(key), (int, float)) for r in rows):
            return key
    keys = sorted({k for r in rows for k in r if k.endswith("_mib")})
    return keys[0] if keys else None


# === Figures ===


def _pyplot():
    """`matplotlib.pyplot`, drawing into files only (the Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(rows, x, y, path, title, ylabel, facet=None, logy=True):
    """One line per series of `y` against `x`; one panel per value of `facet`."""
    import matplotlib.ticker

    plt = _pyplot()

    rows = [
        r for r in rows if isinstance(r.get(x), (int, float)) and isinstance(r.get(y), (int, float))
    ]
    if not rows:
        return None
    facets = sorted({r.get(facet) for r in rows}, key=_facet_order) if facet else [None]
    figure, axes = plt.subplots(1, len(facets), figsize=(5.2 * len(facets), 4.2), squeeze=False)
    for axis, value in zip(axes[0], facets):
        panel = [r for r in rows if facet is None or r.get(facet) == value]
        for series in sorted({r["_series"] for r in panel}):
            points = sorted((r[x], r[y]) for r in panel if r["_series"] == series)
            backend = next(r.get("backend") for r in panel if r["_series"] == series)
            axis.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                marker="o",
                label=series,
                linestyle=LINE_STYLES.get(backend, "-"),
            )
        if x == "length":
            axis.set_xscale("log", base=2)
            axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        if logy:
            axis.set_yscale("log")
        axis.set_xlabel(x)
        axis.set_ylabel(ylabel)
        axis.set_title(f"{title}, {facet} {value}" if facet else title, fontsize=10)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    return save_figure(figure, path)


def save_figure(figure, path):
    """Writes a matplotlib figure as a PNG (creating its folder), closes it; returns `path`."""
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path


def _facet_order(value):
    """Numbers in numeric order, then anything else by name."""
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def make_figures(results, figure_dir):
    """Writes every figure the results allow; returns `{benchmark: [paths]}`."""
    train = latest_rows(results, "train_step")
    attention = latest_rows(results, "lsh_attention")
    reversible = latest_rows(results, "reversible_memory")
    for row in reversible:  # one line per stack and length
        row["_series"] = f"{row['_series']} L={row['length']}"
    # The backend's own numbers differ in kind between backends (JAX compiled temp
    # bytes, TensorFlow allocator peak, torch saved tensors): one panel per backend.
    attention_memory = memory_key(attention, OWN_MEMORY_FIRST)
    reversible_memory = memory_key(reversible, OWN_MEMORY_FIRST)
    figures = [  # benchmark, rows, x, y, file, title, y label, one panel per
        ("train_step", train, "length", "tokens_per_second", "train_step_throughput",
         "Train step throughput", "tokens / s", "depth"),
        ("train_step", train, "length", "peak_rss_mib", "train_step_memory",
         "Train step peak RSS", "peak RSS (MiB)", "depth"),
        ("lsh_attention", attention, "length", attention_memory, "lsh_attention_memory",
         "Attention memory, LSH vs full", attention_memory, "backend"),
        ("lsh_attention", attention, "length", "step_seconds_median", "lsh_attention_time",
         "Attention time, LSH vs full", "step_seconds_median", "backend"),
        ("reversible_memory", reversible, "depth", reversible_memory, "reversible_memory",
         "Training memory vs depth", reversible_memory, "backend"),
    ]  # fmt: skip
    written = defaultdict(list)
    for benchmark, rows, x, y, name, title, ylabel, facet in figures:
        path = plot(rows, x, y, figure_dir / f"{name}.png", title, ylabel, facet) if y else None
        if path is not None:
            written[benchmark].append(path)
    return written


# === Tables ===


def table_columns(rows, benchmark=None):
    if benchmark in TABLE_COLUMNS:
        return [c for c in TABLE_COLUMNS[benchmark] if any(r.get(c) is not None for r in rows)]
    keys = {
        k
        for r in rows
        for k, v in r.items()
        if not k.startswith("_") and not isinstance(v, (list, dict)) and k not in TABLE_SKIP
    }
    first = [k for k in TABLE_FIRST if k in keys]
    return first + sorted(keys - set(first))


def _shared_columns(rows, columns):
    """`SHARED_COLUMNS` said once instead of in every row (narrower tables): the
    value of each that all rows share, the range of the load averages. Empty
    unless every such column in `columns` can be said once."""
    present = [c for c in SHARED_COLUMNS if c in columns]
    said = []
    for column in present:
        values = [r.get(column) for r in rows]
        if column == "load_average_before" and all(isinstance(v, (int, float)) for v in values):
            low, high = common.format_value(min(values)), common.format_value(max(values))
            said.append(f"load average before {low}" + (f"-{high}" if high != low else ""))
        elif len(set(map(str, values))) == 1:
            said.append(f"{TABLE_HEADERS.get(column, column)} {common.format_value(values[0])}")
        else:
            return ""
    return ", ".join(said)


def depth_pivot(rows):
    """Reversible-memory rows, one per (backend, length, variant): MiB at each depth
    (`d1`, `d2`, ...) and the MiB per extra layer from depth 2 to the deepest."""
    import reversible_memory

    key = memory_key(rows)
    groups = defaultdict(dict)
    for row in rows:
        if row.get("status", "ok") == "ok":
            groups[(row["backend"], row["length"], row["variant"])][row["depth"]] = row[key]
    pivot = []
    for (backend, length, variant), by_depth in sorted(groups.items()):
        pivot.append(
            {
                "backend": backend,
                "length": length,
                "variant": variant,
                **{f"d{d}": by_depth[d] for d in sorted(by_depth)},
                "mib_per_extra_layer": round(reversible_memory.mib_per_extra_layer(by_depth), 2),
                "memory": key,
            }
        )
    return pivot


def result_section(result, heading=True):
    """Markdown of one result file: provenance, command, rows (and ratios for the train step).

    Its title is a `####` heading, or bold text with `heading=False` (inside a folded
    block, where a heading in the page's table of contents would lead nowhere).
    """
    machine = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in sorted(result.get("versions", {}).items()))
    title = f"{result['benchmark']}, {result['date']} ({result.get('backend', '')})"
    lines = [
        f"#### {title}" if heading else f"**{title}**",
        "",
        f"- Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
        f"{machine.get('threads', '?')} usable threads, {machine.get('memory_gib', '?')} GiB"
        + (
            f"; GPU: {machine['accelerator']}."
            if machine.get("accelerator", "none") != "none"
            else "."
        ),
        f"- Versions: {versions or 'not recorded'}.",
        f"- File: `{Path(result['_path']).relative_to(common.REPO_ROOT)}`"
        if Path(result["_path"]).is_relative_to(common.REPO_ROOT)
        else f"- File: `{result['_path']}`",
    ]
    if result["benchmark"] in CONFIG_SHOWN and result.get("config"):
        config = ", ".join(f"{k} {v}" for k, v in result["config"].items())
        lines.append(f"- Config: {config}.")
    if result.get("note"):
        lines.append(f"- Note: {result['note']}")
    rows = result["rows"]
    if result["benchmark"] == "reversible_memory":
        rows = depth_pivot(rows)
    if result["benchmark"] == "longest_sequence":
        rows = longest_sequence.summary_rows(rows)  # one row per search; its tries stay in the JSON
    columns = table_columns(rows, result["benchmark"]) if rows else []
    shared = _shared_columns(rows, columns)
    if shared:
        lines.append(f"- In every row: {shared}.")
        columns = [c for c in columns if c not in SHARED_COLUMNS]
    lines += ["", "Reproduce with:", "", "```bash", result.get("command", "?"), "```", ""]
    if rows:
        headers = (
            columns
            if result["benchmark"] in KEY_HEADERS
            else [TABLE_HEADERS.get(c, c) for c in columns]
        )
        lines += [common.format_table(rows, columns, headers, markdown=True), ""]
    failed = [r for r in rows if r.get("status", "ok") != "ok"]
    for row in failed:
        what = ", ".join(f"{k}={row[k]}" for k in TABLE_FIRST[:8] if k in row and k != "status")
        lines.append(f"- {row.get('status')}: {what}: {row.get('error', '')}")
    if result["benchmark"] == "train_step":
        peers = result.get("config", {}).get("peers", list(train_step.peer_models.PEERS))
        ratios = train_step.ratio_rows(rows, peers)
        if ratios:
            lines += [
                "",
                "keras_reformer divided by each peer, same length and depth "
                "(tokens/s ratio above 1: faster; memory ratio below 1: smaller):",
                "",
                _ratio_table(ratios),
            ]
        on_gpu = result["machine"].get("accelerator", "none") != "none"
        targets = train_step.target_lines(rows, on_gpu)
        if targets:
            lines += ["", "Targets (against Hugging Face in the same run):", ""]
            lines += [f"- {line.removeprefix('target ')}" for line in targets]
    if result["benchmark"] == "longest_sequence" and longest_sequence.ratio_rows(result["rows"]):
        columns = longest_sequence.RATIO_COLUMNS
        lines += [
            "",
            "Training memory (peak RSS minus RSS after the build), ours with the attention "
            "memory mode on divided by HF's, same L and depth:",
            "",
            common.format_table(
                longest_sequence.ratio_rows(result["rows"]),
                columns,
                longest_sequence.headers(columns),
                markdown=True,
            ),
        ]
    if result["benchmark"] == "dispatch":
        summary = dispatch.summary_rows(rows)
        if summary:
            lines += [
                "",
                "keras_reformer beside Hugging Face, same depth (the target: ours / HF at most 1):",
                "",
                common.format_table(summary, dispatch.SUMMARY_COLUMNS, markdown=True),
            ]
    if result["benchmark"] == "generation":
        summary = generation.summary_rows(rows)
        if summary:
            lines += [
                "",
                "Milliseconds per generated token, per backend and length "
                "(ratios above 1: ours cached is faster):",
                "",
                common.format_table(summary, generation.SUMMARY_COLUMNS, markdown=True),
            ]
        targets = generation.target_lines(rows)
        if targets:
            lines += ["", "Targets:", ""] + [f"- {line}" for line in targets]
    return "\n".join(lines) + "\n"


def _ratio_table(ratios):
    """The ratio rows as markdown, without columns that no row has (GPU memory on a CPU)."""
    columns = {
        column: header
        for column, header in train_step.RATIO_COLUMNS.items()
        if any(r.get(column) is not None for r in ratios)
    }
    return common.format_table(ratios, columns, markdown=True)


def write_tables(results, figures, tables_dir):
    """One generated markdown table file per measured benchmark; returns the paths.

    The files are included into `docs/benchmarks/index.md` (`--8<-- "<file>"`),
    so they use headings below that page's `##` sections and image paths
    relative to `docs/benchmarks/`. A benchmark without results keeps its
    "Not yet measured" placeholder.
    """
    tables_dir.mkdir(parents=True, exist_ok=True)
    by_benchmark = defaultdict(list)
    for result in results:
        by_benchmark[result["benchmark"]].append(result)
    paths = []
    for benchmark, group in sorted(by_benchmark.items()):
        if benchmark in ablations.BENCHMARKS.values():
            continue  # write_ablation_tables renders them
        lines = generated_header(group)
        for figure in figures.get(benchmark, []):
            lines += [figure_link(figure, tables_dir), ""]
        if benchmark == "longest_sequence":
            lines += longest_overall(group)
        lines += run_sections(group)
        path = tables_dir / TABLE_FILES.get(benchmark, f"{benchmark}.md")
        path.write_text("\n".join(lines))
        paths.append(path)
    return paths


def longest_overall(group):
    """The longest L of every search over the runs made on the newest run's machine."""
    machine = group[-1]["machine"].get("cpu")
    rows = longest_sequence.longest_over_runs(
        [r for r in group if r["machine"].get("cpu") == machine]
    )
    columns = longest_sequence.OVERALL_COLUMNS
    return [
        f"Longest sequence of each implementation, backend and memory mode over the runs below "
        f"on the {machine} (each run's command says how it was measured):",
        "",
        common.format_table(rows, columns, longest_sequence.headers(columns), markdown=True),
        "",
    ]


def run_sections(group):
    """The sections of a benchmark's results (oldest first in `group`): the newest run
    open, the older ones in one collapsible block (pymdownx.details), newest first."""
    if not group:
        return []
    lines = [result_section(group[-1])]
    older = list(reversed(group[:-1]))
    if older:
        body = "\n".join(result_section(r, heading=False) for r in older)
        lines += [f'??? note "Older runs ({len(older)}), newest first"', ""]
        lines += [f"    {line}" if line else "" for line in body.splitlines()] + [""]
    return lines


def generated_header(group):
    """The first lines of a generated table file: its sources, device, backend, versions."""
    newest = group[-1]
    files = ", ".join(Path(r["_path"]).name for r in group)
    versions = ", ".join(f"{k} {v}" for k, v in sorted(newest.get("versions", {}).items()))
    return [
        f"<!-- generated by python benchmarks/make_figures.py from {files}; "
        f"device: {newest['machine'].get('cpu', '?')}; backend: {newest.get('backend')}; "
        f"versions: {versions or 'not recorded'}. Do not edit: rerun the script. -->",
        "",
    ]


def figure_link(figure, tables_dir):
    """A markdown image of `figure`, relative to the pages in `docs/benchmarks/`."""
    relative = Path("..") / figure.relative_to(tables_dir.parent.parent)
    return f"![{figure.stem}]({relative.as_posix()})"


# === The ablations (benchmarks/ablations.py): docs/benchmarks/transformer-comparison.md ===


def plot_curves(curves, path, title):
    """Held-out bits per byte against training step, one line per variant."""
    if not curves:
        return None
    figure, axis = _pyplot().subplots(figsize=(5.6, 4.2))
    for label, points in curves.items():
        axis.plot(
            [p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=label
        )
    axis.set_xlabel("training step")
    axis.set_ylabel("held-out bits per byte")
    axis.set_title(title, fontsize=10)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    return save_figure(figure, path)


def ablation_sources(group):
    """Provenance lines of ablation results: each distinct command, with its files."""
    commands = defaultdict(list)
    for result in group:
        commands[result.get("command", "?")].append(result)
    lines = ["Reproduce with (each run skips the configurations already measured):", ""]
    for command, results in commands.items():
        names = ", ".join(f"`{Path(r['_path']).name}`" for r in results)
        machine = results[-1]["machine"]
        lines += [
            f"- {results[-1]['date'][:10]}, {machine.get('cpu', '?')} "
            f"({machine.get('threads', '?')} threads); files {names}:",
            "",
            "    ```bash",
            f"    {command}",
            "    ```",
            "",
        ]
    return lines


def write_ablation_tables(results, figure_dir, tables_dir):
    """The tables and figures of `benchmarks/ablations.py`'s results; returns the paths.

    Writes `ablation_duplication.md` (the paper's Table 2 grid), `ablation_lm.md`
    (bits-per-byte curves of full attention and LSH-1..8, Figure 4, and the final
    bits per byte of every LM variant), `ablation_shared_qk.md` (Figure 3),
    `ablation_reversible.md` (Figure 5) and `ablation_cost.md` (train-step time and
    memory against length) into `tables_dir`, each only when its results exist
    (otherwise its "Not yet measured" placeholder stays).
    """
    tables_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    def write(name, group, body):
        path = tables_dir / name
        path.write_text("\n".join(generated_header(group) + body + ablation_sources(group)))
        paths.append(path)

    group = [r for r in results if r["benchmark"] == ablations.BENCHMARKS["duplication"]]
    grid = ablations.duplication_grid(group)
    if grid:
        table = common.format_table(grid, ablations.grid_columns(grid), markdown=True)
        write("ablation_duplication.md", group, [table, ""])
    group = [r for r in results if r["benchmark"] == ablations.BENCHMARKS["lm"]]
    finals = ablations.lm_final_rows(group)
    if finals:
        columns = {
            "variant": "variant",
            "bits_per_byte": "held-out bits per byte",
            "steps": "steps",
            "training_seconds": "training s",
            "steps_per_second": "steps / s",
            "backend": "backend",
        }
        for experiment, title in (
            ("lm", "Full attention and LSH (Figure 4)"),
            ("shared_qk", "Shared vs separate QK (Figure 3)"),
            ("reversible", "Reversible vs plain residual (Figure 5)"),
        ):
            curves = ablations.lm_curves(group, ablations.LM_VARIANTS[experiment])
            figure = plot_curves(curves, figure_dir / f"ablation_{experiment}_curves.png", title)
            body = [figure_link(figure, tables_dir), ""] if figure else []
            if experiment == "lm":
                body += [common.format_table(finals, columns, markdown=True), ""]
            if figure or experiment == "lm":
                write(f"ablation_{experiment}.md", group, body)
    group = [r for r in results if r["benchmark"] == ablations.BENCHMARKS["cost"]]
    rows = ablations.cost_rows(group)
    if rows:
        body = []
        plotted = [dict(r, _series=r["variant"]) for r in rows]
        for key, name, label in (
            ("step_seconds_median", "time", "train step (s)"),
            ("backend_peak_mib", "memory", "JAX temp memory (MiB)"),
        ):
            figure = plot(
                plotted,
                "length",
                key,
                figure_dir / f"ablation_cost_{name}.png",
                f"Train step {name} against length",
                label,
            )
            if figure:
                body += [figure_link(figure, tables_dir), ""]
        headers = {
            "step_seconds_median": "step s (median)",
            "tokens_per_second": "tokens / s",
            "backend_peak_mib": "JAX temp MiB",
            "peak_rss_mib": "peak RSS MiB",
        }
        columns = {c: headers.get(c, c) for c in [*ablations.COST_COLUMNS, "backend"]}
        body += [common.format_table(rows, columns, markdown=True), ""]
        write("ablation_cost.md", group, body)
    return paths


def write_gpu_tables(results, tables_dir):
    """`tables_dir/gpu.md`: every result measured on a GPU, newest first; returns its path."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    files = ", ".join(Path(r["_path"]).name for r in results) or "no files"
    lines = [
        f"<!-- generated by python benchmarks/make_figures.py from {files}. "
        "Do not edit: rerun the script. -->",
        "",
    ]
    lines += run_sections(results) or ["Not yet measured.", ""]
    path = tables_dir / GPU_TABLE_FILE
    path.write_text("\n".join(lines))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(common.RESULTS_DIR))
    parser.add_argument("--docs", default=str(common.REPO_ROOT / "docs"))
    args = parser.parse_args(argv)
    results = common.load_results(args.results)
    docs = Path(args.docs).resolve()
    figures = make_figures(results, docs / "figures" / "benchmarks")
    pages = write_tables(results, figures, docs / "benchmarks" / "tables")
    pages += write_ablation_tables(
        results, docs / "figures" / "benchmarks", docs / "benchmarks" / "tables"
    )
    gpu_results = common.load_results(Path(args.results) / GPU_RESULTS)
    pages.append(write_gpu_tables(gpu_results, docs / "benchmarks" / "tables"))
    pages.append(summary.write(results, gpu_results, docs / "benchmarks" / "tables"))
    print(f"{len(results)} result files, {len(gpu_results)} from a GPU")
    for path in [p for group in figures.values() for p in group] + pages:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
