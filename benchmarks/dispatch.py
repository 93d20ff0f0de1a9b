"""Host work per train step on torch: aten ops and milliseconds, ours beside HF's Reformer.

At compute-trivial sizes an eager torch train step costs what the host spends
dispatching ops, not arithmetic; on a GPU that host work is what bounds the
step. This script measures it side by side: one causal LM train step (batch 1,
vocabulary 64, hidden 32, 2 heads of 16, intermediate 128, L 256, chunk 32,
2 hash rounds, no dropout, SGD, one torch thread) of

- **keras_reformer**: `ReformerCausalLM` on the torch backend, all layers LSH,
  through `train_on_batch` (Keras' own train step: what `fit` runs),
- **keras_reformer_torch_loop**: the same model as a `torch.nn.Module` (which a
  Keras model on torch is) in the plain PyTorch loop that drives HF's model
  (`peers.torch_loop_step`: the same loss, SGD and input), without Keras'
  trainer, loss and metrics, and
- **hf_reformer**: Hugging Face's `ReformerModelWithLMHead` of the same sizes
  (`peers.build_peer`), forward + loss + backward + SGD,

each at depth 2 and 6 in a fresh process. `host ms` is the median of
`--repeats` steps after `--warmup`, and of `--rounds` runs of the whole plan
(interleaved, so that drift of a shared machine hits both alike) the
fastest; `aten ops` counts the `aten::` events
`torch.profiler` records over one more step (nested ops included, so a no-op
`aten::to` counts too: the profiler's view of what was dispatched), and `host
syncs` the `aten::_local_scalar_dense` among them: each reads a tensor's value
on the host (`item()`, `int()`, `float()`), which on a GPU waits for every op
queued before it (so do copies to the host, which a CPU run cannot tell from
no-ops). `ops per layer` is the slope between the two depths.

`issued by` names the package of the Python frame that dispatched each op
(`keras` for the conversions inside `keras.ops` and Keras' layer and trainer
code, `torch` for torch's Python wrappers, `autograd engine` for backward ops
with no Python frame). `where` attributes every aten op to the innermost frame of the implementation's
own source (`keras_reformer/...` or HF's `modeling_reformer.py`) that called
it: ops that Keras or torch run on our behalf count where our code asked for
them. Ops that autograd runs for a backward pass count where the backward
was requested (for ours: `backend/torch_backend.py: vjp`, the backward of each
recomputed block; `train_on_batch` holds Keras' trainer, the loss, the
optimizer and the last backward).

Usage:
    python benchmarks/dispatch.py                    # both, depth 2 and 6
    python benchmarks/dispatch.py --depths 2 --where 40
"""

import argparse
import collections
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import peers as peer_models  # noqa: E402

BENCHMARK = "dispatch"
IMPLEMENTATIONS = ("keras_reformer", "keras_reformer_torch_loop", "hf_reformer")
SIZES = dict(vocabulary=64, hidden=32, heads=2, head_size=16, intermediate=128, chunk=32, hashes=2)
LENGTH = 256
SOURCE_MARKERS = {
    "keras_reformer": "keras_reformer/",
    "keras_reformer_torch_loop": "keras_reformer/",
    "hf_reformer": "transformers/models/reformer/",
}


# === Child process ===


def build_keras_step(depth, jit_compile=False):
    """`ReformerCausalLM`'s `train_on_batch` on this benchmark's model and data, as a
    function returning the loss (`jit_compile` as in `model.compile`)."""
    import keras

    model = peer_models.build_causal_lm(SIZES, LENGTH, depth)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=1e-3),
        jit_compile=jit_compile,
        weighted_metrics=None,
    )
    x, y = peer_models.next_token_batch(SIZES["vocabulary"], LENGTH)
    return lambda: float(model.train_on_batch(x, y, return_dict=True)["loss"])


