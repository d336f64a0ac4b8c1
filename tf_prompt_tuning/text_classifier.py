"""`PromptTextClassifier`: a frozen KerasHub backbone, a soft prompt and a small head."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from tf_prompt_tuning import initializers
from tf_prompt_tuning._checks import check_positive_int
from tf_prompt_tuning.freezing import freeze
from tf_prompt_tuning.prefix_layer import PrefixLayer
from tf_prompt_tuning.prompt_layer import DeepPromptLayer, PromptEncoderLayer, PromptLayer
from tf_prompt_tuning.prompted_backbone import check_sequence_fits, prompted_backbone

POOLINGS = ("mean", "cls", "last")
INITIALIZERS = ("uniform", "vocab", "text", "labels")
# Lester et al. (2021) sample prompt vectors from the 5,000 most frequent tokens.
VOCAB_TOP_K = 5000


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}.")
    return value


def check_deep(deep):
    """`deep` as False, "hidden" or "prefix" (`True` means "hidden")."""
    if not isinstance(deep, str):
        return "hidden" if deep else False
    if deep in ("hidden", "prefix"):
        return deep
    raise ValueError(
        f'`deep` must be False, "hidden" (or True) or "prefix". Received: deep={deep!r}.'
    )


def pool(sequence, padding_mask, pooling: str):
    """Pools `(batch, seq, dim)` hidden states to `(batch, dim)`.

    "mean": masked mean over every non-padding position (prompt included);
    "cls": the first position; "last": the last non-padding position (for
    decoders, whose last token has seen the whole sequence).
    """
    if pooling == "cls":
        return sequence[:, 0]
    mask = ops.cast(padding_mask, sequence.dtype)
    if pooling == "mean":
        total = ops.sum(sequence * mask[..., None], axis=1)
        return total / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1)
    last = ops.cast(ops.sum(mask, axis=1), "int32") - 1
    return ops.take_along_axis(sequence, last[:, None, None], axis=1)[:, 0]


def make_prompt_initializer(
    kind: str,
    *,
    backbone,
    num_tokens: int,
    tokenizer=None,
    label_names: Sequence[str] | None = None,
    text: str | None = None,
    seed: int | None = None,
):
    """Resolves a named initialization scheme against a backbone's vocabulary.

    Args:
        kind: "uniform" ([-0.5, 0.5]), "vocab" (rows sampled from the 5,000
            most frequent tokens), "text" (the embeddings of `text`'s
            tokens, repeated to length) or "labels" (the embeddings of the
            class names, then vocabulary samples), after Lester et al. 2021.
        backbone: the KerasHub backbone whose token embeddings are read.
        num_tokens: prompt length.
        tokenizer: the backbone's tokenizer ("text" and "labels").
        label_names: class names ("labels").
        text: the text ("text").
        seed: seed of the random schemes.
    """
    _check_choice("kind", kind, INITIALIZERS)
    if kind == "uniform":
        return initializers.uniform(seed=seed)
    embeddings = backbone.token_embedding.embeddings
    if kind == "vocab":
        top_k = min(VOCAB_TOP_K, embeddings.shape[0])
        return initializers.from_vocabulary(embeddings, num_tokens, top_k=top_k, seed=seed)
    needed = {"text": text, "labels": label_names}[kind]
    if tokenizer is None or not needed:
        what = "`text`" if kind == "text" else "`label_names`"
        raise ValueError(f'The "{kind}" initializer needs `tokenizer` and {what}.')

    def ids(string):
        return [int(i) for i in ops.convert_to_numpy(tokenizer(string)).reshape(-1)]

    if kind == "text":
        return initializers.from_token_ids(embeddings, ids(text), num_tokens)
    return initializers.from_class_labels(
        embeddings,
        [ids(name) for name in label_names],
        num_tokens,
        top_k=min(VOCAB_TOP_K, embeddings.shape[0]),
        seed=seed,
    )


def backbone_model_config(model) -> dict:
    """The config entries shared by this library's models that hold a
    backbone and a prompt: the inverse of `from_backbone_config`."""
    prompt = model.prompt if model.prompt is not None else getattr(model, "prefixes", None)
    return {
        "backbone": keras.saving.serialize_keras_object(model.backbone),
        "num_tokens": model.num_tokens,
        "prompt_initializer": None if prompt is None else keras.initializers.serialize(prompt.initializer),
        "seed": model.seed,
    }


def from_backbone_config(cls, config):
    """`cls(**config)` with the backbone deserialized: the `from_config` of
    this library's models, which hold a backbone and a prompt initializer."""
    config = dict(config)
    config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
    if config.get("prompt_initializer") is None:
        config.pop("prompt_initializer", None)
    return cls(**config)


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PromptTextClassifier(keras.Model):
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
        placement: "after_first" (default) or "prepend" (decoders).
        pooling: "mean" (default; masked mean over all positions), "cls" or
            "last".
        head_dropout: dropout rate before the head.
        deep: a prompt for every transformer layer instead of the input
            only (P-tuning v2): `"hidden"` (or `True`) rewrites the prompt
            positions' hidden states before every layer (`DeepPromptLayer`,
            any transformer layer); `"prefix"` gives every attention layer
            `num_tokens` trainable keys and values (`PrefixLayer`, KerasHub
            `TransformerEncoder` layers; no positions in the sequence, faster).
            `False` (default) for the input only.
        prompt_encoder: None, "mlp" or "lstm": produce the prompt with a
            small encoder over trainable seeds (`PromptEncoderLayer`, P-tuning).
        label_names: the class names, in order (optional; saved in prompt
            files and used by `predict` on the command line).
        seed: seed of the random initializers.
        **kwargs: standard model arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: the backbone's inputs, a dict with `token_ids` and
            `padding_mask` (and `segment_ids` for BERT), each `(batch, seq)`.

    Output shape:
        `(batch, num_classes)` float32 logits.
    """

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
        prompt_encoder=None,
        label_names=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_classes = check_positive_int("num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(
                "`num_classes` must be at least 2 (the model outputs one logit per "
                f"class). Received: num_classes={num_classes}."
            )
        if num_tokens != 0:
            num_tokens = check_positive_int("num_tokens", num_tokens)
        _check_choice("pooling", pooling, POOLINGS)
        if not 0.0 <= head_dropout < 1.0:
            raise ValueError(
                f"`head_dropout` must be in [0, 1). Received: head_dropout={head_dropout}."
            )
        deep = check_deep(deep)
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
        if num_tokens:
            if isinstance(prompt_initializer, str) and prompt_initializer in ("uniform", "vocab"):
                prompt_initializer = make_prompt_initializer(
                    prompt_initializer, backbone=backbone, num_tokens=num_tokens, seed=seed
                )
            if deep and prompt_encoder:
                raise ValueError(
                    f"Choose deep prompts or a prompt encoder, not both. Received: deep={deep!r}, "
                    f"prompt_encoder={prompt_encoder!r}."
                )
            if prompt_encoder:
                self.prompt = PromptEncoderLayer(
                    num_tokens, encoder=prompt_encoder, initializer=prompt_initializer,
                    placement=placement, name="prompt",
                )  # fmt: skip
            elif deep == "prefix":
                if isinstance(initializers.get(prompt_initializer), initializers.FromArray):
                    raise ValueError(
                        "`prompt_initializer` of key/value prefixes must be random or constant "
                        f"(\"uniform\", \"zeros\", a Keras initializer). Received: prompt_initializer={prompt_initializer!r} "
                        "(vocabulary, text and label initializers make input-level vectors). "
                        "Use deep=\"hidden\" to start deep prompts from words."
                    )
                self.prefixes = PrefixLayer(
                    num_tokens, len(backbone.transformer_layers), initializer=prompt_initializer,
                    name="prefixes",
                )  # fmt: skip
            elif deep:
                self.prompt = DeepPromptLayer(
                    num_tokens, len(backbone.transformer_layers), initializer=prompt_initializer,
                    placement=placement, name="prompt",
                )  # fmt: skip
            else:
                self.prompt = PromptLayer(
                    num_tokens, initializer=prompt_initializer, placement=placement, name="prompt"
                )
        self.encoder = prompted_backbone(backbone, self.prompt, prefixes=self.prefixes)
        self.head_dropout_layer = keras.layers.Dropout(head_dropout, name="head_dropout")
        # float32 logits under mixed precision, for a stable softmax.
        self.head = keras.layers.Dense(num_classes, dtype="float32", name="head")
        self.head.build((None, self.encoder.output["sequence_output"].shape[-1]))
        self.num_classes = num_classes
        self.num_tokens = num_tokens
        self.placement = placement
        self.pooling = pooling
        self.head_dropout = head_dropout
        self.deep = deep if num_tokens else False
        self.prompt_encoder = prompt_encoder
        self.label_names = label_names
        self.seed = seed
        self.built = True
        freeze(self, trainable_layers=[self.head])  # prompts and prefixes stay trainable

    def check_input_length(self, length: int | None):
        """Raises if `length` tokens plus the prompt exceed the backbone's limit."""
        # Prefixes take no positions.
        check_sequence_fits(self.backbone, self.num_tokens if self.prefixes is None else 0, length)

    def call(self, inputs, training=None):
        self.check_input_length(inputs["token_ids"].shape[1])
        encoded = self.encoder(inputs, training=False)
        pooled = pool(encoded["sequence_output"], encoded["padding_mask"], self.pooling)
        return self.head(self.head_dropout_layer(pooled, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                **backbone_model_config(self),
                "num_classes": self.num_classes,
                "placement": self.placement,
                "pooling": self.pooling,
                "head_dropout": self.head_dropout,
                "deep": self.deep,
                "prompt_encoder": self.prompt_encoder,
                "label_names": self.label_names,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return from_backbone_config(cls, config)

    @classmethod
    def from_prompt_file(cls, path, backbone, **kwargs):
        """The classifier a prompt file holds, on `backbone` (its fingerprint
        must match the file's); the file is read once.

        Args:
            path: a prompt file's path, or a `PromptFile` already loaded.
            backbone: the backbone it was trained on.
            **kwargs: more model arguments (`name`, ...).
        """
        from tf_prompt_tuning.prompt_file import assign_prompt_file, read_prompt_file

        loaded = read_prompt_file(path, "classifier")
        metadata = loaded.metadata
        model = cls(
            backbone, metadata["num_classes"], num_tokens=metadata["num_tokens"],
            prompt_initializer="zeros", placement=metadata.get("placement", "after_first"),
            pooling=metadata.get("pooling", "mean"), deep=metadata.get("deep", False),
            label_names=metadata.get("label_names"), **kwargs,
        )  # fmt: skip
        assign_prompt_file(model, loaded, loaded.path)
        return model
