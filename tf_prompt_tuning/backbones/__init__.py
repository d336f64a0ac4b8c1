"""Backbones: loading and conversion, causal decoder families, the prompted graph,
pooling, and the one module that reaches Keras/KerasHub internals."""
