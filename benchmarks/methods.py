"""Head only, shallow prompt, deep prompts, P-tuning and full fine-tuning, side by side.

    .venv/bin/python benchmarks/methods.py            # the README's table
    .venv/bin/python benchmarks/methods.py --methods deep full --epochs 3 --seeds 0 1 2
    .venv/bin/python benchmarks/methods.py --methods deep prefix --epochs 3 --seeds 0 1
    .venv/bin/python benchmarks/methods.py --train-size 500 --methods head prompt
    .venv/bin/python benchmarks/methods.py --backbone gemma3_270m --train-size 240 --epochs 2 \
        --batch-size 8 --eval-size 200 --init vocab --full-learning-rate 3e-5 --methods head prompt deep full
    .venv/bin/python benchmarks/methods.py --backbone gemma3_270m --train-size 240 --epochs 2 \
        --batch-size 8 --eval-size 200 --init vocab --methods deep --deep-init hidden_states --learning-rate 1e-2
    .venv/bin/python benchmarks/methods.py --backbone gemma3_270m --train-size 2000 --batch-size 8 \
        --eval-size 1000 --init vocab --placement append --methods head prompt deep
    .venv/bin/python benchmarks/methods.py --backbone gemma3_270m --train-size 2000 --batch-size 8 \
        --eval-size 1500 --init vocab --placement append --methods head prompt \
        --data outputs/nyt_editorials/train.csv --test-data outputs/nyt_editorials/test.csv

The real MiniLM on the movie-review sentences (`--data`: another set): every method sees the same
training sentences for the same number of epochs (batch 32, bucketed
padding, Adam with cosine decay), and is scored on the same held-out test
split (the dev split's accuracy is printed too: choose settings on it, not
on test). The parameter-efficient methods share one learning rate; full
fine-tuning (every backbone weight trainable, still without dropout, as the
others run) uses its own, smaller one, as is usual. Prints a table of test
accuracy, trainable parameters and step time, and writes it as JSON. The
accuracy on 1,000 of the training sentences is printed too (`--eval-size`
caps it, and dev and test, at their first N sentences): a method whose
training accuracy is no higher than its dev accuracy cannot fit the task,
one far above it fits but does not generalize.

With several `--seeds`, each seed draws its own train/dev/test split and
initialization, every method runs on each, and a last table gives the mean
accuracies and, against full fine-tuning, the mean and spread of the gap
(paired by seed, so the split's own difficulty cancels).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import keras
import numpy as np

from cpu_flags import cpu_description
import tf_prompt_tuning as tpt
from tf_prompt_tuning.app.datasets import DataError, load_dataset
from tf_prompt_tuning.training.evaluation import evaluate, predict_function

METHODS = {
    "head": ("head only", dict(num_tokens=0)),
    "prompt": ("shallow prompt + head", dict()),
    "deep": ("deep prompts + head", dict(deep="hidden")),
    "prefix": ("deep prefixes + head", dict(deep="prefix")),
    "p-tuning": ("P-tuning (MLP) + head", dict(prompt_encoder="mlp")),
    "full": ("full fine-tuning + head", dict(num_tokens=0)),
}
TRAIN_SCORED = 1000


def run(method, splits, args, seed):
    keras.utils.set_random_seed(seed)
    backbone, tokenizer = tpt.load_backbone(args.backbone)  # a fresh copy per method
    name, kwargs = METHODS[method]
    kwargs = {"num_tokens": args.num_tokens, "prompt_initializer": args.init, **kwargs}
    if method == "prefix":  # keys and values, not input vectors: `--init vocab` does not apply
        kwargs["prompt_initializer"] = "uniform"
    if kwargs.get("deep") == "hidden" and args.deep_init != "uniform":
        kwargs["deep_initializer"] = args.deep_init
        name = f"{name}, from hidden states"
    if "segment_ids" not in backbone.input:  # a decoder: a pooled later token
        pooling = "last" if args.placement == "append" else args.pooling
        if kwargs["num_tokens"] and method != "prefix":
            kwargs["placement"] = args.placement
            name = f"{name}, {args.placement}ed"
        kwargs["pooling"] = pooling
        name = f"{name} ({pooling} pooling)"
    model = tpt.PromptTextClassifier(
        backbone, 2, seed=seed, preprocessor=tpt.TextPreprocessor(tokenizer, args.max_length), **kwargs
    )  # the preprocessor gives "hidden_states" the start token; training reads `make_text_dataset`'s batches
    learning_rate = args.learning_rate
    if method == "full":
        backbone.trainable = True  # unfreeze everything
        learning_rate = args.full_learning_rate
    return fit_and_score(name, model, tokenizer, splits, args, seed, learning_rate)


def fit_and_score(name, model, tokenizer, splits, args, seed, learning_rate) -> dict:
    """Trains `model` on the training split and scores it: the accuracy on
    dev and test, and on the first `TRAIN_SCORED` training sentences, which
    tells a method that cannot fit the task from one that does not generalize."""
    train, dev, test = splits
    make = functools.partial(
        tpt.make_text_dataset, tokenizer=tokenizer, sequence_length=args.max_length,
        batch_size=args.batch_size, seed=seed, input_names=tuple(model.backbone.input),
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
    score = {
        split: evaluate(model, make(data), predict=predict)["accuracy"]
        for split, data in (
            ("train", train.subset(np.arange(min(args.eval_size or TRAIN_SCORED, TRAIN_SCORED, len(train))))),
            ("dev", dev),
            ("test", test),
        )
    }
    trainable = tpt.parameter_summary(model).trainable
    result = {
        "method": name,
        "seed": seed,
        "learning_rate": learning_rate,
        "train_accuracy": score["train"],
        "dev_accuracy": score["dev"],
        "test_accuracy": score["test"],
        "trainable_params": trainable,
        "trainable_percent_of_full": None,
        "step_seconds": seconds / len(history.step_losses),
        "train_seconds": seconds,
    }
    print(
        f"seed {seed}, {name}: train accuracy {score['train']:.4f}, dev accuracy {score['dev']:.4f}, "
        f"test accuracy {score['test']:.4f}, trainable {trainable:,}, {result['step_seconds']:.3f} s/step",
        flush=True,
    )
    return result


def _summary(results) -> list[dict]:
    """Mean accuracies per method over seeds, and the gap to full fine-tuning."""
    by_method = {}
    for r in results:
        by_method.setdefault(r["method"], {})[r["seed"]] = r
    full = next((runs for name, runs in by_method.items() if name.startswith("full")), None)
    rows = []
    for name, runs in by_method.items():
        row = {"method": name, "seeds": sorted(runs)}
        for split in ("dev", "test"):
            row[f"mean_{split}_accuracy"] = float(np.mean([r[f"{split}_accuracy"] for r in runs.values()]))
            if full is not None and set(runs) <= set(full):
                gaps = [full[seed][f"{split}_accuracy"] - r[f"{split}_accuracy"] for seed, r in runs.items()]
                row[f"{split}_gap_to_full"] = float(np.mean(gaps))
                row[f"{split}_gap_std"] = float(np.std(gaps, ddof=1)) if len(gaps) > 1 else None
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="movie_reviews", help="a built-in set or a .csv/.tsv/.jsonl file")
    parser.add_argument(
        "--test-data", help="a .csv/.tsv/.jsonl file whose rows are the test set (benchmarks/held_out_split.py "
        "writes one); default: the held-out split of --data",
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--train-size", type=int, help="default: all 8,454 training sentences")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--num-tokens", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-2)
    parser.add_argument(
        "--init", default="uniform", choices=("uniform", "vocab"),
        help="prompt initializer (uniform [-0.5, 0.5] rows have norm 7.3 at Gemma's width, its "
        "token embeddings ~1.0: vocab starts the prompt among them; prefixes, which are keys and "
        "values, start uniform)",
    )
    parser.add_argument(
        "--deep-init", default="uniform", choices=("uniform", "hidden_states"),
        help="where deep prompts' later layers start: uniform, or the hidden states the input prompt "
        "reaches there (the model then starts as the shallow prompt's; appended, where each layer's "
        "prompt is added to those states: zero)",
    )
    parser.add_argument("--full-learning-rate", type=float, default=1e-4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one split and initialization each")
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2", help="a load_backbone name, e.g. gemma3_270m")
    parser.add_argument("--pooling", default="last", choices=("last", "mean"), help="decoders only")
    parser.add_argument(
        "--placement", default="prepend", choices=("prepend", "append"),
        help="decoders only: the prompt in front, or after the text (read without a gradient, "
        "then only the prompt's positions run and train; the head reads the last one)",
    )
    parser.add_argument("--eval-size", type=int, help="score only the first N dev, test (and train) sentences")
    parser.add_argument("--json", default="outputs/methods.json")
    args = parser.parse_args()
    print(cpu_description())

    results = []
    for seed in args.seeds:
        try:
            train, dev, test = load_dataset(args.data).split(seed=seed)
            if args.test_data:  # the file's rows are the test set; the split's own is not used
                test = load_dataset(args.test_data, label_names=train.label_names)
        except DataError as error:
            parser.error(str(error))
        if args.train_size:
            train = train.subset(np.arange(args.train_size))
        if args.eval_size:
            dev, test = (data.subset(np.arange(min(args.eval_size, len(data)))) for data in (dev, test))
        print(f"seed {seed}, {args.data}: {len(train)} training sentences, {len(test)} test sentences, {args.epochs} epoch(s)", flush=True)
        results += [run(method, (train, dev, test), args, seed) for method in args.methods]
    print("\n| seed | method | trainable params | % of full FT | train accuracy | dev accuracy | test accuracy | s/step |\n|---|---|---|---|---|---|---|---|")
    for r in results:
        full = next((f for f in results if f["method"].startswith("full") and f["seed"] == r["seed"]), None)
        if full:
            r["trainable_percent_of_full"] = 100 * r["trainable_params"] / full["trainable_params"]
        share = f"{r['trainable_percent_of_full']:.3f}%" if full else "-"
        print(f"| {r['seed']} | {r['method']} | {r['trainable_params']:,} | {share} | {r['train_accuracy']:.4f} | {r['dev_accuracy']:.4f} | {r['test_accuracy']:.4f} | {r['step_seconds']:.3f} |")
    summary = _summary(results)
    if len(args.seeds) > 1:
        print(f"\nMean over seeds {args.seeds}; gap = full fine-tuning minus the method, mean (sample std) over seeds:")
        print("\n| method | dev accuracy | test accuracy | dev gap | test gap |\n|---|---|---|---|---|")
        for row in summary:
            gaps = [
                f"{100 * row[f'{split}_gap_to_full']:.2f} ({100 * row[f'{split}_gap_std']:.2f}) pts"
                if row.get(f"{split}_gap_std") is not None else "-"
                for split in ("dev", "test")
            ]
            print(f"| {row['method']} | {row['mean_dev_accuracy']:.4f} | {row['mean_test_accuracy']:.4f} | {gaps[0]} | {gaps[1]} |")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"config": vars(args), "results": results, "summary": summary}, f, indent=2)


if __name__ == "__main__":
    main()
