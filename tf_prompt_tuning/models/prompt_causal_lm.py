"""`PromptCausalLM`: a soft prompt that steers a frozen KerasHub causal LM.

The prompt is prepended to the embedded tokens, `[P1..Pn, x1..xm]`, and the
backbone's own layers run on the result. Positions come from the padding
mask, not from the array index: the prompt holds positions 0..n-1 and the
i-th real token position n + i, wherever the padding sits. Left- and
right-padded batches therefore give each example the same keys, values and
positions, and the same tokens.

`generate` fills a key/value cache once with the prompt and the input (the
prefill), then decodes one token a step from the cache inside a
`tf.while_loop`, compiled with XLA. The cache is this module's own tensors
in the layers' documented `self_attention_cache` format, so no change of a
cache class elsewhere can drop the prompt.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tf_prompt_tuning._checks import check_choice, check_positive_int
from tf_prompt_tuning.backbones.causal_decoder import InputCache, causal_decoder
from tf_prompt_tuning.initializers import make_prompt_initializer
from tf_prompt_tuning.layers.deep_prompt_layer import DeepPromptLayer
from tf_prompt_tuning.layers.prompt_layer import PromptLayer
from tf_prompt_tuning.models.prompt_task import PROMPT_LENGTH, PromptTask
from tf_prompt_tuning.settings import Setting
from tf_prompt_tuning.training.freezing import freeze

SAMPLING_STRATEGIES = ("greedy", "sample")
# Where the prompt goes: before each input, or after it (its last real token).
LM_PLACEMENTS = ("prepend", "append")
# Logit of the tokens outside the top k: softmax gives them probability 0.
_EXCLUDED_LOGIT = -1e9


def causal_lm_batch(token_ids, padding_mask, target_mask=None):
    """Makes `(x, y, sample_weight)` to train a `PromptCausalLM` on next tokens.

    `y[:, t]` is `token_ids[:, t + 1]`: the model's logits at position t
    predict the next token. A position counts in the loss (weight 1) when
    it and the next are real tokens and the next is a target. The prompt
    never counts (the model returns no logits for it); pass `target_mask`
    to leave out the input part too and train on the continuation only.

    Args:
        token_ids: int `(batch, seq)`, padded on either side.
        padding_mask: `(batch, seq)`, 1 at real tokens.
        target_mask: optional `(batch, seq)`, 1 at the tokens to learn
            (default: every real token).

    Returns:
        `({"token_ids", "padding_mask"}, labels, sample_weight)`, ready for
        `make_train_step` or `model.fit` with a sparse cross-entropy from
        logits.

    Example:

    >>> import tf_prompt_tuning as tpt
    >>> x, y, sample_weight = tpt.causal_lm_batch(
    ...     [[5, 6, 7, 8, 0]], padding_mask=[[1, 1, 1, 1, 0]], target_mask=[[0, 0, 1, 1, 0]])
    >>> y.numpy().tolist()  # the next token at each position
    [[6, 7, 8, 0, 0]]
    >>> sample_weight.numpy().tolist()  # learn to predict 7 and 8 only
    [[0.0, 1.0, 1.0, 0.0, 0.0]]
    """
    token_ids = ops.convert_to_tensor(token_ids, "int32")
    mask = ops.cast(ops.convert_to_tensor(padding_mask), "int32")
    target = mask
    if target_mask is not None:
        target = mask * ops.cast(ops.convert_to_tensor(target_mask), "int32")
    if token_ids.shape != mask.shape or token_ids.shape != target.shape:
        raise ValueError(
            "`token_ids`, `padding_mask` and `target_mask` must have the same shape. "
            f"Received: {tuple(token_ids.shape)}, {tuple(mask.shape)}, "
            f"{None if target_mask is None else tuple(target.shape)}."
        )
    labels = ops.pad(token_ids[:, 1:], [[0, 0], [0, 1]])
    weights = ops.pad(mask[:, :-1] * target[:, 1:], [[0, 0], [0, 1]])
    return {"token_ids": token_ids, "padding_mask": mask}, labels, ops.cast(weights, "float32")


def generation_options(
    model, max_new_tokens, strategy="greedy", temperature=1.0, top_k=None, end_token_ids=None
) -> dict:
    """Checks `generate`'s options once; returns them normalized."""
    max_new_tokens = check_positive_int("max_new_tokens", max_new_tokens)
    check_choice("strategy", strategy, SAMPLING_STRATEGIES)
    if not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise ValueError(
            f"`temperature` must be a positive number. Received: temperature={temperature!r}."
        )
    if top_k is not None:
        top_k = check_positive_int("top_k", top_k)
    if end_token_ids is None:
        end_token_ids = ()
    elif isinstance(end_token_ids, numbers.Integral):
        end_token_ids = (end_token_ids,)
    vocabulary = model.backbone.vocabulary_size
    bad = [i for i in end_token_ids if not isinstance(i, numbers.Integral) or not 0 <= i < vocabulary]
    if bad:
        raise ValueError(
            f"`end_token_ids` must be token ids in [0, {vocabulary}). "
            f"Received: end_token_ids={end_token_ids!r}."
        )
    return {
        "max_new_tokens": max_new_tokens,
        "strategy": strategy,
        "temperature": float(temperature),
        "top_k": top_k,
        "end_token_ids": tuple(int(i) for i in end_token_ids),
    }


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PromptCausalLM(PromptTask):
    """Generates text with a frozen KerasHub causal LM steered by a soft prompt.

    Only the `(num_tokens, hidden_dim)` prompt trains; the backbone is frozen
    and runs in inference mode. Called on `{"token_ids", "padding_mask"}` it
    returns next-token logits at the input positions (never the prompt's),
    for training with `causal_lm_batch`. `generate` continues a batch of
    inputs with the model's key/value cache, the prompt going through the
    model once, in the prefill. With `num_tokens=0` there is no prompt: the
    frozen base model through the same code.

    Works with GPT-2 and OPT (learned position tables) and text-only
    Gemma 3 (rotary positions, sliding-window layers) backbones; a family
    is one `causal_decoder.CausalDecoder`.

    Args:
        backbone: a KerasHub `GPT2Backbone`, `OPTBackbone` or
            `Gemma3Backbone`, e.g. `load_backbone("gemma3_270m")[0]`.
        num_tokens: prompt length (0 for none).
        prompt_initializer: "uniform" (default, [-0.5, 0.5]), "vocab", or an
            initializer or array (`make_prompt_initializer` resolves "text").
        placement: "prepend" (default): `[P, input]`; or "append": `[input,
            P]`, the prompt after each row's last real token (positions
            continue from the input) and the continuation after the prompt.
            The input's keys and values then do not depend on the prompt: a
            training step reads the input once without a gradient and runs
            only the prompt and the targets with one.
        deep: with placement "append", a prompt for every transformer
            layer after the first too (`DeepPromptLayer`), each added to the
            prompt positions' hidden states before its layer. They start at
            zero, where the model is the shallow prompt's. Only the prompt's
            positions carry them: the input is still read once.
        seed: seed of the random initializers.
        **kwargs: standard model arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: dict with `token_ids` and `padding_mask`, each `(batch, seq)`,
            padded on either side; with placement "append", optionally a
            `target_mask` (as `causal_lm_batch` takes): the prompt goes
            after the last real token that is not a target, the targets
            after the prompt. The logits stay aligned with `token_ids` (at
            position t they predict token t + 1; at the last input token
            they are the last prompt position's).

    Output shape:
        `(batch, seq, vocabulary_size)` float32 logits.

    Example:

    >>> import keras_hub, numpy as np
    >>> import tf_prompt_tuning as tpt
    >>> backbone = keras_hub.models.GPT2Backbone(vocabulary_size=40, num_layers=2, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=24)
    >>> lm = tpt.PromptCausalLM(backbone, num_tokens=4)
    >>> token_ids = np.array([[5, 6, 7], [0, 8, 9]])  # padded on either side
    >>> padding_mask = np.array([[1, 1, 1], [0, 1, 1]])
    >>> lm({"token_ids": token_ids, "padding_mask": padding_mask}).shape
    TensorShape([2, 3, 40])
    >>> out = lm.generate(token_ids, padding_mask, max_new_tokens=5, jit_compile=False)
    >>> out["token_ids"].shape, out["padding_mask"].dtype
    ((2, 5), dtype('bool'))
    """

    SETTINGS = (
        PROMPT_LENGTH,
        Setting("placement", "prepend", choices=LM_PLACEMENTS, in_file=True,
                hint="Use 'prepend' to steer from the start, 'append' to put the prompt after each input.",
                help="the soft prompt in front of the input, or after it (the input is then read "
                "once and each step runs the prompt only: docs/appended_prompts.md)"),
        Setting("deep", False, type=bool, in_file=True,
                help="an appended prompt for every layer too, added to the prompt positions' hidden "
                "states (from zero: training starts at the shallow prompt's model)"),
    )  # fmt: skip

    def __init__(
        self, backbone, *, num_tokens=20, prompt_initializer="uniform", placement="prepend", deep=False, seed=None,
        **kwargs,
    ):  # fmt: skip
        if kwargs.get("preprocessor") is not None:
            raise ValueError(
                "`PromptCausalLM` takes token ids (see `causal_lm_batch`), not a preprocessor. "
                f"Received: preprocessor={kwargs['preprocessor']!r}. Tokenize the texts with "
                "the backbone's tokenizer instead."
            )
        super().__init__(**kwargs)
        num_tokens, placement, deep = self.checked_settings(
            num_tokens=num_tokens, placement=placement, deep=deep
        ).values()
        if deep and (placement != "append" or not num_tokens):
            # Prepended, each layer's prompt would be written over the prompt's
            # states (P-tuning v2), which `generate`'s prefill does not do.
            raise ValueError(
                "Deep prompts of a PromptCausalLM are appended after the input and added to the "
                f"prompt's hidden states. Received: deep=True with placement={placement!r} and "
                f"num_tokens={num_tokens}. Use placement='append' and num_tokens >= 1, or deep=False."
            )
        self.placement = placement
        self.deep = deep
        self.decoder = causal_decoder(backbone)
        self.backbone = backbone
        self.num_tokens = num_tokens
        self.seed = seed
        self.prompt = None
        if num_tokens:
            if isinstance(prompt_initializer, str) and prompt_initializer in ("uniform", "vocab"):
                prompt_initializer = make_prompt_initializer(
                    prompt_initializer, backbone=backbone, num_tokens=num_tokens, seed=seed
                )
            self.prompt = self.make_prompt_layer(num_tokens, prompt_initializer)
            self.prompt.build((None, None, backbone.hidden_dim))
            freeze(self)
        else:
            backbone.trainable = False
        self.built = True
        self._generate_functions = {}

    prompt_file_kind = "causal_lm"
    # A bank's prompt layer reads a per-example `task_id`.
    # The SavedModel signatures `export_saved_model` writes for it.
    serving_signatures = ("generate",)

    def make_prompt_layer(self, num_tokens, initializer) -> PromptLayer:
        """The layer holding the prompt (a `PromptBankLayer` in a bank)."""
        if self.deep:
            return DeepPromptLayer(
                num_tokens, len(self.decoder.layers), initializer=initializer, deep_initializer="zeros",
                placement="append", name="prompt",
            )  # fmt: skip
        return PromptLayer(num_tokens, initializer=initializer, name="prompt")

    def _deep_rewrite(self, start=0):
        """`rewrite(i, x)` for `CausalDecoder.run`: adds layer i's prompt to
        the prompt's positions, `start` .. `start + num_tokens` of `x` (None
        without deep prompts)."""
        if not self.deep:
            return None
        n = self.num_tokens

        def rewrite(i, x):
            added = self.prompt.layer_prompt(i, x.dtype)[None]
            return ops.concatenate([x[:, :start], x[:, start : start + n] + added, x[:, start + n :]], axis=1)

        return rewrite

    def prompt_arguments(self, task_id) -> dict:
        """Extra call arguments of the prompt layer (a bank's `task_id`)."""
        if task_id is not None:
            raise ValueError(
                "A `PromptCausalLM` has one prompt and takes no `task_id`. "
                "Serve several prompts with a `PromptCausalLMBank`."
            )
        return {}

    def check_generation_fits(self, input_length: int, max_new_tokens: int):
        """Raises if prompt, input and new tokens exceed the position table."""
        limit = self.decoder.max_positions
        if limit is None:
            return
        needed = self.num_tokens + input_length + max_new_tokens
        if needed > limit:
            room = limit - self.num_tokens - input_length
            fix = (
                f"Generate at most {room} tokens, or shorten the input or the prompt."
                if room >= 1 else
                f"The prompt and the input leave no room: keep them under {limit} positions together."
            )  # fmt: skip
            raise ValueError(
                f"The {self.num_tokens}-token prompt, {input_length} input tokens and "
                f"max_new_tokens={max_new_tokens} need {needed} positions; the backbone "
                f"has {limit}. {fix}"
            )

    def _embed(self, token_ids, padding_mask, task_id=None):
        """The decoder input for `[prompt, tokens]`, its key mask and positions,
        each `(batch, n + seq, ...)`."""
        mask = ops.cast(padding_mask, "int32")
        # Real tokens take consecutive positions after the prompt, whatever
        # the padding; a pad's position does not matter (nothing attends to it).
        positions = self.num_tokens + ops.maximum(ops.cumsum(mask, axis=1) - 1, 0)
        x = self.decoder.embed_tokens(token_ids)
        if self.prompt is not None:
            x = self.prompt(x, **self.prompt_arguments(task_id))
            prompt_positions = ops.zeros_like(mask[:, :1]) + ops.arange(self.num_tokens, dtype="int32")
            positions = ops.concatenate([prompt_positions, positions], axis=1)
            mask = ops.concatenate([ops.ones_like(prompt_positions), mask], axis=1)
        return self.decoder.start(x, positions), mask, positions

    def _prompt_block(self, x, task_id=None):
        """The `(batch, n, dim)` prompt vectors for the rows of `x` (the
        prompt layer inserted into an empty sequence; a bank's picks each
        row's task)."""
        return self.prompt(x[:, :0], **self.prompt_arguments(task_id))

    def hidden_states(self, inputs):
        """Final hidden states at the input positions (never the prompt's),
        `(batch, seq, hidden_dim)`: what `call` turns into logits."""
        token_ids = inputs["token_ids"]
        self.check_input_length(token_ids.shape[1])
        if self.placement == "append" and self.prompt is not None:
            return self._appended_hidden_states(
                token_ids, inputs["padding_mask"], inputs.get("target_mask"), inputs.get("task_id")
            )
        x, key_mask, positions = self._embed(token_ids, inputs["padding_mask"], inputs.get("task_id"))
        hidden, _ = self.decoder.run(x, positions, positions, key_mask)
        return hidden[:, self.num_tokens :]

    def _appended_hidden_states(self, token_ids, padding_mask, target_mask=None, task_id=None):
        """`[input, P, targets]`: the input is read once without a gradient
        (`CausalDecoder.read`), then the prompt and the targets run after
        it. Hidden states aligned with `token_ids`: the targets' own, and at
        the last input token the prompt's last (which predicts the first target)."""
        n = self.num_tokens
        mask = ops.cast(padding_mask, "int32")
        targets = ops.zeros_like(mask) if target_mask is None else mask * ops.cast(target_mask, "int32")
        source = mask - targets
        lengths = ops.sum(source, axis=1)
        length = ops.shape(mask)[1]
        after_positions = ops.concatenate(
            [
                lengths[:, None] + ops.arange(n, dtype="int32")[None, :],
                lengths[:, None] + n + ops.maximum(ops.cumsum(targets, axis=1) - 1, 0),
            ],
            axis=1,
        )
        after_mask = ops.concatenate([ops.ones_like(after_positions[:, :n]), targets], axis=1)
        cache, text = self.decoder.read(token_ids, source, n + length, after_positions, after_mask, return_hidden=True)
        x = self.decoder.embed_tokens(token_ids)
        block = self._prompt_block(x, task_id if "task_id" in self.extra_input_names else None)
        hidden, _ = self.decoder.continue_from(cache, ops.concatenate([block, x], axis=1), rewrite=self._deep_rewrite())
        # Before the prompt, what the input predicts is the frozen model's;
        # the last input token's prediction (the token after the prompt)
        # and the targets' are the prompt's.
        if target_mask is not None:
            text = hidden[:, n:]
        last_input = ops.max(source * ops.arange(1, length + 1, dtype="int32")[None, :], axis=1) - 1
        at_last = ops.arange(length, dtype="int32")[None, :] == last_input[:, None]
        return ops.where(at_last[:, :, None], hidden[:, n - 1 : n], text)

    def call(self, inputs, training=None):
        return self.decoder.logits(self.hidden_states(inputs))

    def read_inputs(self, inputs):
        """An appended prompt's inputs as the frozen decoder reads them: their
        keys and values, computed once without a gradient, with room for the
        prompt after each row's last real token (`next_token_logits` takes
        it, for as many steps and epochs as the inputs stay the same)."""
        if self.placement != "append" or self.prompt is None or "task_id" in self.extra_input_names:
            raise ValueError(
                "`read_inputs` reads the inputs of an appended prompt, which cannot change them. "
                f"Received: a {type(self).__name__} with placement={self.placement!r} and "
                f"num_tokens={self.num_tokens}. Build a PromptCausalLM with placement='append'."
            )
        return self._read(inputs)

    def _read(self, inputs):
        self.check_input_length(inputs["token_ids"].shape[1])
        return self.decoder.read(inputs["token_ids"], inputs["padding_mask"], self.num_tokens)

    def next_token_logits(self, inputs):
        """`(batch, vocabulary)` float32 logits of the token after each row's
        input (with an appended prompt: after the prompt), what greedy
        generation picks first. Takes the inputs, or an appended prompt's
        `InputCache` from `read_inputs`: then only the prompt's positions run."""
        if isinstance(inputs, InputCache):
            if self.placement != "append" or self.prompt is None or "task_id" in self.extra_input_names:
                self.read_inputs(None)  # raises: only an appended prompt runs after a cache
            return self._logits_after(inputs)
        if self.placement == "append" and self.prompt is not None:
            # The input read, then the prompt's positions only: `hidden_states`
            # would run the input a second time, after the prompt, as targets.
            task_id = inputs.get("task_id") if "task_id" in self.extra_input_names else None
            return self._logits_after(self._read(inputs), task_id)
        hidden = self.hidden_states(inputs)
        mask = ops.cast(inputs["padding_mask"], "int32")
        last = ops.max(mask * ops.arange(1, ops.shape(mask)[1] + 1, dtype="int32")[None, :], axis=1) - 1
        return self.decoder.logits(ops.take_along_axis(hidden, ops.maximum(last, 0)[:, None, None], axis=1)[:, 0])

    def _logits_after(self, cache, task_id=None):
        """The last prompt position's logits, the prompt run after a cached input."""
        block = self._prompt_block(self._cache_block_like(cache), task_id)
        hidden, _ = self.decoder.continue_from(cache, block, rewrite=self._deep_rewrite())
        return self.decoder.logits(hidden[:, -1])

    def _cache_block_like(self, cache):
        """An empty `(batch, 0, dim)` sequence for `_prompt_block` to fill."""
        dim = self.backbone.token_embedding.output_dim
        return ops.zeros((ops.shape(cache.lengths)[0], 0, dim), self.backbone.token_embedding.compute_dtype)

    def generation_function(self, **options):
        """A plain TensorFlow function `(token_ids, padding_mask, task_id, seed)`
        -> `{"token_ids", "padding_mask"}` that generates with fixed options
        (those of `generate`). `generate` compiles it; the export serves it."""
        options = generation_options(self, **options)
        n = self.num_tokens
        max_new = options["max_new_tokens"]
        end_ids = tf.constant(options["end_token_ids"] or (-1,), "int32")
        decoder = self.decoder
        limit = decoder.max_positions

        pick = _token_picker(options)
        record = _token_recorder(max_new, end_ids)

        def generate(token_ids, padding_mask, task_id=None, seed=0):
            token_ids = tf.cast(token_ids, tf.int32)
            mask = tf.cast(padding_mask, tf.int32)
            batch, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
            if limit is not None:
                # A served graph has no Python check in front of it, and a position
                # past the table would read zeros on some devices, not fail.
                tf.debugging.assert_less_equal(
                    n + length + max_new, limit,
                    message="The prompt, the input and max_new_tokens exceed the backbone position table",
                )  # fmt: skip
            bank_ids = task_id if "task_id" in self.extra_input_names else None
            if bank_ids is not None:
                # Out of range, a gather would clamp (XLA) or read zeros (GPU): a wrong task, silently.
                tf.debugging.assert_equal(
                    tf.reduce_all((task_id >= 0) & (task_id < len(self.tasks))), True,
                    message=f"task_id must be in [0, {len(self.tasks)})",
                )  # fmt: skip
            # Cache slots: prompt, input, then each new token but the last,
            # which is returned and never fed back.
            slots = n + length + max_new - 1
            lengths = tf.reduce_sum(mask, axis=1)
            if self.placement == "append" and n:
                # [input, prompt]: the prompt continues each input's positions.
                x = decoder.embed_tokens(token_ids)
                prompt_positions = lengths[:, None] + tf.range(n)[None, :]
                positions = tf.concat([tf.maximum(tf.cumsum(mask, axis=1) - 1, 0), prompt_positions], axis=1)
                block = self._prompt_block(x, bank_ids)
                x = decoder.start(tf.concat([x, block], axis=1), positions)
                key_mask = tf.concat([mask, tf.ones_like(prompt_positions)], axis=1)
                last = tf.fill([batch], length + n - 1)  # the prompt's last vector
                rewrite = self._deep_rewrite(length)
            else:
                rewrite = None
                x, key_mask, positions = self._embed(token_ids, mask, bank_ids)
                # The last real token, or the prompt's last vector for an empty input.
                last = n - 1 + tf.reduce_max(mask * tf.range(1, length + 1)[None, :], axis=1)
            key_mask = tf.concat([key_mask, tf.ones([batch, max_new - 1], tf.int32)], axis=1)
            # New token i (from 0) sits in slot n + length + i at position n + lengths + i.
            new_positions = n + lengths[:, None] + tf.range(max_new - 1)[None, :]
            key_positions = tf.concat([positions, new_positions], axis=1)
            # Deep prompts act in the prefill only: new tokens are not prompt positions.
            hidden, caches = decoder.run(
                x, positions, key_positions, key_mask, decoder.empty_caches(batch, slots), 0, rewrite
            )
            logits = decoder.logits(tf.gather(hidden, last, axis=1, batch_dims=1))
            state = record(
                pick(logits, 0, seed), 0, tf.zeros([batch, max_new], tf.int32),
                tf.zeros([batch, max_new], tf.bool), tf.zeros([batch], tf.bool),
            )  # fmt: skip

            def not_done(step, token, tokens, valid, done, caches):
                return (step < max_new) & ~tf.reduce_all(done)

            def step_fn(step, token, tokens, valid, done, caches):
                position = (n + lengths + step - 1)[:, None]
                x = decoder.start(decoder.embed_tokens(token[:, None]), position)
                hidden, caches = decoder.run(x, position, key_positions, key_mask, caches, n + length + step - 1)
                state = record(pick(decoder.logits(hidden[:, 0]), step, seed), step, tokens, valid, done)
                return (step + 1, *state, caches)

            _, _, tokens, valid, _, _ = tf.while_loop(not_done, step_fn, (1, *state, caches))
            return {"token_ids": tokens, "padding_mask": valid}

        return generate

    def generate(
        self,
        token_ids,
        padding_mask=None,
        max_new_tokens: int = 16,
        *,
        strategy: str = "greedy",
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        end_token_ids: int | Sequence[int] | None = None,
        task_id=None,
        jit_compile: bool = True,
    ) -> dict:
        """Continues each input with up to `max_new_tokens` tokens.

        The prompt and the input are processed once (the prefill, which fills
        the key/value cache); each new token then costs one cached step. A
        row stops at its first end token; decoding stops when every row has.
        The compiled function is kept per set of options; batch size and
        input length are free (XLA compiles once per shape).

        Args:
            token_ids: int `(batch, seq)`, padded on either side.
            padding_mask: `(batch, seq)`, 1 at real tokens (default: all).
            max_new_tokens: tokens to generate per row at most.
            strategy: "greedy" (argmax) or "sample".
            temperature: divides the logits before sampling.
            top_k: sample among the k most likely tokens only.
            seed: seed of "sample"; the same seed gives the same tokens for
                the same `jit_compile` (XLA has its own random generator; an
                exported SavedModel samples as `jit_compile=False`).
            end_token_ids: a token id or ids that end a row.
            task_id: int `(batch,)`, each row's task (`PromptCausalLMBank`).
            jit_compile: compile with XLA (a few seconds more to compile).
                Without it the step is a TensorFlow graph, whose speed on CPU
                depends on TensorFlow's oneDNN kernels: off by default on
                AVX2-only CPUs, where Gemma's graph step measured ~9x slower
                than with XLA (docs/gemma.md).

        Returns:
            `{"token_ids": (batch, max_new_tokens) int32, "padding_mask":
            (batch, max_new_tokens) bool}`, numpy arrays. The mask is True up
            to and including a row's end token; the ids after it are 0.
        """
        options = generation_options(
            self, max_new_tokens, strategy, temperature, top_k, end_token_ids
        )
        token_ids = np.asarray(token_ids)
        padding_mask = np.ones_like(token_ids) if padding_mask is None else np.asarray(padding_mask)
        if token_ids.ndim != 2 or token_ids.shape != padding_mask.shape:
            raise ValueError(
                "`token_ids` and `padding_mask` must be (batch, seq) arrays of one shape. "
                f"Received: {token_ids.shape} and {padding_mask.shape}."
            )
        self.check_generation_fits(token_ids.shape[1], options["max_new_tokens"])
        self.prompt_arguments(task_id)  # raises for a task_id the model cannot take
        if seed is None:
            seed = np.random.randint(2**31 - 1)
        key = (*options.values(), jit_compile)
        if key not in self._generate_functions:
            self._generate_functions[key] = tf.function(
                self.generation_function(**options),
                input_signature=[
                    tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32),
                    tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32),
                ],
                jit_compile=jit_compile,
            )  # fmt: skip
        task = np.zeros(len(token_ids), "int32") if task_id is None else np.asarray(task_id, "int32")
        outputs = self._generate_functions[key](
            token_ids.astype("int32"), padding_mask.astype("int32"), task, np.int32(seed)
        )
        return {name: value.numpy() for name, value in outputs.items()}

    # The prompt-file contract (see `PromptTask`).

    def task_variables(self) -> dict:
        if self.prompt is None:
            return {}
        return {"prompt": self.prompt.prompt, **({"deep_prompts": self.prompt.deep_prompts} if self.deep else {})}

    def prompt_file_format(self) -> int:
        # Generation prompts are format 2 (older releases refuse them clearly);
        # deep ones 3, which releases before them refuse too.
        return 3 if self.deep else 2

    def prompt_file_metadata(self) -> dict:
        return {**super().prompt_file_metadata(), "dim": int(self.prompt.prompt.shape[-1])}


