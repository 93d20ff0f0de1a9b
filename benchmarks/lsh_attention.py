"""Forward + backward time and memory of one LSHSelfAttention against full attention.

One attention layer (d_model 256, 4 heads of 64, chunk 64, 4 hashes, batch 1,
causal) for lengths 1K..64K, each configuration in a fresh process:

```bash
KERAS_BACKEND=jax python benchmarks/lsh_attention.py --lengths 1024,2048,4096
python benchmarks/lsh_attention.py --backends jax,tensorflow,torch
python benchmarks/lsh_attention.py --dry-run        # the plan and memory estimates only
python benchmarks/lsh_attention.py --implementations lsh,lsh_dedup  # cost of correct_duplicates
```

Full attention is `keras.ops.dot_product_attention` between the same kind of
projections; `lsh_dedup` is the LSH layer with `correct_duplicates=True`. Each step is `loss = sum(output * cotangent)` and its gradient with
respect to the input and every weight, with the backend's own autodiff:
`jax.jit(jax.value_and_grad)`, `tf.function(jit_compile=True)` + `GradientTape`,
torch eager + `torch.autograd.grad`.

Memory (DESIGN.md, "how to measure memory reliably"): JAX, the compiled step's
`memory_analysis().temp_size_in_bytes`; TensorFlow, `get_memory_info("CPU:0")`
peak over the timed steps; torch, the bytes of the tensors saved for backward
(`saved_tensors_hooks`), plus the fresh process's peak RSS for every backend.
Configurations whose estimated memory exceeds `--memory-fraction` of the free
memory are skipped before they run. Time is the median of `--repeats` steps
after `--warmup` untimed ones.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

D_MODEL, HEADS, HEAD_DIM, CHUNK, HASHES, BATCH = 256, 4, 64, 64, 4, 1
DEFAULT_LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
IMPLEMENTATIONS = ("lsh", "lsh_dedup", "full")


def estimate_mib(implementation, length):
    """A rough upper estimate of one step's memory, to skip what cannot fit."""
    floats_per_token = 4 * D_MODEL * 8  # projections, inputs, outputs and their gradients
    if implementation == "full":
        # scores, probabilities and their gradients (a few (L, L) tensors per head)
        floats = HEADS * length * length * 4 + floats_per_token * length
    else:
        # per round: each query's window of 2 chunks of keys, a few logit-sized tensors
        window = HEADS * HASHES * length * 2 * CHUNK
        floats = 8 * window + HASHES * floats_per_token * length
    return BATCH * floats * 4 / common.MIB


# === Child: one configuration in a fresh process ===


def _build(implementation, length):
    import keras
    import numpy as np

    from keras_reformer.layers import LSHSelfAttention

    x = np.random.default_rng(0).normal(size=(BATCH, length, D_MODEL)).astype("float32")
    cotangent = np.random.default_rng(1).normal(size=x.shape).astype("float32")
    if implementation in IMPLEMENTATIONS[:2]:
        layer = LSHSelfAttention(
            HEADS,
            HEAD_DIM,
            chunk_length=CHUNK,
            num_hashes=HASHES,
            causal=True,
            seed=0,
            correct_duplicates=implementation == "lsh_dedup",
        )
    else:
        layer = _full_attention_class()()
    layer.build(x.shape)
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss(trainable, x, cotangent):
        out, _ = layer.stateless_call(trainable, non_trainable, x, training=True)
        return keras.ops.sum(keras.ops.multiply(out, cotangent))

    return layer, loss, x, cotangent


def _full_attention_class():
    import keras

    class FullAttention(keras.layers.Layer):
        """Projections as in LSHSelfAttention around `keras.ops.dot_product_attention`."""

        def build(self, inputs_shape):
            init = "glorot_uniform"
            self.qkv = self.add_weight((D_MODEL, 3, HEADS, HEAD_DIM), initializer=init, name="qkv")
            self.out = self.add_weight((HEADS, HEAD_DIM, D_MODEL), initializer=init, name="out")

        def call(self, x, training=None):
            qkv = keras.ops.einsum("blm,mkhd->kblhd", x, self.qkv)
            y = keras.ops.dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
            return keras.ops.einsum("blhd,hdm->blm", y, self.out)

    return FullAttention


def measure(spec):
    import keras

    backend = keras.backend.backend()
    implementation, length = spec["implementation"], spec["length"]
    layer, loss, x, cotangent = _build(implementation, length)
    trainable = [v.value for v in layer.trainable_variables]
    result = {"backend": backend, "implementation": implementation, "length": length}

    if backend == "jax":
        import jax

        step_fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

        def step():
            value, grads = step_fn(trainable, x, cotangent)
            jax.block_until_ready(grads)

        timing = common.time_steps(step, spec["warmup"], spec["repeats"])
        memory = common.jax_compiled_memory_mib(step_fn, trainable, x, cotangent)
        result["backend_peak_mib"] = memory.get("temp")
        result["backend_memory_source"] = "jax memory_analysis temp bytes"
        threads = len(os.sched_getaffinity(0))
    elif backend == "tensorflow":
        import tensorflow as tf

        x_t, c_t = tf.constant(x), tf.constant(cotangent)

        @tf.function(jit_compile=spec["tf_jit_compile"])
        def step_fn(trainable, x, cotangent):
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                tape.watch(x)
                value = loss(trainable, x, cotangent)
            return value, tape.gradient(value, [trainable, x])

        def step():
            value, grads = step_fn(trainable, x_t, c_t)
            _ = float(value)

        timing = common.time_steps(
            step, spec["warmup"], spec["repeats"], after_warmup=common.tf_reset_peak_memory
        )
        result["backend_peak_mib"] = common.tf_peak_memory_mib()
        result["backend_memory_source"] = "tf get_memory_info CPU:0 peak"
        threads = len(os.sched_getaffinity(0))
    else:
        import torch

        params = [t.detach().clone().requires_grad_(True) for t in trainable]
        device = params[0].device  # Keras' torch backend puts weights on the GPU if any
        x_t = torch.tensor(x, device=device, requires_grad=True)
        c_t = torch.tensor(cotangent, device=device)
        saved = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            saved[storage.data_ptr()] = storage.nbytes()
            return tensor

        def step():
            saved.clear()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                value = loss(params, x_t, c_t)
            torch.autograd.grad(value, params + [x_t])
            if device.type == "cuda":
                torch.cuda.synchronize()

        timing = common.time_steps(step, spec["warmup"], spec["repeats"])
        result["backend_peak_mib"] = sum(saved.values()) / common.MIB
        result["backend_memory_source"] = "torch bytes saved for backward"
        threads = torch.get_num_threads()
    result.update(timing)
    result["device_peak_mib"] = common.device_peak_mib(backend)
    result["peak_rss_mib"] = common.peak_rss_mib()
    result["threads"] = threads
    return result


