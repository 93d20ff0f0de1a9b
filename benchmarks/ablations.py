"""The Reformer paper's ablations at CPU scale: is the Reformer as good as the Transformer?

Kitaev, Kaiser, Levskaya 2020 (arXiv 2001.04451) compare the Reformer against
the Transformer it replaces; this script runs the same comparisons, scaled
down to a 2-core CPU (about 40 minutes for all five on JAX with the defaults):

- `duplication` (the paper's Table 2): a 1-layer causal LM on the duplication
  task of `examples/duplication.py`, trained with full attention, LSH-1, LSH-2
  and LSH-4, each model evaluated with full attention and LSH-1, 2, 4, 8
  (the same weights, `keras_reformer.models.with_attention`): second-half
  accuracy in a grid (rows: trained with, columns: evaluated with).
- `lm` (Figure 4): a byte-level causal LM on held-out text (the Python
  standard library's sources as in `examples/char_lm.py`, or `--data FILE`,
  e.g. enwik8) with full attention and LSH-1, 2, 4, 8: held-out bits per byte
  every `--eval-every` steps and at the end.
- `shared_qk` (Figure 3): the same LM with shared-QK against separate-QK full
  attention.
- `reversible` (Figure 5): the same LM, reversible against an ordinary
  (non-reversible) residual stack, full attention.
- `cost`: train-step time and memory against length of the full and LSH
  models of `lm`, each configuration in a fresh process, so that quality and
  cost are read together.

Every variant of one experiment gets the same data, seed, optimizer, steps and
sizes; `lm`, `shared_qk` and `reversible` share one configuration, so their
full-attention run is one run. Each training run writes its own JSON result
(`ablation_duplication`, `ablation_lm`; `ablation_cost` per model) into
`--results-dir` when it finishes, and a rerun skips the runs whose result
exists with the same configuration (`--force` reruns them): an interrupted run
resumes at the next variant. Curves go to TensorBoard under `--log-dir`.
`python benchmarks/make_figures.py` renders the results into
`docs/benchmarks/transformer-comparison.md`'s tables and figures.

Usage:
    KERAS_BACKEND=jax python benchmarks/ablations.py                  # everything
    KERAS_BACKEND=jax python benchmarks/ablations.py --experiments lm,shared_qk --steps 600
    KERAS_BACKEND=jax python benchmarks/ablations.py --quick --results-dir /tmp/ablations
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

EXPERIMENTS = ("duplication", "lm", "shared_qk", "reversible", "cost")
BENCHMARKS = {"duplication": "ablation_duplication", "lm": "ablation_lm", "cost": "ablation_cost"}
# The LM variants each experiment trains; `full` is one run shared by all three.
LM_VARIANTS = {
    "lm": ("full", "lsh1", "lsh2", "lsh4", "lsh8"),
    "shared_qk": ("full", "full_separate_qk"),
    "reversible": ("full", "full_nonreversible"),
}
DUPLICATION_TRAIN = ("full", "lsh1", "lsh2", "lsh4")
DUPLICATION_EVAL = ("full", "lsh1", "lsh2", "lsh4", "lsh8")
# Learned positions: the copy needs "attend to position p - L/2 + 1" (see
# examples/duplication.py), and one embedding for both tasks keeps them comparable.
POSITION_EMBEDDING = "learned"
BYTE_VOCABULARY = 256
# Sizes per task: the defaults (about 40 minutes for everything on a 2-core CPU
# with JAX) and `--quick` (the plumbing in about 5 minutes). Every one is a flag.
DEFAULTS = {
    "dup_length": 256,
    "dup_steps": 1500,
    "dup_batch_size": 16,
    "dup_hidden_dim": 64,
    "dup_num_heads": 2,
    "dup_chunk_length": 32,
    "dup_learning_rate": 3e-3,
    "dup_eval_size": 256,
    "length": 512,
    "steps": 300,
    "batch_size": 8,
    "hidden_dim": 64,
    "num_heads": 2,
    "num_layers": 2,
    "chunk_length": 32,
    "learning_rate": 2e-3,
    "eval_every": 50,
    "eval_batches": 8,
    "max_bytes": 2_000_000,
    "cost_lengths": [512, 1024, 2048, 4096, 8192],
    "cost_variants": ["full", "lsh4"],
    "cost_repeats": 3,
    "cost_timeout": 600,
}
QUICK = {
    "dup_length": 64,
    "dup_steps": 10,
    "dup_batch_size": 4,
    "dup_hidden_dim": 32,
    "dup_num_heads": 2,
    "dup_chunk_length": 16,
    "dup_eval_size": 8,
    "length": 128,
    "steps": 10,
    "batch_size": 2,
    "hidden_dim": 32,
    "num_heads": 2,
    "num_layers": 2,
    "chunk_length": 32,
    "eval_every": 5,
    "eval_batches": 1,
    "max_bytes": 200_000,
    "cost_lengths": [128, 256],
    "cost_repeats": 1,
}
SCHEMA = 1  # bump when a result's meaning changes: older results are then rerun
# The columns of the cost table (the docs' table adds the backend).
COST_COLUMNS = [
    "variant",
    "length",
    "status",
    "step_seconds_median",
    "tokens_per_second",
    "backend_peak_mib",
    "peak_rss_mib",
]


# === Variants ===


def variant_options(variant):
    """`ReformerModel` arguments of a variant name: `full`, `lsh<N>`, `full_separate_qk`,
    `full_nonreversible`."""
    options = {"attention_layers": "full", "num_hashes": 1, "shared_qk": True, "reversible": True}
    if variant.startswith("lsh") and variant[3:].isdigit() and int(variant[3:]) > 0:
        return dict(options, attention_layers="lsh", num_hashes=int(variant[3:]))
    if variant == "full":
        return options
    if variant == "full_separate_qk":
        return dict(options, shared_qk=False)
    if variant == "full_nonreversible":
        return dict(options, reversible=False)
    raise ValueError(
        f"Unknown variant {variant!r}: full, lsh<N>, full_separate_qk or full_nonreversible."
    )


def variant_label(variant):
    """How tables name a variant: `full`, `LSH-4`, `full, separate QK`, ..."""
    if variant.startswith("lsh"):
        return f"LSH-{variant[3:]}"
    return {
        "full_separate_qk": "full, separate QK",
        "full_nonreversible": "full, not reversible",
    }.get(variant, variant)


def lm_variants(experiments):
    """The LM variants the chosen experiments train, each once, in a stable order."""
    variants = []
    for experiment in experiments:
        for variant in LM_VARIANTS.get(experiment, ()):
            if variant not in variants:
                variants.append(variant)
    return variants


# === Arguments ===


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Size flags default to the values in DEFAULTS (or QUICK with --quick).",
    )
    parser.add_argument(
        "--experiments",
        default=",".join(EXPERIMENTS),
        help=f"comma-separated, of {', '.join(EXPERIMENTS)}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes (a few minutes for everything): tests the plumbing",
    )
    parser.add_argument("--results-dir", default=str(common.RESULTS_DIR))
    parser.add_argument(
        "--log-dir",
        default=str(common.REPO_ROOT / "runs" / "ablations"),
        help="TensorBoard logs, one folder per run (runs/ is git-ignored)",
    )
    parser.add_argument(
        "--force", action="store_true", help="rerun configurations whose result already exists"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity")
    duplication = parser.add_argument_group("duplication (Table 2)")
    for name, kind in (
        ("length", int),
        ("steps", int),
        ("batch-size", int),
        ("hidden-dim", int),
        ("num-heads", int),
        ("chunk-length", int),
        ("learning-rate", float),
        ("eval-size", int),
    ):
        duplication.add_argument(f"--dup-{name}", type=kind, default=None)
    lm = parser.add_argument_group("language model (lm, shared_qk, reversible; cost sizes)")
    lm.add_argument(
        "--data",
        default=None,
        help="a text file, e.g. enwik8 (default: the Python standard library)",
    )
    for name, kind in (
        ("max-bytes", int),
        ("length", int),
        ("steps", int),
        ("batch-size", int),
        ("hidden-dim", int),
        ("num-heads", int),
        ("num-layers", int),
        ("chunk-length", int),
        ("learning-rate", float),
        ("eval-every", int),
        ("eval-batches", int),
    ):
        lm.add_argument(f"--{name}", type=kind, default=None)
    cost = parser.add_argument_group("cost")
    cost.add_argument("--cost-lengths", type=common.int_list, default=None)
    cost.add_argument(
        "--cost-variants", type=lambda s: [v for v in s.split(",") if v], default=None
    )
    cost.add_argument("--cost-repeats", type=int, default=None)
    cost.add_argument("--cost-timeout", type=float, default=None, help="seconds per configuration")
    args = parser.parse_args(argv)
    args.experiments = [e for e in args.experiments.split(",") if e]
    unknown = sorted(set(args.experiments) - set(EXPERIMENTS))
    if unknown:
        parser.error(f"unknown experiments {unknown}; choose from {', '.join(EXPERIMENTS)}")
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK.get(key, value) if args.quick else value)
    for variant in args.cost_variants:
        try:
            variant_options(variant)
        except ValueError as error:
            parser.error(str(error))
    if args.dup_length % 2 or args.dup_length < 4:
        parser.error(f"--dup-length must be an even number >= 4, got {args.dup_length}")
    if args.steps % args.eval_every:
        parser.error(
            f"--steps ({args.steps}) must be a multiple of --eval-every ({args.eval_every})"
        )
    return args


def duplication_config(args, variant, backend):
    """Everything that shapes one duplication run's numbers (what resuming compares)."""
    return {
        "schema": SCHEMA,
        "task": "duplication",
        "variant": variant,
        "backend": backend,
        "length": args.dup_length,
        "steps": args.dup_steps,
        "batch": args.dup_batch_size,
        "d_model": args.dup_hidden_dim,
        "heads": args.dup_num_heads,
        "layers": 1,
        "chunk": args.dup_chunk_length,
        "learning_rate": args.dup_learning_rate,
        "eval_size": args.dup_eval_size,
        "evaluated_with": list(DUPLICATION_EVAL),
        "positions": POSITION_EMBEDDING,
        "seed": args.seed,
    }