def _token_picker(options):
    """`pick(logits, step, seed)`: the next token of each row, greedy or sampled."""

    def pick(logits, step, seed):
        if options["strategy"] == "greedy":
            return tf.argmax(logits, axis=-1, output_type=tf.int32)
        logits = logits / options["temperature"]
        if options["top_k"]:
            kth = tf.math.top_k(logits, k=options["top_k"]).values[:, -1:]
            logits = tf.where(logits < kth, _EXCLUDED_LOGIT, logits)
        # Stateless: the same seed gives the same tokens. XLA's generator
        # differs from TensorFlow's, so compiled and plain runs differ.
        step_seed = tf.stack([tf.cast(seed, tf.int32), step])
        return tf.random.stateless_categorical(logits, 1, step_seed, dtype=tf.int32)[:, 0]

    return pick


def _token_recorder(max_new, end_ids):
    """`record(token, step, tokens, valid, done)`: writes `token` at `step`; a
    finished row gets 0, outside the mask."""

    def record(token, step, tokens, valid, done):
        token = tf.where(done, 0, token)
        here = tf.range(max_new)[None, :] == step
        tokens = tf.where(here, token[:, None], tokens)
        valid = valid | (here & ~done[:, None])
        done = done | tf.reduce_any(token[:, None] == end_ids[None, :], axis=-1)
        return token, tokens, valid, done

    return record
