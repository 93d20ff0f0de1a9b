"""The longest sequence whose train step fits in this machine's memory, ours beside HF's.

One train step of `train_step.py`'s model (`measure_keras` / `measure_peer`: `--warmup`
untimed steps, then `--repeats` timed ones; `--warmup 0` times the first step, compilation
included) per try, each try a fresh process that the parent kills above
`--memory-limit-gib`. One search per implementation, backend, attention memory mode (on:
`ReformerModel(attention_slices=1)`) and depth: L doubles from `--start-length` while the try
before was ok. Details and commands: benchmarks/README.md, "Longest sequence".

Usage:
    python benchmarks/longest_sequence.py --dry-run        # the plan, from formula estimates
    python benchmarks/longest_sequence.py                  # the full search: hours
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import peers as peer_models  # noqa: E402
import train_step  # noqa: E402

BENCHMARK = "longest_sequence"
# ReformerModel keyword arguments per attention memory mode (passed only when on).
MODES = {"off": {}, "on": {"attention_slices": 1}}
SEARCH_KEYS = ("implementation", "backend", "mode", "depth")
HEADERS = {
    "length": "L", "step_seconds_median": "step s", "tokens_per_second": "tokens/s",
    "peak_rss_mib": "peak RSS MiB", "rss_after_build_mib": "built RSS MiB",
    "training_rss_mib": "training MiB", "finite_loss": "finite", "wall_seconds": "wall s",
    "longest_length": "longest L", "stopped_by": "stopped by", "ratio": "ours / HF",
    "ours_training_mib": "ours (mode on) MiB", "hf_training_mib": "HF MiB", "file": "from",
}  # fmt: skip
MEMORY = ("peak_rss_mib", "rss_after_build_mib", "training_rss_mib")
TRY_COLUMNS = [*SEARCH_KEYS, "length", "status", "step_seconds_median", "tokens_per_second",
               *MEMORY, "finite_loss", "wall_seconds"]  # fmt: skip
SUMMARY_COLUMNS = [*SEARCH_KEYS, "longest_length", "step_seconds_median", "peak_rss_mib",
                   "training_rss_mib", "stopped_by"]  # fmt: skip
RATIO_COLUMNS = ["backend", "depth", "length", "ours_training_mib", "hf_training_mib", "ratio"]
OVERALL_COLUMNS = [*SEARCH_KEYS, "longest_length", "step_seconds_median", "peak_rss_mib",
                   "stopped_by", "file"]  # fmt: skip


def headers(columns):
    return [HEADERS.get(c, c) for c in columns]


def _name(row):
    return " ".join(str(row[k]) for k in SEARCH_KEYS)


def searches(args):
    out = []
    for depth in args.depths:
        for backend in args.backends:
            out += [
                dict(implementation="keras_reformer", backend=backend, mode=m, depth=depth)
                for m in args.modes
            ]
        out += [dict(implementation=p, backend="torch", mode="-", depth=depth) for p in args.peers]
    return out


def lengths(args):
    out = [args.start_length]
    while out[-1] * 2 <= args.max_length:
        out.append(out[-1] * 2)
    return out


def estimate(ok, length):
    """Peak RSS (MiB) and wall seconds of a try at `length`, from the search's ok tries:
    affine in L through the last two (linear training memory from the last when alone)."""
    last = ok[-1]
    seconds = last["wall_seconds"] * length / last["length"]
    if len(ok) >= 2:
        return train_step._affine(ok[-2], last, "peak_rss_mib", length), seconds
    return last["baseline_rss_mib"] + last["training_rss_mib"] * length / last["length"], seconds


def run_search(search, args, limit_mib, on_gpu):
    rows = []
    for length in lengths(args):
        row = dict(search, length=length, batch=1)
        ok = [r for r in rows if r["status"] == "ok"]
        memory, seconds = estimate(ok, length) if ok else (0.0, 0.0)
        reason = not args.no_skip and train_step.skip_reason(
            memory, seconds, limit_mib, args.timeout, on_gpu
        )
        if reason:
            row.update(status="skipped", error=reason, estimate_mib=round(memory))
        else:
            spec = dict(search, length=length, warmup=args.warmup, repeats=args.repeats,
                        jit_compile=search["backend"] != "torch", jax_memory_analysis=False,
                        model_kwargs=MODES.get(search["mode"], {}))  # fmt: skip
            env = {"KERAS_BACKEND": search["backend"]}
            row.update(common.run_fresh(__file__, spec, env, args.timeout, limit_mib, 0.2))
            if row["status"] == "ok":
                row["rss_after_build_mib"] = row["baseline_rss_mib"]
            elif row.get("watched_peak_rss_mib"):
                row["peak_rss_mib"] = row["watched_peak_rss_mib"]  # what the guard saw
        rows.append(row)
        common.print_progress(
            f"{_name(search)} L={length}",
            row,
            lambda r: (
                f"{r['step_seconds_median']:.1f} s/step, peak RSS {r['peak_rss_mib']:.0f}"
                f" MiB (training {r['training_rss_mib']:.0f}), {r['wall_seconds']:.0f} s wall"
            ),
        )
        if row["status"] != "ok":
            break
    return rows


def summary_rows(rows):
    """Per search: its longest ok try, and what stopped it."""
    out = []
    for key in dict.fromkeys(tuple(r[k] for k in SEARCH_KEYS) for r in rows):
        tries = [r for r in rows if tuple(r[k] for k in SEARCH_KEYS) == key]
        best = max((r for r in tries if r["status"] == "ok"), key=lambda r: r["length"], default={})
        stop = next((r for r in tries if r["status"] != "ok"), None)
        stopped = "max length"
        if stop:
            stopped = f"{stop['status']} at {stop['length']}: " + (
                f"RSS {stop['peak_rss_mib']:.0f} MiB"
                if stop["status"] == "killed" and stop.get("peak_rss_mib")
                else str(stop.get("error", ""))[:80]
            )
        measured = {k: best.get(k) for k in ("step_seconds_median", *MEMORY)}
        out.append(dict(zip(SEARCH_KEYS, key), longest_length=best.get("length"), **measured,
                        stopped_by=stopped))  # fmt: skip
    return out


def longest_over_runs(results):
    """Per search: its longest ok try over several result files (the newest on a tie).

    Args:
        results: result dicts, oldest first, each with its file name under `_path`.

    Returns:
        One row per implementation, backend, mode and depth: `longest_length`,
        the step time and peak RSS of that try, and `file`, the result it came from.
    """
    best, failed = {}, defaultdict(list)
    for result in results:
        for row in result["rows"]:
            key = tuple(row[k] for k in SEARCH_KEYS)
            if row["status"] != "ok":
                failed[key].append(row)
            elif row["length"] >= best.get(key, {}).get("length", 0):
                best[key] = dict(row, file=Path(result["_path"]).name)
    out = []
    for key, row in sorted(best.items(), key=lambda item: tuple(map(str, item[0]))):
        longer = [r for r in failed[key] if r["length"] > row["length"]]
        stop = min(longer, key=lambda r: r["length"], default=None)
        stopped = f"{stop['status']} at {stop['length']}" if stop else "not tried longer"
        out.append(dict(zip(SEARCH_KEYS, key), longest_length=row["length"], file=row["file"],
                        stopped_by=stopped,
                        **{k: row.get(k) for k in ("step_seconds_median", "peak_rss_mib")}))  # fmt: skip
    return out


def ratio_rows(rows):
    """Ours (mode on) / HF training memory at each L >= 16384 and depth where both were ok."""
    ok = [r for r in rows if r["status"] == "ok" and r["length"] >= 16384]
    hf = {(r["length"], r["depth"]): r for r in ok if r["implementation"] == "hf_reformer"}
    out = []
    for ours in ok:
        theirs = hf.get((ours["length"], ours["depth"]))
        if ours["implementation"] == "keras_reformer" and ours["mode"] == "on" and theirs:
            mine, hf_mib = ours["training_rss_mib"], theirs["training_rss_mib"]
            out.append(dict(backend=ours["backend"], depth=ours["depth"], length=ours["length"],
                            ours_training_mib=mine, hf_training_mib=hf_mib,
                            ratio=mine / max(hf_mib, 1)))  # fmt: skip
    return out


def print_tables(rows):
    print("\n" + common.format_table(rows, TRY_COLUMNS, headers(TRY_COLUMNS)))
    for row in rows:
        if row["status"] != "ok":
            print(f"{row['status']}: {_name(row)} L={row['length']}: {row.get('error', '')}")
    print("\nlongest L that was ok, per search")
    print(common.format_table(summary_rows(rows), SUMMARY_COLUMNS, headers(SUMMARY_COLUMNS)))
    if ratio_rows(rows):
        print("\ntraining memory, ours with the memory mode on / HF, same L and depth")
        print(common.format_table(ratio_rows(rows), RATIO_COLUMNS, headers(RATIO_COLUMNS)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", type=common.choice_list(common.BACKENDS), default=list(common.BACKENDS)
    )
    parser.add_argument(
        "--modes", type=common.choice_list(MODES), default=list(MODES), help="attention memory mode"
    )
    parser.add_argument(
        "--peers",
        type=common.choice_list(peer_models.PEERS, peer_models.PEER_ALIASES),
        default=["hf_reformer"],
        help="hf, or none",
    )
    parser.add_argument("--depths", type=common.int_list, default=[2, 6])
    parser.add_argument("--start-length", type=int, default=4096)
    parser.add_argument("--max-length", type=int, default=2**21)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (compilation)")
    parser.add_argument("--repeats", type=int, default=1, help="timed steps after the warm-up")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per try")
    parser.add_argument(
        "--memory-limit-gib", type=float, default=None, help="kill above (default: 90%% of RAM)"
    )
    parser.add_argument("--no-skip", action="store_true", help="try even what estimates refuse")
    common.add_output_arguments(parser, dry_run_help="print the plan and exit")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.peers = peer_models.installed_peers(args.peers)
    limit_mib = common.memory_guard_mib(args.memory_limit_gib)
    machine, plan = common.machine_info(), searches(args)
    print(
        f"machine: {machine['cpu']}, {machine['threads']} threads, {machine['memory_gib']} GiB; "
        f"memory guard {limit_mib / 1024:.1f} GiB; {len(plan)} searches over L {lengths(args)}"
    )
    if args.dry_run:  # train_step's formula estimates: rough, blind to the memory mode
        total = 0.0
        for search in plan:
            tries = []
            for length in lengths(args):
                memory, seconds = train_step.estimate(dict(search, length=length), [])
                tries.append(f"{length} (~{memory / 1024:.1f} GiB)")
                if memory > limit_mib:
                    break
                total += 30 + seconds * (args.warmup + args.repeats) * 1.3
            print(f"{_name(search)}: {', '.join(tries)}")
        print(f"estimated wall time: {total / 3600:.1f} h (formulas; slower backends take longer)")
        return []
    config = dict(train_step.SIZES, batch=1, learning_rate=train_step.LEARNING_RATE,
                  warmup=args.warmup, repeats=args.repeats, timeout=args.timeout,
                  memory_guard_mib=limit_mib, start_length=args.start_length,
                  max_length=args.max_length, modes={m: MODES[m] for m in args.modes},
                  peers=args.peers)  # fmt: skip
    versions = common.package_versions([*common.BACKEND_PACKAGES, "transformers", "numpy"])
    backends = ",".join(sorted({search["backend"] for search in plan}))
    result = common.make_result(BENCHMARK, backends, [], config, versions, args.note)
    rows = []
    for search in plan:
        rows += run_search(search, args, limit_mib, machine["accelerator"] != "none")
        if not args.no_save:  # after every search, so that a stopped run keeps its tries
            path = common.write_result(dict(result, rows=rows), args.output_dir)
    print_tables(rows)
    if not args.no_save and rows:
        print(f"\nwrote {path}")
    return rows


if __name__ == "__main__":
    if "--child" in sys.argv:
        common.child_main(train_step.child)  # a try is train_step's child
    else:
        main()