# === Parent ===

# Printed after each configuration, and as the summary at the end.
ROW_COLUMNS = [
    "backend",
    "implementation",
    "length",
    "status",
    "threads",
    "step_seconds_median",
    "backend_peak_mib",
    "device_peak_mib",
    "peak_rss_mib",
    "estimate_mib",
]
SUMMARY_COLUMNS = [
    "backend",
    "implementation",
    "length",
    "status",
    "step_seconds_median",
    "backend_peak_mib",
    "peak_rss_mib",
    "error",
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        type=common.choice_list(common.BACKENDS),
        default=os.environ.get("KERAS_BACKEND", "jax"),
        help="comma-separated; each configuration runs in a fresh process",
    )
    parser.add_argument("--lengths", type=common.int_list, default=list(DEFAULT_LENGTHS))
    parser.add_argument(
        "--implementations",
        type=common.choice_list(IMPLEMENTATIONS),
        default=["lsh", "full"],
        help=f"comma-separated, any of {IMPLEMENTATIONS}",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--memory-fraction",
        type=float,
        default=0.6,
        help="skip configurations estimated above this share of free memory",
    )
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--no-tf-jit-compile", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="print the plan only")
    parser.add_argument("--no-write", action="store_true", help="do not write results/*.json")
    parser.add_argument("--output-dir", default=str(common.RESULTS_DIR))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    print(f"machine: {common.machine_info()}  load average: {os.getloadavg()}")
    rows = []
    for backend in args.backends:
        for length in args.lengths:
            for implementation in args.implementations:
                estimate = estimate_mib(implementation, length)
                budget = args.memory_fraction * common.available_memory_mib()
                row = {
                    "backend": backend,
                    "implementation": implementation,
                    "length": length,
                    "estimate_mib": round(estimate),
                }
                if estimate > budget:
                    row.update(
                        status="skipped",
                        error=f"estimated {estimate:.0f} MiB > budget {budget:.0f} MiB",
                    )
                elif args.dry_run:
                    row.update(status="skipped", error="dry run")
                else:
                    spec = {
                        "implementation": implementation,
                        "length": length,
                        "repeats": args.repeats,
                        "warmup": args.warmup,
                        "tf_jit_compile": not args.no_tf_jit_compile,
                    }
                    row.update(
                        common.run_fresh(
                            __file__,
                            spec,
                            env={"KERAS_BACKEND": backend},
                            timeout=args.timeout,
                            memory_limit_mib=max(2 * estimate, budget) + 2048,
                        )
                    )
                rows.append(row)
                print(common.format_table([row], ROW_COLUMNS), flush=True)
    _summary(rows)
    if not args.dry_run and not args.no_write:
        result = common.make_result(
            "lsh_attention",
            ",".join(args.backends),
            rows,
            config={
                "d_model": D_MODEL,
                "heads": HEADS,
                "head_dim": HEAD_DIM,
                "chunk": CHUNK,
                "hashes": HASHES,
                "batch": BATCH,
                "causal": True,
                "repeats": args.repeats,
                "warmup": args.warmup,
            },
            versions=common.package_versions(["keras", "jax", "tensorflow", "torch"]),
            note=f"load average before the run: {os.getloadavg()[0]:.2f}",
        )
        print("wrote", common.write_result(result, args.output_dir))


def _summary(rows):
    print("\nSummary")
    print(common.format_table(rows, SUMMARY_COLUMNS))
    ok = {
        (r["backend"], r["implementation"], r["length"]): r for r in rows if r.get("status") == "ok"
    }
    for (backend, implementation, length), row in sorted(ok.items()):
        if implementation == "lsh" and length == 16384 and (backend, "lsh", 4096) in ok:
            ratio = row["backend_peak_mib"] / ok[(backend, "lsh", 4096)]["backend_peak_mib"]
            print(f"{backend}: LSH memory 16K / 4K = {ratio:.2f} (target <= 4.5)")
        plain = ok.get((backend, "lsh", length))
        if implementation == "lsh_dedup" and plain:
            cost = row["step_seconds_median"] / plain["step_seconds_median"]
            print(f"{backend} L={length}: correct_duplicates / plain LSH time = {cost:.2f}")
        full = ok.get((backend, "full", length))
        if implementation == "lsh" and full:
            speedup = full["step_seconds_median"] / row["step_seconds_median"]
            print(f"{backend} L={length}: full / LSH time = {speedup:.2f}")


if __name__ == "__main__":
    if "--child" in sys.argv:
        common.child_main(measure)
    else:
        main()
