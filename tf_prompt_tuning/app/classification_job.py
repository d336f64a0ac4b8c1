"""The main job: prompt-tune a pre-trained backbone on a text classification set.

`run_training` trains a soft prompt (and head) on a frozen backbone, and the
same backbone with a head alone as the baseline, so the prompt's own gain is
visible; it writes the prompt file, a metrics JSON and a PNG of the curves.
`load_task` rebuilds a trained classifier from its prompt file for
`evaluate` and `predict`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tf_prompt_tuning.app.datasets import DataError, TextDataset, load_dataset
from tf_prompt_tuning.app.plotting import plot_training_curves
from tf_prompt_tuning.backbones.backbone import DEFAULT_BACKBONE, load_backbone
from tf_prompt_tuning.backbones.prompted_backbone import check_sequence_fits
from tf_prompt_tuning.files._io import DirectoryLock, write_atomically
from tf_prompt_tuning.files.prompt_file import save_prompts
from tf_prompt_tuning.initializers import SCHEMES, make_prompt_initializer
from tf_prompt_tuning.mechanisms import MECHANISMS, get_mechanism
from tf_prompt_tuning.models.prompt_text_classifier import PromptTextClassifier
from tf_prompt_tuning.preprocessing.text_pipeline import (
    encode_texts,
    make_text_dataset,
    special_tokens,
)
from tf_prompt_tuning.preprocessing.text_preprocessor import TextPreprocessor
from tf_prompt_tuning.settings import Setting, check_config
from tf_prompt_tuning.training.distribution import STRATEGIES, make_strategy
from tf_prompt_tuning.training.evaluation import evaluate, predict_function
from tf_prompt_tuning.training.freezing import parameter_summary
from tf_prompt_tuning.training.input_cache_store import InputCacheStore
from tf_prompt_tuning.training.train_loop import train
from tf_prompt_tuning.training.train_step import make_train_step

PROMPT_FILENAME = "prompt.safetensors"
SCHEDULES = ("cosine", "constant")
METHODS = tuple(MECHANISMS)
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
CHECKPOINTS = "checkpoints"


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"`seed` must be an integer in [0, 2**32), as Keras seeds are. Received: seed={seed!r}.")
    return seed


def _positive(name, default, help="", **kwargs) -> Setting:
    return Setting(name, default, type=int, minimum=1, help=help, **kwargs)


def _classifier(name, **changes) -> Setting:
    """The classifier's own declaration of setting `name` (its default, check and help)."""
    return dataclasses.replace(PromptTextClassifier.setting(name), **changes)


