"""The benchmarks' models: keras_reformer's causal LM and the models it is compared
with, each of those with a torch train step.

`build_causal_lm` builds ours at the benchmark's sizes and `next_token_batch` its
data, for every script that times it.

- `hf_reformer`: Hugging Face transformers' `ReformerModelWithLMHead`, every layer LSH.
- `reformer_pytorch`: lucidrains' `reformer_pytorch.ReformerLM`.
- `full`: a plain pre-LayerNorm causal Transformer whose attention materialises
  the (L, L) score matrix, as the paper's baseline does.
- `full_sdpa`: the same model with `torch.nn.functional.scaled_dot_product_attention`
  (a fused kernel that never materialises the scores: the modern baseline).

All take the sizes of the benchmark (`sizes` dict: vocabulary, hidden, heads,
head_size, intermediate, chunk, hashes) and use no dropout. `build_peer` returns
a `step()` callable doing forward + loss + backward + SGD update, on the GPU when
torch sees one (as Keras' torch backend does), else on the CPU.
"""

import importlib.util
import math
import random

PEERS = ("hf_reformer", "reformer_pytorch", "full", "full_sdpa")
PEER_PACKAGES = {"hf_reformer": "transformers", "reformer_pytorch": "reformer_pytorch"}
PEER_ALIASES = {"hf": "hf_reformer", "reformer-pytorch": "reformer_pytorch"}


def build_causal_lm(sizes, length, depth, **backbone_kwargs):
    """keras_reformer's `ReformerCausalLM` at the benchmark's sizes, uncompiled.

    Args:
        sizes: dict with vocabulary, hidden, heads, head_size, intermediate,
            chunk, hashes.
        length: the longest sequence (`max_sequence_length`).
        depth: number of layers.
        **backbone_kwargs: further `ReformerModel` arguments (`dropout`
            defaults to 0).

    Returns:
        The model on `KERAS_BACKEND`, causal, its weights drawn
        after `random.seed(0)` (Keras takes unseeded initializer seeds from
        Python's `random`; not `keras.utils.set_random_seed`, which imports
        TensorFlow where installed: memory that is no cost of this library).
    """
    from keras_reformer.models import ReformerCausalLM
    from keras_reformer.models import ReformerModel

    random.seed(0)
    backbone = ReformerModel(
        vocabulary_size=sizes["vocabulary"],
        num_layers=depth,
        hidden_dim=sizes["hidden"],
        num_heads=sizes["heads"],
        key_dim=sizes["head_size"],
        intermediate_dim=sizes["intermediate"],
        chunk_length=sizes["chunk"],
        num_hashes=sizes["hashes"],
        causal=True,
        max_sequence_length=length,
        seed=0,
        **{"dropout": 0.0, **backbone_kwargs},
    )
    return ReformerCausalLM(backbone)


def next_token_batch(vocabulary, length):
    """One sequence of `length + 1` random tokens as `(x, y)` for a causal LM's
    `train_on_batch`: x the first `length` (with an all-ones padding mask), y the
    last `length`."""
    import numpy as np

    tokens = np.random.default_rng(0).integers(0, vocabulary, size=(1, length + 1))
    x = {
        "token_ids": tokens[:, :-1].astype("int32"),
        "padding_mask": np.ones((1, length), dtype="int32"),
    }
    return x, tokens[:, 1:].astype("int32")


def peer_available(name):
    """Whether the peer's package is installed (the plain Transformers need only torch)."""
    package = PEER_PACKAGES.get(name, "torch")
    return importlib.util.find_spec(package) is not None


def installed_peers(names):
    """`names` without the peers whose package is not installed, which it names."""
    missing = [name for name in names if not peer_available(name)]
    if missing:
        print(f"not installed, left out: {missing} (pip install keras-reformer[peers])")
    return [name for name in names if name not in missing]


