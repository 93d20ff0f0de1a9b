"""Shared measuring helpers of the benchmarks: memory, timing, fresh processes, JSON results.

Every benchmark script in this folder writes its results as one JSON file under
`benchmarks/results/` with this schema (`make_result` builds it, `validate_result`
checks it, `benchmarks/make_figures.py` reads every such file):

```
{
  "benchmark": "train_step",             # the script's name: train_step, lsh_attention, ...
  "date": "2025-01-31T12:00:00+00:00",   # ISO 8601, UTC
  "machine": {"cpu": "...", "cores": 2, "threads": 2, "memory_gib": 23.4, "platform": "..."},
  "backend": "jax,torch",                # the backend(s) of the run; a row's own "backend" wins
  "command": "python benchmarks/train_step.py --lengths 1024",   # reproduces the file
  "versions": {"keras": "3.15.1", ...},
  "config": {...},                       # fixed settings of the run (sizes, repeats, ...)
  "note": "",                            # free text, e.g. "machine shared, numbers noisy"
  "rows": [ {...}, ... ]                 # one dict per measured configuration
}
```

Row keys that `make_figures.py` understands (use these names, add any others):

- `status`: `"ok"`, `"skipped"`, `"timeout"`, `"failed"` or `"killed"` (only `"ok"` rows are plotted).
- `backend`: `"jax"`, `"tensorflow"` or `"torch"`.
- `implementation` (or `variant`): what is measured, e.g. `"keras_reformer"`, `"hf_reformer"`,
  `"lsh"`, `"full"`, `"reversible"`, `"plain"`.
- x axes: `length` (sequence length), `depth` (number of layers), `batch`.
- memory, MiB: `peak_rss_mib` (peak RSS of the fresh process), `training_rss_mib` (that minus
  the RSS after imports and model build), `backend_peak_mib` (the backend's own number:
  JAX compiled temp bytes, TensorFlow `get_memory_info` peak, torch saved tensors) with
  `backend_memory_source` naming it; `device_peak_mib` (peak GPU memory of the backend's
  allocator, only when a GPU ran the configuration).
- time: `step_seconds_median`, `step_seconds` (list), `tokens_per_second`, `warmup_seconds`.
"""

import argparse
import datetime
import functools
import importlib.util
import json
import os
import platform
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

BENCHMARK_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARK_DIR.parent
RESULTS_DIR = BENCHMARK_DIR / "results"
RESULT_MARKER = "@@BENCHMARK_RESULT@@"
REQUIRED_KEYS = ("benchmark", "date", "machine", "backend", "rows")
# Allocations above 128 KiB get their own mmap and go back to the OS when freed,
# so the RSS of a child process follows its live tensors (glibc malloc).
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}
# The allocator settings a benchmark child may run under (`--malloc`): glibc's
# small mmap threshold (RSS follows live tensors: the memory numbers' default),
# glibc's defaults (what a user gets), or no mmap at all (freed buffers are
# reused without page faults: fastest on a CPU, RSS keeps its high-water mark).
MALLOC_ENVS = {
    "small-mmap": CHILD_ENV,
    "default": {},
    "no-mmap": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)},
}
# TensorFlow counts CPU memory (its allocator peak) only in oneDNN's allocator,
# which it turns on by default only on CPUs with AVX-512 or AMX: children get
# it everywhere unless the caller's environment says otherwise.
TF_MEMORY_ENV = {"TF_ENABLE_ONEDNN_OPTS": "1"}
# Environment variables that change what is measured: a result's command
# carries them, so that it reproduces the numbers.
RECORDED_ENV = ("XLA_FLAGS", "TF_ENABLE_ONEDNN_OPTS")
MIB = 1024 * 1024


# === Machine and versions ===


def machine_info():
    """The machine a result was measured on: cpu model, cores, usable threads, memory."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "memory_gib": round(total_memory_mib() / 1024, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "accelerator": accelerator_name(),
    }


def backend_threads(backend):
    """The threads a backend computes with: torch's `get_num_threads`, else the CPU count."""
    if backend == "torch":
        import torch

        return torch.get_num_threads()
    return os.cpu_count()


def accelerator_name():
    """The GPU the backends will use (`nvidia-smi`'s name), or "none" on a CPU-only machine."""
    try:
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "none"
    return ", ".join(line.strip() for line in names.stdout.splitlines() if line.strip()) or "none"


def _meminfo_mib(key):
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def total_memory_mib():
    return _meminfo_mib("MemTotal")


def available_memory_mib():
    return _meminfo_mib("MemAvailable")