# The job's settings, each declared once: the checks, the CLI's flags and
# their help come from here (the classifier's own from its declarations).
_S = {
    s.name: s for s in [
        Setting("backbone", DEFAULT_BACKBONE, help="all-MiniLM-L6-v2 (default), a checkpoint directory or a KerasHub preset"),
        Setting("data", "movie_reviews", help="movie_reviews (default), tweets, amazon_reviews, nyt_editorials, "
                "or a .csv/.tsv/.jsonl file with columns text,label"),
        _classifier("num_tokens", check_fn=None, minimum=1),
        Setting("method", "prompt", choices=lambda: tuple(MECHANISMS),
                help="prompt: the input only (Lester et al.); deep: every layer's prompt positions; "
                "prefix: keys and values in every attention layer (P-tuning v2, faster); "
                "p-tuning: the input prompt made by an encoder over trainable seeds"),
        _classifier("prompt_encoder", default="mlp", optional=False),
        Setting("initializer", "uniform", choices=SCHEMES, flags=("--init",), help="prompt initialization"),
        Setting("init_text", None, optional=True, type=str, help='text for --init text, e.g. "classify the sentiment"'),
        _classifier("deep_initializer"),
        _classifier("pooling"),
        _classifier("placement"),
        _positive("epochs", 1),
        _positive("batch_size", 32),
        _positive("max_length", 64, help="longest token sequence, special tokens included"),
        Setting("learning_rate", 3e-2, type=float),
        Setting("schedule", "cosine", choices=SCHEDULES,
                help="learning-rate schedule: cosine decay to 0 over the run, or constant"),
        _positive("train_size", None, optional=True, help="use only the first N training examples"),
        Setting("baseline", True, type=bool, help="train the head-only baseline too (--no-baseline: skip it)"),
        Setting("jit_compile", False, type=bool, flags=("--xla",), help="compile the step with XLA"),
        Setting("precision", "float32", choices=PRECISIONS,
                help="Keras dtype policy of the backbone (prompt and head stay float32); "
                "mixed_bfloat16 for TPUs and recent GPUs"),
        Setting("strategy", "default", choices=STRATEGIES,
                help="tf.distribute strategy: mirrored = all local GPUs; multi-worker = "
                "the cluster in TF_CONFIG (run the same command on every host); tpu = TPU_NAME"),
        _positive("checkpoint_every", 100, help="steps between checkpoints; a killed run restarted with the "
                  "same command resumes from the latest"),
        _positive("eval_every", 50, help="steps between dev evaluations (the dev curve in curves.png); "
                  "also after each epoch"),
        Setting("seed", 0, type=int, check_fn=_check_seed),
        Setting("output_dir", "outputs/train", type=str),
    ]
}  # fmt: skip
# Names this job's settings had before they were named as the classifier's
# (kept in checkpoints' config.json of unfinished runs).
OLD_NAMES = {"encoder": "prompt_encoder", "deep_init": "deep_initializer"}


@dataclasses.dataclass
class TrainConfig:
    """Settings of `run_training`; the defaults are the README's main job."""

    backbone: str = _S["backbone"].field()
    data: str = _S["data"].field()
    num_tokens: int = _S["num_tokens"].field()
    method: str = _S["method"].field()
    prompt_encoder: str = _S["prompt_encoder"].field()
    initializer: str = _S["initializer"].field()
    init_text: str | None = _S["init_text"].field()
    deep_initializer: str = _S["deep_initializer"].field()
    pooling: str = _S["pooling"].field()
    placement: str = _S["placement"].field()
    epochs: int = _S["epochs"].field()
    batch_size: int = _S["batch_size"].field()
    max_length: int = _S["max_length"].field()
    learning_rate: float = _S["learning_rate"].field()
    schedule: str = _S["schedule"].field()
    train_size: int | None = _S["train_size"].field()
    baseline: bool = _S["baseline"].field()
    jit_compile: bool = _S["jit_compile"].field()
    precision: str = _S["precision"].field()
    strategy: str = _S["strategy"].field()
    checkpoint_every: int = _S["checkpoint_every"].field()
    eval_every: int = _S["eval_every"].field()
    seed: int = _S["seed"].field()
    output_dir: str = _S["output_dir"].field()

    def __post_init__(self):
        # Every setting is checked here, before a run writes anything.
        check_config(self)
        if self.initializer == "text" and not self.init_text:
            raise ValueError("`initializer='text'` needs `init_text` (--init-text), the words to start from.")
        if not self.mechanism().word_initializers and self.initializer != "uniform":
            raise ValueError(
                f"`method={self.method!r}` starts its keys and values uniformly; vocabulary, text and "
                f"label initializers make input-level prompts. Received: initializer={self.initializer!r}. "
                "Use --init uniform, or --method deep for deep prompts that start from words."
            )
        if self.deep_initializer != "uniform" and self.mechanism().deep != "hidden":
            raise ValueError(
                f"`deep_initializer` (--deep-initializer) applies to --method deep. Received: "
                f"deep_initializer={self.deep_initializer!r} with method={self.method!r}. Leave it at "
                "'uniform' or use --method deep."
            )

    def mechanism(self):
        """The prompt mechanism `method` names (see `tf_prompt_tuning.mechanisms`)."""
        return get_mechanism(self.method, prompt_encoder=self.prompt_encoder)


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _input_names(backbone):
    return tuple(backbone.input) if isinstance(backbone.input, dict) else ("token_ids", "padding_mask")