def axial_shape(length):
    """Two factors of `length`, near its square root, for axial position embeddings."""
    first = 2 ** math.ceil(math.log2(length) / 2)
    while length % first:
        first //= 2
    return (first, length // first)


def estimate_peer_mib(name, length, depth, sizes):
    """A rough peak-RSS estimate (MiB) used to skip what cannot fit; not a measurement.

    Calibrated on a 2-core CPU machine: HF 986 MiB at L 4096 depth 2, 2336 MiB at
    L 16384; full attention keeps every layer's (heads, L, L) probabilities.
    """
    heads, hidden = sizes["heads"], sizes["hidden"]
    if name in ("hf_reformer", "reformer_pytorch"):
        return 600 + length * 0.115 + depth * 2
    per_layer_activations = length * (8 * hidden + 2 * sizes["intermediate"]) * 4 / 2**20
    if name == "full":
        scores = heads * length * length * 4 / 2**20
        return 500 + depth * (3 * scores + per_layer_activations) + scores
    return 500 + depth * per_layer_activations * 1.5


def build_peer(name, length, depth, sizes, learning_rate=1e-3, seed=0):
    """Builds a peer model and its train step.

    Args:
        name: one of `PEERS`.
        length: sequence length L (HF's axial embeddings need exactly L in training).
        depth: number of layers.
        sizes: dict with vocabulary, hidden, heads, head_size, intermediate, chunk, hashes.
        learning_rate: SGD learning rate.
        seed: torch seed of weights and data.

    Returns:
        `(step, num_parameters)`: `step()` runs one train step on batch 1 and
        returns the loss as a float.
    """
    import torch

    torch.manual_seed(seed)
    builders = {
        "hf_reformer": _hf_reformer,
        "reformer_pytorch": _reformer_pytorch,
        "full": _full_transformer,
        "full_sdpa": _full_transformer,
    }
    if name not in builders:
        raise ValueError(f"`name` must be one of {PEERS}. Received: name={name!r}")
    model, loss_fn = builders[name](name, length, depth, sizes)
    token_ids = torch.randint(0, sizes["vocabulary"], (1, length))
    return torch_loop_step(model, loss_fn, token_ids, learning_rate)


def torch_loop_step(model, loss_fn, token_ids, learning_rate=1e-3):
    """A plain PyTorch train step of `model` (a `torch.nn.Module`; a Keras model
    on the torch backend is one): SGD on `loss_fn(model, token_ids)`.

    Args:
        model: the module, moved to the GPU where there is one.
        loss_fn: `loss_fn(model, token_ids)`, a scalar loss tensor.
        token_ids: `(batch, length)` int64 tokens, the input and the targets.
        learning_rate: SGD learning rate.

    Returns:
        `(step, num_parameters)`: `step()` runs one train step and returns the
        loss as a float.
    """
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    token_ids = token_ids.to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, token_ids)
        loss.backward()
        optimizer.step()
        return float(loss.detach())  # waits for the GPU's queued work

    return step, sum(p.numel() for p in model.parameters())


def keras_next_token_loss(model, token_ids):
    """HF's peers' loss for a keras_reformer causal LM on torch, called as a torch module."""
    return _next_token_loss(model(token_ids, training=True), token_ids)


def _next_token_loss(logits, token_ids):
    import torch.nn.functional as F

    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), token_ids[:, 1:].reshape(-1)
    )


