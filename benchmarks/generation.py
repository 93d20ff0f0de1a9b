"""Milliseconds per generated token: cached and uncached `generate` per backend, beside HF's.

Measures greedy generation of a causal `keras_reformer.models.ReformerCausalLM`
(batch 1, vocabulary 256, 2 LSH layers, hidden 64 per reversible half, 2 heads
of 32, intermediate 256, chunk 64, 2 hash rounds, axial position embeddings,
no dropout, `max_sequence_length` = the length L) on each Keras backend, and
Hugging Face's `ReformerModelWithLMHead` of the same sizes (torch, eval mode,
`torch.no_grad`, `generate(..., do_sample=False, use_cache=True)`), at
`max_length` L (default 1024, 4096 and 16384). Every (backend, L) runs in a
fresh process (`common.run_fresh`, `KERAS_BACKEND` set per child).

Every number is a difference of whole `generate` calls (a call returns
numpy, so its work is done when it returns; the prompts' tokens are random):
a call that generates n tokens minus a call of the same kind that generates one
token is n - 1 decode steps, whatever a call costs besides (its prefill, a
retrace, Python), so `ms/token = (median(t_n) - median(t_1)) / (n - 1)`. The
two kinds of call alternate, `--repeats` of each, after an untimed first call.
Three paths:

- **cached** (ours): `lm.generate(prompt, L, cache=True)`: the prompt is read in
  one pass (the prefill), then one decode step per further token. The prefill
  works on the fixed (batch, L) buffer, so its cost does not depend on the
  prompt's length: t_n has a prompt of `L - n` tokens (by default
  `n = L / 2`: the prompt is half of `max_length`), t_1 a prompt of `L - 1`
  tokens. Before the timed calls, the first call (`--calibration-tokens`
  new tokens, compilation included), one t_1 call and one more calibration
  call estimate the per-token time; when n tokens would take more than
  `--call-seconds`, n is lowered to fit (never below the calibration tokens),
  and the row's `new tokens` says so (below L / 2).
- **uncached** (ours): `lm.generate(prompt, L, cache=False)`, the reference
  path that reruns the whole model on the (batch, L) buffer for every token,
  so each token costs one full forward pass and a few suffice: n = 8
  (`--uncached-new-tokens`, prompt `L - 8`) against one (prompt `L - 1`).
  Before keras_reformer had `cache=`, `lm.generate(prompt, L)` was this path;
  the script runs it so (and skips the cached rows) when `generate` has no
  `cache` argument. Then generate traced its sampling loop anew on every call
  on JAX (seconds per call at L 1024, while a jitted forward takes tens of
  milliseconds): `call ms/token` (t_n / n) shows what a call costs per token
  with such fixed costs included, `1-token call s` the fixed part.
- **hf_reformer cached**: `generate(input_ids, max_length=P + n,
  do_sample=False, use_cache=True)`. HF's decode step grows with the past and
  its prefill with the prompt (no fixed buffer), so t_n and t_1 share the prompt
  of P tokens (t_1: `max_length=P + 1`). With n = L / 2, P = L / 2 as for ours;
  when n is lowered, the n tokens are centred on position 3L / 4
  (P = 3L / 4 - n / 2), the middle of the L / 2 .. L span, so a cost linear
  in the position averages the same. HF's config: `attn_layers=["lsh", "lsh"]`,
  `is_decoder=True`, chunk 64 with one chunk before and none after, the same
  bucket count as ours (2L / 64 rounded up to a power of two, split in two
  factors above 256, as `keras_reformer.ops.default_bucket_factors`), axial
  position embeddings of shape `peers.axial_shape(L)` (product L: HF's generate
  needs every position within `max_position_embeddings` = L), no dropout,
  `eos_token_id=None` (no early stop), eval mode and `torch.no_grad`.

`compile s` is the first call's time minus the same call's steady-state time
(t_1 plus its decode steps at the measured rate): tracing and compilation
(`jax.jit` on JAX, `tf.function` on TensorFlow; torch runs eagerly, HF too).
`first call s` is that call's whole time (`first_call_ms_per_token` in the
JSON divides it by its new tokens). The cached row's `agree` counts how many of
the uncached call's 8 generated tokens a cached call with the same prompt
reproduces (a greedy decode of an untrained model: one early difference
changes the later tokens).

On a shared machine other processes slow the calls down (torch's threads most:
it spreads each op over all cores): `others' cores` (`other_busy_cores`) is the
CPU that processes other than the child used while it ran, in cores (the
machine's busy time from `/proc/stat` minus the child's own, over its wall
time). Rows measured with it well above 0 are noisy. With one core taken by
another process, `--torch-threads 1` (ours and HF's torch children alike)
slowed torch far less than its default of one thread per core.

Targets printed as PASS / FAIL: ours cached ms/token at the longest length at
most 1.5x that at the shortest (the issue: 16K vs 1K); cached at least 20x faster
than uncached at the longest length; ours cached faster than HF's cached, on
JAX and TensorFlow, at each length. Writes `benchmarks/results/generation_*.json`.

Usage:
    python benchmarks/generation.py --backends jax,tensorflow,torch \
        --lengths 1024,4096,16384 --repeats 3
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import peers as peer_models  # noqa: E402

BENCHMARK = "generation"
BACKENDS = common.BACKENDS
SIZES = dict(
    vocabulary=256, layers=2, hidden=64, heads=2, head_size=32, intermediate=256, chunk=64, hashes=2
)
DEFAULT_LENGTHS = [1024, 4096, 16384]
MODES = ("cached", "uncached")
# The targets of the issue.
FLAT_RATIO = 1.5  # cached ms/token at the longest length <= this x that at the shortest
SPEEDUP = 20.0  # cached at least this many times faster than uncached at the longest length
HF_TARGET_BACKENDS = ("jax", "tensorflow")  # ours cached faster than HF's cached there
# A row's columns and the printed table's headers (the docs' table keeps the keys).
ROW_COLUMNS = {
    "implementation": "implementation",
    "mode": "mode",
    "backend": "backend",
    "length": "L",
    "status": "status",
    "prompt_length": "prompt",
    "new_tokens": "new tokens",
    "ms_per_token": "ms/token",
    "whole_call_ms_per_token": "call ms/token",
    "one_token_seconds": "1-token call s",
    "first_call_seconds": "first call s",
    "compile_seconds": "compile s",
    "agree": "agree",
    "threads": "thr",
    "other_busy_cores": "others' cores",
}
SUMMARY_COLUMNS = {
    "backend": "backend",
    "length": "L",
    "cached_ms": "cached ms/token",
    "uncached_ms": "uncached ms/token",
    "speedup": "uncached / cached",
    "hf_cached_ms": "HF cached ms/token",
    "vs_hf": "HF / ours cached",
}
# What a child reports once for all its rows, copied into each.
SHARED_KEYS = (
    "threads",
    "peak_rss_mib",
    "num_parameters",
    "num_buckets",
    "axial_pos_shape",
    "wall_seconds",
    "other_busy_cores",
)


# === Child process: one (implementation, backend, length) ===


def hf_num_buckets(length, chunk_length):
    """Our default bucket count for `length` as HF takes it: an int, or a list of two factors.

    `keras_reformer.ops.default_num_buckets` and `default_bucket_factors`,
    repeated here so that the HF child need not import Keras.
    """
    target = max(2, -(-2 * length // chunk_length))
    buckets = 1 << (target - 1).bit_length()
    if buckets <= 4 * chunk_length:
        return buckets
    power = buckets.bit_length() - 1
    return [2 ** (power // 2), 2 ** (power - power // 2)]


def _median(values):
    return statistics.median(values) if values else float("nan")


def _timed(call):
    start = time.perf_counter()
    output = call()
    return time.perf_counter() - start, output


def _cap_new_tokens(target, calibration, seconds_per_token, call_seconds):
    """The new tokens of a timed call: `target`, lowered so that the decode steps of one
    call take about `call_seconds` at most, never below `calibration`."""
    if call_seconds and seconds_per_token > 0:
        target = min(target, max(calibration, int(call_seconds / seconds_per_token)))
    return target


def _alternate(repeats, full_call, one_call):
    """`repeats` timings of each of two calls, alternating: `(full_times, one_times)`."""
    full_times, one_times = [], []
    for _ in range(repeats):
        full_times.append(full_call())
        one_times.append(one_call())
    return full_times, one_times


def _calibrated_row(spec, target, call, prompt_length):
    """A cached row: `call(n, full)` times a call of `n` new tokens (`full`) or its
    one-token counterpart. A first call (compiling) and one pair estimate the time per
    token, which caps n (`_cap_new_tokens`); then `spec["repeats"]` pairs of n."""
    calibration = max(2, min(target, spec["calibration_tokens"]))
    first = call(calibration, True)
    prefill = call(calibration, False)
    again = call(calibration, True)
    estimate = (again - prefill) / (calibration - 1)
    n = _cap_new_tokens(target, calibration, estimate, spec["call_seconds"])
    full_times, one_times = _alternate(
        spec["repeats"], lambda: call(n, True), lambda: call(n, False)
    )
    return _difference_row(n, prompt_length(n), target, calibration, first, full_times, one_times)


def measure_keras(spec):
    """Builds our model on `KERAS_BACKEND` and times its cached and uncached `generate`."""
    import keras
    import numpy as np

    backend = keras.backend.backend()
    length = spec["length"]
    lm = peer_models.build_causal_lm(SIZES, length, SIZES["layers"], attention_layers="lsh")
    lm.compile(sampler="greedy")
    import keras_nlp  # noqa: F401  (generate imports it on first use: not a cost of the first call)

    tokens = np.random.default_rng(0).integers(0, SIZES["vocabulary"], size=(1, length))

    def generate(prompt_length, cache):
        return _timed(lambda: lm.generate(tokens[:, :prompt_length], length, cache=cache))

    rows = {}
    uncached_output = None
    if "uncached" in spec["modes"]:
        n = spec["uncached_new_tokens"]
        first, uncached_output = generate(length - n, False)  # compiles
        full_times, one_times = _alternate(
            spec["repeats"],
            lambda: generate(length - n, False)[0],
            lambda: generate(length - 1, False)[0],
        )
        rows["uncached"] = _difference_row(n, length - n, n, n, first, full_times, one_times)
    if "cached" in spec["modes"]:
        rows["cached"] = _measure_cached(spec, generate, length)
        if uncached_output is not None:
            n = spec["uncached_new_tokens"]
            cached_output = generate(length - n, True)[1]
            same = int(np.sum(cached_output[0, -n:] == uncached_output[0, -n:]))
            rows["cached"]["agree"] = f"{same}/{n}"
            rows["cached"]["cached_tokens"] = cached_output[0, -n:].tolist()
            rows["cached"]["uncached_tokens"] = uncached_output[0, -n:].tolist()
    return {
        "rows": rows,
        "backend": backend,
        "threads": common.backend_threads(backend),
        "peak_rss_mib": common.peak_rss_mib(),
        "num_parameters": int(lm.count_params()),
    }


def _measure_cached(spec, generate, length):
    """Ours, cached: calls of n new tokens minus prefill-only calls (prompt L - 1)."""
    target = min(spec["new_tokens"] or length // 2, length - 1)

    def call(n, full):  # the first call compiles
        return generate(length - n if full else length - 1, True)[0]

    return _calibrated_row(spec, target, call, lambda n: length - n)


def _difference_row(n, prompt_length, target, calibration, first, full_times, one_times):
    """A row from calls of `n` new tokens and calls of one new token (same kind of call):
    their difference is `n - 1` decode steps; the one-token call is the fixed cost."""
    seconds_per_token = (_median(full_times) - _median(one_times)) / (n - 1)
    steady_first = _median(one_times) + (calibration - 1) * seconds_per_token
    return dict(
        prompt_length=prompt_length,
        new_tokens=n,
        new_tokens_wanted=target,
        calibration_tokens=calibration,
        ms_per_token=seconds_per_token * 1000,
        whole_call_ms_per_token=_median(full_times) / n * 1000,
        call_seconds=_rounded(full_times),
        one_token_call_seconds=_rounded(one_times),
        one_token_seconds=_median(one_times),
        first_call_seconds=first,
        first_call_ms_per_token=first / calibration * 1000,
        compile_seconds=first - steady_first,
    )


def measure_hf(spec):
    """HF's `ReformerModelWithLMHead.generate(..., use_cache=True)`, greedy, on torch."""
    import torch
    import transformers
    from transformers import ReformerModelWithLMHead

    transformers.logging.set_verbosity_error()
    length = spec["length"]
    torch.manual_seed(0)
    config = peer_models.hf_reformer_config(
        SIZES,
        length,
        SIZES["layers"],
        num_buckets=hf_num_buckets(length, SIZES["chunk"]),
        use_cache=True,
        pad_token_id=0,
        eos_token_id=None,
    )
    model = ReformerModelWithLMHead(config).eval()
    tokens = torch.randint(0, SIZES["vocabulary"], (1, length))

    def generate(prompt_length, new_tokens):
        with torch.no_grad():
            return _timed(
                lambda: model.generate(
                    tokens[:, :prompt_length],
                    max_length=prompt_length + new_tokens,
                    do_sample=False,
                    use_cache=True,
                )
            )

    def prompt_for(n):  # n tokens centred on 3L/4: P = L/2 when n = L/2
        return min(length - n, (3 * length) // 4 - n // 2)

    target = min(spec["new_tokens"] or length // 2, length - 1)
    if spec.get("hf_new_tokens"):
        target = min(target, spec["hf_new_tokens"])

    def call(n, full):
        return generate(prompt_for(n), n if full else 1)[0]

    return {
        "rows": {"cached": _calibrated_row(spec, target, call, prompt_for)},
        "backend": "torch",
        "threads": torch.get_num_threads(),
        "peak_rss_mib": common.peak_rss_mib(),
        "num_buckets": config.num_buckets,
        "axial_pos_shape": list(config.axial_pos_shape),
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
    }


def _rounded(values):
    return [round(v, 4) for v in values]


def child(spec):
    if spec.get("torch_threads") and spec["backend"] == "torch":
        import torch

        torch.set_num_threads(spec["torch_threads"])
    if spec["implementation"] == "keras_reformer":
        return measure_keras(spec)
    return measure_hf(spec)


# === Parent: plan, rows, tables, targets ===


def plan(args):
    """(implementation, backend, length) in increasing length; HF after ours."""
    configs = []
    for length in args.lengths:
        for backend in args.backends:
            configs.append(dict(implementation="keras_reformer", backend=backend, length=length))
        if args.hf:
            configs.append(dict(implementation="hf_reformer", backend="torch", length=length))
    return configs


def expand(config, result, load_average, modes):
    """The child's result as one row per mode (cached, uncached)."""
    shared = {k: result[k] for k in SHARED_KEYS if k in result}
    if result.get("status", "ok") != "ok":  # the child failed as a whole
        return [
            dict(
                config,
                mode=mode,
                load_average_before=load_average,
                **shared,
                status=result["status"],
                error=result.get("error", ""),
            )
            for mode in (modes if config["implementation"] == "keras_reformer" else ["cached"])
        ]
    rows = []
    for mode, values in result["rows"].items():
        row = dict(config, mode=mode, load_average_before=load_average, **shared)
        row.update(values)
        row.setdefault("status", "ok")
        rows.append(row)
    return rows


def _ok(rows, implementation, mode, backend, length):
    for row in rows:
        if (row["implementation"], row["mode"], row["backend"], row["length"]) == (
            implementation,
            mode,
            backend,
            length,
        ) and row["status"] == "ok":
            return row
    return None


def summary_rows(rows):
    """One row per (our backend, length): cached and uncached ms/token, HF's, the ratios."""
    out = []
    keys = sorted(
        {(r["backend"], r["length"]) for r in rows if r["implementation"] == "keras_reformer"},
        key=lambda k: (BACKENDS.index(k[0]) if k[0] in BACKENDS else 9, k[1]),
    )
    for backend, length in keys:
        cached = _ok(rows, "keras_reformer", "cached", backend, length)
        uncached = _ok(rows, "keras_reformer", "uncached", backend, length)
        hf = _ok(rows, "hf_reformer", "cached", "torch", length)
        row = {
            "backend": backend,
            "length": length,
            "cached_ms": cached and cached["ms_per_token"],
            "uncached_ms": uncached and uncached["ms_per_token"],
            "hf_cached_ms": hf and hf["ms_per_token"],
        }
        if cached and uncached:
            row["speedup"] = uncached["ms_per_token"] / cached["ms_per_token"]
        if cached and hf:
            row["vs_hf"] = hf["ms_per_token"] / cached["ms_per_token"]
        out.append(row)
    return out


def target_lines(rows):
    """The issue's targets as `PASS` / `FAIL` lines (only those the rows can decide)."""
    lines = []
    backends = sorted(
        {r["backend"] for r in rows if r["implementation"] == "keras_reformer"},
        key=lambda b: BACKENDS.index(b) if b in BACKENDS else 9,
    )
    cached = {  # per backend, {length: row} of ours cached
        backend: {
            r["length"]: r
            for r in rows
            if r["implementation"] == "keras_reformer"
            and r["mode"] == "cached"
            and r["backend"] == backend
            and r["status"] == "ok"
        }
        for backend in backends
    }
    for backend, by_length in cached.items():
        if len(by_length) >= 2:
            short, long = min(by_length), max(by_length)
            ratio = by_length[long]["ms_per_token"] / by_length[short]["ms_per_token"]
            lines.append(
                f"{_verdict(ratio <= FLAT_RATIO)}: {backend} cached ms/token at "
                f"L={long} <= {FLAT_RATIO:g}x that at L={short} ({ratio:.2f}x)"
            )
    for backend, by_length in cached.items():
        length = max(by_length, default=None)
        uncached = _ok(rows, "keras_reformer", "uncached", backend, length)
        if uncached:
            speedup = uncached["ms_per_token"] / by_length[length]["ms_per_token"]
            lines.append(
                f"{_verdict(speedup >= SPEEDUP)}: {backend} L={length} cached >= "
                f"{SPEEDUP:g}x faster than uncached ({speedup:.1f}x)"
            )
    for backend in [b for b in backends if b in HF_TARGET_BACKENDS]:
        for row in summary_rows(rows):
            if row["backend"] == backend and row.get("vs_hf") is not None:
                lines.append(
                    f"{_verdict(row['vs_hf'] > 1)}: {backend} L={row['length']} cached "
                    f"faster than HF's cached ({row['vs_hf']:.2f}x)"
                )
    return lines


def _verdict(passed):
    return "PASS" if passed else "FAIL"


def print_tables(rows):
    print("\n" + common.format_table(rows, ROW_COLUMNS))
    summary = summary_rows(rows)
    if summary:
        print("\n" + common.format_table(summary, SUMMARY_COLUMNS))
    for line in target_lines(rows):
        print(line)
    for row in rows:
        if row["status"] != "ok":
            print(
                f"{row['status']}: {row['implementation']} {row['mode']} {row['backend']} "
                f"L={row['length']}: {row.get('error', '')}"
            )


def parse_args(argv=None):
    def new_tokens(text):
        return None if text == "half" else int(text)

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", type=common.choice_list(BACKENDS), default=list(BACKENDS))
    parser.add_argument(
        "--lengths",
        type=common.int_list,
        default=DEFAULT_LENGTHS,
        help="max_length values (the model's max_sequence_length too)",
    )
    parser.add_argument(
        "--modes",
        type=common.choice_list(MODES),
        default=list(MODES),
        help="ours: cached, uncached or both",
    )
    parser.add_argument(
        "--new-tokens",
        type=new_tokens,
        default=None,
        help="new tokens of a cached call: 'half' (L / 2, the default) or a cap",
    )
    parser.add_argument(
        "--hf-new-tokens",
        type=int,
        default=None,
        help="a cap on HF's new tokens alone (default: as --new-tokens)",
    )
    parser.add_argument("--uncached-new-tokens", type=int, default=8)
    parser.add_argument(
        "--calibration-tokens",
        type=int,
        default=32,
        help="new tokens of the first (compiling) cached call",
    )
    parser.add_argument(
        "--call-seconds",
        type=float,
        default=20.0,
        help="lower a cached call's new tokens so that one call takes about "
        "this long at most (0: never)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each kind (median)")
    parser.add_argument(
        "--no-hf", dest="hf", action="store_false", help="leave out Hugging Face's Reformer"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads in the torch children, ours and HF's "
        "(default: torch's own choice, one per core)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per process")
    common.add_output_arguments(parser, dry_run_help="print the plan only")
    args = parser.parse_args(argv)
    args.lengths = sorted(args.lengths)
    if not args.modes:
        parser.error("--modes: none given")
    if args.repeats < 1 or args.uncached_new_tokens < 1 or args.calibration_tokens < 2:
        parser.error("--repeats and --uncached-new-tokens must be >= 1, --calibration-tokens >= 2")
    return args


def main(argv=None):
    args = parse_args(argv)
    args.hf = args.hf and bool(peer_models.installed_peers(["hf_reformer"]))
    configs = plan(args)
    machine = common.machine_info()
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} usable, "
        f"{machine['memory_gib']} GiB; {len(configs)} processes"
    )
    if args.dry_run:
        for config in configs:
            print(f"{config['implementation']:>16} {config['backend']:>10} L={config['length']}")
        return []
    rows = []
    for config in configs:
        spec = dict(
            config,
            modes=args.modes,
            new_tokens=args.new_tokens,
            hf_new_tokens=args.hf_new_tokens,
            uncached_new_tokens=args.uncached_new_tokens,
            calibration_tokens=args.calibration_tokens,
            call_seconds=args.call_seconds,
            repeats=args.repeats,
            torch_threads=args.torch_threads,
        )
        load = round(os.getloadavg()[0], 2)
        result = run_child(config, spec, args.timeout)
        new = expand(config, result, load, args.modes)
        rows += new
        for row in new:
            _print_progress(row)
    print_tables(rows)
    if not args.no_save:
        versions = common.package_versions(
            [*common.BACKEND_PACKAGES, "keras-hub", "transformers", "numpy"]
        )
        config = dict(
            SIZES,
            batch=1,
            sampler="greedy",
            attention_layers="lsh",
            modes=args.modes,
            new_tokens=args.new_tokens or "half",
            hf_new_tokens=args.hf_new_tokens,
            uncached_new_tokens=args.uncached_new_tokens,
            calibration_tokens=args.calibration_tokens,
            call_seconds=args.call_seconds,
            repeats=args.repeats,
            hf=args.hf,
            torch_threads=args.torch_threads,
            keras_reformer_revision=source_revision(),
        )
        common.save_result(
            BENCHMARK,
            None,
            rows,
            args.output_dir,
            config=config,
            versions=versions,
            note=args.note,
        )
    return rows


