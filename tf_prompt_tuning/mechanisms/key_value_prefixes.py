"""`KeyValuePrefixes`: trainable keys and values in every attention layer (P-tuning v2)."""

from __future__ import annotations

from tf_prompt_tuning import initializers
from tf_prompt_tuning.backbones.causal_decoder import causal_decoder
from tf_prompt_tuning.backbones.pooling import is_causal
from tf_prompt_tuning.layers.prefix_layer import PrefixLayer, check_prefixable
from tf_prompt_tuning.mechanisms.prompt_mechanism import PromptMechanism


class KeyValuePrefixes(PromptMechanism):
    """`num_tokens` keys and values per attention layer (`PrefixLayer`): for
    KerasHub `TransformerEncoder` layers, with no positions in the sequence;
    for causal decoders (GPT-2, OPT, Gemma 3), as cache entries in front of
    the text, which they push back by `num_tokens` positions."""

    name = "prefix"
    description = "prefixes + head"
    deep = "prefix"
    takes_positions = False
    file_format = 3  # older releases cannot read prefix classifiers
    word_initializers = False

    def check(self, backbone, initializer):
        if not is_causal(backbone):
            check_prefixable(backbone)
        if isinstance(initializers.get(initializer), initializers.FromArray):
            raise ValueError(
                "`prompt_initializer` of key/value prefixes must be random or constant "
                f"(\"uniform\", \"zeros\", a Keras initializer). Received: prompt_initializer={initializer!r} "
                "(vocabulary, text and label initializers make input-level vectors). "
                "Use deep=\"hidden\" to start deep prompts from words."
            )

    def make_layers(self, backbone, num_tokens, initializer, placement):
        shape = causal_decoder(backbone).key_value_shape if is_causal(backbone) else None
        layer = PrefixLayer(
            num_tokens, len(backbone.transformer_layers), initializer=initializer, key_value_shape=shape,
            name="prefixes",
        )  # fmt: skip
        return None, layer

    def variables(self, prompt, prefixes):
        return {"prefixes": prefixes.prefixes}

    def optional_file_tensors(self, names):
        return set()

    def add_to_bank(self, bank, name, initializer):
        if bank.prefixes is None:
            raise ValueError(
                f"Task {name!r} has key/value prefixes, but the bank's backbone {bank.backbone.name!r} "
                "has no KerasHub TransformerEncoder layers to take them. Train the task with "
                "deep='hidden' instead."
            )
        bank.prompts.add_prompt(name, initializer, deep="prefix")
        bank.prefixes.add_prefixes(name, enabled=True, initializer=initializer)

    def bank_variables(self, bank, task):
        return {"prefixes": bank.prefixes.task_prefixes[task]}
