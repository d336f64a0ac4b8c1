"""`HiddenStatePrompts`: a prompt for every transformer layer, as hidden states (P-tuning v2)."""

from __future__ import annotations

from tf_prompt_tuning.layers.deep_prompt_layer import DeepPromptLayer
from tf_prompt_tuning.mechanisms.prompt_mechanism import PromptMechanism


class HiddenStatePrompts(PromptMechanism):
    """The input prompt, and the prompt positions' hidden states rewritten
    before every later transformer layer (`DeepPromptLayer`; appended after
    the text, added to)."""

    name = "deep"
    description = "deep prompt + head"
    deep = "hidden"

    def make_layers(self, backbone, num_tokens, initializer, placement):
        layer = DeepPromptLayer(
            num_tokens, len(backbone.transformer_layers), initializer=initializer, placement=placement,
            name="prompt",
        )  # fmt: skip
        return layer, None

    def variables(self, prompt, prefixes):
        return {"prompt": prompt.prompt, "deep_prompts": prompt.deep_prompts}

    def add_to_bank(self, bank, name, initializer):
        bank.prompts.add_prompt(name, initializer, deep="hidden")
        if bank.prefixes is not None:
            bank.prefixes.add_prefixes(name, enabled=False)

    def bank_variables(self, bank, task):
        return {"prompt": bank.prompts.prompts[task], "deep_prompts": bank.prompts.deep_prompts[task]}
