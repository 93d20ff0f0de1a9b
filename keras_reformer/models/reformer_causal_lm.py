"""ReformerCausalLM: next-token prediction and generation on a causal ReformerModel."""

import json
import numbers
import sys

import keras
import numpy as np
from keras import ops

from keras_reformer import backend
from keras_reformer.api_export import reformer_export
from keras_reformer.argument_checks import check_bool
from keras_reformer.argument_checks import check_model_kwargs
from keras_reformer.models.backbone_task import BackboneTask
from keras_reformer.models.input_checks import check_id_values
from keras_reformer.models.input_checks import check_token_inputs


def _vocabulary_logits(backbone, hidden_states):
    if backbone.reversible:
        first, second = ops.split(hidden_states, 2, axis=-1)
        hidden_states = first + second
    return backbone.token_embedding(hidden_states, reverse=True)


def language_model_data(token_ids, padding_mask=None):
    """Turns token sequences into `(x, y, sample_weight)` for next-token training.

    The inputs are every token but the last, the targets every token but the
    first, and the weights mask out padded targets.

    Args:
        token_ids: integer array (batch, length + 1).
        padding_mask: optional array of the same shape, 1 for real tokens.

    Returns:
        A tuple `(x, y, sample_weight)` to pass to `fit`: `x` a dict with
        `"token_ids"` and `"padding_mask"` of shape (batch, length), `y` the
        next tokens and `sample_weight` the padding mask of the targets.

    Example:

    ```python
    import numpy as np
    import keras_reformer

    tokens = np.random.randint(0, 256, size=(8, 129))
    x, y, w = keras_reformer.models.language_model_data(tokens)
    ```
    """
    token_ids = np.asarray(token_ids)
    padding_mask = np.ones_like(token_ids) if padding_mask is None else np.asarray(padding_mask)
    x = {
        "token_ids": token_ids[:, :-1].astype("int32"),
        "padding_mask": padding_mask[:, :-1].astype("int32"),
    }
    return x, token_ids[:, 1:].astype("int32"), padding_mask[:, 1:].astype("float32")


