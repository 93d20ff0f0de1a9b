"""JAX on a CPU: the train step with and without YNNPACK fusions, side by side.

jaxlib 0.10 and 0.11 hand reductions to YNNPACK on CPUs, where a sum over an axis
that is not the innermost one runs many times slower than XLA's own loops
(jax-ml/jax#37465). The backward pass of a Reformer has such sums: the gradient
of a layer normalisation's scale (over all tokens), of the hash rounds'
combination (over rounds). `XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-reduce`
keeps them out of YNNPACK.

YNNPACK's fusions also allocate buffers outside the XLA program's memory plan;
`--xla_cpu_experimental_ynn_fusion_type=` turns every YNNPACK fusion off.

This script times the JAX train step of `train_step.py` (same model, batch 1) in
fresh processes without a flag, with `-reduce` and with every fusion off
(`--variants`), alternating them `--rounds` times, and prints the median step
time and training memory of each variant and the speed ratio to the default. It writes
`benchmarks/results/jax_cpu_flags_*.json`.

Usage:
    python benchmarks/jax_cpu_flags.py --lengths 4096,16384 --depths 2,12 --rounds 3
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import train_step  # noqa: E402

BENCHMARK = "jax_cpu_flags"
NO_YNN_REDUCE = "--xla_cpu_experimental_ynn_fusion_type=-reduce"
NO_YNN = "--xla_cpu_experimental_ynn_fusion_type="  # every YNNPACK fusion off
VARIANTS = {"default": "", "no_ynn_reduce": NO_YNN_REDUCE, "no_ynn": NO_YNN}
# The docs' table (make_figures.py); the printed one leaves out the flags.
TABLE_COLUMNS = [
    "variant",
    "xla_flags",
    "length",
    "depth",
    "rounds",
    "step_seconds_median",
    "tokens_per_second",
    "speedup",
    "training_rss_mib",
]


def summarise(runs):
    """One row per length, depth and variant from the per-process `runs`.

    Returns rows with the median over rounds of each process's median step time,
    tokens per second, `speedup` (the default variant's median divided by
    this one's) and the median training memory (peak RSS minus RSS after the
    build, MiB; `None` where the runs did not record it).
    """
    groups, memory = {}, {}
    for run in runs:
        if run.get("status") == "ok":
            key = (run["length"], run["depth"], run["variant"])
            groups.setdefault(key, []).append(run["step_seconds_median"])
            if run.get("training_rss_mib") is not None:
                memory.setdefault(key, []).append(run["training_rss_mib"])
    rows = []
    for key, seconds in sorted(groups.items()):
        length, depth, variant = key
        median = statistics.median(seconds)
        default = groups.get((length, depth, "default"))
        rows.append(
            {
                "variant": variant,
                "backend": "jax",
                "length": length,
                "depth": depth,
                "xla_flags": VARIANTS[variant] or "(none)",
                "status": "ok",
                "rounds": len(seconds),
                "step_seconds": [round(s, 3) for s in seconds],
                "step_seconds_median": round(median, 3),
                "tokens_per_second": round(length / median, 1),
                "speedup": round(statistics.median(default) / median, 3) if default else None,
                "training_rss_mib": (
                    round(statistics.median(memory[key]), 1) if key in memory else None
                ),
            }
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=common.int_list, default=[4096, 16384])
    parser.add_argument("--depths", type=common.int_list, default=[2, 12])
    parser.add_argument("--rounds", type=int, default=3, help="processes per variant")
    parser.add_argument(
        "--variants", type=lambda t: t.split(","), default=list(VARIANTS), help=", ".join(VARIANTS)
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per process")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    common.add_output_arguments(parser)
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    runs = []
    for length in args.lengths:
        for depth in args.depths:
            for round_index in range(args.rounds):
                for variant in args.variants:
                    flags = VARIANTS[variant]
                    spec = dict(
                        implementation="keras_reformer",
                        length=length,
                        depth=depth,
                        warmup=1,
                        repeats=args.repeats,
                        jit_compile=True,
                        jax_memory_analysis=False,
                    )
                    run = common.run_fresh(
                        train_step.__file__,
                        spec,
                        timeout=args.timeout,
                        env={"KERAS_BACKEND": "jax", "XLA_FLAGS": flags},
                    )
                    run.update(variant=variant, length=length, depth=depth, round=round_index)
                    runs.append(run)
                    print(
                        f"L={length} depth={depth} round {round_index} {variant}: "
                        f"{run.get('step_seconds_median', run.get('error'))} s",
                        flush=True,
                    )
    rows = summarise(runs)
    print(common.format_table(rows, [c for c in TABLE_COLUMNS if c != "xla_flags"]))
    if not args.no_save:
        versions = common.package_versions(["keras", "jax", "jaxlib"])
        config = dict(
            train_step.SIZES,
            batch=1,
            rounds=args.rounds,
            repeats=args.repeats,
            variants={v: VARIANTS[v] for v in args.variants},
        )
        common.save_result(
            BENCHMARK,
            "jax",
            rows,
            args.output_dir,
            config=config,
            versions=versions,
            note=args.note,
        )
    return rows


if __name__ == "__main__":
    main()
