"""`InputPrompt`: a soft prompt in the embedded input only (Lester et al., 2021)."""

from __future__ import annotations

from tf_prompt_tuning.layers.prompt_layer import PromptLayer
from tf_prompt_tuning.mechanisms.prompt_mechanism import PromptMechanism


class InputPrompt(PromptMechanism):
    """`num_tokens` trainable vectors inserted into the embedded sequence (`PromptLayer`)."""

    name = "prompt"
    description = "prompt + head"

    def make_layers(self, backbone, num_tokens, initializer, placement):
        return PromptLayer(num_tokens, initializer=initializer, placement=placement, name="prompt"), None

    def variables(self, prompt, prefixes):
        return {"prompt": prompt.prompt}

    def add_to_bank(self, bank, name, initializer):
        bank.prompts.add_prompt(name, initializer)
        if bank.prefixes is not None:
            bank.prefixes.add_prefixes(name, enabled=False)

    def bank_variables(self, bank, task):
        return {"prompt": bank.prompts.prompts[task]}
