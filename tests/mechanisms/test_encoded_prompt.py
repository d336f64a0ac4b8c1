"""`EncodedPrompt`: an input prompt made by a small encoder over seeds (P-tuning)."""

import keras
import numpy as np
import pytest
from conftest import classifier_and_bank_variables

from tf_prompt_tuning.mechanisms import EncodedPrompt, InputPrompt


@pytest.mark.parametrize("encoder", ["mlp", "lstm"])
def test_files_keep_seeds_and_encoder_and_a_bank_serves_the_encoders_output(encoder):
    mechanism = EncodedPrompt(encoder)
    model, own, served = classifier_and_bank_variables(mechanism)
    assert own["encoder/seeds"].shape == (3, 8) and len(own) > 1
    assert all(name.startswith("encoder/") for name in own)
    assert isinstance(mechanism.bank_mechanism(), InputPrompt) and list(served) == ["prompt"]
    output = keras.ops.convert_to_numpy(model.prompt.prompt_value())
    np.testing.assert_array_equal(mechanism.file_tensors(model.prompt, model.prefixes)["prompt"], output)
    np.testing.assert_allclose(served["prompt"], output, atol=1e-6)
    assert mechanism.optional_file_tensors({"prompt", "encoder/0"}) == {"prompt"}


def test_unknown_encoders_are_refused():
    with pytest.raises(ValueError, match=r"`prompt_encoder` must be one of \('mlp', 'lstm'\). Received: prompt_encoder='gru'"):
        EncodedPrompt("gru")
