"""A byte-level Reformer language model on any UTF-8 text, reporting bits per character.

With no `--data`, the corpus is the Python standard library's own `.py` files,
which exist on every machine with Python, so the example needs no download.
Point `--data` at enwik8 or any text file for the real thing.

Training logs to TensorBoard, saves a `.keras` checkpoint every epoch and
resumes an interrupted run from its last epoch (`keras.callbacks.BackupAndRestore`).
At the end it prints the validation bits per character and a generated sample;
`--results-dir benchmarks/results` also writes them as a JSON result (schema in
`benchmarks/common.py`), which `python benchmarks/make_figures.py` renders into
the docs' character-level table.

Run `python examples/char_lm.py --help` for the options.
"""

import argparse
import math
import pathlib
import shlex
import sys
import sysconfig
import time

import keras
import numpy as np

import keras_reformer


def standard_library_text(max_bytes):
    """The concatenated .py files of this Python's standard library (sorted, deterministic)."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    chunks, size = [], 0
    for path in sorted(root.glob("*.py")):
        data = path.read_bytes()
        chunks.append(data)
        size += len(data)
        if size >= max_bytes:
            break
    return b"".join(chunks)[:max_bytes]


def byte_tokenizer():
    import keras_nlp  # slow to import; only the examples need it

    return keras_nlp.tokenizers.ByteTokenizer()


class WindowData(keras.utils.PyDataset):
    """Random windows of `length + 1` tokens as next-token training batches.

    Batch `index` of epoch `epoch` is a pure function of `(seed, epoch, index)`,
    so a run resumed from a backup (`keras.callbacks.BackupAndRestore`) sees the
    batches an uninterrupted run would have seen; `EpochSetter` keeps `epoch`
    current.
    """

    def __init__(self, tokens, batch_size, length, steps, seed):
        super().__init__()
        self.tokens, self.batch_size, self.length = tokens, batch_size, length
        self.steps, self.seed, self.epoch = steps, seed, 0

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        starts = rng.integers(0, len(self.tokens) - self.length - 1, size=self.batch_size)
        windows = np.stack([self.tokens[s: s + self.length + 1] for s in starts])
        return keras_reformer.models.language_model_data(windows)


class EpochSetter(keras.callbacks.Callback):
    """Tells a `WindowData` which epoch begins (also the first epoch of a resumed run)."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch, logs=None):
        self.data.epoch = epoch


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", help="a UTF-8 text file (default: the Python standard library)")
    parser.add_argument("--max-bytes", type=int, default=2_000_000, help="bytes of text to use")
    parser.add_argument("--length", type=int, default=256, help="training sequence length")
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--chunk-length", type=int, default=32)
    parser.add_argument("--num-hashes", type=int, default=2)
    parser.add_argument("--attention", default="lsh,local",
                        help="attention kind per layer, cycled: lsh, local")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps-per-epoch", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--validation-steps", type=int, default=20)
    parser.add_argument("--sample-length", type=int, default=200, help="bytes generated at the end")
    parser.add_argument("--output-dir", default="runs/char_lm",
                        help="TensorBoard logs, checkpoints and the resume backup")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity (0, 1, 2)")
    parser.add_argument("--results-dir", default=None,
                        help="also write the bits per character as a benchmark JSON result in "
                             "this folder (e.g. benchmarks/results, read by "
                             "benchmarks/make_figures.py)")
    return parser.parse_args(argv)


