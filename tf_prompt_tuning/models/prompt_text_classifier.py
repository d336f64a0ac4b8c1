"""`PromptTextClassifier`: a frozen KerasHub backbone, a soft prompt and a small head."""

from __future__ import annotations

import keras
from keras import ops

from tf_prompt_tuning import initializers
from tf_prompt_tuning._checks import check_positive_int
from tf_prompt_tuning.backbones.causal_decoder import InputCache, causal_decoder
from tf_prompt_tuning.backbones.pooling import POOLINGS, check_pooling, is_causal, pool
from tf_prompt_tuning.backbones.prompted_backbone import (
    prompt_hidden_states,
    prompted_backbone,
)
from tf_prompt_tuning.layers.prompt_encoder_layer import ENCODERS
from tf_prompt_tuning.layers.prompt_layer import PLACEMENTS
from tf_prompt_tuning.mechanisms import check_deep, mechanism_for
from tf_prompt_tuning.models.prompt_task import PROMPT_LENGTH, PromptTask
from tf_prompt_tuning.settings import Setting, alternatives
from tf_prompt_tuning.training.freezing import freeze

DEEP_INITIALIZERS = ("uniform", "hidden_states")


def _check_num_classes(num_classes):
    num_classes = check_positive_int("num_classes", num_classes)
    if num_classes < 2:
        raise ValueError(
            "`num_classes` must be at least 2 (the model outputs one logit per "
            f"class). Received: num_classes={num_classes}."
        )
    return num_classes


def _check_head_dropout(head_dropout):
    if not 0.0 <= head_dropout < 1.0:
        raise ValueError(f"`head_dropout` must be in [0, 1). Received: head_dropout={head_dropout}.")
    return head_dropout


def _check_deep(deep):
    if not isinstance(deep, (bool, str)):  # not 1 or None: a file says false, true or a kind
        raise TypeError(f"`deep` must be False, True or a kind of deep prompt. Received: deep={deep!r}.")
    return check_deep(deep)


