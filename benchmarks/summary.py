"""The first screen of the Benchmarks page: the latest ratios per backend.

For JAX, TensorFlow and PyTorch, the newest result that compares keras_reformer
with Hugging Face's Reformer (`train_step.py`, on a CPU and on a GPU) and with
full attention (`lsh_attention.py`), for speed and for memory. Every ratio is
computed from one result file, which its row names, and printed the way the
tables below it print numbers (`common.format_value`); the Hugging Face ratios
are those of that file's ratio table. `make_figures.py` writes the screen into
`docs/benchmarks/tables/summary.md`, which `docs/benchmarks/index.md` includes
first.
"""

import re
from collections import defaultdict
from pathlib import Path

import common
import train_step

BACKENDS = {"jax": "JAX", "tensorflow": "TensorFlow", "torch": "PyTorch"}
SUMMARY_FILE = "summary.md"
HF_COLUMNS = {
    "backend": "backend",
    "speed": "speed (tokens/s, ours ÷ HF)",
    "memory": "memory (ours ÷ HF)",
    "depth": "depths",
    "source": "machine and result file",
}
FULL_COLUMNS = {
    "backend": "backend",
    "length": "L",
    "speed": "speed (full time ÷ LSH time)",
    "memory": "memory (LSH ÷ full)",
    "source": "machine and result file",
}
# What each ratio means, one sentence each (shown under its table).
HF_MEANING = [
    "**Speed**: tokens per second of one training step (forward, backward, SGD) of the same "
    "causal language model, ours on the row's backend ÷ Hugging Face's "
    "`ReformerModelWithLMHead` (PyTorch) in the same run; above 1, ours trains faster.",
    "**Memory**: ours ÷ Hugging Face's, on a CPU the training RSS (peak resident memory minus "
    "what imports and the built model held), on a GPU the allocator's peak; below 1, ours "
    "needs less.",
]
FULL_MEANING = [
    "**Speed**: the forward-and-backward time of full attention ÷ that of `LSHSelfAttention` "
    "(4 heads of 64, chunk 64, 4 hash rounds, causal) on the same backend, per length; above "
    "1, LSH is faster. Full attention is `keras.ops.dot_product_attention`, on PyTorch torch's "
    'fused `scaled_dot_product_attention`, which never stores the (L, L) scores; "skipped" '
    "means the script's memory estimate for stored scores exceeded the machine's budget.",
    "**Memory**: LSH ÷ full attention, as each backend measures it (JAX the compiled step's "
    "temporary bytes, TensorFlow its allocator's peak, PyTorch the bytes saved for the "
    "backward pass); below 1, LSH needs less.",
]


def short_machine(result):
    """`Intel Xeon @ 2.80GHz, 2 cores`, or the GPU's name for results from a GPU machine."""
    machine = result["machine"]
    if machine.get("accelerator", "none") not in ("none", None):
        return f"{machine['accelerator']} (GPU)"
    cpu = re.sub(r"\((R|TM)\)| Processor| CPU", "", machine.get("cpu", "?"))
    return f"{' '.join(cpu.split())}, {machine.get('cores', '?')} cores"


def value_range(values):
    """`1.85–2.21` (the smallest and largest, as the tables print them), or one value."""
    low, high = common.format_value(min(values)), common.format_value(max(values))
    return low if low == high else f"{low}–{high}"


def per_length(ratios, key):
    """`L 4096: 1.85–2.08<br>L 16384: 2.11–2.21`: the range over depths at each length."""
    lengths = sorted({r["length"] for r in ratios})
    return "<br>".join(
        f"L {n}: {value_range([r[key] for r in ratios if r['length'] == n])}" for n in lengths
    )


def source(result):
    """The machine and the result file, for a table cell."""
    return f"{short_machine(result)}<br>`{Path(result['_path']).name}`"


def hf_rows(results, on_gpu=False):
    """Per backend, the ratios against Hugging Face of the newest `train_step` result that
    has them: ranges over that result's lengths and depths."""
    memory_key = "device_peak_ratio" if on_gpu else "training_rss_ratio"
    rows = []
    for backend, label in BACKENDS.items():
        for result in reversed(results):  # newest first
            if result["benchmark"] != "train_step":
                continue
            ratios = [
                r
                for r in train_step.ratio_rows(result["rows"], ["hf_reformer"])
                if r["backend"] == backend and r.get(memory_key) is not None
            ]
            if not ratios:
                continue
            rows.append(
                {
                    "backend": label + (" (GPU)" if on_gpu else ""),
                    "speed": per_length(ratios, "speed_ratio"),
                    "memory": per_length(ratios, memory_key),
                    "depth": ", ".join(map(str, sorted({r["depth"] for r in ratios}))),
                    "source": source(result),
                    "_result": result,
                }
            )
            break
    return rows


def full_attention_rows(results, memory_key="backend_peak_mib"):
    """Per backend, LSH against full attention in the newest `lsh_attention` result that ran
    both: one ratio per length, and the lengths where full attention did not run."""
    rows = []
    for backend, label in BACKENDS.items():
        for result in reversed(results):
            if result["benchmark"] != "lsh_attention":
                continue
            mine = [r for r in result["rows"] if r.get("backend") == backend]
            ok = {
                (r["implementation"], r["length"]): r for r in mine if r.get("status", "ok") == "ok"
            }
            lengths = sorted(
                length for kind, length in ok if kind == "full" and ("lsh", length) in ok
            )
            if not lengths:
                continue
            speed = [
                ok["full", n]["step_seconds_median"] / ok["lsh", n]["step_seconds_median"]
                for n in lengths
            ]
            memory = [ok["lsh", n][memory_key] / ok["full", n][memory_key] for n in lengths]
            not_run = defaultdict(list)  # e.g. skipped: its memory estimate was too large
            for r in mine:
                if r["implementation"] == "full" and r.get("status", "ok") != "ok":
                    not_run[r["status"]].append(str(r["length"]))
            at = " / ".join(map(str, lengths))
            for status, values in not_run.items():
                at += f"<br>(full attention {status} at {', '.join(values)})"
            rows.append(
                {
                    "backend": label,
                    "length": at,
                    "speed": " / ".join(common.format_value(v) for v in speed),
                    "memory": " / ".join(common.format_value(v) for v in memory),
                    "source": source(result),
                    "_result": result,
                }
            )
            break
    return rows


def markdown(results, gpu_results):
    """The screen as markdown, under a generated-file comment naming its sources."""
    hf = hf_rows(results) + hf_rows(gpu_results, on_gpu=True)
    full = full_attention_rows(results)
    sources = [row["_result"] for row in hf + full]
    files = ", ".join(dict.fromkeys(Path(r["_path"]).name for r in sources)) or "no files"
    lines = [
        f"<!-- generated by python benchmarks/make_figures.py from {files}. "
        "Do not edit: rerun the script. -->",
        "",
    ]
    for title, rows, columns, meaning in (
        ("Against Hugging Face's Reformer (one training step)", hf, HF_COLUMNS, HF_MEANING),
        ("Against full attention (one attention layer)", full, FULL_COLUMNS, FULL_MEANING),
    ):
        lines += [f"**{title}**", ""]
        if rows:
            lines += [common.format_table(rows, columns, markdown=True), ""]
        else:
            lines += ["Not yet measured.", ""]
        lines += [f"- {sentence}" for sentence in meaning] + [""]
    return "\n".join(lines)


def write(results, gpu_results, tables_dir):
    """Writes `tables_dir/summary.md`; returns its path."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    path = tables_dir / SUMMARY_FILE
    path.write_text(markdown(results, gpu_results))
    return path
