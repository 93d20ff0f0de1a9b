"""Peak training-step memory of the reversible stack vs the same blocks with
ordinary residuals, per backend, as depth grows.

Blocks: F = PreLayerNorm(LSHSelfAttention), G = PreLayerNorm(ChunkedFeedForward),
d_model 256 (each half of the reversible stream), batch 1.

Two modes, each backend (and in `rss` mode each configuration) in a fresh
subprocess:
- `measured` (default): the reliable per-backend measure of
  tests/backend/memory_utils.py (JAX: compiled temp bytes; TensorFlow: allocator
  peak; torch: bytes saved for backward, weights excluded).
- `rss`: peak RSS of a fresh process that builds the stack and runs one
  training step, with MALLOC_MMAP_THRESHOLD_=131072 so freed buffers go back
  to the OS (comparable with peers' fresh-process numbers).

Usage:
    python benchmarks/reversible_memory.py --backends jax,tensorflow,torch \
        --lengths 4096,16384 --depths 1,2,4,8,12 [--mode rss]
"""

import argparse
import json
import os
import subprocess
import sys

import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 2**20
MEASURE = {
    "jax": "compiled temp bytes",
    "tensorflow": "allocator peak",
    "torch": "bytes saved for backward",
}


def build_stack(reversible, depth, d_model, length):
    from keras_reformer.layers import ChunkedFeedForward
    from keras_reformer.layers import LSHSelfAttention
    from keras_reformer.layers import PreLayerNorm
    from keras_reformer.layers import ReversibleBlock
    from keras_reformer.layers import ReversibleSequence
    from tests.layers.reversible_testing import PlainStack

    def attention(i):
        return LSHSelfAttention(
            num_heads=4, key_dim=d_model // 4, chunk_length=64, num_hashes=2, seed=i
        )

    blocks = [
        ReversibleBlock(
            PreLayerNorm(attention(i)),
            PreLayerNorm(ChunkedFeedForward(4 * d_model, chunk_length=512, seed=i)),
        )
        for i in range(depth)
    ]
    stack = ReversibleSequence(blocks) if reversible else PlainStack(blocks)
    stack.build((1, length, 2 * d_model))
    return stack


def run_jax_step(stack, x):
    import jax

    def loss(values, inputs):
        output, _ = stack.stateless_call(
            values, [v.value for v in stack.non_trainable_variables], inputs, training=True
        )
        return (output * output).sum() / 2

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))([v.value for v in stack.trainable_variables], x)
    jax.block_until_ready(grads)


def child(config):
    """One backend (measured mode) or one configuration (rss mode)."""
    sys.path.insert(0, ROOT)
    import numpy as np

    from tests.backend.memory_utils import training_step_bytes

    results = []
    for length in config["lengths"]:
        x = np.random.default_rng(0).normal(size=(1, length, 2 * config["d_model"]))
        x = x.astype("float32")
        for reversible in config["stacks"]:
            for depth in config["depths"]:
                stack = build_stack(reversible, depth, config["d_model"], length)
                if config["mode"] == "rss":
                    import resource

                    training_step_bytes(stack, x, training=True)  # runs the step on tf/torch
                    if os.environ["KERAS_BACKEND"] == "jax":  # there it only compiles: run it
                        run_jax_step(stack, x)
                    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                else:
                    value = training_step_bytes(stack, x, training=True)
                results.append(
                    {"length": length, "reversible": reversible, "depth": depth, "mib": value / MIB}
                )
    print("RESULT " + json.dumps(results))


def mib_per_extra_layer(mib_by_depth):
    """Slope of memory against depth, from depth 2 (where the backward walk first
    goes through more than one block) to the deepest stack; NaN without two such depths."""
    depths = sorted(d for d in mib_by_depth if d >= 2)
    if len(depths) < 2:
        return float("nan")
    low, high = depths[0], depths[-1]
    return (mib_by_depth[high] - mib_by_depth[low]) / (high - low)


def run_child(backend, config):
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "MALLOC_MMAP_THRESHOLD_": "131072",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise RuntimeError(f"{backend} child failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--lengths", default="4096,16384")
    parser.add_argument("--depths", default="1,2,4,8,12")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--mode", choices=["measured", "rss"], default="measured")
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    lengths = [int(v) for v in args.lengths.split(",")]
    depths = [int(v) for v in args.depths.split(",")]
    print(f"mode={args.mode} d_model={args.d_model} batch=1 (MiB)")
    key = "peak_rss_mib" if args.mode == "rss" else "backend_peak_mib"
    rows = []
    for backend in args.backends.split(","):
        base = {"lengths": lengths, "d_model": args.d_model, "mode": args.mode}
        if args.mode == "rss":  # one fresh process per configuration
            results = [
                r
                for reversible in (True, False)
                for depth in depths
                for r in run_child(backend, {**base, "stacks": [reversible], "depths": [depth]})
            ]
        else:
            try:
                results = run_child(backend, {**base, "stacks": [True, False], "depths": depths})
            except RuntimeError as error:  # keep the other backends' results
                print(error, flush=True)
                rows.append({"backend": backend, "status": "failed", "error": str(error)[-500:]})
                continue
        for r in results:
            rows.append(
                {
                    "variant": "reversible" if r["reversible"] else "plain",
                    "backend": backend,
                    "length": r["length"],
                    "depth": r["depth"],
                    key: round(r["mib"], 2),
                }
            )
            if args.mode == "measured":
                rows[-1]["backend_memory_source"] = MEASURE[backend]
        for length in lengths:
            for reversible in (True, False):
                by_depth = {
                    r["depth"]: r["mib"]
                    for r in results
                    if r["length"] == length and r["reversible"] == reversible
                }
                cells = "  ".join(f"d{d}={by_depth[d]:8.1f}" for d in sorted(by_depth))
                name = "reversible" if reversible else "plain     "
                print(
                    f"{backend:10s} L={length:6d} {name} {cells}  "
                    f"MiB/extra layer={mib_per_extra_layer(by_depth):6.2f}",
                    flush=True,
                )
    if not args.no_save:
        result = common.make_result(
            "reversible_memory",
            args.backends,
            rows,
            config={
                "d_model": args.d_model,
                "batch": 1,
                "mode": args.mode,
                "attention": "LSH, 4 heads, chunk 64, 2 hashes",
                "feed_forward": "intermediate 4 d_model, chunk 512",
            },
            versions=common.package_versions(["keras", "jax", "tensorflow", "torch"]),
            note=args.note,
        )
        print("wrote", common.write_result(result))


if __name__ == "__main__":
    main()