def package_versions(names):
    """`{name: version}` of the installed distributions among `names` (missing ones left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


# === Memory ===


def rss_mib(pid=None):
    """Current resident set size of a process (default: this one), in MiB."""
    path = f"/proc/{pid or 'self'}/statm"
    try:
        pages = int(Path(path).read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB


def peak_rss_mib():
    """Peak resident set size of this process since it started, in MiB (Linux: ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss():
    """Resets this process's RSS high-water mark (Linux `/proc/self/clear_refs`).

    After it, `peak_rss_mib()` reports the peak since the reset (e.g. of the
    timed steps only, without compilation). Read the lifetime peak first: the
    reset lowers `ru_maxrss` too. Trims the malloc heap first.

    Returns:
        Whether the reset worked.
    """
    release_free_heap()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def release_free_heap():
    """Returns freed malloc heap pages to the OS (glibc `malloc_trim`), so the RSS
    that follows counts live memory, not what compilation freed but kept."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def jax_compiled_memory_mib(jitted, *args):
    """Memory XLA plans for one call of a `jax.jit` function, from `memory_analysis()`.

    Deterministic, unlike RSS. Compiles `jitted` for `args` again (do it after the
    RSS reading: compilation itself allocates).

    Returns:
        A dict of MiB: `temp` (intermediate buffers: the training memory),
        `argument`, `output`, `generated_code`; empty if unavailable.
    """
    try:
        analysis = jitted.lower(*args).compile().memory_analysis()
    except Exception as error:  # noqa: BLE001  (backend without the analysis)
        return {"error": repr(error)[:200]}
    if analysis is None:
        return {}
    return {
        "temp": analysis.temp_size_in_bytes / MIB,
        "argument": analysis.argument_size_in_bytes / MIB,
        "output": analysis.output_size_in_bytes / MIB,
        "generated_code": analysis.generated_code_size_in_bytes / MIB,
    }


def tf_reset_peak_memory(device="CPU:0"):
    """Resets TensorFlow's allocator peak where it keeps one (see `TF_MEMORY_ENV`)."""
    import tensorflow as tf

    try:
        tf.config.experimental.reset_memory_stats(device)
    except ValueError:  # no statistics on this device: the peak reads as NaN
        pass


def tf_peak_memory_mib(device="CPU:0"):
    """TensorFlow's allocator peak since the last `tf_reset_peak_memory` (NaN if unsupported)."""
    import tensorflow as tf

    try:
        return tf.config.experimental.get_memory_info(device)["peak"] / MIB
    except (ValueError, RuntimeError):
        return float("nan")


def reset_device_peak(backend):
    """Resets the GPU allocator's high-water mark where the backend can (torch, TensorFlow)."""
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")


def device_peak_mib(backend):
    """Peak GPU memory the backend's allocator handed out, in MiB; None on CPU.

    torch and TensorFlow: since the last `reset_device_peak`; JAX: since the
    process started (its `memory_stats()` has no reset).
    """
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / MIB
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "gpu":
            return (device.memory_stats() or {}).get("peak_bytes_in_use", float("nan")) / MIB
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / MIB
    return None


# === Timing ===


def time_steps(step, warmup=1, repeats=3, after_warmup=None):
    """Runs `step()` `warmup` times untimed (compilation), then `repeats` timed times.

    `step` must finish its work before returning (convert a result to numpy on
    asynchronous backends). `after_warmup()`, if given, runs between the two
    (e.g. to reset a peak-memory counter).

    Returns:
        A dict with `warmup_seconds` (list), `step_seconds` (list) and
        `step_seconds_median`.
    """
    warmup_seconds, step_seconds = [], []
    for _ in range(warmup):
        start = time.perf_counter()
        step()
        warmup_seconds.append(time.perf_counter() - start)
    if after_warmup is not None:
        after_warmup()
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        step_seconds.append(time.perf_counter() - start)
    return {
        "warmup_seconds": [round(s, 4) for s in warmup_seconds],
        "step_seconds": [round(s, 4) for s in step_seconds],
        "step_seconds_median": statistics.median(step_seconds) if step_seconds else float("nan"),
    }


# === Fresh-process runner ===


def run_fresh(
    script,
    spec,
    env=None,
    timeout=1800,
    memory_limit_mib=None,
    poll_seconds=0.1,
    base_env=CHILD_ENV,
):
    """Runs `python script --child '<spec as JSON>'` in a fresh process and returns its result.

    The child prints one line `RESULT_MARKER <json>` (see `child_main`). The
    parent watches the child's RSS and kills it above `memory_limit_mib` (a
    guard against swapping the shared machine to death, not a measurement)
    and after `timeout` seconds. The child's environment is `TF_MEMORY_ENV`,
    overridden by this one, plus `base_env` (by default `CHILD_ENV`, glibc's
    small mmap threshold) plus `env`.

    Returns:
        The child's result dict, or `{"status": "timeout" | "killed" | "failed",
        "error": ...}`; always with `wall_seconds`.
    """
    child_env = {**TF_MEMORY_ENV, **os.environ, **base_env, **(env or {})}
    # The child measures this checkout's keras_reformer, installed or not.
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), child_env.get("PYTHONPATH", "")) if p
    )
    command = [sys.executable, str(script), "--child", json.dumps(spec)]
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(REPO_ROOT),
        start_new_session=True,
    )
    status, error, watched_peak = None, "", 0.0
    output = {}

    def _drain(name, stream):
        output[name] = stream.read()

    readers = [
        threading.Thread(target=_drain, args=(n, s), daemon=True)
        for n, s in (("stdout", process.stdout), ("stderr", process.stderr))
    ]
    for reader in readers:
        reader.start()
    while process.poll() is None:
        elapsed = time.perf_counter() - start
        current = rss_mib(process.pid)
        if current == current:
            watched_peak = max(watched_peak, current)
        if elapsed > timeout:
            status, error = "timeout", f"no result after {timeout:.0f} s"
        elif memory_limit_mib and current > memory_limit_mib:
            status, error = (
                "killed",
                f"RSS {current:.0f} MiB above the guard {memory_limit_mib:.0f} MiB",
            )
        if status:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            break
        time.sleep(poll_seconds)
    for reader in readers:
        reader.join(timeout=10)
    wall = time.perf_counter() - start
    if status is None:
        for line in reversed(output.get("stdout", "").splitlines()):
            if line.startswith(RESULT_MARKER):
                result = json.loads(line[len(RESULT_MARKER) :])
                result["wall_seconds"] = round(wall, 2)
                return result
        status = "failed"
        tail = (output.get("stderr", "") or output.get("stdout", "")).strip().splitlines()[-6:]
        error = f"exit code {process.returncode}: " + " | ".join(tail)
        if process.returncode == -signal.SIGKILL:
            status, error = "killed", "killed by SIGKILL (out of memory?)"
    return {
        "status": status,
        "error": error[:600],
        "wall_seconds": round(wall, 2),
        "watched_peak_rss_mib": round(watched_peak, 1),
    }


