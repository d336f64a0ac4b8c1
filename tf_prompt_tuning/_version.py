"""The release, in one place: read by the build (setuptools, without importing
the package), written into prompt files, and re-exported as
`tf_prompt_tuning.__version__`."""

__version__ = "0.2.0"
