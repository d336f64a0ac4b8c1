"""Text to model inputs: the one text framing, and the `TextPreprocessor` layer."""
