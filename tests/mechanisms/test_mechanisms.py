"""The mechanism registry: the methods of the job and the command line, and
how classifier arguments choose a mechanism."""

import pytest

from tf_prompt_tuning.app.classification_job import METHODS
from tf_prompt_tuning.mechanisms import (
    MECHANISMS,
    check_deep,
    get_mechanism,
    mechanism_for,
)


def test_the_registry_names_the_methods_of_the_job_and_cli():
    assert tuple(MECHANISMS) == METHODS == ("prompt", "deep", "prefix", "p-tuning")
    assert [type(get_mechanism(name)).__name__ for name in METHODS] == [
        "InputPrompt", "HiddenStatePrompts", "KeyValuePrefixes", "EncodedPrompt"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "deep, prompt_encoder, name",
    [(False, None, "prompt"), (True, None, "deep"), ("hidden", None, "deep"), ("prefix", None, "prefix"),
     (False, "mlp", "p-tuning"), (None, "lstm", "p-tuning")],
)  # fmt: skip
def test_classifier_arguments_choose_a_mechanism_and_back(deep, prompt_encoder, name):
    mechanism = mechanism_for(deep, prompt_encoder)
    assert mechanism.name == name
    assert mechanism_for(**mechanism.classifier_arguments()).name == name


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r'`deep` must be False, "hidden" \(or True\) or "prefix". Received: deep=\'scaled\''):
        check_deep("scaled")
    with pytest.raises(ValueError, match="Choose deep prompts or a prompt encoder, not both"):
        mechanism_for("hidden", "mlp")
    with pytest.raises(ValueError, match=r"`prompt_encoder` must be one of \('mlp', 'lstm'\). Received: prompt_encoder='gru'"):
        mechanism_for(False, "gru")
    with pytest.raises(ValueError, match=r"`method` must be one of \('prompt', 'deep', 'prefix', 'p-tuning'\)"):
        get_mechanism("lora")