def lm_config(args, variant, backend):
    """Everything that shapes one LM run's numbers (what resuming compares)."""
    return {
        "schema": SCHEMA,
        "task": "lm",
        "variant": variant,
        "backend": backend,
        "data": args.data or "stdlib",
        "max_bytes": args.max_bytes,
        "length": args.length,
        "steps": args.steps,
        "batch": args.batch_size,
        "d_model": args.hidden_dim,
        "heads": args.num_heads,
        "layers": args.num_layers,
        "chunk": args.chunk_length,
        "learning_rate": args.learning_rate,
        "eval_every": args.eval_every,
        "eval_batches": args.eval_batches,
        "positions": POSITION_EMBEDDING,
        "seed": args.seed,
    }


def cost_config(args, variant, backend):
    return {
        "schema": SCHEMA,
        "task": "cost",
        "variant": variant,
        "backend": backend,
        "lengths": list(args.cost_lengths),
        "batch": 1,
        "d_model": args.hidden_dim,
        "heads": args.num_heads,
        "layers": args.num_layers,
        "chunk": args.chunk_length,
        "repeats": args.cost_repeats,
        "positions": POSITION_EMBEDDING,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


# === Resuming ===


def _normalised(config):
    return json.loads(json.dumps(config, sort_keys=True, default=float))


def existing_result(results, benchmark, config):
    """The newest result of `benchmark` with exactly `config` (and no failed row), or None."""
    wanted = _normalised(config)
    for result in reversed(results):
        if (
            result["benchmark"] == benchmark
            and _normalised(result.get("config")) == wanted
            and all(row.get("status", "ok") == "ok" for row in result["rows"])
        ):
            return result
    return None


def quiet_load_results(directory):
    """`common.load_results`, without complaints about unrelated files."""
    if not Path(directory).is_dir():
        return []
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        return common.load_results(directory)


# === Models ===


# The sizes of the language model (`lm`, `shared_qk`, `reversible`, `cost`): flags and
# `build_causal_lm` arguments of the same names.
LM_SIZES = ("hidden_dim", "num_heads", "num_layers", "chunk_length")


def build_causal_lm(
    variant, vocabulary_size, length, seed, hidden_dim, num_heads, num_layers, chunk_length
):
    """A `ReformerCausalLM` of one variant; the variants differ only in attention / stack."""
    import keras_reformer

    options = variant_options(variant)
    backbone = keras_reformer.models.ReformerModel(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        hidden_dim=hidden_dim,
        num_heads=num_heads,
        chunk_length=chunk_length,
        causal=True,
        max_sequence_length=length,
        position_embedding=POSITION_EMBEDDING,
        seed=seed,
        **options,
    )
    return keras_reformer.models.ReformerCausalLM(backbone)


def with_variant(model, variant):
    """The trained `model` with the attention of `variant` (same weights) for evaluation."""
    import keras_reformer

    options = variant_options(variant)
    return keras_reformer.models.with_attention(
        model, attention_layers=options["attention_layers"], num_hashes=options["num_hashes"]
    )


class TrainingClock:
    """Seconds spent training, validation left out: `start` and `stop` around what counts."""

    def __init__(self):
        self.seconds, self._since = 0.0, None

    def start(self):
        self._since = time.perf_counter()

    def stop(self):
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since
            self._since = None


def held_out_curve_class():
    """`HeldOutCurve`, a Keras callback (defined on first use: keras is imported late)."""
    import keras

    class HeldOutCurve(keras.callbacks.Callback):
        """Held-out bits per byte after every epoch (`val_loss` / ln 2), the training time
        without validation, and `val_bits_per_byte` in the logs (TensorBoard plots it)."""

        def __init__(self, steps_per_epoch):
            super().__init__()
            self.steps_per_epoch, self.clock, self.rows = steps_per_epoch, TrainingClock(), []

        def on_epoch_begin(self, epoch, logs=None):
            self.clock.start()

        def on_test_begin(self, logs=None):
            self.clock.stop()

        def on_epoch_end(self, epoch, logs=None):
            self.clock.stop()
            logs = logs if logs is not None else {}
            bits = logs["val_loss"] / math.log(2)
            logs["val_bits_per_byte"] = bits
            self.rows.append(
                {
                    "step": (epoch + 1) * self.steps_per_epoch,
                    "bits_per_byte": round(bits, 5),
                    "train_loss": round(float(logs.get("loss", float("nan"))), 5),
                    "training_seconds": round(self.clock.seconds, 2),
                }
            )

    return HeldOutCurve


# === Training runs ===


def run_duplication(args, variant, log_dir):
    """Trains one duplication model with `variant`, evaluates it with every evaluation
    attention; returns the result rows."""
    import keras
    import numpy as np

    import keras_reformer

    duplication = common.load_example("duplication")
    keras.utils.set_random_seed(args.seed)
    model = build_causal_lm(
        variant,
        duplication.VOCABULARY_SIZE,
        args.dup_length,
        args.seed,
        hidden_dim=args.dup_hidden_dim,
        num_heads=args.dup_num_heads,
        num_layers=1,
        chunk_length=args.dup_chunk_length,
    )
    model.compile(optimizer=keras.optimizers.Adam(args.dup_learning_rate))
    epochs = max(1, min(10, args.dup_steps // 50))
    while args.dup_steps % epochs:
        epochs -= 1
    data = duplication.DuplicationData(
        args.dup_batch_size, args.dup_length, args.dup_steps, args.seed
    )
    start = time.perf_counter()
    model.fit(
        data,
        epochs=epochs,
        steps_per_epoch=args.dup_steps // epochs,
        shuffle=False,
        callbacks=[keras.callbacks.TensorBoard(str(log_dir))],
        verbose=args.verbose,
    )
    seconds = time.perf_counter() - start
    rng = np.random.default_rng(args.seed + 10_000)  # as examples/duplication.py evaluates
    eval_x, eval_y, _ = keras_reformer.models.language_model_data(
        duplication.duplication_batch(rng, args.dup_eval_size, args.dup_length)
    )
    rows = []
    for evaluated in DUPLICATION_EVAL:
        evaluator = with_variant(model, evaluated)
        accuracy = duplication.second_half_accuracy(evaluator, eval_x, eval_y, args.dup_batch_size)
        print(f"  trained with {variant}, evaluated with {evaluated}: {accuracy:.4f}")
        rows.append(
            {
                "trained_with": variant,
                "evaluated_with": evaluated,
                "accuracy": round(accuracy, 5),
                "training_seconds": round(seconds, 1),
                "steps_per_second": round(args.dup_steps / seconds, 3),
                "backend": keras.backend.backend(),
                "status": "ok",
            }
        )
    return rows


def load_corpus(data, max_bytes):
    """Byte ids of the corpus (a file, or the stdlib's sources as in `examples/char_lm.py`)
    split 95 / 5 into training and held-out text."""
    import numpy as np

    text = (
        Path(data).read_bytes()[:max_bytes]
        if data
        else common.load_example("char_lm").standard_library_text(max_bytes)
    )
    tokens = np.frombuffer(text, dtype=np.uint8).astype("int32")
    split = int(0.95 * len(tokens))
    return tokens[:split], tokens[split:]


def run_lm(args, variant, log_dir, corpus):
    """Trains one byte-level LM with `variant`, held-out bits per byte every
    `eval_every` steps; returns the result rows (one per evaluation, the last the final)."""
    import keras

    char_lm = common.load_example("char_lm")
    train_tokens, valid_tokens = corpus
    keras.utils.set_random_seed(args.seed)
    sizes = {key: getattr(args, key) for key in LM_SIZES}
    model = build_causal_lm(variant, BYTE_VOCABULARY, args.length, args.seed, **sizes)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    train = char_lm.WindowData(
        train_tokens, args.batch_size, args.length, args.eval_every, args.seed
    )
    valid = char_lm.WindowData(
        valid_tokens, args.batch_size, args.length, args.eval_batches, args.seed + 1
    )
    curve = held_out_curve_class()(args.eval_every)
    model.fit(
        train,
        validation_data=valid,
        epochs=args.steps // args.eval_every,
        shuffle=False,
        verbose=args.verbose,
        callbacks=[curve, char_lm.EpochSetter(train), keras.callbacks.TensorBoard(str(log_dir))],
    )
    backend = keras.backend.backend()
    rows = [dict(row, variant=variant, backend=backend, status="ok") for row in curve.rows]
    rows[-1]["final"] = True
    rows[-1]["steps_per_second"] = round(args.steps / rows[-1]["training_seconds"], 3)
    return rows


# === Cost: one configuration per fresh process ===


def measure_cost(spec):
    """Child: times the compiled train step of one LM variant at one length (batch 1)."""
    import random

    import_start = common.rss_mib()
    import keras
    import peers
    import train_step

    random.seed(0)
    length = spec["length"]
    sizes = {key: spec[key] for key in LM_SIZES}
    model = build_causal_lm(spec["variant"], BYTE_VOCABULARY, length, 0, **sizes)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True, weighted_metrics=None)
    x, y = peers.next_token_batch(BYTE_VOCABULARY, length)
    result = train_step.time_train_on_batch(model, x, y, spec, import_start, warmup=1)
    backend = keras.backend.backend()
    if backend == "jax":
        result.update(train_step._jax_memory(model, x, y))
    result.update(
        variant=spec["variant"],
        length=length,
        backend=backend,
        num_parameters=int(model.count_params()),
    )
    return result


def run_cost(args, variant, backend):
    rows = []
    for length in args.cost_lengths:
        spec = {"variant": variant, "length": length, "repeats": args.cost_repeats}
        spec.update({key: getattr(args, key) for key in LM_SIZES})
        row = common.run_fresh(
            __file__, spec, env={"KERAS_BACKEND": backend}, timeout=args.cost_timeout
        )
        row.update(variant=variant, length=length, backend=backend)
        print(
            f"  {variant} L={length}: {row.get('status')}, "
            f"{common.format_value(row.get('step_seconds_median'))} s/step, "
            f"{common.format_value(row.get('backend_peak_mib'))} MiB "
            f"({row['wall_seconds']:.0f} s)",
            flush=True,
        )
        rows.append(row)
    return rows


# === Summaries (read by make_figures.py) ===


def newest_by_variant(results, benchmark, key="variant"):
    """`{variant: result}`, the newest result of `benchmark` per `config[key]`."""
    chosen = {}
    for result in sorted(results, key=lambda r: r["date"]):
        if result["benchmark"] == benchmark:
            chosen[result.get("config", {}).get(key)] = result
    return chosen


def duplication_grid(results):
    """The paper's Table 2: one row per training attention, a column per evaluation
    one, accuracies in percent."""
    by_variant = newest_by_variant(results, BENCHMARKS["duplication"])
    order = [v for v in DUPLICATION_TRAIN if v in by_variant]
    order += sorted(v for v in by_variant if v not in DUPLICATION_TRAIN)
    grid = []
    for variant in order:
        result = by_variant[variant]
        row = {"trained with": variant_label(variant)}
        for cell in result["rows"]:
            if cell.get("status", "ok") == "ok":  # in percent, as the paper's Table 2
                row[variant_label(cell["evaluated_with"])] = f"{100 * cell['accuracy']:.1f}%"
        row["steps"] = result["config"].get("steps")
        row["training s"] = result["rows"][0].get("training_seconds") if result["rows"] else None
        grid.append(row)
    return grid


def grid_columns(grid):
    evaluated = [variant_label(v) for v in DUPLICATION_EVAL]
    present = [c for c in evaluated if any(c in row for row in grid)]
    return ["trained with"] + present + ["steps", "training s"]


def lm_final_rows(results):
    """One row per LM variant: final held-out bits per byte, steps, training time."""
    rows = []
    by_variant = newest_by_variant(results, BENCHMARKS["lm"])
    order = [v for v in lm_variants(LM_VARIANTS) if v in by_variant]
    for variant in order + sorted(set(by_variant) - set(order)):
        result = by_variant[variant]
        curve = [r for r in result["rows"] if r.get("status", "ok") == "ok"]
        if not curve:
            continue
        final = max(curve, key=lambda r: r["step"])
        rows.append(
            {
                "variant": variant_label(variant),
                "bits_per_byte": f"{final['bits_per_byte']:.3f}",
                "steps": final["step"],
                "training_seconds": final.get("training_seconds"),
                "steps_per_second": final.get("steps_per_second"),
                "backend": final.get("backend", result.get("backend")),
            }
        )
    return rows


def lm_curves(results, variants):
    """`{label: [(step, bits per byte), ...]}` of the newest run of each of `variants`."""
    by_variant = newest_by_variant(results, BENCHMARKS["lm"])
    curves = {}
    for variant in variants:
        if variant in by_variant:
            points = sorted(
                (r["step"], r["bits_per_byte"])
                for r in by_variant[variant]["rows"]
                if r.get("status", "ok") == "ok"
            )
            if points:
                curves[variant_label(variant)] = points
    return curves


def cost_rows(results):
    """Train-step time and memory per variant and length (newest result per variant)."""
    rows = []
    for variant, result in newest_by_variant(results, BENCHMARKS["cost"]).items():
        for row in result["rows"]:
            rows.append(
                {
                    "variant": variant_label(variant),
                    "length": row.get("length"),
                    "status": row.get("status", "ok"),
                    "step_seconds_median": row.get("step_seconds_median"),
                    "tokens_per_second": row.get("tokens_per_second"),
                    "backend_peak_mib": row.get("backend_peak_mib"),
                    "peak_rss_mib": row.get("peak_rss_mib"),
                    "backend": row.get("backend"),
                }
            )
    return sorted(rows, key=lambda r: (r["variant"], r["length"] or 0))


# === Main ===


def _write(args, benchmark, variant, backend, rows, config, seconds):
    versions = common.package_versions(
        ["keras", "keras-reformer", backend] + (["jaxlib"] if backend == "jax" else [])
    )
    command = f"KERAS_BACKEND={backend} " + common.command_line()
    result = common.make_result(
        benchmark,
        backend,
        rows,
        config=config,
        versions=versions,
        command=command,
        note=f"wall time of the run {seconds:.0f} s",
    )
    path = common.write_result(result, args.results_dir, stem=f"{benchmark}_{variant}")
    print(f"  wrote {path} (wall {seconds:.0f} s)", flush=True)
    return path


def plan(args, backend):
    """`[(experiment, benchmark, variant, config)]` of every run the arguments ask for."""
    runs = []
    if "duplication" in args.experiments:
        runs += [
            ("duplication", BENCHMARKS["duplication"], v, duplication_config(args, v, backend))
            for v in DUPLICATION_TRAIN
        ]
    runs += [
        ("lm", BENCHMARKS["lm"], v, lm_config(args, v, backend))
        for v in lm_variants(args.experiments)
    ]
    if "cost" in args.experiments:
        runs += [
            ("cost", BENCHMARKS["cost"], v, cost_config(args, v, backend))
            for v in args.cost_variants
        ]
    return runs


def main(argv=None):
    if "--child" in sys.argv:
        return common.child_main(measure_cost)
    args = parse_args(argv)
    import keras

    backend = keras.backend.backend()
    existing = [] if args.force else quiet_load_results(args.results_dir)
    corpus, walls = None, []
    total_start = time.perf_counter()
    for experiment, benchmark, variant, config in plan(args, backend):
        found = existing_result(existing, benchmark, config)
        if found is not None:
            print(f"{benchmark} {variant}: done already ({Path(found['_path']).name}), skipped")
            continue
        print(f"{benchmark} {variant}: running", flush=True)
        start = time.perf_counter()
        log_dir = Path(args.log_dir) / benchmark / variant
        if experiment == "duplication":
            rows = run_duplication(args, variant, log_dir)
        elif experiment == "lm":
            if corpus is None:
                corpus = load_corpus(args.data, args.max_bytes)
            rows = run_lm(args, variant, log_dir, corpus)
            print(
                f"  {variant}: {rows[-1]['bits_per_byte']:.4f} bits per byte after "
                f"{rows[-1]['step']} steps ({rows[-1]['steps_per_second']} steps/s)"
            )
        else:
            rows = run_cost(args, variant, backend)
        seconds = time.perf_counter() - start
        walls.append((benchmark, variant, seconds))
        _write(args, benchmark, variant, backend, rows, config, seconds)
        keras.utils.clear_session(free_memory=True)
    print("\nwall time per configuration:")
    for benchmark, variant, seconds in walls:
        print(f"  {benchmark:22s} {variant:20s} {seconds:7.0f} s")
    print(f"  total {time.perf_counter() - total_start:.0f} s")
    results = quiet_load_results(args.results_dir)
    grid = duplication_grid(results)
    if grid:
        print("\nduplication: second-half accuracy (rows: trained with, columns: evaluated with)")
        print(common.format_table(grid, grid_columns(grid)))
    finals = lm_final_rows(results)
    if finals:
        print("\nlanguage model: held-out bits per byte")
        print(common.format_table(finals, list(finals[0])))
    costs = cost_rows(results)
    if costs:
        print("\ncost: train step against length")
        print(common.format_table(costs, COST_COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
