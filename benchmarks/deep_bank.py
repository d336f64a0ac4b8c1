"""What holding a deep-prompt or prefix task costs a `PromptBank`'s forward pass.

    .venv/bin/python benchmarks/deep_bank.py

On the real MiniLM, batch 32 x 48 random token ids, 20-token prompts with
untrained (random) values, which cost the same as trained ones: a bank of
two input-level tasks (it runs no per-layer op) against a bank holding the
same tasks plus a deep one (it selects each example's prompt before every
layer), fed only the input-level tasks, a mix, and only the deep task; and
the same for a bank holding a key/value-prefix task (every layer then runs
with each example's prefixes, hidden for the other tasks' examples). Each
forward is a `tf.function`, warmed up, then timed interleaved (as in
`train_step.py`); medians, and ratios to the input-level bank measured in
the same run.
"""

from __future__ import annotations

import argparse

import numpy as np
import tensorflow as tf
from train_step import measure_steps, random_batch

from cpu_flags import cpu_description
import tf_prompt_tuning as tpt


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(cpu_description())

    backbone, _ = tpt.load_backbone()
    shallow = tpt.PromptBank(backbone, num_tokens=20)
    deep = tpt.PromptBank(backbone, num_tokens=20)
    prefix = tpt.PromptBank(backbone, num_tokens=20)
    for bank in (shallow, deep, prefix):
        bank.add_task("a", 2)
        bank.add_task("b", 2)
    deep.add_task("c", 2, deep="hidden")
    prefix.add_task("c", 2, deep="prefix")

    x, _ = random_batch(args.batch_size, args.length)
    cases = {
        "input-level bank, tasks a, b": (shallow, [0, 1]),
        "bank with a deep task, tasks a, b (input-level)": (deep, [0, 1]),
        "bank with a deep task, tasks a, b, c mixed": (deep, [0, 1, 2]),
        "bank with a deep task, task c (deep) only": (deep, [2]),
        "bank with a prefix task, tasks a, b (input-level)": (prefix, [0, 1]),
        "bank with a prefix task, tasks a, b, c mixed": (prefix, [0, 1, 2]),
        "bank with a prefix task, task c (prefixes) only": (prefix, [2]),
    }
    calls = {}
    for name, (bank, tasks) in cases.items():
        inputs = {**x, "task_id": tf.constant(np.resize(tasks, args.batch_size), tf.int32)}
        forward = tf.function(lambda inputs, bank=bank: bank(inputs, training=False))
        calls[name] = lambda forward=forward, inputs=inputs: forward(inputs)
    results = measure_steps(calls, args.repeats)
    base = next(iter(results.values()))["median_s"]
    print(f"\n| MiniLM bank, batch {args.batch_size} x {args.length} | median s | vs input-level bank |\n|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['median_s']:.3f} | {r['median_s'] / base:.3f} |")


if __name__ == "__main__":
    main()
