"""`PromptEncoderLayer`: P-tuning's seeds through a trainable encoder."""

import keras
import numpy as np
import pytest
from conftest import assert_config_round_trip

from tf_prompt_tuning import freeze


@pytest.mark.parametrize("encoder", ["mlp", "lstm"])
def test_prompt_encoder_layer_trains_seeds_and_encoder(encoder):
    from tf_prompt_tuning.layers.prompt_encoder_layer import PromptEncoderLayer

    model = keras.Sequential(
        [keras.Input((4, 6)), PromptEncoderLayer(3, encoder=encoder, name="prompt"),
         keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2, name="head")]
    )  # fmt: skip
    layer = model.get_layer("prompt")
    x = np.random.default_rng(0).normal(size=(5, 4, 6)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(out[:, :3], np.broadcast_to(keras.ops.convert_to_numpy(layer.prompt_value()), (5, 3, 6)), atol=1e-6)
    freeze(model)
    before = [keras.ops.convert_to_numpy(v).copy() for v in layer.trainable_weights]
    assert len(before) == 1 + len(layer.encoder_weights)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, np.array([0, 1, 0, 1, 1]), epochs=3, verbose=0)
    after = [keras.ops.convert_to_numpy(v) for v in layer.trainable_weights]
    assert all(not np.allclose(b, a) for b, a in zip(before, after))
    assert_config_round_trip(layer)


def test_prompt_encoder_layer_bad_encoder():
    from tf_prompt_tuning.layers.prompt_encoder_layer import PromptEncoderLayer

    with pytest.raises(ValueError, match=r"`encoder` must be one of \('mlp', 'lstm'\). Received: encoder='gru'"):
        PromptEncoderLayer(2, encoder="gru")
