"""`EncodedPrompt`: an input prompt made by a small encoder over trainable seeds (P-tuning)."""

from __future__ import annotations

from keras import ops

from tf_prompt_tuning._checks import check_choice
from tf_prompt_tuning.layers.prompt_encoder_layer import ENCODERS, PromptEncoderLayer
from tf_prompt_tuning.mechanisms.input_prompt import InputPrompt
from tf_prompt_tuning.mechanisms.prompt_mechanism import PromptMechanism


class EncodedPrompt(PromptMechanism):
    """An input prompt produced by an MLP or LSTM over seeds (`PromptEncoderLayer`).

    Its files hold the seeds and the encoder (to resume training) and the
    encoder's output as `prompt`, so serving (a bank, a plain model) needs
    no encoder.

    Args:
        prompt_encoder: "mlp" or "lstm".
    """

    name = "p-tuning"
    description = "p-tuning + head"

    def __init__(self, prompt_encoder="mlp"):
        self.prompt_encoder = check_choice("prompt_encoder", prompt_encoder, ENCODERS)
        self.description = f"p-tuning ({prompt_encoder}) + head"

    @classmethod
    def matches(cls, deep, prompt_encoder) -> bool:
        return not deep and bool(prompt_encoder)

    def make_layers(self, backbone, num_tokens, initializer, placement):
        layer = PromptEncoderLayer(
            num_tokens, encoder=self.prompt_encoder, initializer=initializer, placement=placement, name="prompt"
        )
        return layer, None

    def variables(self, prompt, prefixes):
        variables = {"encoder/seeds": prompt.prompt}
        variables.update({f"encoder/{i}": weight for i, weight in enumerate(prompt.encoder_weights)})
        return variables

    def file_tensors(self, prompt, prefixes):
        return {"prompt": ops.convert_to_numpy(prompt.prompt_value())}

    def optional_file_tensors(self, names):
        return {"prompt"}  # restored from the encoder, not read

    def bank_mechanism(self):
        return InputPrompt()  # a bank serves the encoder's output