@reformer_export
class ReformerCausalLM(BackboneTask):
    """A causal language model: a `ReformerModel` and a vocabulary head.

    The head (`vocabulary_logits`) sums the backbone's two reversible halves
    (it has one stream when built with `reversible=False`) and maps the sum
    back to vocabulary logits through the token embedding (tied weights,
    unless the backbone was built with `tie_weights=False`). `compile`
    defaults to Adam, sparse cross-entropy on logits and accuracy; train with
    `language_model_data`.
    `generate` extends prompts with a keras-nlp sampler.

    Args:
        backbone: the backbone, a `ReformerModel` built with `causal=True`.

    Call arguments:
        inputs: a dict with `"token_ids"` and optionally `"padding_mask"`.

    Returns:
        Logits of shape (batch, length, vocabulary_size).

    Example:

    ```python
    import numpy as np
    import keras_reformer

    backbone = keras_reformer.models.ReformerModel(
        vocabulary_size=256, num_layers=2, hidden_dim=64, num_heads=2,
        chunk_length=32, causal=True, max_sequence_length=512,
    )
    lm = keras_reformer.models.ReformerCausalLM(backbone)
    lm.compile()
    tokens = np.random.randint(0, 256, size=(8, 257))
    x, y, w = keras_reformer.models.language_model_data(tokens)
    lm.fit(x, y, sample_weight=w, batch_size=4, epochs=1)
    lm.generate(tokens[:1, :10], max_length=32)
    ```
    """

    UNRESOLVED_COMPILE_ARGUMENTS = ("sampler",)

    targets_are_token_ids = True

    def __init__(self, backbone, **kwargs):
        check_model_kwargs("ReformerCausalLM", kwargs, allowed=("name", "trainable"))
        self.check_backbone(backbone)
        if not backbone.causal:
            raise ValueError(
                "A causal language model needs a backbone built with `causal=True`. "
                "Received: backbone.causal=False"
            )
        inputs = dict(backbone.input)
        hidden = backbone(inputs)
        logits = _vocabulary_logits(backbone, hidden)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.backbone = backbone
        self.inherit_dtype_policy()

    def compile(
        self,
        optimizer="adam",
        loss="auto",
        weighted_metrics="auto",
        sampler="greedy",
        **kwargs,
    ):
        """Configures training, with language-model defaults, and the sampler.

        Args:
            optimizer: an optimizer or its name. Defaults to `"adam"`.
            loss: `"auto"` for sparse categorical cross-entropy on logits.
            weighted_metrics: `"auto"` for accuracy weighted by the padding mask.
            sampler: a keras-nlp sampler or its name (`"greedy"`, `"top_k"`,
                ...), used by `generate`. Defaults to `"greedy"`.
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`).
        """
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if weighted_metrics == "auto":
            weighted_metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        super().compile(optimizer=optimizer, loss=loss, weighted_metrics=weighted_metrics, **kwargs)
        self.sampler = check_sampler(sampler)

    def get_compile_config(self):
        """The arguments of the last `compile`, the sampler included, serialised."""
        config = super().get_compile_config()
        if config:
            config["sampler"] = serialize_sampler(self.sampler)
        return config

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Logits of one new token per row, from and into the backbone's cache.

        Args:
            token_ids: `(batch, 1)` integers at position `cache_update_index`.
            cache: from `backbone.build_cache` or a previous call.
            cache_update_index: int32 scalar, the tokens' position.

        Returns:
            `(logits, hidden_states, cache)`: `(batch, 1, vocabulary_size)`,
            `(batch, 1, backbone.output_dim)` and the updated cache.
        """
        hidden, cache = self.backbone.call_with_cache(token_ids, cache, cache_update_index)
        return self.vocabulary_logits(hidden), hidden, cache

    def vocabulary_logits(self, hidden_states):
        """The head: logits from the backbone's hidden states.

        The two reversible halves are summed (the same as a reverse projection
        with the stacked matrix [E; E]) and projected by the token embedding's
        reverse (`TokenEmbedding(..., reverse=True)`).

        Args:
            hidden_states: `(..., backbone.output_dim)`.

        Returns:
            Logits `(..., vocabulary_size)`.
        """
        return _vocabulary_logits(self.backbone, hidden_states)

    def generate(self, prompt, max_length, sampler=None, stop_token_ids=None, cache=True):
        """Extends each prompt to `max_length` tokens, one token at a time.

        With `cache=True` (the default) the prompt but its last token is read
        in one pass (the shortest prompt, when their lengths differ), and every
        later token is processed once: each layer's attention keeps the keys and values (and,
        for LSH, the buckets and sorted order) of the tokens it has seen, and a
        new token attends to those instead of re-running the model over the
        whole buffer. A generated token's states depend only on the tokens
        before it. For local and full attention, and for one LSH layer, this
        equals re-running the model on each prefix; with several LSH layers
        it can differ slightly, because in a whole-sequence pass appending a
        token can move earlier tokens across chunk boundaries of the sorted
        order, and so change what they attend to in later layers.

        `cache=False` is that reference: every step re-runs the whole model
        on the `max_length` buffer, with the positions not yet generated as
        padding (padding has its own LSH bucket, so it never changes what the
        real tokens attend to), which equals re-running it on each prefix.

        The whole loop, sampler included, is compiled once per (batch,
        max_length) shape, sampler and stop tokens, and reused by later calls
        (`jax.jit`; `tf.function` with XLA; on torch it runs eagerly under
        `torch.no_grad()`).

        Args:
            prompt: integer array (batch, prompt_length) or a list of integer
                lists (prompts of different lengths allowed); a 1-D array or
                a flat list of ints is one prompt.
            max_length: total length of each returned sequence, at most the
                backbone's `max_sequence_length`.
            sampler: a keras-nlp sampler or its name. Defaults to the one given
                to `compile`, else `"greedy"`.
            stop_token_ids: optional token ids that end a sequence early.
            cache: whether to generate from each layer's cache (see above).
                Defaults to `True`.

        Returns:
            A numpy int32 array (batch, max_length), or (max_length,) for one
            1-D prompt: the prompt followed by generated tokens. After a
            generated stop token, the rest of the row is 0 (padding).

        Example:

        ```python
        lm.compile(sampler="top_k")
        lm.generate([[1, 2, 3], [4, 5]], max_length=64, stop_token_ids=[0])
        ```
        """
        cache = check_bool("cache", cache)
        single = _is_one_prompt(prompt)
        buffer, prompt_mask, start = self._prompt_buffer([prompt] if single else prompt, max_length)
        sampler = self._get_sampler(sampler)
        stop_token_ids = None if stop_token_ids is None else tuple(int(t) for t in stop_token_ids)
        key = (sampler, stop_token_ids, cache, bool(self.run_eagerly))
        functions = self.__dict__.setdefault("_generate_functions", {})
        if key not in functions:

            def step(buffer, prompt_mask, start):
                return self._generate_step(
                    buffer, prompt_mask, start, sampler, stop_token_ids, cache
                )

            variables = list(self.variables) + list(getattr(sampler, "variables", []))
            functions[key] = (
                step if self.run_eagerly else backend.compile_inference(step, variables)
            )
        output = functions[key](
            ops.convert_to_tensor(buffer),
            ops.convert_to_tensor(prompt_mask),
            ops.convert_to_tensor(start, "int32"),
        )
        output = ops.convert_to_numpy(output).astype("int32")
        if stop_token_ids is not None:
            # Zeros after each row's stop token, also where the loop ended first.
            output = np.maximum(_pad_after_stop(output, prompt_mask, stop_token_ids), 0)
        return output[0] if single else output

    def _generate_step(self, buffer, prompt_mask, start, sampler, stop_token_ids, cache):
        """The sampler's loop over a `(batch, max_length)` buffer; traced once per shape."""
        positions = ops.expand_dims(ops.arange(buffer.shape[1], dtype="int32"), 0)

        def known_before(index):
            return ops.cast(ops.broadcast_to(positions < index, ops.shape(buffer)), "int32")

        hidden_states = None
        if _reads_hidden_states(sampler):  # the prompt's hidden states (contrastive search)
            hidden_states = self._hidden_states(buffer, known_before(start))
        if cache:
            # Every prompt token but the last of the shortest prompt is read in
            # one pass; the sampler's first step processes that last one.
            _, layer_cache = self.backbone.build_cache(buffer, known_before(start - 1))

            def next_logits(token_ids, layer_cache, index):
                position = index - 1
                tokens = ops.take(token_ids, ops.expand_dims(position, 0), axis=1)
                logits, hidden, layer_cache = self.call_with_cache(tokens, layer_cache, position)
                return logits[:, 0], hidden[:, 0], layer_cache
        else:
            layer_cache = None

            def next_logits(token_ids, layer_cache, index):
                visible = ops.broadcast_to(positions < index, ops.shape(token_ids))
                hidden = self._hidden_states(token_ids, ops.cast(visible, "int32"))
                last = ops.take(hidden, ops.expand_dims(index - 1, 0), axis=1)
                logits = self.vocabulary_logits(last)
                return logits[:, 0], last[:, 0], layer_cache

        return sampler(
            next=next_logits,
            prompt=buffer,
            cache=layer_cache,
            index=start,
            mask=prompt_mask,
            stop_token_ids=stop_token_ids,
            hidden_states=hidden_states,
            model=self,
        )

    def _hidden_states(self, token_ids, padding_mask):
        """The backbone on a generation buffer (its -1 slots, not yet generated, as padding)."""
        return self.backbone({"token_ids": ops.maximum(token_ids, 0), "padding_mask": padding_mask})

    def _prompt_buffer(self, prompt, max_length):
        rows = [np.asarray(row).reshape(-1) for row in prompt]
        limit = self.backbone.max_sequence_length
        if (
            isinstance(max_length, bool)
            or not isinstance(max_length, numbers.Integral)
            or not 0 < max_length <= limit
        ):
            raise ValueError(
                f"`max_length` must be an integer in (0, max_sequence_length={limit}]. "
                f"Received: max_length={max_length!r}"
            )
        max_length = int(max_length)
        for row in rows:
            if row.size:  # before the copy into int32, which would truncate or wrap
                check_id_values("prompt", row, self.backbone.vocabulary_size, "vocabulary_size")
        lengths = [len(row) for row in rows]
        if not rows or min(lengths) == 0 or max(lengths) > max_length:
            raise ValueError(
                "Each prompt must hold between 1 and `max_length` tokens. "
                f"Received prompt lengths {lengths} with max_length={max_length}"
            )
        buffer = np.zeros((len(rows), max_length), dtype="int32")
        prompt_mask = np.zeros((len(rows), max_length), dtype=bool)
        for i, row in enumerate(rows):
            buffer[i, : len(row)] = row
            prompt_mask[i, : len(row)] = True
        check_token_inputs(buffer, self.backbone.vocabulary_size, limit)
        # Slots to generate hold -1, no token id: a stop id must not match
        # them before they are generated (the model treats -1 as padding).
        return np.where(prompt_mask, buffer, -1), prompt_mask, min(lengths)

    def _get_sampler(self, sampler):
        sampler = check_sampler(sampler or getattr(self, "sampler", None) or "greedy")
        if isinstance(sampler, (str, dict)):
            # One object per name or config, so that its compiled generation is reused.
            key = json.dumps(sampler, sort_keys=True)
            resolved = self.__dict__.setdefault("_resolved_samplers", {})
            if key not in resolved:
                import keras_nlp  # imported here: it is slow to import and only generation needs it

                resolved[key] = keras_nlp.samplers.get(sampler)
            sampler = resolved[key]
        return sampler


