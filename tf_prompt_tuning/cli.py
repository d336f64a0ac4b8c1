"""The `tf-prompt-tuning` command line, thin over the library."""

from __future__ import annotations

import argparse
import os
import sys


def _demo(args) -> int:
    from tf_prompt_tuning.article_demo import run_article_demo

    result = run_article_demo(
        steps=args.steps,
        learning_rate=args.learning_rate,
        seed=args.seed,
        log_every=args.log_every,
        plot_path=os.path.join(args.output_dir, "loss.png"),
        jit_compile=args.xla,
    )
    print(f"loss {result.initial_loss:.4f} -> {result.final_loss:.6f}")
    return 0 if result.frozen_unchanged else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tf-prompt-tuning",
        description="Prompt tuning for Keras 3 and TensorFlow.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="the seed tutorial: a 2x2 prompt in front of a tiny frozen model"
    )
    demo.add_argument("--steps", type=int, default=5000)
    demo.add_argument("--learning-rate", type=float, default=0.01)
    demo.add_argument("--seed", type=int, default=0, help="seed of the frozen weights")
    demo.add_argument("--log-every", type=int, default=500)
    demo.add_argument("--output-dir", default="outputs/demo")
    demo.add_argument("--xla", action="store_true", help="compile the step with XLA")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