def write_result(args, argv, num_bytes, bits_per_character, epochs_run, seconds):
    """Writes the validation bits per character as a `char_lm` result JSON
    (schema in `benchmarks/common.py`)."""
    benchmarks = str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks")
    if benchmarks not in sys.path:
        sys.path.insert(0, benchmarks)
    import common  # the repository's benchmarks/common.py

    backend = keras.backend.backend()
    row = {"backend": backend, "bits_per_character": bits_per_character,
           "steps": args.epochs * args.steps_per_epoch,
           "steps_this_run": epochs_run * args.steps_per_epoch,
           "training_seconds": round(seconds, 1), "status": "ok"}
    config = {"data": args.data or "stdlib", "bytes": num_bytes, "length": args.length,
              "d_model": args.hidden_dim, "heads": args.num_heads, "layers": args.num_layers,
              "chunk": args.chunk_length, "hashes": args.num_hashes,
              "attention": args.attention, "epochs": args.epochs,
              "steps_per_epoch": args.steps_per_epoch, "batch": args.batch_size,
              "learning_rate": args.learning_rate, "validation_steps": args.validation_steps,
              "seed": args.seed}
    command = (f"KERAS_BACKEND={backend} python examples/char_lm.py "
               + shlex.join(sys.argv[1:] if argv is None else argv))
    note = ("" if epochs_run == args.epochs else
            "resumed from a backup: training_seconds covers only the steps of this run")
    result = common.make_result(
        "char_lm", backend, [row], config=config, command=command, note=note,
        versions=common.package_versions(["keras", "keras-reformer", backend]))
    return common.write_result(result, args.results_dir)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    text = (pathlib.Path(args.data).read_bytes()[: args.max_bytes] if args.data
            else standard_library_text(args.max_bytes))
    tokenizer = byte_tokenizer()
    tokens = np.asarray(keras.ops.convert_to_numpy(
        tokenizer(text.decode("utf-8", errors="replace"))), dtype="int32")
    split = int(0.95 * len(tokens))
    train_tokens, valid_tokens = tokens[:split], tokens[split:]
    print(f"Backend {keras.backend.backend()}; {len(tokens):,} bytes "
          f"({'stdlib' if not args.data else args.data}); length {args.length}, "
          f"{args.num_layers} layers of d {args.hidden_dim}")

    kinds = args.attention.split(",")
    backbone = keras_reformer.models.ReformerModel(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=args.num_layers,
        hidden_dim=args.hidden_dim, num_heads=args.num_heads, chunk_length=args.chunk_length,
        num_hashes=args.num_hashes, causal=True, max_sequence_length=args.length,
        attention_layers=[kinds[i % len(kinds)] for i in range(args.num_layers)],
        seed=args.seed,
    )
    model = keras_reformer.models.ReformerCausalLM(backbone)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), sampler="top_k")

    output = pathlib.Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    train = WindowData(train_tokens, args.batch_size, args.length, args.steps_per_epoch,
                       args.seed)
    valid = WindowData(valid_tokens, args.batch_size, args.length, args.validation_steps,
                       args.seed + 1)
    # The backup holds the weights, the optimizer and the seed states; with
    # batches that are a function of the epoch (and no shuffling by Keras),
    # a resumed run ends exactly where an uninterrupted one does.
    callbacks = [
        keras.callbacks.BackupAndRestore(str(output / "backup")),
        EpochSetter(train),
        keras.callbacks.ModelCheckpoint(str(output / "char_lm.keras")),
        keras.callbacks.TensorBoard(str(output / "logs")),
    ]
    start = time.perf_counter()
    history = model.fit(train, validation_data=valid, epochs=args.epochs, shuffle=False,
                        callbacks=callbacks, verbose=args.verbose)
    seconds = time.perf_counter() - start
    valid_loss = model.evaluate(valid, verbose=0, return_dict=True)["loss"]
    bits_per_character = valid_loss / math.log(2)

    prompt = valid_tokens[: min(32, args.length // 2)][None, :]
    sample = model.generate(prompt, max_length=min(args.length, prompt.shape[1] + args.sample_length))
    print("\n--- sample ---")
    print(tokenizer.detokenize(sample[0]) if not hasattr(tokenizer.detokenize(sample[0]), "numpy")
          else tokenizer.detokenize(sample[0]).numpy().decode("utf-8", errors="replace"))
    print("--------------")
    epochs_run = len(history.history.get("loss", []))
    print(f"char_lm ({keras.backend.backend()}): validation {bits_per_character:.3f} bits per "
          f"character after {epochs_run} epoch(s) this run in {seconds:.0f} s; "
          f"checkpoint {output / 'char_lm.keras'}")
    if args.results_dir:
        path = write_result(args, argv, len(tokens), bits_per_character, epochs_run, seconds)
        print(f"wrote {path}")
    return bits_per_character


if __name__ == "__main__":
    sys.exit(0 if math.isfinite(main()) else 1)