# The names `keras_nlp.samplers.get` resolves without further arguments.
SAMPLER_NAMES = ("beam", "contrastive", "greedy", "random", "top_k", "top_p")


def check_sampler(sampler):
    """`sampler` if it names a keras-nlp sampler, is a sampler's config, or is
    callable (a sampler object); else a ValueError naming it. Names are checked
    without importing keras-nlp."""
    valid = (
        sampler in SAMPLER_NAMES
        if isinstance(sampler, str)
        else isinstance(sampler, dict) and "class_name" in sampler or callable(sampler)
    )
    if not valid:
        raise ValueError(
            f"`sampler` must be one of {SAMPLER_NAMES}, a keras-nlp sampler or its config. "
            f"Received: sampler={sampler!r}"
        )
    return sampler


def serialize_sampler(sampler):
    """A sampler name as it is; a sampler object as its Keras config."""
    if isinstance(sampler, (str, dict)):
        return sampler
    return keras.saving.serialize_keras_object(sampler)


def _reads_hidden_states(sampler):
    """Whether `sampler` uses the prompt's hidden states (keras-nlp's contrastive search)."""
    keras_hub = sys.modules.get("keras_hub")  # loaded wherever a keras-nlp sampler exists
    return keras_hub is not None and isinstance(sampler, keras_hub.samplers.ContrastiveSampler)


def _pad_after_stop(output, prompt_mask, stop_token_ids):
    """Zeros after the first generated stop token of each row (numpy)."""
    stops = np.isin(output, stop_token_ids) & ~prompt_mask
    after = np.cumsum(np.cumsum(stops, axis=1) > 0, axis=1) > 1
    return np.where(after, 0, output).astype("int32")


def _is_one_prompt(prompt):
    """Whether `prompt` is one prompt (1-D), not a batch of them."""
    if hasattr(prompt, "shape"):
        return len(prompt.shape) == 1
    return (
        isinstance(prompt, (list, tuple))
        and len(prompt) > 0
        and all(np.ndim(token) == 0 for token in prompt)
    )