def _deep_spellings() -> tuple:
    from tf_prompt_tuning.mechanisms import MECHANISMS

    return tuple(dict.fromkeys(m.deep for m in MECHANISMS.values() if m.deep))


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PromptTextClassifier(PromptTask):
    """Classifies text with a frozen KerasHub backbone, a soft prompt and a head.

    The prompt goes into the backbone's embedded sequence (see
    `prompted_backbone`), after `[CLS]` by default so the first position
    keeps its meaning; the padding mask is extended over it (with
    `deep="prefix"` there is no input prompt: every attention layer gets
    trainable keys and values instead). The backbone's hidden states are
    pooled and read by one trainable `Dense` layer. The backbone is frozen
    and always runs in inference mode (no dropout), as for any frozen
    feature extractor in Keras; only the prompt (or prefixes) and the head
    train. With `num_tokens=0` there is no prompt: the head-only baseline.

    Args:
        backbone: a functional KerasHub backbone (`load_backbone`).
        num_classes: number of classes (at least 2); the model outputs logits.
        num_tokens: prompt length (0 for none).
        prompt_initializer: "uniform", "vocab", or an initializer/array
            (`make_prompt_initializer` resolves "text" and "labels").
        placement: "after_first" (default), "prepend" (decoders) or
            "append": after each row's text. On a causal decoder (GPT-2,
            OPT, Gemma 3) an appended prompt cannot change the text's
            hidden states, so the text is read once without a gradient
            (`read_inputs`) and only the prompt's positions run and train
            (`call_from_cache`); the head reads the last prompt position
            (pooling "last"). On an encoder it simply goes after the text.
        pooling: "mean" (default; masked mean over all positions), "cls" or
            "last".
        head_dropout: dropout rate before the head.
        deep: a prompt for every transformer layer instead of the input
            only (P-tuning v2): `"hidden"` (or `True`) rewrites the prompt
            positions' hidden states before every layer (`DeepPromptLayer`,
            any transformer layer); `"prefix"` gives every attention layer
            `num_tokens` trainable keys and values (`PrefixLayer`, KerasHub
            `TransformerEncoder` layers, with no positions in the sequence;
            and causal decoders, GPT-2, OPT and Gemma 3, as cache entries in
            front of the text at positions 0 .. num_tokens - 1).
            `False` (default) for the input only.
        deep_initializer: with `deep="hidden"`, where the prompts of the
            layers after the first start: "uniform" (default, random), or
            "hidden_states": the hidden states the input prompt reaches there
            (`prompt_hidden_states`), so the model starts as the shallow
            prompt's (exactly, in a causal decoder). With placement
            "after_first" this reads the start token from `preprocessor`.
            Appended deep prompts are added to the hidden states the
            appended prompt reaches (see `DeepPromptLayer`): "hidden_states"
            starts them at zero, where the model is the shallow prompt's.
        prompt_encoder: None, "mlp" or "lstm": produce the prompt with a
            small encoder over trainable seeds (`PromptEncoderLayer`, P-tuning).
        label_names: the class names, in order (optional; saved in prompt
            files and used by `predict` on the command line).
        seed: seed of the random initializers.
        preprocessor: a `TextPreprocessor`, so that `fit`, `predict`,
            `evaluate` and `export_saved_model` take raw strings.
        **kwargs: standard model arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: the backbone's inputs, a dict with `token_ids` and
            `padding_mask`, each `(batch, seq)` (BERT's `segment_ids` are
            zeros when left out).

    Output shape:
        `(batch, num_classes)` float32 logits.

    Example:

    >>> import keras_hub, numpy as np
    >>> import tf_prompt_tuning as tpt
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=40, num_layers=2, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=24)
    >>> tokenizer = keras_hub.models.BertTokenizer(
    ...     vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dull", "mess"])
    >>> model = tpt.PromptTextClassifier(backbone, num_classes=3, num_tokens=4,
    ...     preprocessor=tpt.TextPreprocessor(tokenizer, sequence_length=8))
    >>> x = {"token_ids": np.array([[2, 5, 6, 3]] * 2), "padding_mask": np.ones((2, 4), "int32")}
    >>> model(x).shape
    TensorShape([2, 3])
    >>> model.predict(["a dull mess", "dull"], verbose=0).shape  # raw strings
    (2, 3)
    """

    # Each setting declared once: the constructor's checks, `get_config`, the
    # prompt file's metadata and its validation, the training job and its flags.
    SETTINGS = (
        Setting("num_classes", None, type=int, minimum=2, in_file=True, check_fn=_check_num_classes,
                expected_text="an integer >= 2"),
        PROMPT_LENGTH,
        Setting("placement", "after_first", choices=PLACEMENTS, in_file=True,
                help="where the prompt goes: after the first token, in front, or after the text "
                "(on a decoder the text is then read once: docs/appended_prompts.md)"),
        Setting("pooling", "mean", choices=POOLINGS, in_file=True),
        Setting("head_dropout", 0.0, type=float, check_fn=_check_head_dropout),
        Setting("deep", False, in_file=True, check_fn=_check_deep,
                expected_text=lambda: "false, true, " + alternatives(_deep_spellings())),
        Setting("deep_initializer", "uniform", choices=DEEP_INITIALIZERS, in_config=False,
                flags=("--deep-initializer", "--deep-init"),
                help="where --method deep's later layers' prompts start: uniform, or the hidden "
                "states the input prompt reaches there (the model starts as the shallow prompt's; "
                "appended, each layer's prompt is added to those states and starts at zero)"),
        Setting("prompt_encoder", None, choices=ENCODERS, optional=True, in_file=True,
                flags=("--prompt-encoder", "--encoder"), help="the prompt encoder of --method p-tuning"),
        Setting("label_names", None, in_file=True),  # checked with num_classes (`check_metadata`)
    )

    def __init__(
        self,
        backbone,
        num_classes,
        *,
        num_tokens=20,
        prompt_initializer="uniform",
        placement="after_first",
        pooling="mean",
        head_dropout=0.0,
        deep=False,
        deep_initializer="uniform",
        prompt_encoder=None,
        label_names=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_classes, num_tokens, placement, pooling, head_dropout, deep, deep_initializer, prompt_encoder = (
            self.checked_settings(
                num_classes=num_classes, num_tokens=num_tokens, placement=placement, pooling=pooling,
                head_dropout=head_dropout, deep=deep, deep_initializer=deep_initializer, prompt_encoder=prompt_encoder,
            ).values()
        )  # fmt: skip
        check_pooling(pooling, backbone)
        first_token_id = self._check_deep_initializer(deep_initializer, deep, prompt_encoder, num_tokens, placement)
        if label_names is not None:
            label_names = [str(name) for name in label_names]
            if len(label_names) != num_classes or len(set(label_names)) != num_classes:
                raise ValueError(
                    f"`label_names` must be {num_classes} distinct names (num_classes). "
                    f"Received: label_names={label_names!r}."
                )
        self.backbone = backbone
        self.prompt = None
        self.prefixes = None
        self.mechanism = None  # head only
        if num_tokens:
            self.mechanism = mechanism_for(deep, prompt_encoder)
            if isinstance(prompt_initializer, str) and prompt_initializer in ("uniform", "vocab"):
                prompt_initializer = initializers.make_prompt_initializer(
                    prompt_initializer, backbone=backbone, num_tokens=num_tokens, seed=seed
                )
            self.mechanism.check(backbone, prompt_initializer)
            self.prompt, self.prefixes = self.mechanism.make_layers(backbone, num_tokens, prompt_initializer, placement)
        self.decoder = self._appended_decoder(backbone, placement, pooling)
        # Prefixes on a causal decoder run through it (`run_after_prefix`);
        # everything else through the backbone's own graph (`prompted_backbone`).
        self.prefix_decoder = None
        if self.prefixes is not None and is_causal(backbone):
            self.prefix_decoder = causal_decoder(backbone)
            self.prefixes.build((None, None, backbone.hidden_dim))
            self.encoder = None
        else:
            self.encoder = prompted_backbone(backbone, self.prompt, prefixes=self.prefixes)
        if deep_initializer == "hidden_states" and placement == "append":
            self.prompt.deep_prompts.assign(ops.zeros_like(self.prompt.deep_prompts))  # nothing added yet
        elif deep_initializer == "hidden_states":
            self.prompt.deep_prompts.assign(prompt_hidden_states(backbone, self.prompt, first_token_id))
        self.head_dropout_layer = keras.layers.Dropout(head_dropout, name="head_dropout")
        # float32 logits under mixed precision, for a stable softmax.
        self.head = keras.layers.Dense(num_classes, dtype="float32", name="head")
        dim = backbone.hidden_dim if self.encoder is None else self.encoder.output["sequence_output"].shape[-1]
        self.head.build((None, dim))
        self.num_classes = num_classes
        self.num_tokens = num_tokens
        self.placement = placement
        self.pooling = pooling
        self.head_dropout = head_dropout
        self.deep = self.mechanism.deep if self.mechanism else False
        self.prompt_encoder = prompt_encoder
        self.label_names = label_names
        self.seed = seed
        self.built = True
        freeze(self, trainable_layers=[self.head])  # prompts and prefixes stay trainable

    def _appended_decoder(self, backbone, placement, pooling):
        """The `CausalDecoder` that runs an appended prompt after a cached
        input, or None where the prompt runs through `encoder`."""
        if placement != "append" or self.mechanism is None or not is_causal(backbone):
            return None
        if self.prefixes is not None:
            raise ValueError(
                "Key/value prefixes after the text would be read by no later position: a decoder's "
                "text cannot attend to them and the head reads the last text token. Received: "
                "placement='append' with deep='prefix'. Use deep='hidden' (appended deep prompts) "
                "or placement 'prepend' for prefixes."
            )
        if pooling != "last":
            raise ValueError(
                "After an appended prompt, a decoder's text positions have not seen the prompt: "
                f"the head must read the last prompt position. Received: pooling={pooling!r} with "
                "placement='append'. Use pooling='last'."
            )
        return causal_decoder(backbone)

    def read_inputs(self, inputs):
        """The frozen decoder's keys and values for a batch of inputs, with
        room for the appended prompt (placement "append" on a decoder):
        computed once, without a gradient, and reusable across steps and
        epochs by `call_from_cache`."""
        if self.decoder is None:
            raise ValueError(
                "`read_inputs` reads the input of an appended prompt on a causal decoder. "
                f"Received: a classifier with placement={self.placement!r} on "
                f"{type(self.backbone).__name__}. Build it with placement='append' on a decoder."
            )
        self.check_input_length(inputs["token_ids"].shape[1])
        return self.decoder.read(inputs["token_ids"], inputs["padding_mask"], self.num_tokens)

    def call_from_cache(self, cache, training=None):
        """The logits from an `InputCache` of `read_inputs`: only the prompt's
        positions run, reading the cached keys and values. Calling the model
        on an `InputCache` does the same, so a training step can take one."""
        if self.decoder is None:
            self.read_inputs(None)  # raises: no appended prompt on a decoder
        prompt = ops.cast(self.prompt.prompt_value(), self.backbone.token_embedding.compute_dtype)
        batch = ops.shape(cache.lengths)[0]
        block = ops.broadcast_to(prompt[None], (batch, *prompt.shape))
        rewrite = None
        if self.prompt.num_layers:  # appended deep prompts: each layer's is added to the block's states
            dtype = block.dtype
            rewrite = lambda i, x: x + self.prompt.layer_prompt(i, dtype)[None]  # noqa: E731
        hidden, _ = self.decoder.continue_from(cache, block, rewrite=rewrite)
        return self.head(self.head_dropout_layer(hidden[:, -1], training=training))

    def _check_deep_initializer(self, deep_initializer, deep, prompt_encoder, num_tokens, placement):
        """Checks `deep_initializer` against the other settings; returns the token in
        front of the prompt that "hidden_states" needs with placement "after_first"."""
        if deep_initializer == "uniform":
            return None
        if deep != "hidden" or prompt_encoder or not num_tokens:
            raise ValueError(
                "`deep_initializer` applies to deep prompts only (deep='hidden' without a "
                f"prompt_encoder, num_tokens > 0). Received: deep_initializer={deep_initializer!r} "
                f"with deep={deep!r}, prompt_encoder={prompt_encoder!r}, num_tokens={num_tokens}. "
                "Leave it at 'uniform' or use deep='hidden'."
            )
        if placement != "after_first":
            return None
        start = getattr(getattr(self.preprocessor, "tokenizer", None), "start_token_id", None)
        if start is None:
            raise ValueError(
                "`deep_initializer='hidden_states'` with placement 'after_first' needs the token "
                "the inputs start with, read from `preprocessor`'s tokenizer. Received: "
                f"preprocessor={self.preprocessor!r}. Pass preprocessor=TextPreprocessor(tokenizer, "
                "sequence_length), or use placement='prepend'."
            )
        return start

    prompt_file_kind = "classifier"

    def prompt_layer(self):
        return self.prompt if self.prompt is not None else self.prefixes

    @property
    def prompt_positions(self) -> int:
        takes_positions = self.mechanism and (self.mechanism.takes_positions or self.prefix_decoder is not None)
        return self.num_tokens if takes_positions else 0

    def call(self, inputs, training=None):
        if isinstance(inputs, InputCache):  # read once, e.g. before every epoch
            return self.call_from_cache(inputs, training=training)
        if self.decoder is not None:
            return self.call_from_cache(self.read_inputs(inputs), training=training)
        self.check_input_length(inputs["token_ids"].shape[1])
        if self.prefix_decoder is not None:
            hidden = self.prefix_decoder.run_after_prefix(inputs["token_ids"], inputs["padding_mask"], self.prefixes.prefixes)
            pooled = pool(hidden, inputs["padding_mask"], self.pooling)
        else:
            encoded = self.encoder(self.backbone_inputs(inputs), training=False)
            pooled = pool(encoded["sequence_output"], encoded["padding_mask"], self.pooling)
        return self.head(self.head_dropout_layer(pooled, training=training))

    @property
    def label_classes(self) -> int:
        return self.num_classes

    @property
    def reads_inputs_once(self) -> bool:
        return self.decoder is not None

    # The prompt-file contract (see `PromptTask`).

    def task_variables(self) -> dict:
        variables = {"head/kernel": self.head.kernel, "head/bias": self.head.bias}
        if self.mechanism:
            variables.update(self.mechanism.variables(self.prompt, self.prefixes))
        return variables

    def prompt_file_tensors(self) -> dict:
        tensors = super().prompt_file_tensors()
        if self.mechanism:
            tensors.update(self.mechanism.file_tensors(self.prompt, self.prefixes))
        return tensors

    def optional_file_tensors(self, names) -> set:
        return self.mechanism.optional_file_tensors(names) if self.mechanism else set()

    def prompt_file_format(self) -> int:
        # Classifier files stay format 1 (older releases read them) unless
        # the mechanism is newer than that.
        return self.mechanism.file_format if self.mechanism else 1

    def prompt_file_metadata(self) -> dict:
        return {**super().prompt_file_metadata(), "dim": int(self.head.kernel.shape[0])}

    @classmethod
    def from_prompt_metadata(cls, metadata: dict, backbone, **kwargs):
        # A P-tuning file holds its encoder's output as `prompt`: served as a plain prompt.
        return super().from_prompt_metadata({**metadata, "prompt_encoder": None}, backbone, **kwargs)