def _learning_rate(config, train_examples: int):
    """The configured rate, or its cosine decay to 0 over the run."""
    if config.schedule != "cosine":
        return config.learning_rate
    # Bucketing adds at most one partial batch per length bucket.
    steps = config.epochs * (train_examples // config.batch_size + config.max_length // 16 + 1)
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, steps)


def _fit_one(name, model, splits, tokenizer, config, print_fn, strategy, checkpoint_dir):
    """Trains one classifier; returns its metrics and per-epoch curves.

    Checkpoints go to `checkpoint_dir`; a run started again resumes there.
    """
    names = _input_names(model.backbone)
    make = functools.partial(
        make_text_dataset, tokenizer=tokenizer, sequence_length=config.max_length,
        batch_size=config.batch_size, input_names=names,
    )  # fmt: skip
    dev_ds, test_ds = make(splits[1]), make(splits[2])
    summary = parameter_summary(model)
    print_fn(f"\n== {name} ==\n{summary}")
    predict = predict_function(model, jit_compile=config.jit_compile)
    with strategy.scope():
        # The best weights so far live in the checkpoint too, for a resumed run.
        best_weights = [tf.Variable(v, trainable=False) for v in model.trainable_variables]

    def record_dev(steps, history) -> float:
        """Dev accuracy after `steps` steps, kept for the curve (once per step count)."""
        curve = history.state.setdefault("dev_curve", [])
        if not curve or curve[-1][0] != steps:
            curve.append([steps, evaluate(model, dev_ds, predict=predict)["accuracy"]])
        return curve[-1][1]

    def on_step_end(steps, history):
        if steps % config.eval_every == 0:
            record_dev(steps, history)

    def on_epoch_end(epoch, history):
        dev = {"accuracy": record_dev(len(history.step_losses), history)}
        state = history.state
        state.setdefault("dev_accuracy", []).append(dev["accuracy"])
        if dev["accuracy"] > state.get("best_accuracy", -1):
            state.update(best_accuracy=dev["accuracy"], best_epoch=epoch + 1)
            for best, variable in zip(best_weights, model.trainable_variables):
                best.assign(variable)
        print_fn(
            f"epoch {epoch + 1}/{config.epochs}: train loss {history.epoch_losses[-1]:.4f}, "
            f"dev accuracy {dev['accuracy']:.4f}"
        )

    start = time.perf_counter()
    with strategy.scope():
        step = make_train_step(
            model, loss=_loss(), optimizer=keras.optimizers.Adam(_learning_rate(config, len(splits[0]))),
            jit_compile=config.jit_compile, strategy=strategy,
        )  # fmt: skip
    # A fixed shuffle per epoch, so a resumed run sees the same batches.
    batches = lambda epoch: make(splits[0], shuffle=True, seed=config.seed + epoch)  # noqa: E731
    with contextlib.ExitStack() as stack:
        if model.reads_inputs_once:
            # An appended prompt on a decoder: the training texts are read once, for every epoch.
            store = stack.enter_context(InputCacheStore.read(model, make(splits[0])))
            print_fn(f"read {store.num_tokens:,} input tokens once ({store.num_tokens * store.bytes_per_token / 1e6:,.0f} MB)")
            batches = lambda epoch: store.dataset(config.batch_size, shuffle=True, seed=config.seed + epoch)  # noqa: E731
        history = train(
            model, batches,
            epochs=config.epochs, on_epoch_end=on_epoch_end, on_step_end=on_step_end, step=step,
            checkpoint_dir=checkpoint_dir, checkpoint_every=config.checkpoint_every,
            checkpoint_objects={"best_weights": best_weights},
        )  # fmt: skip
    seconds = time.perf_counter() - start
    # Model selection on the dev set: keep the epoch with the best dev accuracy.
    for variable, best in zip(model.trainable_variables, best_weights):
        variable.assign(best)
    test = evaluate(model, test_ds, predict=predict)
    state = history.state
    print_fn(
        f"{name}: test accuracy {test['accuracy']:.4f} with the weights of epoch "
        f"{state['best_epoch']} (best dev accuracy), {seconds:.0f} s"
    )
    return {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "dev_accuracy": state["dev_accuracy"],
        "dev_curve": state["dev_curve"],
        "best_epoch": state["best_epoch"],
        "epoch_losses": history.epoch_losses,
        "step_losses": history.step_losses,
        "trainable_params": summary.trainable,
        "total_params": summary.total,
        "train_seconds": seconds,
    }


