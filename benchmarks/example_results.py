"""Runs an example and records its result as benchmark JSON.

`examples/duplication.py` and `examples/char_lm.py` are scripts for users: they
train, print what they measured and write nothing for the benchmarks. This
script runs one of them through its own `parse_args` and `run` (the same code,
the same output) and writes what `run` returns as a JSON result (schema in
`common.py`) into `--results-dir`: accuracy per hash rounds (`duplication`) or
validation bits per character (`char_lm`), with the example's settings and
training time. `make_figures.py` renders the results into the Benchmarks page's
duplication and character-level tables.

Usage:
    KERAS_BACKEND=jax python benchmarks/example_results.py duplication
    KERAS_BACKEND=jax python benchmarks/example_results.py char_lm --output-dir /tmp/char_lm
    python benchmarks/make_figures.py

Every option after the example's name except `--results-dir` is the example's
own (`python examples/duplication.py --help`).
"""

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import load_example  # noqa: E402

EXAMPLES = ("duplication", "char_lm")


def duplication_result(args, outcome, backend, command):
    """A `duplication` result: one row per evaluated number of hash rounds."""
    rows = [
        {
            "backend": backend,
            "hash_rounds": num_hashes,
            "accuracy": accuracy,
            "training_seconds": round(outcome["training_seconds"], 1),
            "status": "ok",
        }
        for num_hashes, accuracy in outcome["accuracies"].items()
    ]
    config = {
        "length": args.length,
        "d_model": args.hidden_dim,
        "heads": args.num_heads,
        "layers": args.num_layers,
        "chunk": args.chunk_length,
        "train_hashes": args.train_hashes,
        "steps": args.steps,
        "batch": args.batch_size,
        "learning_rate": args.learning_rate,
        "positions": args.position_embedding,
        "eval_size": args.eval_size,
        "seed": args.seed,
    }
    return common.make_result(
        "duplication",
        backend,
        rows,
        config=config,
        command=command,
        versions=common.package_versions(["keras", "keras-reformer", backend]),
        note="accuracy: next-token accuracy on the copied second half of the sequences",
    )


def char_lm_result(args, outcome, backend, command):
    """A `char_lm` result: one row with the validation bits per character."""
    row = {
        "backend": backend,
        "bits_per_character": outcome["bits_per_character"],
        "steps": args.epochs * args.steps_per_epoch,
        "steps_this_run": outcome["epochs_run"] * args.steps_per_epoch,
        "training_seconds": round(outcome["training_seconds"], 1),
        "status": "ok",
    }
    config = {
        "data": args.data or "stdlib",
        "bytes": outcome["bytes"],
        "length": args.length,
        "d_model": args.hidden_dim,
        "heads": args.num_heads,
        "layers": args.num_layers,
        "chunk": args.chunk_length,
        "hashes": args.num_hashes,
        "attention": args.attention,
        "epochs": args.epochs,
        "steps_per_epoch": args.steps_per_epoch,
        "batch": args.batch_size,
        "learning_rate": args.learning_rate,
        "validation_steps": args.validation_steps,
        "seed": args.seed,
    }
    note = (
        ""
        if outcome["epochs_run"] == args.epochs
        else "resumed from a backup: training_seconds covers only the steps of this run"
    )
    return common.make_result(
        "char_lm",
        backend,
        [row],
        config=config,
        command=command,
        note=note,
        versions=common.package_versions(["keras", "keras-reformer", backend]),
    )


RESULTS = {"duplication": duplication_result, "char_lm": char_lm_result}


def main(argv=None):
    """Runs the example named first in `argv`; returns the path of the result written."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
        usage="%(prog)s {duplication,char_lm} [--results-dir DIR] [example options]",
        epilog="Every other option goes to the example: see "
        "`python examples/duplication.py --help` or `python examples/char_lm.py --help`.",
    )
    parser.add_argument("example", choices=EXAMPLES)
    parser.add_argument(
        "--results-dir",
        default=str(common.RESULTS_DIR),
        help="where the JSON result goes (default: benchmarks/results)",
    )
    args, example_argv = parser.parse_known_args(argv)
    example = load_example(args.example)
    example_args = example.parse_args(example_argv)
    outcome = example.run(example_args)

    import keras  # imported by the example, with its backend

    backend = keras.backend.backend()
    line = (
        common.command_line()
        if argv is None
        else "python benchmarks/example_results.py " + shlex.join(argv)
    )
    result = RESULTS[args.example](
        example_args, outcome, backend, f"KERAS_BACKEND={backend} {line}"
    )
    path = common.write_result(result, args.results_dir)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
