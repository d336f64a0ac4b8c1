"""Every private Keras and KerasHub API the library uses still exists, does
what the library needs, and says which one broke when it does not."""

import keras
import keras_hub
import numpy as np
import pytest
from conftest import tiny_bert

from tf_prompt_tuning.backbones import _keras_internals as internals


def test_run_through_graph_calls_the_function_for_every_layer_call():
    backbone = tiny_bert()
    called = []

    def call_fn(layer, *args, **kwargs):
        called.append(layer.name)
        return layer(*args, **kwargs)

    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in backbone.input}
    outputs = internals.run_through_graph(backbone, inputs, call_fn)
    assert set(outputs) == set(backbone.output)
    assert [layer.name for layer in backbone.transformer_layers] == [n for n in called if n.startswith("transformer")]


def test_a_built_layer_grows_only_while_unlocked():
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    with pytest.raises(ValueError, match="cannot add new elements of state"):
        layer.add_weight(name="late", shape=(1,))
    with internals.unlocked(layer):
        layer.add_weight(name="late", shape=(1,))
    assert [v.name for v in layer.weights][-1] == "late"
    with pytest.raises(ValueError, match="cannot add new elements of state"):  # locked again
        layer.add_weight(name="later", shape=(1,))


def test_inner_layers_and_own_variables():
    class Holder(keras.Model):
        def __init__(self):
            super().__init__()
            self.parts = [keras.layers.Dense(2), keras.layers.Dense(3)]
            self.scale = self.add_weight(name="scale", shape=(1,))

        def call(self, x):
            return self.parts[1](self.parts[0](x)) * self.scale

    model = Holder()
    model(np.zeros((1, 4), "float32"))
    assert [id(layer) for layer in internals.inner_layers(model)] == [id(p) for p in model.parts]
    assert [v.name for v in internals.own_trainable_variables(model)] == ["scale"]


def test_the_sentencepiece_op_is_made_again_from_the_proto(tmp_path):
    from tiny_files import write_tiny_gemma3_gguf

    from tf_prompt_tuning.backbones.gemma3_gguf import convert_gemma3_gguf

    _, tokenizer = convert_gemma3_gguf(write_tiny_gemma3_gguf(tmp_path / "tiny.gguf"))
    before = np.asarray(tokenizer("the cat sat")).tolist()
    assert internals.make_sentencepiece_op(tokenizer), "KerasHub's SentencePieceTokenizer lost `_set_proto_tf`"
    assert np.asarray(tokenizer("the cat sat")).tolist() == before


def test_every_encoder_sublayer_is_there():
    layer = keras_hub.layers.TransformerEncoder(intermediate_dim=8, num_heads=2)
    layer.build((None, 4, 6))
    missing = [private for private in internals.ENCODER_SUBLAYERS.values() if not hasattr(layer, private)]
    assert not missing, f"KerasHub's TransformerEncoder no longer has {missing}"
    steps = internals.encoder_sublayers(layer)
    assert isinstance(steps.intermediate_dense, keras.layers.Dense)
    assert isinstance(steps.attention, keras.layers.MultiHeadAttention)