def load_splits(config: TrainConfig) -> tuple[TextDataset, TextDataset, TextDataset]:
    """The fixed seeded train/dev/test split, the training part capped at `train_size`.

    Refuses, before a run writes anything, data too small for three non-empty
    splits and a training split without an example of every class.
    """
    data = load_dataset(config.data)
    try:
        train_split, dev, test = data.split(seed=config.seed)
    except DataError as error:  # the split does not know the file's name
        raise DataError(f"{config.data}: {error}") from None
    capped = config.train_size is not None and config.train_size < len(train_split)
    if capped:
        train_split = train_split.subset(np.arange(config.train_size))
    present = set(train_split.labels.tolist())
    missing = [name for i, name in enumerate(train_split.label_names) if i not in present]
    if missing:
        where = f"the first {config.train_size} training examples (train_size)" if capped else (
            f"the training split ({len(train_split)} examples)"
        )
        fix = "Raise train_size (--train-size) or add" if capped else "Add"
        raise DataError(
            f"{config.data}: no example of the classes {missing} is in {where}, so the model could "
            f"not learn them. {fix} examples of those classes."
        )
    return train_split, dev, test


def _check_output_dir(path: str):
    """Creates `path` if needed and proves a file can be written there."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ValueError(
            f"The output directory {path!r} is not writable ({error.strerror}). "
            "Choose another with --output-dir."
        ) from error


def _resume_checkpoints(config: TrainConfig, print_fn, *, chief: bool, restart: bool) -> str:
    """The run's checkpoint directory; refuses one left by a run with other settings."""
    directory = os.path.join(config.output_dir, CHECKPOINTS)
    path = os.path.join(directory, "config.json")
    settings = dataclasses.asdict(config)
    if restart:
        shutil.rmtree(directory, ignore_errors=True)
    elif os.path.exists(path):
        # Every worker checks, so none goes on alone when the chief refuses.
        with open(path) as f:
            saved = json.load(f)
        # A setting added since that run was written ran at its default there.
        saved = {OLD_NAMES.get(k, k): v for k, v in saved.items()}
        defaults = dataclasses.asdict(TrainConfig())
        saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
        if saved != settings:
            changed = sorted(k for k in settings.keys() | saved.keys() if settings.get(k) != saved.get(k))
            raise ValueError(
                f"{directory} holds the checkpoints of an unfinished run with other settings "
                f"({', '.join(f'{k}: {saved.get(k)!r} there, {settings.get(k)!r} now' for k in changed)}). "
                "Resume it with the same settings, or delete that directory (or pass --restart) "
                "to start over."
            )
        print_fn(f"resuming the unfinished run in {directory}")
    if chief and not os.path.exists(path):
        write_atomically(path, json.dumps(settings, indent=2).encode())
    return directory


