"""Head only, shallow prompt, deep prompts, P-tuning and full fine-tuning, side by side.

    .venv/bin/python benchmarks/methods.py            # the README's table
    .venv/bin/python benchmarks/methods.py --train-size 500 --methods head prompt

The real MiniLM on the movie-review sentences: every method sees the same
training sentences for the same number of epochs (batch 32, bucketed
padding, Adam with cosine decay), and is scored on the same held-out test
split (the dev split's accuracy is printed too: choose settings on it, not
on test). The parameter-efficient methods share one learning rate; full
fine-tuning (every backbone weight trainable, still without dropout, as the
others run) uses its own, smaller one, as is usual. Prints a table of test
accuracy, trainable parameters and step time, and writes it as JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import keras
import numpy as np

import tf_prompt_tuning as tpt
from tf_prompt_tuning.classification_job import evaluate, predict_function

METHODS = {
    "head": ("head only", dict(num_tokens=0)),
    "prompt": ("shallow prompt + head", dict()),
    "deep": ("deep prompts + head", dict(deep=True)),
    "p-tuning": ("P-tuning (MLP) + head", dict(prompt_encoder="mlp")),
    "full": ("full fine-tuning + head", dict(num_tokens=0)),
}


def run(method, splits, args):
    backbone, tokenizer = tpt.load_backbone()  # a fresh copy per method
    name, kwargs = METHODS[method]
    kwargs = {"num_tokens": args.num_tokens, **kwargs}
    keras.utils.set_random_seed(args.seed)
    model = tpt.PromptTextClassifier(backbone, 2, seed=args.seed, **kwargs)
    learning_rate = args.learning_rate
    if method == "full":
        backbone.trainable = True  # unfreeze everything
        learning_rate = args.full_learning_rate
    train, dev, test = splits
    make = functools.partial(
        tpt.make_text_dataset, tokenizer=tokenizer, sequence_length=args.max_length,
        batch_size=args.batch_size, seed=args.seed,
    )  # fmt: skip
    steps = args.epochs * (len(train) // args.batch_size + args.max_length // 16 + 1)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    step = tpt.make_train_step(
        model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=keras.optimizers.Adam(schedule),
    )  # fmt: skip
    start = time.perf_counter()
    history = tpt.train(model, make(train, shuffle=True), epochs=args.epochs, step=step, verbose=0)
    seconds = time.perf_counter() - start
    predict = predict_function(model)
    dev_accuracy = evaluate(model, make(dev), predict=predict)["accuracy"]
    accuracy = evaluate(model, make(test), predict=predict)["accuracy"]
    trainable = tpt.parameter_summary(model).trainable
    result = {
        "method": name,
        "learning_rate": learning_rate,
        "dev_accuracy": dev_accuracy,
        "test_accuracy": accuracy,
        "trainable_params": trainable,
        "trainable_percent_of_full": None,
        "step_seconds": seconds / len(history.step_losses),
        "train_seconds": seconds,
    }
    print(f"{name}: dev accuracy {dev_accuracy:.4f}, test accuracy {accuracy:.4f}, trainable {trainable:,}, {result['step_seconds']:.3f} s/step", flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--train-size", type=int, help="default: all 8,454 training sentences")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--num-tokens", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-2)
    parser.add_argument("--full-learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="outputs/methods.json")
    args = parser.parse_args()

    train, dev, test = tpt.load_sentiment("movie_reviews").split(seed=args.seed)
    if args.train_size:
        train = train.subset(np.arange(args.train_size))
    print(f"{len(train)} training sentences, {len(test)} test sentences, {args.epochs} epoch(s)", flush=True)
    results = [run(method, (train, dev, test), args) for method in args.methods]
    full = next((r for r in results if r["method"].startswith("full")), None)
    print("\n| method | trainable params | % of full FT | dev accuracy | test accuracy | s/step |\n|---|---|---|---|---|---|")
    for r in results:
        if full:
            r["trainable_percent_of_full"] = 100 * r["trainable_params"] / full["trainable_params"]
        share = f"{r['trainable_percent_of_full']:.3f}%" if full else "-"
        print(f"| {r['method']} | {r['trainable_params']:,} | {share} | {r['dev_accuracy']:.4f} | {r['test_accuracy']:.4f} | {r['step_seconds']:.3f} |")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"config": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