def build_torch_loop_step(depth):
    """The benchmark's `ReformerCausalLM` as a torch module in HF's peers' plain
    PyTorch loop (`peers.torch_loop_step`), as a function returning the loss."""
    import torch

    model = peer_models.build_causal_lm(SIZES, LENGTH, depth)
    token_ids = torch.randint(
        0, SIZES["vocabulary"], (1, LENGTH), generator=torch.Generator().manual_seed(0)
    )
    step, _ = peer_models.torch_loop_step(model, peer_models.keras_next_token_loss, token_ids)
    return step


ISSUERS = (
    ("keras_reformer/", "keras_reformer"),
    ("transformers/", "transformers"),
    ("keras/", "keras"),
    ("torch/", "torch"),
)


def attribute(events, marker):
    """aten op counts per innermost `marker` source frame (`file(line): function` -> count),
    and per package of the innermost Python frame (who issued the op: e.g. `keras` for
    the conversions inside `keras.ops` and Keras' layer and trainer code)."""
    sites, issuers = collections.Counter(), collections.Counter()
    for event in events:
        if not event.name.startswith("aten::"):
            continue
        parent, site, issuer = event.cpu_parent, None, None
        while parent is not None:
            if ".py(" in parent.name:
                if issuer is None:
                    issuer = next((name for path, name in ISSUERS if path in parent.name), "other")
                if marker in parent.name:
                    site = parent.name.split(marker)[-1]
                    break
            parent = parent.cpu_parent
        sites[site or "(outside)"] += 1
        issuers[issuer or "autograd engine"] += 1
    return sites, issuers


def measure(spec):
    os.environ["KERAS_BACKEND"] = "torch"
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile

    torch.set_num_threads(1)
    implementation, depth = spec["implementation"], spec["depth"]
    if implementation == "keras_reformer":
        step = build_keras_step(depth)
    elif implementation == "keras_reformer_torch_loop":
        step = build_torch_loop_step(depth)
    else:
        step, _ = peer_models.build_peer(implementation, LENGTH, depth, SIZES)
    timing = common.time_steps(step, spec["warmup"], spec["repeats"])
    with profile(activities=[ProfilerActivity.CPU], with_stack=True) as profiler:
        step()
    events = profiler.events()
    sites, issuers = attribute(events, SOURCE_MARKERS[implementation])
    return {
        **spec,
        "host_ms": 1000 * timing["step_seconds_median"],
        "step_seconds": timing["step_seconds"],
        "threads": torch.get_num_threads(),
        "aten_ops": sum(sites.values()),
        "host_syncs": sum(event.name == "aten::_local_scalar_dense" for event in events),
        "sites": dict(sites.most_common()),
        "issuers": dict(issuers.most_common()),
    }


# === Parent ===


def by_file(sites):
    files = collections.Counter()
    for site, count in sites.items():
        files[site.split("(")[0]] += count
    return files


SUMMARY_COLUMNS = {
    "depth": "depth",
    "driven_by": "ours driven by",
    "ours_aten_ops": "aten ops (ours)",
    "hf_aten_ops": "aten ops (HF)",
    "aten_ops_ratio": "ops ours / HF",
    "ours_host_ms": "host ms (ours)",
    "hf_host_ms": "host ms (HF)",
    "host_ms_ratio": "host ms ours / HF",
}
DRIVERS = {"keras_reformer": "train_on_batch", "keras_reformer_torch_loop": "torch loop"}


def summary_rows(rows):
    """Per depth and way of driving ours: ours and HF's aten ops and host ms, and
    ours / HF (the target: at most 1)."""
    ok = {(r["implementation"], r["depth"]): r for r in rows if r.get("status") == "ok"}
    summary = []
    for depth in sorted({depth for _, depth in ok}):
        hf = ok.get(("hf_reformer", depth))
        for implementation, driver in DRIVERS.items():
            ours = ok.get((implementation, depth))
            if ours is None or hf is None:
                continue
            summary.append(
                {
                    "depth": depth,
                    "driven_by": driver,
                    "ours_aten_ops": ours["aten_ops"],
                    "hf_aten_ops": hf["aten_ops"],
                    "aten_ops_ratio": round(ours["aten_ops"] / hf["aten_ops"], 2),
                    "ours_host_ms": round(ours["host_ms"], 1),
                    "hf_host_ms": round(hf["host_ms"], 1),
                    "host_ms_ratio": round(ours["host_ms"] / hf["host_ms"], 2),
                }
            )
    return summary