def run_training(
    config: TrainConfig = TrainConfig(), *, print_fn=print, backbone_and_tokenizer=None, restart: bool = False
) -> dict:
    """Runs the main job and returns its metrics (also written to `metrics.json`).

    Checkpoints are kept in `output_dir/checkpoints` while it runs: started
    again with the same settings after a crash or a kill, it resumes where
    the last checkpoint left off (`restart=True` discards them instead).
    They are deleted once the outputs are written. Every input is checked
    before anything is written.
    """
    keras.utils.set_random_seed(config.seed)
    splits = load_splits(config)
    label_names = splits[0].label_names
    print_fn(
        f"data {config.data!r}: {len(splits[0])} train / {len(splits[1])} dev / "
        f"{len(splits[2])} test, classes {list(label_names)}"
    )
    strategy = make_strategy(config.strategy)
    chief = strategy.extended.should_checkpoint
    if restart and config.strategy == "multi-worker":
        # Workers would race: one deleting what another already resumed from.
        raise ValueError(
            "--restart cannot coordinate several workers. Delete "
            f"{os.path.join(config.output_dir, CHECKPOINTS)} before starting them instead."
        )
    # A policy set before the models are built; the prompt and head stay float32.
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        with strategy.scope():
            backbone, tokenizer = backbone_and_tokenizer or load_backbone(config.backbone)
        # Every check runs before the first byte is written: a refused
        # command leaves the output directory as it was.
        # Key/value prefixes take no positions.
        mechanism = config.mechanism()
        check_sequence_fits(backbone, config.num_tokens if mechanism.takes_positions else 0, config.max_length)
        special_tokens(tokenizer, config.max_length)
        with strategy.scope():
            head_only = PromptTextClassifier(
                backbone, len(label_names), num_tokens=0, pooling=config.pooling, name="head_only"
            ) if config.baseline else None  # fmt: skip
            initializer = make_prompt_initializer(
                config.initializer, backbone=backbone, num_tokens=config.num_tokens,
                tokenizer=tokenizer, label_names=label_names, text=config.init_text, seed=config.seed,
            )  # fmt: skip
            deep_init = {}
            if config.deep_initializer != "uniform":  # its preprocessor names the token in front of the prompt
                deep_init = dict(
                    deep_initializer=config.deep_initializer, preprocessor=TextPreprocessor(tokenizer, config.max_length)
                )
            model = PromptTextClassifier(
                backbone, len(label_names), num_tokens=config.num_tokens,
                prompt_initializer=initializer, placement=config.placement, pooling=config.pooling,
                **mechanism.classifier_arguments(), **deep_init, label_names=label_names, seed=config.seed,
                name="prompt_tuned",
            )  # fmt: skip
        _check_output_dir(config.output_dir)
        # Only the chief writes outputs; in a multi-worker run the others share its directory.
        lock = DirectoryLock(config.output_dir, "training run") if chief else contextlib.nullcontext()
        with lock:
            checkpoints = _resume_checkpoints(config, print_fn, chief=chief, restart=restart)
            results = {}
            for title, classifier in [("head only", head_only), (mechanism.description, model)]:
                if classifier is not None:
                    results[title] = _fit_one(
                        title, classifier, splits, tokenizer, config, print_fn, strategy,
                        os.path.join(checkpoints, classifier.name),
                    )  # fmt: skip
            if chief:
                return _write_outputs(config, model, results, splits, checkpoints, print_fn)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return {}  # the chief writes the outputs and removes the checkpoints


def _write_outputs(config, model, results, splits, checkpoints, print_fn) -> dict:
    label_names = splits[0].label_names
    prompt_path = save_prompts(
        model, os.path.join(config.output_dir, PROMPT_FILENAME), label_names=label_names,
        extra={"backbone": config.backbone, "sequence_length": config.max_length,
               "initializer_scheme": config.initializer,
               "train_config": dataclasses.asdict(config)},
    )  # fmt: skip
    plot_path = os.path.join(config.output_dir, "curves.png")
    plot_training_curves(results, plot_path)
    metrics = {
        "config": dataclasses.asdict(config),
        "label_names": list(label_names),
        "split_sizes": [len(s) for s in splits],
        "prompt_file": prompt_path,
        "prompt_file_bytes": os.path.getsize(prompt_path),
        "results": {
            name: {k: v for k, v in r.items() if k != "step_losses"} for name, r in results.items()
        },
    }
    write_atomically(os.path.join(config.output_dir, "metrics.json"), json.dumps(metrics, indent=2).encode())
    # Finished: a later run with the same command starts afresh (as Keras's
    # BackupAndRestore does).
    shutil.rmtree(checkpoints, ignore_errors=True)
    print_fn("\n| model | trainable params | test accuracy | train time |\n|---|---|---|---|")
    for name, r in results.items():
        print_fn(f"| {name} | {r['trainable_params']:,} | {r['test_accuracy']:.4f} | {r['train_seconds']:.0f} s |")
    print_fn(f"\nwrote {prompt_path}, {plot_path} and metrics.json to {config.output_dir}")
    return metrics


