"""What `compile(jit_compile=True)` (Keras' `torch.compile` of the train step) does on torch.

Builds the model of `dispatch.py` (2 LSH layers, L 256, one torch thread), times
the first compiled `train_on_batch` (compilation) and the median of the next
`--repeats`, and the same model's eager step in the same process for
comparison; counts dynamo's graph breaks by reason and the recompile-limit
hits (from `torch._dynamo.utils.counters`). Writes
`benchmarks/results/torch_compile_*.json`. It takes minutes: the first
compiled step took 7-8 minutes on a 2-core CPU.

Usage:
    python benchmarks/torch_compile.py
"""

import argparse
import collections
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import dispatch  # noqa: E402

BENCHMARK = "torch_compile"
# The printed table and the docs' (make_figures.py).
TABLE_COLUMNS = [
    "depth",
    "length",
    "first_step_seconds",
    "compiled_step_ms",
    "eager_step_ms",
    "graph_breaks",
    "frames",
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    common.add_output_arguments(parser)
    args = parser.parse_args(argv)
    os.environ["KERAS_BACKEND"] = "torch"  # before anything imports Keras
    import torch
    from torch._dynamo.utils import counters

    torch.set_num_threads(1)
    eager = common.time_steps(dispatch.build_keras_step(args.depth), 3, args.repeats)
    step = dispatch.build_keras_step(args.depth, jit_compile=True)
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    timing = common.time_steps(step, 0, args.repeats)
    breaks = collections.Counter()  # reasons that differ after their first line add up
    for reason, count in counters["graph_break"].items():
        breaks[reason.splitlines()[0][:160]] += count
    row = {
        "depth": args.depth,
        "length": dispatch.LENGTH,
        "status": "ok",
        "first_step_seconds": round(first, 1),
        "compiled_step_ms": round(1000 * timing["step_seconds_median"], 1),
        "eager_step_ms": round(1000 * eager["step_seconds_median"], 1),
        "graph_breaks": sum(counters["graph_break"].values()),
        "frames": counters["frames"].get("total", 0),
        "break_reasons": dict(breaks),
    }
    print(common.format_table([row], TABLE_COLUMNS))
    for reason, count in sorted(breaks.items(), key=lambda item: -item[1]):
        print(f"{count:5d}  {reason}")
    if not args.no_save:
        common.save_result(
            BENCHMARK,
            "torch",
            [row],
            args.output_dir,
            config=dict(dispatch.SIZES, torch_threads=1),
            versions=common.package_versions(["keras", "torch"]),
            note=args.note,
        )


if __name__ == "__main__":
    main()