def source_revision():
    """The commit of the measured keras_reformer (`+dirty` with uncommitted changes in
    `keras_reformer/`), or None outside a git checkout."""
    import subprocess

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(common.REPO_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "keras_reformer")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def cpu_busy_seconds():
    """CPU seconds the whole machine has been busy since boot (`/proc/stat`), or NaN."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    except (OSError, ValueError):
        return float("nan")
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(config, spec, timeout):
    """`common.run_fresh` of one configuration, plus `other_busy_cores`: the CPU
    that other processes used meanwhile (machine busy time minus the child's own,
    per second of wall time): a shared machine's noise, for the reader."""
    busy, own, start = cpu_busy_seconds(), children_cpu_seconds(), time.perf_counter()
    # Default malloc (no CHILD_ENV): nothing here reads memory, and its small
    # mmap threshold slows allocation-heavy calls.
    result = common.run_fresh(
        __file__, spec, env={"KERAS_BACKEND": config["backend"]}, timeout=timeout, base_env={}
    )
    wall = time.perf_counter() - start
    others = (cpu_busy_seconds() - busy) - (children_cpu_seconds() - own)
    result["other_busy_cores"] = round(max(0.0, others) / wall, 2)
    return result


def _print_progress(row):
    common.print_progress(
        f"{row['implementation']} {row['mode']} {row['backend']} L={row['length']}",
        row,
        lambda row: (
            f"{row['ms_per_token']:.3g} ms/token ({row['new_tokens']} new tokens, "
            f"first call {row['first_call_seconds']:.1f} s), "
            f"{row.get('wall_seconds', 0):.0f} s wall"
        ),
    )


if __name__ == "__main__":
    if "--child" in sys.argv:
        common.child_main(child)
    else:
        main()