def print_tables(rows, where):
    ok = [r for r in rows if r.get("status") == "ok"]
    columns = {
        "implementation": "implementation",
        "depth": "depth",
        "aten_ops": "aten ops per step",
        "host_ms": "host ms per step",
        "host_syncs": "host syncs per step",
    }
    print("\n" + common.format_table(ok, columns))
    summary = summary_rows(rows)
    if summary:
        print("\n" + common.format_table(summary, SUMMARY_COLUMNS))
    for implementation in IMPLEMENTATIONS:
        mine = {r["depth"]: r for r in ok if r["implementation"] == implementation}
        if len(mine) < 2:
            continue
        low, high = min(mine), max(mine)
        span = high - low
        per_layer = (mine[high]["aten_ops"] - mine[low]["aten_ops"]) / span
        per_layer_ms = (mine[high]["host_ms"] - mine[low]["host_ms"]) / span
        print(
            f"{implementation}: {per_layer:.0f} aten ops and {per_layer_ms:.1f} host ms "
            f"per layer (depth {low} -> {high})"
        )
        low_files, high_files = by_file(mine[low]["sites"]), by_file(mine[high]["sites"])
        files = sorted(set(low_files) | set(high_files), key=lambda f: -high_files[f])
        table = [
            {
                "file": f,
                "low": low_files[f],
                "high": high_files[f],
                "per_layer": (high_files[f] - low_files[f]) / span,
            }
            for f in files
        ]
        print(
            common.format_table(
                table[:where],
                ["file", "low", "high", "per_layer"],
                ["where (file)", f"depth {low}", f"depth {high}", "per layer"],
            )
        )
    for row in ok:
        issuers = ", ".join(f"{name} {count}" for name, count in row["issuers"].items())
        print(f"{row['implementation']}, depth {row['depth']}: aten ops issued by {issuers}")
    for row in ok:
        if where and row["depth"] == min(r["depth"] for r in ok):
            print(f"\n{row['implementation']}, depth {row['depth']}: aten ops by call site")
            for site, count in list(row["sites"].items())[:where]:
                print(f"{count:7d}  {site}")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--implementations", default=",".join(IMPLEMENTATIONS))
    parser.add_argument("--depths", type=common.int_list, default=[2, 6])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="run the whole plan this many times; keep each configuration's fastest round",
    )
    parser.add_argument(
        "--where",
        type=int,
        default=25,
        help="rows of the per-file and per-call-site tables (0: none)",
    )
    common.add_output_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    implementations = [i.strip() for i in args.implementations.split(",") if i.strip()]
    if "hf_reformer" in implementations:
        implementations = peer_models.installed_peers(implementations)
    machine = common.machine_info()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores; torch threads 1")
    rows = []
    for round_index in range(args.rounds):
        for depth in args.depths:
            for implementation in implementations:
                spec = dict(
                    implementation=implementation,
                    depth=depth,
                    warmup=args.warmup,
                    repeats=args.repeats,
                )
                result = common.run_fresh(__file__, spec, env={"KERAS_BACKEND": "torch"})
                rows.append({**spec, **result, "round": round_index})
                common.print_progress(
                    f"{implementation} depth {depth}",
                    rows[-1],
                    lambda r: f"{r['aten_ops']} aten ops, {r['host_ms']:.1f} host ms",
                )
    rows = common.best_of_rounds(rows, ("implementation", "depth"), "host_ms", False)
    print_tables(rows, args.where)
    if not args.no_save:
        versions = common.package_versions(["keras", "torch", "transformers", "numpy"])
        config = dict(
            SIZES, length=LENGTH, batch=1, optimizer="SGD", torch_threads=1, rounds=args.rounds
        )
        common.save_result(
            BENCHMARK,
            "torch",
            rows,
            args.output_dir,
            config=config,
            versions=versions,
            note=args.note,
        )
    return rows


if __name__ == "__main__":
    if "--child" in sys.argv:
        common.child_main(measure)
    else:
        main()
