"""Prompted cached generation on Gemma 3 270M against KerasHub's own generate.

    .venv/bin/python benchmarks/gemma_generation.py [--batch-size 4] [--input 32] [--new 32] [--repeats 3]

Needs the `[gemma]` extra. The same converted model, loaded three times:
float32, `mixed_bfloat16` (bfloat16 compute on float32 weights, cast at
every call) and `bfloat16` (weights stored in bfloat16: a frozen backbone
needs no float32 master copy; the prompt stays float32 either way). For each, two
greedy generators, both compiled with XLA, on the same random token ids:

- ours: `PromptCausalLM.generate` with a 20-token prompt in front (so it
  runs 20 more positions than KerasHub), `max_new_tokens=--new`;
- KerasHub: `Gemma3CausalLM`'s own compiled generate function on the input
  right-padded by `--new` slots, no stop tokens.

Each is warmed up (trace and compile), then all four are timed interleaved,
`--repeats` times; medians. Tokens per second = batch x new tokens / time.
Also: how often the bfloat16 greedy tokens equal the float32 ones (random
inputs, so this only shows drift, not quality).
"""

import argparse
import statistics
import sys
import time

import keras
import keras_hub
import numpy as np

import tf_prompt_tuning as tpt

parser = argparse.ArgumentParser()
parser.add_argument("--batch-size", type=int, default=4)
parser.add_argument("--input", type=int, default=32)
parser.add_argument("--new", type=int, default=32)
parser.add_argument("--num-tokens", type=int, default=20)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16", "bfloat16"])
args = parser.parse_args()

rng = np.random.default_rng(0)
ids = rng.integers(1000, 20000, size=(args.batch_size, args.input)).astype("int32")
ids[:, 0] = 2  # <bos>
mask = np.ones_like(ids)
padded = {
    "token_ids": np.pad(ids, ((0, 0), (0, args.new))),
    "padding_mask": np.pad(mask, ((0, 0), (0, args.new))),
}

calls, outputs = {}, {}
PRECISIONS = args.precisions
for precision in PRECISIONS:
    keras.config.set_dtype_policy(precision)
    backbone, _ = tpt.load_backbone("gemma3_270m")
    ours = tpt.PromptCausalLM(backbone, num_tokens=args.num_tokens, prompt_initializer="vocab", seed=0)
    theirs = keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)
    generate = theirs.make_generate_function()
    calls[precision, "ours (with prompt)"] = lambda m=ours: m.generate(ids, mask, args.new)["token_ids"]
    calls[precision, "KerasHub"] = lambda g=generate: np.asarray(g(padded)["token_ids"])[:, args.input :]
keras.config.set_dtype_policy("float32")

first = {}
for key, call in calls.items():
    start = time.perf_counter()
    outputs[key] = call()
    first[key] = time.perf_counter() - start
    print(f"warm-up {key}: {first[key]:.1f} s", file=sys.stderr, flush=True)
times = {key: [] for key in calls}
for _ in range(args.repeats):
    for key, call in calls.items():
        start = time.perf_counter()
        call()
        times[key].append(time.perf_counter() - start)

print(f"Gemma 3 270M, batch {args.batch_size}, {args.input} input tokens, {args.new} new tokens, "
      f"{args.repeats} interleaved repeats (XLA)")
print("| precision | generator | first call s | median s | tokens/s |\n|---|---|---|---|---|")
for (precision, name), seconds in times.items():
    median = statistics.median(seconds)
    print(f"| {precision} | {name} | {first[precision, name]:.1f} | {median:.2f} "
          f"| {args.batch_size * args.new / median:.1f} |")
for precision in [p for p in PRECISIONS if p != "float32"]:
    for name in ("ours (with prompt)", "KerasHub"):
        same = (outputs["float32", name] == outputs[precision, name]).mean()
        print(f"{precision}, {name}: greedy tokens equal to float32's: {same:.1%}")
