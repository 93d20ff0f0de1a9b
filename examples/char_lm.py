"""A byte-level Reformer language model on any UTF-8 text, reporting bits per character.

With no `--data`, the corpus is the Python standard library's own `.py` files,
which exist on every machine with Python, so the example needs no download.
Point `--data` at enwik8 or any text file for the real thing.

Training logs to TensorBoard, saves a `.keras` checkpoint every epoch and
resumes an interrupted run from its last epoch (`keras.callbacks.BackupAndRestore`).
At the end it prints the validation bits per character and a generated sample.
The docs' character-level table records this script's `run` through
`benchmarks/example_results.py`, which writes what it returns as benchmark JSON.

Run `python examples/char_lm.py --help` for the options.
"""

import argparse
import math
import pathlib
import random
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
        windows = np.stack([self.tokens[s : s + self.length + 1] for s in starts])
        return keras_reformer.models.language_model_data(windows)


class EpochSetter(keras.callbacks.Callback):
    """Tells a `WindowData` which epoch begins (also the first epoch of a resumed run)."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch, logs=None):
        self.data.epoch = epoch


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--data", help="a UTF-8 text file (default: the Python standard library)")
    parser.add_argument("--max-bytes", type=int, default=2_000_000, help="bytes of text to use")
    parser.add_argument("--length", type=int, default=256, help="training sequence length")
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--chunk-length", type=int, default=32)
    parser.add_argument("--num-hashes", type=int, default=2)
    parser.add_argument(
        "--attention", default="lsh,local", help="attention kind per layer, cycled: lsh, local"
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps-per-epoch", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--validation-steps", type=int, default=20)
    parser.add_argument("--sample-length", type=int, default=200, help="bytes generated at the end")
    parser.add_argument(
        "--output-dir",
        default="runs/char_lm",
        help="TensorBoard logs, checkpoints and the resume backup",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity (0, 1, 2)")
    return parser.parse_args(argv)


def set_random_seed(seed):
    """`keras.utils.set_random_seed`, without importing TensorFlow on JAX or torch
    (its C++ start-up lines would be this script's only noise there)."""
    if keras.backend.backend() == "tensorflow":
        return keras.utils.set_random_seed(seed)
    random.seed(seed)  # Keras draws unseeded initializer seeds from Python's `random`
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def run(args):
    """Trains (or resumes) the language model, evaluates it and generates a sample.

    Prints the settings, Keras' progress, the sample and the validation bits per
    character; returns `{"bits_per_character", "bytes" (of text used),
    "epochs_run" (this run's, fewer after a resume), "training_seconds",
    "checkpoint"}`.
    """
    set_random_seed(args.seed)
    text = (
        pathlib.Path(args.data).read_bytes()[: args.max_bytes]
        if args.data
        else standard_library_text(args.max_bytes)
    )
    tokenizer = byte_tokenizer()
    tokens = np.asarray(
        keras.ops.convert_to_numpy(tokenizer(text.decode("utf-8", errors="replace"))), dtype="int32"
    )
    split = int(0.95 * len(tokens))
    train_tokens, valid_tokens = tokens[:split], tokens[split:]
    print(
        f"Backend {keras.backend.backend()}; {len(tokens):,} bytes "
        f"({'stdlib' if not args.data else args.data}); length {args.length}, "
        f"{args.num_layers} layers of d {args.hidden_dim}"
    )

    kinds = args.attention.split(",")
    backbone = keras_reformer.models.ReformerModel(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=args.num_layers,
        hidden_dim=args.hidden_dim,
        num_heads=args.num_heads,
        chunk_length=args.chunk_length,
        num_hashes=args.num_hashes,
        causal=True,
        max_sequence_length=args.length,
        attention_layers=[kinds[i % len(kinds)] for i in range(args.num_layers)],
        seed=args.seed,
    )
    model = keras_reformer.models.ReformerCausalLM(backbone)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), sampler="top_k")

    output = pathlib.Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    train = WindowData(train_tokens, args.batch_size, args.length, args.steps_per_epoch, args.seed)
    valid = WindowData(
        valid_tokens, args.batch_size, args.length, args.validation_steps, args.seed + 1
    )
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
    history = model.fit(
        train,
        validation_data=valid,
        epochs=args.epochs,
        shuffle=False,
        callbacks=callbacks,
        verbose=args.verbose,
    )
    seconds = time.perf_counter() - start
    valid_loss = model.evaluate(valid, verbose=0, return_dict=True)["loss"]
    bits_per_character = valid_loss / math.log(2)

    prompt = valid_tokens[: min(32, args.length // 2)][None, :]
    sample = model.generate(
        prompt, max_length=min(args.length, prompt.shape[1] + args.sample_length)
    )
    print("\n--- sample ---")
    print(
        tokenizer.detokenize(sample[0])
        if not hasattr(tokenizer.detokenize(sample[0]), "numpy")
        else tokenizer.detokenize(sample[0]).numpy().decode("utf-8", errors="replace")
    )
    print("--------------")
    epochs_run = len(history.history.get("loss", []))
    print(
        f"char_lm ({keras.backend.backend()}): validation {bits_per_character:.3f} bits per "
        f"character after {epochs_run} epoch(s) this run in {seconds:.0f} s; "
        f"checkpoint {output / 'char_lm.keras'}"
    )
    return {
        "bits_per_character": bits_per_character,
        "bytes": len(tokens),
        "epochs_run": epochs_run,
        "training_seconds": seconds,
        "checkpoint": output / "char_lm.keras",
    }


def main(argv=None):
    """Runs the example with command-line arguments; returns the bits per character."""
    return run(parse_args(argv))["bits_per_character"]


if __name__ == "__main__":
    sys.exit(0 if math.isfinite(main()) else 1)
