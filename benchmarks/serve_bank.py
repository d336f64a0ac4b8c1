"""Many tasks from one exported SavedModel: per-task accuracy and mixed-batch throughput.

Exports a bank directory of prompt files (one `TASK.safetensors` per task,
written by `tf-prompt-tuning train`) as one SavedModel, reloads it with
`tf.saved_model.load`, and
1. scores every task's held-out test split through the raw-text signature in
   batches that mix all tasks (examples interleaved round-robin);
2. measures serving throughput of the token-id signature on a batch of one
   task against the same batch spread over all tasks (interleaved runs,
   medians of repeats).

    python benchmarks/serve_bank.py --bank outputs/bank
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the exported tokenizer's ops)
from cpu_flags import cpu_description

from tf_prompt_tuning.app.classification_job import (
    TrainConfig,
    bank_files,
    export_task_or_bank,
    load_splits,
)
from tf_prompt_tuning.files.prompt_file import load_prompts


def _test_split(path):
    train_config = load_prompts(path).metadata["train_config"]
    return load_splits(TrainConfig(data=train_config["data"], seed=train_config["seed"]))[2]


def _mixed_accuracy(model, splits, batch_size):
    """Per-task accuracy with every batch mixing the tasks round-robin."""
    queue = []
    longest = max(len(s) for s in splits.values())
    for i in range(longest):
        for task_id, split in enumerate(splits.values()):
            if i < len(split):
                queue.append((task_id, split.texts[i], split.labels[i]))
    correct = np.zeros(len(splits))
    total = np.zeros(len(splits))
    for start in range(0, len(queue), batch_size):
        task_ids, texts, labels = zip(*queue[start : start + batch_size])
        probabilities = model.serve_text(tf.constant(texts), tf.constant(task_ids, tf.int32))["probabilities"]
        predicted = np.argmax(probabilities.numpy(), axis=-1)
        for task_id, p, y in zip(task_ids, predicted, labels):
            correct[task_id] += p == y
            total[task_id] += 1
    return correct / total, total


def _throughput(model, num_tasks, batch_size, length, repeats):
    rng = np.random.default_rng(0)
    token_ids = tf.constant(rng.integers(1000, 20000, size=(batch_size, length)), tf.int32)
    padding_mask = tf.ones_like(token_ids)
    variants = {
        "single task": tf.zeros([batch_size], tf.int32),
        f"{num_tasks} tasks mixed": tf.constant(np.arange(batch_size) % num_tasks, tf.int32),
    }
    serve = model.signatures["serving_default"]
    for task_id in variants.values():  # warm up both
        serve(token_ids=token_ids, padding_mask=padding_mask, task_id=task_id)
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, task_id in variants.items():
            start = time.perf_counter()
            serve(token_ids=token_ids, padding_mask=padding_mask, task_id=task_id)["probabilities"].numpy()
            times[name].append(time.perf_counter() - start)
    return {name: batch_size / statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bank", default="outputs/bank", help="directory of TASK.safetensors files")
    parser.add_argument("--saved-model", default="outputs/bank_saved_model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=48, help="token length for the throughput runs")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", default="outputs/serve_bank.json")
    args = parser.parse_args()
    print(cpu_description())

    files = bank_files(args.bank)
    export_task_or_bank(args.bank, args.saved_model)
    model = tf.saved_model.load(args.saved_model)
    splits = {task: _test_split(path) for task, path in files.items()}
    accuracy, counts = _mixed_accuracy(model, splits, args.batch_size)
    backbone_bytes = sum(
        os.path.getsize(os.path.join(root, f)) for root, _, names in os.walk(args.saved_model) for f in names
    )
    print(f"SavedModel {args.saved_model}: {backbone_bytes / 1e6:.1f} MB, tasks {list(files)}\n")
    print("| task | prompt file | test examples | accuracy (mixed batches, exported model) |")
    print("|---|---|---|---|")
    rows = []
    for (task, path), acc, n in zip(files.items(), accuracy, counts):
        size = os.path.getsize(path)
        rows.append({"task": task, "prompt_file_bytes": size, "examples": int(n), "accuracy": float(acc)})
        print(f"| {task} | {size:,} B | {int(n)} | {acc:.4f} |")

    speed = _throughput(model, len(files), args.batch_size, args.length, args.repeats)
    print(f"\n| serving batch ({args.batch_size} x {args.length} tokens) | examples/s |\n|---|---|")
    for name, value in speed.items():
        print(f"| {name} | {value:.1f} |")
    names = list(speed)
    print(f"\nmixed / single throughput: {speed[names[1]] / speed[names[0]]:.3f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"tasks": rows, "throughput": speed, "saved_model_bytes": backbone_bytes}, f, indent=2)


if __name__ == "__main__":
    main()
