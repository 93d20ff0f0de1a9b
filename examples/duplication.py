"""The Reformer paper's duplication task (Kitaev et al. 2020, section 5, Table 2).

Each sequence is `0 w 0 w`, with `w` random symbols from 1..127. A causal
Reformer learns to copy: the second `w` can only be predicted by attending to
the first one, so accuracy on the second half measures whether LSH attention
finds the right, far-away key. The model trains with LSH attention and is
then evaluated with 1, 2, 4 and 8 hash rounds (the same weights, through
`keras_reformer.models.with_attention`): more rounds miss fewer keys, so
accuracy rises with rounds.

The defaults are scaled down to run on a 2-core CPU in a few minutes; `--paper`
selects the paper's setting (length 1024, d 256, 4 heads, 1 layer), which
needs an accelerator and many more steps.

The docs' duplication table records this script's `run` through
`benchmarks/example_results.py`, which writes what it returns as benchmark JSON.

Run `python examples/duplication.py --help` for the options.
"""

import argparse
import random
import sys
import time

import keras
import numpy as np

import keras_reformer

VOCABULARY_SIZE = 128


def duplication_batch(rng, batch_size, length):
    """Sequences `0 w 0 w` of total `length` (even), symbols of w in 1..127."""
    half = length // 2
    w = rng.integers(1, VOCABULARY_SIZE, size=(batch_size, half - 1))
    zeros = np.zeros((batch_size, 1), dtype=w.dtype)
    return np.concatenate([zeros, w, zeros, w], axis=1).astype("int32")


def second_half_weights(length):
    """Weights of next-token targets: 1 where the target is a copied symbol."""
    targets = np.arange(length - 1)
    return (targets >= length // 2).astype("float32")


class DuplicationData(keras.utils.PyDataset):
    """Fresh random duplication batches for `fit`, reproducible from a seed."""

    def __init__(self, batch_size, length, steps, seed):
        super().__init__()
        self.batch_size, self.length, self.steps, self.seed = batch_size, length, steps, seed
        self.weights = second_half_weights(length)

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, index])
        x, y, _ = keras_reformer.models.language_model_data(
            duplication_batch(rng, self.batch_size, self.length)
        )
        return x, y, np.broadcast_to(self.weights, y.shape)


def build_model(args, num_hashes):
    backbone = keras_reformer.models.ReformerModel(
        vocabulary_size=VOCABULARY_SIZE,
        num_layers=args.num_layers,
        hidden_dim=args.hidden_dim,
        num_heads=args.num_heads,
        intermediate_dim=2 * args.hidden_dim,
        chunk_length=args.chunk_length,
        num_hashes=num_hashes,
        causal=True,
        max_sequence_length=args.length,
        position_embedding=args.position_embedding,
        seed=args.seed,
    )
    return keras_reformer.models.ReformerCausalLM(backbone)


def second_half_accuracy(model, eval_x, eval_y, batch_size):
    logits = model.predict(eval_x, batch_size=batch_size, verbose=0)
    correct = np.argmax(logits, axis=-1) == eval_y
    mask = second_half_weights(eval_y.shape[1] + 1).astype(bool)
    return float(correct[:, mask].mean())


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--length", type=int, default=64, help="sequence length (even)")
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--num-heads", type=int, default=2)
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--chunk-length", type=int, default=16)
    parser.add_argument("--train-hashes", type=int, default=4, help="hash rounds in training")
    parser.add_argument("--eval-hashes", default="1,2,4,8", help="hash rounds to evaluate")
    parser.add_argument("--steps", type=int, default=1500, help="training steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--eval-size", type=int, default=512, help="evaluation sequences")
    # Learned positions by default: the copy needs "attend to position p - L/2 + 1",
    # which a factorised (axial) embedding cannot express where the shift carries
    # over a grid row; with axial positions the default run plateaus near 90%.
    parser.add_argument(
        "--position-embedding", default="learned", choices=["axial", "learned", "sinusoidal"]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--paper",
        action="store_true",
        help="the paper's setting: length 1024, d 256, 4 heads, chunk 64",
    )
    parser.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity (0, 1, 2)")
    args = parser.parse_args(argv)
    if args.paper:
        args.length, args.hidden_dim, args.num_heads, args.chunk_length = 1024, 256, 4, 64
    if args.length % 2 or args.length < 4:
        parser.error(f"--length must be an even number >= 4, got {args.length}")
    return args


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
    """Trains on the duplication task and evaluates with each of `args.eval_hashes`.

    Prints the settings, Keras' progress and the accuracy per hash rounds;
    returns `{"accuracies": {hash_rounds: accuracy}, "training_seconds": s}`.
    """
    set_random_seed(args.seed)
    print(
        f"Backend {keras.backend.backend()}; length {args.length}, d {args.hidden_dim}, "
        f"{args.num_heads} heads, {args.num_layers} layer(s), chunk {args.chunk_length}, "
        f"{args.train_hashes} hashes in training, {args.steps} steps of {args.batch_size}"
    )
    model = build_model(args, args.train_hashes)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    epochs = max(1, min(10, args.steps // 100))
    steps_per_epoch = max(1, args.steps // epochs)
    data = DuplicationData(args.batch_size, args.length, epochs * steps_per_epoch, args.seed)
    start = time.perf_counter()
    model.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=args.verbose)
    train_seconds = time.perf_counter() - start

    rng = np.random.default_rng(args.seed + 10_000)
    eval_x, eval_y, _ = keras_reformer.models.language_model_data(
        duplication_batch(rng, args.eval_size, args.length)
    )
    print("\nhash rounds at evaluation | second-half accuracy")
    print("--------------------------|---------------------")
    accuracies = {}
    for num_hashes in [int(n) for n in args.eval_hashes.split(",")]:
        # The trained weights with another number of hash rounds.
        evaluator = keras_reformer.models.with_attention(model, num_hashes=num_hashes)
        accuracies[num_hashes] = second_half_accuracy(evaluator, eval_x, eval_y, args.batch_size)
        print(f"{num_hashes:>25} | {accuracies[num_hashes]:.4f}")
    summary = ", ".join(f"{n} hashes {acc:.1%}" for n, acc in accuracies.items())
    print(
        f"\nduplication (L={args.length}, {keras.backend.backend()}): {summary}; "
        f"trained {args.steps} steps in {train_seconds:.0f} s"
    )
    return {"accuracies": accuracies, "training_seconds": train_seconds}


def main(argv=None):
    """Runs the example with command-line arguments; returns `{hash_rounds: accuracy}`."""
    return run(parse_args(argv))["accuracies"]


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
