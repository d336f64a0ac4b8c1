"""Prompted cached generation on Gemma 3 270M against KerasHub's own generate.

    .venv/bin/python benchmarks/gemma_generation.py [--batch-size 4] [--input 32] [--new 32] [--repeats 3] [--step-parts]

Needs the `[gemma]` extra. The same converted model, loaded three times:
float32, `mixed_bfloat16` (bfloat16 compute on float32 weights, cast at
every call) and `bfloat16` (weights stored in bfloat16: a frozen backbone
needs no float32 master copy; the prompt stays float32 either way). For
each, greedy generation on the same random token ids by:

- ours: `PromptCausalLM.generate` (XLA, its default) with a 20-token prompt
  in front (so it runs 20 more positions than KerasHub),
  `max_new_tokens=--new`;
- KerasHub, XLA: `Gemma3CausalLM`'s own generate function
  (`make_generate_function`) with `jit_compile=True`, on the input
  right-padded by `--new` slots, no stop tokens;
- KerasHub, Keras's default: the same function as Keras compiles it when
  nobody sets `jit_compile`. On a CPU-only machine Keras resolves "auto" to
  no XLA, so it runs as a TensorFlow graph, whose kernels depend on the
  CPU: TensorFlow's oneDNN kernels are on by default only with
  AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX, and without them the 262k-word
  logits product of each token takes 9-13x longer (docs/gemma.md).

Each is warmed up (trace and compile), then all are timed interleaved,
`--repeats` times; medians. Tokens per second = batch x new tokens / time.
`--step-parts` also times one cached step of KerasHub's graph (Keras's
default on CPU) and, alone, the vocabulary logits that end it.
Also: how often the bfloat16 greedy tokens equal the float32 ones (random
inputs, so this only shows drift, not quality). The header names the CPU,
its instruction-set flags and whether oneDNN's kernels are on
(`cpu_flags.py`): a figure without them says little.
"""

import argparse
import statistics
import sys
import time

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from cpu_flags import cpu_description

import tf_prompt_tuning as tpt

parser = argparse.ArgumentParser()
parser.add_argument("--batch-size", type=int, default=4)
parser.add_argument("--input", type=int, default=32)
parser.add_argument("--new", type=int, default=32)
parser.add_argument("--num-tokens", type=int, default=20)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16", "bfloat16"])
parser.add_argument("--step-parts", action="store_true",
                    help="also time one cached step of KerasHub's graph, and its logits alone")
args = parser.parse_args()

rng = np.random.default_rng(0)
ids = rng.integers(1000, 20000, size=(args.batch_size, args.input)).astype("int32")
ids[:, 0] = 2  # <bos>
mask = np.ones_like(ids)
padded = {
    "token_ids": np.pad(ids, ((0, 0), (0, args.new))),
    "padding_mask": np.pad(mask, ((0, 0), (0, args.new))),
}


def step_parts(lm):
    """One cached decoding step of `lm` as a TensorFlow graph, whole and its
    vocabulary logits alone, on a cache filled by the padded input."""
    backbone = lm.backbone
    shape = [args.batch_size, args.input + args.new, backbone.num_key_value_heads, backbone.head_dim]
    empty = tuple((tf.zeros(shape, lm.compute_dtype),) * 2 for _ in range(backbone.num_layers))
    _, hidden, cache = lm.call_with_cache(padded["token_ids"], empty, 0, padding_mask=padded["padding_mask"])
    token, update = ids[:, -1:], np.ones([args.batch_size, 1], bool)  # written to the cache, as a new token is
    step = tf.function(lambda: lm.call_with_cache(token, cache, args.input, cache_update_mask=update)[0])
    logits = tf.function(lambda: backbone.token_embedding(hidden[:, :1], reverse=True))
    return {"one cached step": lambda: step().numpy(), "its 262k-word logits alone": lambda: logits().numpy()}


calls, parts, outputs = {}, {}, {}
PRECISIONS = args.precisions
for precision in PRECISIONS:
    keras.config.set_dtype_policy(precision)
    backbone, _ = tpt.load_backbone("gemma3_270m")
    ours = tpt.PromptCausalLM(backbone, num_tokens=args.num_tokens, prompt_initializer="vocab", seed=0)
    theirs = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)
    default_xla = theirs.jit_compile  # what Keras chose: False on a CPU-only machine
    generators = {f"KerasHub, Keras's default ({'XLA' if default_xla else 'no XLA'})": theirs.make_generate_function()}
    if not default_xla:
        theirs.jit_compile, theirs.generate_function = True, None
        generators = {"KerasHub, XLA": theirs.make_generate_function(), **generators}
    calls[precision, "ours (with prompt), XLA"] = lambda m=ours: m.generate(ids, mask, args.new)["token_ids"]
    for name, generate in generators.items():
        calls[precision, name] = lambda g=generate: np.asarray(g(padded)["token_ids"])[:, args.input :]
    if args.step_parts:
        parts.update({(precision, f"KerasHub, graph: {name}"): call for name, call in step_parts(theirs).items()})
keras.config.set_dtype_policy("float32")

first = {}
for key, call in {**calls, **parts}.items():
    start = time.perf_counter()
    outputs[key] = call()
    first[key] = time.perf_counter() - start
    print(f"warm-up {key}: {first[key]:.1f} s", file=sys.stderr, flush=True)
times = {key: [] for key in {**calls, **parts}}
for _ in range(args.repeats):
    for key, call in {**calls, **parts}.items():
        start = time.perf_counter()
        call()
        times[key].append(time.perf_counter() - start)

print(cpu_description())
print(f"Gemma 3 270M, batch {args.batch_size}, {args.input} input tokens, {args.new} new tokens, "
      f"{args.repeats} interleaved repeats")
print("| precision | generator | first call s | median s | tokens/s |\n|---|---|---|---|---|")
for precision, name in calls:
    median = statistics.median(times[precision, name])
    print(f"| {precision} | {name} | {first[precision, name]:.1f} | {median:.2f} "
          f"| {args.batch_size * args.new / median:.1f} |")
if parts:
    print("\n| precision | piece | median s |\n|---|---|---|")
    for precision, name in parts:
        print(f"| {precision} | {name} | {statistics.median(times[precision, name]):.3f} |")
for precision in [p for p in PRECISIONS if p != "float32" and "float32" in PRECISIONS]:
    for name in [name for p, name in calls if p == precision]:
        same = (outputs["float32", name] == outputs[precision, name]).mean()
        print(f"{precision}, {name}: greedy tokens equal to float32's: {same:.1%}")