def hf_reformer_config(sizes, length, depth, **overrides):
    """Hugging Face's `ReformerConfig` of the benchmark's model: causal, every layer
    LSH, no dropout, axial position embeddings of `axial_shape(length)`.

    Args:
        sizes: dict with vocabulary, hidden, heads, head_size, intermediate,
            chunk, hashes.
        length: sequence length (HF's axial embeddings need exactly it in training).
        depth: number of layers.
        **overrides: further `ReformerConfig` arguments (e.g. `use_cache=True`).
    """
    from transformers import ReformerConfig

    hidden = sizes["hidden"]
    arguments = dict(
        vocab_size=sizes["vocabulary"],
        hidden_size=hidden,
        num_attention_heads=sizes["heads"],
        attention_head_size=sizes["head_size"],
        feed_forward_size=sizes["intermediate"],
        attn_layers=["lsh"] * depth,
        lsh_attn_chunk_length=sizes["chunk"],
        lsh_num_chunks_before=1,
        lsh_num_chunks_after=0,
        num_hashes=sizes["hashes"],
        is_decoder=True,
        use_cache=False,
        hidden_dropout_prob=0.0,
        lsh_attention_probs_dropout_prob=0.0,
        local_attention_probs_dropout_prob=0.0,
        axial_pos_embds=True,
        axial_pos_shape=axial_shape(length),
        # HF needs the axial dims to sum to hidden_size; 1/4 + 3/4 as its defaults (64, 192).
        axial_pos_embds_dim=(hidden // 4, hidden - hidden // 4),
        max_position_embeddings=length,
    )
    return ReformerConfig(**{**arguments, **overrides})


def _hf_reformer(name, length, depth, sizes):
    from transformers import ReformerModelWithLMHead

    config = hf_reformer_config(sizes, length, depth)
    model = ReformerModelWithLMHead(config)

    def loss_fn(model, token_ids):
        return model(input_ids=token_ids, labels=token_ids).loss  # HF shifts the labels

    return model, loss_fn


def _reformer_pytorch(name, length, depth, sizes):
    from reformer_pytorch import ReformerLM

    model = ReformerLM(
        num_tokens=sizes["vocabulary"],
        dim=sizes["hidden"],
        depth=depth,
        max_seq_len=length,
        heads=sizes["heads"],
        dim_head=sizes["head_size"],
        bucket_size=sizes["chunk"],  # reformer-pytorch's bucket_size is the chunk length
        n_hashes=sizes["hashes"],
        ff_mult=sizes["intermediate"] // sizes["hidden"],
        causal=True,
        lsh_dropout=0.0,
        ff_dropout=0.0,
        post_attn_dropout=0.0,
        layer_dropout=0.0,
        axial_position_emb=True,
        axial_position_shape=axial_shape(length),
    )

    def loss_fn(model, token_ids):
        return _next_token_loss(model(token_ids), token_ids)

    return model, loss_fn


def _full_transformer(name, length, depth, sizes):
    import torch
    import torch.nn.functional as F
    from torch import nn

    hidden, heads, head_size = sizes["hidden"], sizes["heads"], sizes["head_size"]
    fused = name == "full_sdpa"

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention_norm = nn.LayerNorm(hidden)
            self.qkv = nn.Linear(hidden, 3 * heads * head_size)
            self.attention_output = nn.Linear(heads * head_size, hidden)
            self.feed_forward_norm = nn.LayerNorm(hidden)
            self.feed_forward = nn.Sequential(
                nn.Linear(hidden, sizes["intermediate"]),
                nn.ReLU(),
                nn.Linear(sizes["intermediate"], hidden),
            )

        def attention(self, x):
            batch, steps, _ = x.shape
            q, k, v = self.qkv(x).view(batch, steps, 3, heads, head_size).permute(2, 0, 3, 1, 4)
            if fused:
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                scores = q @ k.transpose(-1, -2) / math.sqrt(head_size)
                future = torch.ones(steps, steps, dtype=torch.bool, device=x.device).triu(1)
                out = scores.masked_fill(future, float("-inf")).softmax(-1) @ v
            return self.attention_output(out.transpose(1, 2).reshape(batch, steps, -1))

        def forward(self, x):
            x = x + self.attention(self.attention_norm(x))
            return x + self.feed_forward(self.feed_forward_norm(x))

    class FullTransformerLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.token_embedding = nn.Embedding(sizes["vocabulary"], hidden)
            self.position_embedding = nn.Embedding(length, hidden)
            self.blocks = nn.ModuleList(Block() for _ in range(depth))
            self.output_norm = nn.LayerNorm(hidden)
            self.head = nn.Linear(hidden, sizes["vocabulary"])

        def forward(self, token_ids):
            positions = torch.arange(token_ids.shape[1], device=token_ids.device)
            x = self.token_embedding(token_ids) + self.position_embedding(positions)
            for block in self.blocks:
                x = block(x)
            return self.head(self.output_norm(x))

    def loss_fn(model, token_ids):
        return _next_token_loss(model(token_ids), token_ids)

    return FullTransformerLM(), loss_fn
