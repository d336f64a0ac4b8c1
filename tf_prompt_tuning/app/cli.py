"""The `tf-prompt-tuning` command line, thin over the library."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from tf_prompt_tuning.files._io import Terminated, sigterm_raises
from tf_prompt_tuning.settings import add_config_arguments, config_from_arguments


def _demo(args) -> int:
    from tf_prompt_tuning.app.article_demo import run_article_demo

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


def _train(args) -> int:
    import tensorflow as tf

    from tf_prompt_tuning.app.classification_job import TrainConfig, run_training

    config = config_from_arguments(TrainConfig, args)
    # Same command, same seed, same machine: the same numbers (the data
    # order is seeded; this pins the kernels' order of operations too).
    tf.config.experimental.enable_op_determinism()
    run_training(config, restart=args.restart)
    return 0


def _unescape(text: str) -> str:
    # A shell passes "\n" as two characters; templates mean a line break.
    return text.replace("\\n", "\n").replace("\\t", "\t")


def _label_generation(args) -> int:
    from tf_prompt_tuning.app.label_generation_job import (
        METHODS,
        LabelGenerationConfig,
        run_label_generation,
    )

    verbalizer = None if args.verbalizer is None else tuple(word.strip() for word in args.verbalizer.split(","))
    config = config_from_arguments(
        LabelGenerationConfig, args, instruction=_unescape(args.instruction), template=_unescape(args.template),
        verbalizer=verbalizer,
    )  # fmt: skip
    run_label_generation(config, methods=tuple(args.method or METHODS))
    return 0


def _prompt_path(prompt: str, task: str | None) -> str:
    """A prompt file, or the file of `task` in a bank directory."""
    from tf_prompt_tuning.app.classification_job import bank_files

    if os.path.isdir(prompt):
        files = bank_files(prompt)
        if task not in files:
            raise SystemExit(
                f"error: {prompt} is a bank of tasks {sorted(files)}; choose one with --task NAME."
            )
        return files[task]
    if task is not None:
        raise SystemExit(f"error: --task needs --prompt to be a bank directory; {prompt} is a file.")
    return prompt


def _load(args):
    from tf_prompt_tuning.app.classification_job import load_task

    return load_task(_prompt_path(args.prompt, args.task), backbone=args.backbone)


def _export(args) -> int:
    from tf_prompt_tuning.app.classification_job import export_task_or_bank

    writer = None if os.path.isdir(args.prompt) else _label_writer(args)
    if writer is not None:  # a label-writing prompt: strings in, label and probability out
        print(f"wrote SavedModel to {writer.export(args.output, overwrite=args.overwrite)}")
        return 0
    path = export_task_or_bank(
        args.prompt, args.output, backbone=args.backbone, sequence_length=args.max_length,
        overwrite=args.overwrite,
    )  # fmt: skip
    print(f"wrote SavedModel to {path}")
    return 0


def _label_writer(args):
    """The `LabelWriter` of an LM prompt file that `generate-labels` wrote, else None."""
    from tf_prompt_tuning.app.label_generation_job import LabelWriter
    from tf_prompt_tuning.files.prompt_file import load_prompts

    path = _prompt_path(args.prompt, getattr(args, "task", None))
    if load_prompts(path).metadata.get("kind") != "causal_lm":
        return None
    return LabelWriter.load(path, backbone=args.backbone)


def _evaluate(args) -> int:
    from tf_prompt_tuning.app.classification_job import (
        TrainConfig,
        evaluate,
        load_splits,
    )
    from tf_prompt_tuning.app.datasets import load_dataset
    from tf_prompt_tuning.preprocessing.text_pipeline import make_text_dataset

    writer = _label_writer(args)
    if writer is not None:  # a label-writing prompt: its own test split, or --data
        trained_on = load_dataset(writer.config.data)
        if args.data is None:
            data = trained_on.split(seed=writer.config.split_seed)[2]
        else:  # its classes in the order the prompt learned them
            data = load_dataset(args.data, label_names=list(trained_on.label_names))
        result = writer.evaluate(data.texts, data.labels)
        print(f"accuracy {result['accuracy']:.4f}  written {result['written_accuracy']:.4f}  "
              f"({result['examples']} examples)")
        return 0

    model, tokenizer, metadata = _load(args)
    if args.data is None:  # the held-out test split the prompt was trained next to
        train_config = metadata.get("train_config") or {}
        data = load_splits(TrainConfig(data=train_config.get("data", "movie_reviews"),
                                       seed=train_config.get("seed", 0)))[2]  # fmt: skip
    else:
        data = load_dataset(args.data, label_names=metadata.get("label_names"))
    length = args.max_length or metadata.get("sequence_length", 64)
    dataset = make_text_dataset(
        data, tokenizer=tokenizer, sequence_length=length, batch_size=64,
        input_names=tuple(model.backbone.input),
    )  # fmt: skip
    result = evaluate(model, dataset)
    print(f"accuracy {result['accuracy']:.4f}  loss {result['loss']:.4f}  ({result['examples']} examples)")
    return 0


def _predict(args) -> int:
    from tf_prompt_tuning.app.classification_job import predict_texts

    writer = _label_writer(args)
    texts = args.text or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ValueError("No texts to classify: pass them as arguments, or one per line on standard input.")
    if writer is not None:
        for row in writer.predict(texts):
            print(f"{row['label']}\t{row['probability']:.4f}\t{row['text']}")
        return 0
    model, tokenizer, metadata = _load(args)
    length = args.max_length or metadata.get("sequence_length", 64)
    for row in predict_texts(model, tokenizer, texts, sequence_length=length,
                             label_names=metadata.get("label_names")):  # fmt: skip
        print(f"{row['label']}\t{row['probability']:.4f}\t{row['text']}")
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error of the command."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tf-prompt-tuning",
        description="Prompt tuning for Keras 3 and TensorFlow.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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

    from tf_prompt_tuning.app.classification_job import TrainConfig

    train = commands.add_parser(
        "train",
        help="prompt-tune a pre-trained backbone on a text classification set (the main job)",
        description="Trains a soft prompt and a head on a frozen backbone, and the same "
        "backbone with a head only as the baseline; writes prompt.safetensors, "
        "metrics.json and curves.png to --output-dir.",
    )
    add_config_arguments(train, TrainConfig)  # a flag for each of the job's settings
    train.add_argument("--restart", action="store_true",
                       help="discard the checkpoints of an unfinished run and start over")
    train.set_defaults(run=_train)

    from tf_prompt_tuning.app.label_generation_job import METHODS, LabelGenerationConfig

    labels = commands.add_parser(
        "generate-labels",
        help="a causal LM (Gemma 3 270M) writes each text's label as a word: zero-shot, few-shot, soft prompt",
        description='Each example becomes "Review: TEXT\nSentiment:" -> " positive"/" negative". Scores '
        "the base model with a hand-written instruction (zero_shot), with solved examples too (few_shot), "
        "and a trained soft prompt (soft_prompt) on the same held-out examples; writes results.json.",
    )
    labels.add_argument("--method", action="append", choices=METHODS, help="repeat for several (default: all)")
    add_config_arguments(labels, LabelGenerationConfig)
    labels.set_defaults(run=_label_generation)

    for name, run, help_text in [
        ("evaluate", _evaluate, "accuracy of a saved prompt on a data set"),
        ("predict", _predict, "label and probability of texts with a saved prompt"),
    ]:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--prompt", default="outputs/train/prompt.safetensors",
                         help="the prompt file written by train, or a bank directory")
        sub.add_argument("--task", help="the task, when --prompt is a bank directory")
        sub.add_argument("--backbone", help="override the backbone recorded in the prompt file")
        sub.add_argument("--max-length", type=int, help="default: the length used in training")
        if name == "evaluate":
            sub.add_argument("--data", help="a data set name or file (default: the held-out test split)")
        else:
            sub.add_argument("text", nargs="*", help="texts to classify (default: one per line on stdin)")
        sub.set_defaults(run=run)

    export = commands.add_parser(
        "export",
        help="write a SavedModel for TF Serving from a prompt file or a bank directory",
        description="A bank directory holds one prompt file per task, named TASK.safetensors; "
        "its SavedModel serves every task and takes a task_id per example. Signatures: "
        "serving_default (token_ids, padding_mask[, task_id]) and serve_text (text[, task_id]).",
    )
    export.add_argument("--prompt", default="outputs/train/prompt.safetensors",
                        help="a prompt file, or a bank directory of TASK.safetensors files")
    export.add_argument("--output", default="outputs/saved_model", help="the SavedModel directory")
    export.add_argument("--backbone", help="override the backbone recorded in the prompt files")
    export.add_argument("--max-length", type=int, help="longest text for serve_text (default: as trained)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an existing --output (atomically: the new SavedModel, never a mix)")
    export.set_defaults(run=_export)
    for sub in commands.choices.values():
        sub.add_argument("--verbose", action="store_true",
                         help="show TensorFlow's logs, and a traceback on errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # Stopped by SIGTERM (`kill`, a scheduler, a container stop), the
        # command removes its temporary files as it does on Ctrl-C.
        with sigterm_raises():
            return args.run(args)
    except KeyboardInterrupt:
        print(f"tf-prompt-tuning {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"tf-prompt-tuning {args.command}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except (ValueError, FileNotFoundError, ImportError, FloatingPointError, OSError) as error:
        # Bad data, files or settings: the message says what to fix; a
        # traceback would only bury it.
        if args.verbose:
            raise
        print(f"tf-prompt-tuning {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # a failure nobody foresaw: still one line, with the way to more
        if args.verbose:
            raise
        print(
            f"tf-prompt-tuning {args.command}: unexpected error: {type(error).__name__}: "
            f"{_one_line(error)} (run again with --verbose for the traceback)",
            file=sys.stderr,
        )
        return 1


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