def print_progress(head, row, describe):
    """One line per finished run: `head: describe(row)`, or its status and error."""
    if row["status"] == "ok":
        print(f"{head}: {describe(row)}", flush=True)
    else:
        print(f"{head}: {row['status']}: {row.get('error', '')}", flush=True)


def child_main(measure):
    """Entry point of a child process: runs `measure(spec)` and prints its result line.

    Call as `child_main(fn)` when `sys.argv` holds `--child <json>`; exceptions
    become `{"status": "failed", "error": ...}` so the parent reports them.
    """
    spec = json.loads(sys.argv[sys.argv.index("--child") + 1])
    try:
        result = measure(spec)
        result.setdefault("status", "ok")
    except Exception as error:  # noqa: BLE001  (reported, not raised)
        import traceback

        traceback.print_exc()
        result = {"status": "failed", "error": f"{type(error).__name__}: {error}"[:600]}
    sys.stdout.flush()
    print(RESULT_MARKER + json.dumps(result, default=float), flush=True)


# === Results ===


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def command_line():
    """The command that ran this script, as a shell line relative to the repository root.

    Set variables of `RECORDED_ENV` come first, as `NAME=value python ...`.
    """
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO_ROOT)
    except ValueError:
        pass
    env = [
        f"{name}={shlex.quote(os.environ[name])}" for name in RECORDED_ENV if os.environ.get(name)
    ]
    return " ".join(
        env + ["python", shlex.quote(str(script))] + [shlex.quote(a) for a in sys.argv[1:]]
    )


def make_result(benchmark, backend, rows, config=None, versions=None, note="", command=None):
    """A result dict in the schema of this module (see the module docstring)."""
    return {
        "benchmark": benchmark,
        "date": now_iso(),
        "machine": machine_info(),
        "backend": backend,
        "command": command or command_line(),
        "versions": versions or {},
        "config": config or {},
        "note": note,
        "rows": rows,
    }


def validate_result(result):
    """Raises ValueError if `result` does not follow the schema."""
    missing = [key for key in REQUIRED_KEYS if key not in result]
    if missing:
        raise ValueError(f"Result misses keys {missing}. Received keys: {sorted(result)}")
    if not isinstance(result["rows"], list) or not all(isinstance(r, dict) for r in result["rows"]):
        raise ValueError("`rows` must be a list of dicts.")
    datetime.datetime.fromisoformat(result["date"])
    return result


