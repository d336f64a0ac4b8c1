"""Writes the prompt files of release 0.1.0 that later releases must still load.

Run once, with the release whose files they are (0.1.0, before the prompt-file
checksum): `cd tests/data && ../../.venv/bin/python make_prompt_fixtures.py`.
It saves two tiny random backbones as KerasHub presets (so a later release
loads the very weights the files were fingerprinted on), one prompt file of
every kind (formats 1-3, with and without an encoder, head only, a causal LM)
and each model's outputs on fixed inputs, in `prompt_files_0.1/`.
`tests/files/test_prompt_file_compatibility.py` loads them with the current code.
"""

import os
import shutil

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import keras_hub
import numpy as np

import tf_prompt_tuning as tpt

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompt_files_0.1")
CLASSIFIER_INPUTS = {
    "token_ids": np.array([[2, 5, 6, 7, 3, 0], [2, 9, 3, 0, 0, 0]], "int32"),
    "segment_ids": np.zeros((2, 6), "int32"),
    "padding_mask": np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], "int32"),
}
LM_INPUTS = {
    "token_ids": np.array([[5, 6, 7, 8], [0, 0, 9, 10]], "int32"),
    "padding_mask": np.array([[1, 1, 1, 1], [0, 0, 1, 1]], "int32"),
}
# name -> PromptTextClassifier keyword arguments
CLASSIFIERS = {
    "prompt": dict(num_tokens=3),
    "head_only": dict(num_tokens=0),
    "deep_hidden": dict(num_tokens=3, deep="hidden"),
    "prefix": dict(num_tokens=3, deep="prefix"),
    "p_tuning_mlp": dict(num_tokens=3, prompt_encoder="mlp"),
    "p_tuning_lstm": dict(num_tokens=3, prompt_encoder="lstm"),
}


def _randomize(model, seed):
    """Trained-looking task variables: random values, not the initializers'."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        variable.assign(rng.normal(0, 0.5, variable.shape).astype("float32"))


def main():
    shutil.rmtree(HERE, ignore_errors=True)
    os.makedirs(HERE)
    keras.utils.set_random_seed(0)
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=30, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=24,
    )  # fmt: skip
    bert.save_to_preset(os.path.join(HERE, "bert"))
    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=32,
    )  # fmt: skip
    gpt2.save_to_preset(os.path.join(HERE, "gpt2"))
    outputs = {}
    for i, (name, kwargs) in enumerate(CLASSIFIERS.items()):
        model = tpt.PromptTextClassifier(bert, 3, seed=i, **kwargs)
        _randomize(model, i)
        tpt.save_prompts(model, os.path.join(HERE, f"{name}.safetensors"), label_names=["a", "b", "c"])
        outputs[name] = keras.ops.convert_to_numpy(model(CLASSIFIER_INPUTS))
    lm = tpt.PromptCausalLM(gpt2, num_tokens=2, seed=0)
    _randomize(lm, 10)
    tpt.save_prompts(lm, os.path.join(HERE, "causal_lm.safetensors"))
    outputs["causal_lm"] = keras.ops.convert_to_numpy(lm(LM_INPUTS))
    # A bank made of two of the files, as a bank directory is served.
    bank = tpt.PromptBank(bert, num_tokens=3)
    bank.add_prompt_file("prompt", os.path.join(HERE, "prompt.safetensors"))
    bank.add_prompt_file("deep_hidden", os.path.join(HERE, "deep_hidden.safetensors"))
    bank_inputs = dict(CLASSIFIER_INPUTS, task_id=np.array([1, 0], "int32"))
    outputs["bank"] = keras.ops.convert_to_numpy(bank(bank_inputs))
    np.savez(os.path.join(HERE, "outputs.npz"), **outputs)
    print(f"wrote {sorted(os.listdir(HERE))} with tf_prompt_tuning {tpt.__version__}")


if __name__ == "__main__":
    main()
