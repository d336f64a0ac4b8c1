"""Prompt-only training step against a frozen forward pass and full fine-tuning.

    .venv/bin/python benchmarks/train_step.py --lengths 64 128 --repeats 10
    .venv/bin/python benchmarks/train_step.py --backbone gemma3_270m --batch-size 8 \
        --lengths 64 --repeats 3 --no-padding [--precision mixed_bfloat16]

On a real backbone (default the MiniLM, a 6-layer BERT, hidden 384; or Gemma
3 270M with the `[gemma]` extra, whose classifier takes the prompt in front
and pools the last token) with a 20-token prompt, batch 32, fixed random
token ids (no padding), for each text length and with and without XLA, three
compiled calls, under the Keras dtype policy `--precision`:

- forward: the prompted classifier's inference call `model(x, training=False)`
  in a `tf.function`, so at the same total length (text + prompt) as the steps;
- prompt step: `make_train_step` on `PromptTextClassifier` (prompt and head
  train, the backbone is frozen);
- full FT step: the same classifier on a second copy of the backbone with
  every backbone weight trainable (it still runs in inference mode, without
  dropout, as the prompted one does, so only the gradients differ).

Each call is warmed up first (reported as "first call": trace, XLA compile
and one run), then all are timed interleaved, one call each per repeat, forced
with `.numpy()`; medians are reported, and ratios only between calls of the
same run. Peak RSS (process-wide) is read after each warm-up, so its growth
shows which phase needed new memory.

The floor: the floating-point operations of the matrix products in what XLA
actually runs for each call (its optimized HLO, after dead code is gone;
the step's forward and backward pass, which is what XLA compiles), counted
from the shapes, not timed. Their ratios are the cost ratios an exact
gradient cannot go below, whatever the hardware.

With `--placement append` (decoders only: Gemma 3, GPT-2, OPT), the same
prompt also goes after the text, where a causal decoder's text cannot see
it, so three more calls run on a classifier sharing the prompted one's
backbone:

- input read: the text alone through the frozen decoder, keeping its keys
  and values (`read_inputs`), what each appended step starts with;
- appended step: `make_train_step` on the appended classifier, reading the
  input without a gradient and running only the prompt's positions with one;
- appended step, reused cache: the same step on an input cache read once
  before (`model(InputCache)`), as an epoch after the first would run.

Then the input pipeline: the movie-review training split (8,454 sentences)
through `make_text_dataset` at `sequence_length=64`, padded to 64 throughout
or bucketed with dynamic padding; tokens per epoch, and the epoch time
estimated from the prompt step's mean time over batches spread evenly over
the epoch (both paddings interleaved).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import tf_prompt_tuning as tpt
from cpu_flags import cpu_description
from tf_prompt_tuning.app.datasets import load_sentiment

VARIANTS = ("forward", "prompt step", "full FT step")
APPENDED_VARIANTS = ("input read", "appended step", "appended step, reused cache")
# The input-pipeline comparison runs at the CLI's default `--max-length`.
EPOCH_SEQUENCE_LENGTH = 64


def _machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _timed(fn) -> float:
    """Seconds of one call, its output forced with `.numpy()`."""
    start = time.perf_counter()
    fn().numpy()
    return time.perf_counter() - start


def _models(num_tokens: int, name: str, placement: str):
    """The prompted classifier, a fully trainable one on a second backbone,
    and (placement "append") an appended one sharing the first backbone."""
    backbone, tokenizer = tpt.load_backbone(name)
    # Decoders read the text after the prompt and pool their last token.
    options = {"placement": "prepend", "pooling": "last"} if "segment_ids" not in backbone.input else {}
    prompted = tpt.PromptTextClassifier(backbone, 2, num_tokens=num_tokens, **options)
    appended = None
    if placement == "append":
        appended = tpt.PromptTextClassifier(backbone, 2, num_tokens=num_tokens, placement="append", pooling="last")
        if appended.decoder is None:
            raise SystemExit(
                f"--placement append times the cached input of a causal decoder; {name} is an "
                "encoder, whose text positions see an appended prompt, so nothing can be cached."
            )
    full = tpt.PromptTextClassifier(tpt.load_backbone(name)[0], 2, num_tokens=num_tokens, **options)
    full.backbone.trainable = True
    expected = len(full.backbone.weights) + len(prompted.trainable_variables)
    if len(full.trainable_variables) != expected:
        raise RuntimeError(
            f"The full fine-tuning model has {len(full.trainable_variables)} trainable "
            f"variables, expected {expected} (every backbone weight, prompt and head)."
        )
    return prompted, full, appended, tokenizer


def _make_step(model, xla: bool) -> tpt.TrainStep:
    return tpt.make_train_step(
        model,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=keras.optimizers.Adam(1e-3),
        jit_compile=xla,
    )


def random_batch(batch_size: int, length: int, input_names=("token_ids", "padding_mask", "segment_ids")):
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, size=(batch_size, length))
    token_ids = tf.constant(ids, tf.int32)
    x = {
        "token_ids": token_ids,
        "padding_mask": tf.ones_like(token_ids),
        "segment_ids": tf.zeros_like(token_ids),
    }
    x = {name: value for name, value in x.items() if name in input_names}
    return x, tf.constant(rng.integers(0, 2, size=batch_size), tf.int32)


# An instruction's name and shape, and a dot's output shape, left operand and
# contracted dimensions, in HLO text.
_HLO_DEF = re.compile(r"%([\w.\-]+) = \w+\[([\d,]*)\]")
_HLO_DOT = re.compile(r"= \w+\[([\d,]*)\]\S* dot\(%([\w.\-]+),.*?lhs_contracting_dims=\{([\d,]*)\}")


def _dims(text: str) -> list[int]:
    return [int(d) for d in text.split(",") if d]


def matmul_flops(function, *args) -> int:
    """FLOPs of the matrix products XLA runs for `function(*args)`, a
    `tf.function(jit_compile=True)`: 2 x output size x contracted size per dot."""
    hlo = function.experimental_get_compiler_ir(*args)(stage="optimized_hlo")
    dots = list(_HLO_DOT.finditer(hlo))
    if hlo.count(" dot(") != len(dots):
        raise RuntimeError("Some dots of the HLO were not parsed; update the pattern.")
    shapes = {m.group(1): _dims(m.group(2)) for m in _HLO_DEF.finditer(hlo)}
    flops = 0
    for m in dots:
        lhs = shapes[m.group(2)]
        contracted = np.prod([lhs[i] for i in _dims(m.group(3))])
        flops += 2 * int(np.prod(_dims(m.group(1)))) * int(contracted)
    return flops


def _calls(prompted, full, appended, lengths, batch_size, xla_settings) -> tuple[dict, dict]:
    """`{(length, xla, variant): fn}`; every call has its own function and step,
    so its first call includes its own trace (and XLA compile). Also
    `{(length, variant): (xla_function, args)}`, what XLA compiles for each."""
    calls, compiled = {}, {}
    for length in lengths:
        x, y = random_batch(batch_size, length, tuple(prompted.backbone.input))
        for xla in xla_settings:
            forward = tf.function(lambda x: prompted(x, training=False), jit_compile=xla)
            variants = {
                "forward": (forward, (x,)),
                "prompt step": (_make_step(prompted, xla), (x, y)),
                "full FT step": (_make_step(full, xla), (x, y)),
            }
            if appended is not None:
                read = tf.function(lambda x: appended.read_inputs(x).caches[-1], jit_compile=xla)
                variants["input read"] = (read, (x,))
                variants["appended step"] = (_make_step(appended, xla), (x, y))
                variants["appended step, reused cache"] = (_make_step(appended, xla), (appended.read_inputs(x), y))
            for variant, (fn, args) in variants.items():
                calls[length, xla, variant] = lambda fn=fn, args=args: fn(*args)
                if xla:
                    # The steps' XLA part: forward and backward (the optimizer
                    # update runs outside XLA), built at their first call.
                    step = isinstance(fn, tpt.TrainStep)
                    compiled[length, variant] = (fn, (*args, ()) if step else args)
    return calls, compiled


def measure_flops(compiled: dict) -> dict:
    """`{(length, variant): matmul FLOPs}` of the warmed-up XLA calls."""
    flops = {}
    for (length, variant), (fn, args) in compiled.items():
        if isinstance(fn, tpt.TrainStep):
            fn = fn._compiled_gradients  # the XLA-compiled forward and backward pass
        flops[length, variant] = matmul_flops(fn, *args)
    return flops


def measure_steps(calls: dict, repeats: int) -> dict:
    """Warms every call up, then times them interleaved `repeats` times."""
    results = {}
    for key, fn in calls.items():
        before = _peak_rss_mb()
        first = _timed(fn)
        after = _peak_rss_mb()
        results[key] = {
            "first_call_s": first,
            "peak_rss_mb": after,
            "rss_growth_mb": after - before,
        }
        print(
            f"warm-up {key}: {first:.1f} s, peak RSS {after:.0f} MB",
            file=sys.stderr,
            flush=True,
        )
    times = {key: [] for key in calls}
    for repeat in range(repeats):
        for key, fn in calls.items():
            times[key].append(_timed(fn))
        print(f"repeat {repeat + 1}/{repeats}", file=sys.stderr, flush=True)
    for key, seconds in times.items():
        results[key].update(median_s=statistics.median(seconds), times_s=seconds)
    return results


def _pad_to(length: int):
    def pad(features, labels):
        extra = length - tf.shape(features["token_ids"])[1]
        padded = {name: tf.pad(v, [[0, 0], [0, extra]]) for name, v in features.items()}
        return padded, labels

    return pad


def measure_padding(model, tokenizer, sequence_length, batch_size, num_batches) -> dict:
    """Tokens per epoch and estimated epoch time, fixed vs bucketed padding."""
    train, _, _ = load_sentiment("movie_reviews").split(seed=0)

    def dataset(bucket):
        return tpt.make_text_dataset(
            train,
            tokenizer=tokenizer,
            sequence_length=sequence_length,
            batch_size=batch_size,
            bucket_by_length=bucket,
        )

    epochs = {
        f"fixed padding to {sequence_length}": list(
            dataset(False).map(_pad_to(sequence_length))
        ),
        "bucketed dynamic padding": list(dataset(True)),
    }
    steps = {name: _make_step(model, xla=False) for name in epochs}
    picks = {}
    for name, batches in epochs.items():
        steps[name](*batches[0]).numpy()  # trace
        spread = np.linspace(0, len(batches) - 1, num_batches).round().astype(int)
        picks[name] = np.unique(spread)
    times = {name: [] for name in epochs}
    for i in range(max(len(p) for p in picks.values())):
        for name, batches in epochs.items():
            if i < len(picks[name]):
                batch = batches[picks[name][i]]
                times[name].append(_timed(lambda s=steps[name], b=batch: s(*b)))
    results = {}
    for name, batches in epochs.items():
        shapes = [x["token_ids"].shape for x, _ in batches]
        mean_step = statistics.fmean(times[name])
        results[name] = {
            "examples": sum(s[0] for s in shapes),
            "batches": len(batches),
            "tokens": sum(s[0] * s[1] for s in shapes),
            "real_tokens": int(sum(np.sum(x["padding_mask"]) for x, _ in batches)),
            "timed_batches": len(times[name]),
            "mean_step_s": mean_step,
            "epoch_s": mean_step * len(batches),
        }
    return results


def _print_tables(steps, flops, padding, batch_size, num_tokens):
    print(
        "\n| text + prompt length | XLA | variant | median s/call | examples/s "
        "| first call s | peak RSS MB | RSS growth MB |\n" + "|---" * 8 + "|"
    )
    for (length, xla, variant), r in steps.items():
        print(
            f"| {length} + {num_tokens} | {'on' if xla else 'off'} | {variant} "
            f"| {r['median_s']:.3f} | {batch_size / r['median_s']:.1f} "
            f"| {r['first_call_s']:.1f} | {r['peak_rss_mb']:.0f} "
            f"| {r['rss_growth_mb']:+.0f} |"
        )
    if flops:
        print(
            "\n| text + prompt length | variant | matmul GFLOP per call (XLA) |\n|---|---|---|"
        )
        for (length, variant), value in flops.items():
            print(f"| {length} + {num_tokens} | {variant} | {value / 1e9:.1f} |")
    print(
        "\n| text + prompt length | measure | prompt step / forward "
        "| prompt step / full FT step |\n|---|---|---|---|"
    )
    for ratio in _ratios(steps, flops):
        print(
            f"| {ratio['length']} + {num_tokens} | {ratio['measure']} "
            f"| {ratio['prompt_over_forward']:.2f} | {ratio['prompt_over_full']:.2f} |"
        )
    appended = [ratio for ratio in _ratios(steps, flops) if f"{APPENDED_VARIANTS[1]} / forward" in ratio]
    if appended:
        print(
            "\n| text + prompt length | measure | prompted step / forward | "
            + " | ".join(f"{v} / forward" for v in APPENDED_VARIANTS) + " |\n" + "|---" * 6 + "|"
        )
        for ratio in appended:
            print(
                f"| {ratio['length']} + {num_tokens} | {ratio['measure']} | {ratio['prompt_over_forward']:.2f} | "
                + " | ".join(f"{ratio[f'{v} / forward']:.2f}" for v in APPENDED_VARIANTS) + " |"
            )
    if not padding:
        return
    print(
        f"\n| padding (max {EPOCH_SEQUENCE_LENGTH}, prompt step, no XLA) | batches "
        "| tokens per epoch "
        "| non-padding tokens | mean step s | est. epoch s |\n|---|---|---|---|---|---|"
    )
    for name, r in padding.items():
        print(
            f"| {name} | {r['batches']} | {r['tokens']:,} | {r['real_tokens']:,} "
            f"| {r['mean_step_s']:.3f} | {r['epoch_s']:.0f} |"
        )


def _ratios(steps, flops) -> list[dict]:
    """Time ratios per length and XLA setting, then the FLOP floor per length."""
    costs = {}
    for length, xla, variant in steps:
        costs.setdefault((length, f"time, XLA {'on' if xla else 'off'}"), {})[variant] = steps[length, xla, variant]["median_s"]
    for length, variant in flops:
        costs.setdefault((length, "matmul FLOPs (floor)"), {})[variant] = flops[length, variant]
    rows = []
    for (length, kind), cost in sorted(costs.items(), key=lambda item: item[0][0]):
        row = {
            "length": length,
            "measure": kind,
            "prompt_over_forward": cost["prompt step"] / cost["forward"],
            "prompt_over_full": cost["prompt step"] / cost["full FT step"],
        }
        for variant in APPENDED_VARIANTS:
            if variant in cost:
                row[f"{variant} / forward"] = cost[variant] / cost["forward"]
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[64, 128], help="text tokens"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-tokens", type=int, default=20, help="prompt length")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-xla", action="store_true", help="skip the XLA variants")
    parser.add_argument(
        "--epoch-batches", type=int, default=40, help="batches timed per padding mode"
    )
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2", help="a load_backbone name")
    parser.add_argument("--precision", default="float32", help="Keras dtype policy of the backbones")
    parser.add_argument("--no-padding", action="store_true", help="skip the input-pipeline comparison")
    parser.add_argument(
        "--placement", choices=("prepend", "append"), default="prepend",
        help="append: also time an appended prompt over a cached input (decoders)",
    )
    parser.add_argument("--json", default="outputs/train_step.json")
    args = parser.parse_args()

    start = time.perf_counter()
    machine = _machine()
    keras.config.set_dtype_policy(args.precision)
    prompted, full, appended, tokenizer = _models(args.num_tokens, args.backbone, args.placement)
    loaded_rss = _peak_rss_mb()
    xla_settings = (False,) if args.no_xla else (False, True)
    calls, compiled = _calls(prompted, full, appended, args.lengths, args.batch_size, xla_settings)
    steps = measure_steps(calls, args.repeats)
    flops = measure_flops(compiled)
    padding = {} if args.no_padding else measure_padding(
        prompted, tokenizer, EPOCH_SEQUENCE_LENGTH, args.batch_size, args.epoch_batches
    )
    total = time.perf_counter() - start

    print(cpu_description())
    print(
        f"{machine['platform']}, {machine['cpu_count']} CPUs ({machine['processor']}), "
        f"load average {machine['load_average']} at start; "
        f"TensorFlow {machine['tensorflow']}, Keras {machine['keras']}"
    )
    print(
        f"{args.backbone} ({args.precision}), batch {args.batch_size}, {args.num_tokens}-token prompt; "
        f"trainable variables: prompt step {len(prompted.trainable_variables)}, "
        f"full FT step {len(full.trainable_variables)}; "
        f"{args.repeats} interleaved repeats; "
        f"peak RSS after loading both backbones {loaded_rss:.0f} MB"
    )
    _print_tables(steps, flops, padding, args.batch_size, args.num_tokens)
    print(f"\ntotal time {total:.0f} s, peak RSS {_peak_rss_mb():.0f} MB")

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(
            {
                "machine": machine,
                "config": vars(args),
                "loaded_rss_mb": loaded_rss,
                "steps": [
                    {"length": length, "xla": xla, "variant": variant, **r}
                    for (length, xla, variant), r in steps.items()
                ],
                "matmul_flops": [
                    {"length": length, "variant": variant, "flops": value}
                    for (length, variant), value in flops.items()
                ],
                "ratios": _ratios(steps, flops),
                "padding": padding,
                "total_s": total,
            },
            f,
            indent=2,
        )


if __name__ == "__main__":
    main()
