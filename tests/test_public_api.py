import tf_prompt_tuning


def test_every_public_name_is_exported():
    for name in tf_prompt_tuning.__all__:
        assert getattr(tf_prompt_tuning, name) is not None
    assert tf_prompt_tuning.__version__


def test_core_imports_without_keras_hub():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['keras_hub'] = None\n"
        "import tf_prompt_tuning as tpt\n"
        "assert tpt.PromptLayer(2)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