def load_task(prompt_path: str, *, backbone: str | None = None):
    """Rebuilds a trained classifier from its prompt file (read once).

    Returns:
        `(model, tokenizer, metadata)`.
    """
    from tf_prompt_tuning.files.prompt_file import read_prompt_file

    loaded = read_prompt_file(prompt_path, "classifier")
    backbone_model, tokenizer = load_backbone(backbone or loaded.metadata.get("backbone", DEFAULT_BACKBONE))
    model = PromptTextClassifier.from_prompt_file(loaded, backbone_model)
    return model, tokenizer, loaded.metadata


def predict_texts(model, tokenizer, texts, *, sequence_length: int, label_names=None) -> list[dict]:
    """Label and probability for each text (labels: `label_names`, else the
    model's own, else the class indices)."""
    model.check_input_length(sequence_length)
    inputs = encode_texts(tokenizer, list(texts), sequence_length)
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(model(inputs, training=False)))
    names = list(label_names or model.label_names or [str(i) for i in range(model.num_classes)])
    return [
        {"text": text, "label": names[int(p.argmax())], "probability": float(p.max()),
         "probabilities": dict(zip(names, map(float, p)))}
        for text, p in zip(texts, probabilities)
    ]  # fmt: skip


def bank_files(directory: str) -> dict[str, str]:
    """The tasks of a bank directory: `{task: path}` for each `TASK.safetensors`."""
    suffix = ".safetensors"
    files = {
        name[: -len(suffix)]: os.path.join(directory, name)
        for name in sorted(os.listdir(directory))
        if name.endswith(suffix) and not name.startswith(".")
    }
    if not files:
        raise ValueError(f"{directory!r} has no TASK.safetensors prompt files to serve.")
    return files


def export_task_or_bank(
    prompt: str, output: str, *, backbone=None, sequence_length=None, overwrite: bool = False
) -> str:
    """Exports a prompt file (one task) or a bank directory (many) as a SavedModel."""
    from tf_prompt_tuning.files.export import export_saved_model
    from tf_prompt_tuning.files.prompt_file import load_prompts
    from tf_prompt_tuning.models.prompt_bank import PromptBank

    if not os.path.isdir(prompt):
        model, tokenizer, metadata = load_task(prompt, backbone=backbone)
        length = sequence_length or metadata.get("sequence_length", 64)
        return export_saved_model(
            model, output, tokenizer=tokenizer, sequence_length=length, overwrite=overwrite
        )
    # Each file is read once: its metadata names the backbone, its tensors go into the bank.
    loaded = {task: load_prompts(path) for task, path in bank_files(prompt).items()}
    first = next(iter(loaded.values())).metadata
    backbone_model, tokenizer = load_backbone(backbone or first.get("backbone", DEFAULT_BACKBONE))
    bank = PromptBank(
        backbone_model, num_tokens=first["num_tokens"], placement=first["placement"],
        pooling=first["pooling"],
    )  # fmt: skip
    for task, prompt_file in loaded.items():
        bank.add_prompt_file(task, prompt_file)
    length = sequence_length or first.get("sequence_length", 64)
    return export_saved_model(
        bank, output, tokenizer=tokenizer, sequence_length=length, overwrite=overwrite
    )