def write_result(result, directory=RESULTS_DIR, stem=None):
    """Writes `result` as `<benchmark>_<backend>_<date>.json` in `directory`; returns the path."""
    validate_result(result)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = result["date"].replace(":", "").replace("-", "").split("+")[0]
    backend = str(result["backend"]).replace(",", "-") or "none"
    path = directory / f"{stem or result['benchmark']}_{backend}_{stamp}.json"
    path.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return path


def save_result(benchmark, backend, rows, output_dir, **fields):
    """`make_result` (`fields`: config, versions, note, command) written into
    `output_dir`; prints and returns the path. `backend=None`: the rows'
    backends, comma-separated."""
    if backend is None:
        backend = ",".join(sorted({row["backend"] for row in rows}))
    path = write_result(make_result(benchmark, backend, rows, **fields), output_dir)
    print(f"\nwrote {path}")
    return path


def load_results(directory=RESULTS_DIR):
    """Every valid result file under `directory` (not in `tmp/`), oldest first, with `_path`."""
    results = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            result = validate_result(json.loads(path.read_text()))
        except (ValueError, json.JSONDecodeError) as error:
            print(f"ignored {path.name}: {error}", file=sys.stderr)
            continue
        result["_path"] = str(path)
        results.append(result)
    return sorted(results, key=lambda r: r["date"])


@functools.cache
def load_example(name):
    """The module of `examples/<name>.py`, loaded from its file (once per process)."""
    path = REPO_ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# === Command-line arguments ===

BACKENDS = ("jax", "tensorflow", "torch")
# The packages whose versions every multi-backend result records.
BACKEND_PACKAGES = ("keras", "jax", "jaxlib", "tensorflow", "torch")


def int_list(text):
    """`"1024,4096"` as `[1024, 4096]`: an argparse `type` for comma-separated integers."""
    return [int(v) for v in text.split(",") if v]


def choice_list(choices, aliases=None):
    """An argparse `type` for comma-separated names out of `choices` ("none" for none).

    `aliases` maps short names to names in `choices` (e.g. `hf` to `hf_reformer`);
    an unknown name is a usage error.
    """

    def parse(text):
        names = [(aliases or {}).get(v, v) for v in text.split(",") if v and v != "none"]
        unknown = [v for v in names if v not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {list(choices)}")
        return names

    return parse


def add_output_arguments(parser, dry_run_help=None):
    """The options of where and whether a script saves its result: `--output-dir`,
    `--note`, `--no-save`, and `--dry-run` when `dry_run_help` says what it prints."""
    parser.add_argument("--output-dir", default=str(RESULTS_DIR))
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--no-save", action="store_true")
    if dry_run_help:
        parser.add_argument("--dry-run", action="store_true", help=dry_run_help)


def memory_guard_mib(limit_gib):
    """The parent's memory guard: `--memory-limit-gib` in MiB, by default 90% of the memory."""
    return limit_gib * 1024 if limit_gib else 0.9 * total_memory_mib()


# === Printing ===


def format_value(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def format_table(rows, columns, headers=None, markdown=False):
    """Rows of dicts as an aligned text table (or a markdown table).

    `columns` is a list of row keys (each its own header unless `headers` are
    given) or a dict of row key to header.
    """
    if isinstance(columns, dict):
        columns, headers = list(columns), headers or list(columns.values())
    headers = headers or columns
    cells = [[format_value(row.get(column)) for column in columns] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(line) + " |" for line in cells]
        return "\n".join(lines)
    widths = [
        max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def best_of_rounds(rows, keys, measure, higher_is_better=True):
    """One row per configuration: of its rounds, the one with the best `measure`.

    Noise on a shared machine only slows a step down, and it drifts over
    minutes; a script's `--rounds` runs its whole plan again, so that each
    configuration and its peers get several chances spread over the run. The
    kept row lists every ok round's `measure` in `<measure>_rounds`.

    Args:
        rows: result rows, each with a `status` and the `keys`.
        keys: the row fields that name a configuration.
        measure: the field compared across rounds (e.g. `tokens_per_second`).
        higher_is_better: whether the largest `measure` wins (else the smallest).

    Returns:
        A list of rows, one per configuration, in the order they first appear.
    """
    groups = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    best = []
    for group in groups.values():
        ok = [r for r in group if r["status"] == "ok"]
        if len(group) == 1 or not ok:
            best.append(group[0])
            continue
        pick = max if higher_is_better else min
        chosen = dict(pick(ok, key=lambda r: r[measure]))
        chosen[f"{measure}_rounds"] = [round(r[measure], 1) for r in ok]
        best.append(chosen)
    return best
