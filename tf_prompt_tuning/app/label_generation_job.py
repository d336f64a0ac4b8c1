"""Text-to-label generation on a causal LM: zero-shot, few-shot and soft prompts.

As in PEFT's prompt-tuning example, a classification set becomes a
generation task: `"Review: <text>\\nSentiment:"` -> `" positive"` or
`" negative"` (the template, instruction and label words are settings).
Three ways to steer a frozen LM, scored the same way on the same held-out
examples (the first word generated greedily must be the label; anything
else, an invalid output included, counts as wrong; or, without generating,
the first token must read as the label):

- zero-shot: a hand-written instruction in front of the input;
- few-shot: the instruction and `shots` solved training examples;
- soft prompt: `PromptCausalLM` with trained vectors in front of the bare
  input (placement "prepend") or after it ("append"; there, with `deep`, a
  prompt for every layer too, added to the prompt's hidden states), trained on the next
  token's loss over the label words (over the whole vocabulary, so the
  label must win against every word as generation needs, or over the label
  words alone), against the labels or, for context distillation, against
  the few-shot model's own label distribution. It starts from the
  instruction's, the few-shot prompt's or the label words' embeddings. An
  appended prompt cannot change its input's keys and values, so the
  training inputs are read once (`InputCacheStore`) and every step runs the
  prompt's positions only. The prompt that scores best on dev is kept and
  saved as a prompt file that `LabelWriter` (and the CLI's `predict` and
  `evaluate`) use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tf_prompt_tuning._checks import check_choice, check_positive_int
from tf_prompt_tuning.backbones.backbone import load_backbone
from tf_prompt_tuning.backbones.causal_decoder import tile_cache
from tf_prompt_tuning.files._io import write_atomically
from tf_prompt_tuning.files.export import write_archive
from tf_prompt_tuning.files.prompt_file import read_prompt_file, save_prompts
from tf_prompt_tuning.initializers import FromArray, make_prompt_initializer
from tf_prompt_tuning.models.prompt_causal_lm import PromptCausalLM
from tf_prompt_tuning.preprocessing.text_pipeline import PAD_TO_MULTIPLE, ready_for_graphs
from tf_prompt_tuning.settings import Setting, check_config
from tf_prompt_tuning.training.input_cache_store import InputCacheStore
from tf_prompt_tuning.training.train_step import make_train_step

INSTRUCTION = "Classify the sentiment of the movie review as positive or negative.\n\n"
TEMPLATE = "Review: {text}\nSentiment:"
ANSWER = " {label}\n\n"
NEW_TOKENS = 3  # enough for a label word and what follows it
METHODS = ("zero_shot", "few_shot", "soft_prompt")
# "text": the instruction's embeddings; "few_shot": the few-shot prompt's
# (instruction and solved examples; the prompt takes its length); "labels":
# the label words' (Lester et al.), then vocabulary rows.
INITIALIZERS = ("text", "few_shot", "labels", "vocab", "uniform")
LOSSES = ("vocabulary", "label_words")  # the softmax the label word must win
TARGETS = ("labels", "few_shot")  # "few_shot": context distillation, no labels read
OPTIMIZERS = ("adam", "adafactor")
# "generation": the first word greedy generation writes must be the label;
# "first_token": its first token must read as the label (no generation; a
# shared few-shot prefix is read once).
SCORES = ("generation", "first_token")


def _check_test_data(path):
    if not isinstance(path, str) or not os.path.isfile(path):
        raise ValueError(f"`test_data` must be a .csv/.tsv/.jsonl file. Received: test_data={path!r}, which is not a file.")
    return path


def _check_template(template):
    if not isinstance(template, str) or template.count("{text}") != 1:
        raise ValueError(
            "`template` must hold '{text}' exactly once, where each example's text goes. "
            f"Received: template={template!r}. For example: 'Review: {{text}}\\nSentiment:'."
        )
    return template


def _check_verbalizer(words):
    if isinstance(words, str) or not words or not all(isinstance(w, str) and w.strip() == w and w for w in words):
        raise ValueError(
            "`verbalizer` must be a list of label words, one per class, each non-empty without "
            f"surrounding spaces. Received: verbalizer={words!r}."
        )
    return tuple(words)


def _count(name, default, help=""):
    """A count where 0 means none (or: the default the help says)."""
    return Setting(name, default, type=int, minimum=0, help=help,
                   check_fn=lambda v: v if v == 0 and type(v) is int else check_positive_int(name, v))  # fmt: skip


def _positive(name, default, help=""):
    return Setting(name, default, type=int, minimum=1, help=help)


# The job's settings, each declared once: checks, the CLI's flags and help.
_S = {
    s.name: s for s in [
        Setting("backbone", "gemma3_270m", help="gemma3_270m (default) or a causal LM preset"),
        Setting("data", "movie_reviews", help="a built-in set or a .csv/.tsv/.jsonl file"),
        Setting("test_data", None, optional=True, check_fn=_check_test_data, help="a .csv/.tsv/.jsonl file to score on (its first "
                "--eval-size rows, labels among the data's) instead of the held-out split of --data"),
        dataclasses.replace(PromptCausalLM.setting("num_tokens"), help="soft prompt length"),
        Setting("initializer", "text", choices=INITIALIZERS, flags=("--init",),
                help="soft prompt initialization; text: the zero-shot instruction's embeddings; "
                "few_shot: the few-shot prompt's (the prompt takes its length); labels: the label words'"),
        PromptCausalLM.setting("placement"),
        dataclasses.replace(PromptCausalLM.setting("deep"), help="with --placement append, a prompt for every "
                            "layer too, added to the prompt's hidden states (from zero: the shallow prompt's model)"),
        Setting("loss", "vocabulary", choices=LOSSES, help="the softmax the label word must win: over the "
                "vocabulary (as greedy generation needs) or over the label words alone"),
        Setting("targets", "labels", choices=TARGETS, help="labels; or few_shot: context distillation, the "
                "few-shot model's label distribution on each training text (no labels read)"),
        Setting("optimizer", "adam", choices=OPTIMIZERS),
        _count("warmup_steps", 0, help="steps of linear learning-rate warmup from 0"),
        Setting("score", "generation", choices=SCORES, help="generation: the first generated word must be the "
                "label; first_token: its first token must be the label word's (no generation; a few-shot "
                "prefix is read once)"),
        _positive("steps", 60),
        _positive("batch_size", 8),
        _count("train_size", 0, help="training examples (default 0: steps x batch size x 2)"),
        _count("dev_size", 0, help="dev examples scored every --eval-every steps; the best prompt is kept (0: none)"),
        _positive("eval_every", 100),
        Setting("learning_rate", 0.05, type=float),
        _positive("max_text_tokens", 48, help="each text is cut to this many tokens"),
        _positive("eval_size", 200, help="held-out examples scored"),
        _positive("shots", 4, help="solved examples of few_shot"),
        Setting("seed", 0, type=int, help="the prompt's initialization, the batches' order, the few-shot examples"),
        _count("split_seed", 0, help="the train/dev/test split (the same for every --seed)"),
        Setting("output_dir", "outputs/label_generation", type=str),
        Setting("instruction", INSTRUCTION, type=str, help="in front of the zero- and few-shot prompts (\\n: a line break)"),
        Setting("template", TEMPLATE, check_fn=_check_template,
                help="each example, with {text} where the text goes (default: %(default)r)"),
        Setting("verbalizer", None, optional=True, check_fn=_check_verbalizer, help="the word written for "
                "each class, comma-separated, in class order (default: the data's label names)"),
    ]
}  # fmt: skip


@dataclasses.dataclass
class LabelGenerationConfig:
    backbone: str = _S["backbone"].field()
    data: str = _S["data"].field()
    test_data: str | None = _S["test_data"].field()
    num_tokens: int = _S["num_tokens"].field()
    initializer: str = _S["initializer"].field()
    placement: str = _S["placement"].field()  # "append": after the input, which is then read once
    deep: bool = _S["deep"].field()
    loss: str = _S["loss"].field()
    targets: str = _S["targets"].field()
    optimizer: str = _S["optimizer"].field()
    warmup_steps: int = _S["warmup_steps"].field()  # the learning rate rises linearly from 0, then stays
    score: str = _S["score"].field()
    steps: int = _S["steps"].field()
    batch_size: int = _S["batch_size"].field()
    train_size: int = _S["train_size"].field()
    dev_size: int = _S["dev_size"].field()
    eval_every: int = _S["eval_every"].field()
    learning_rate: float = _S["learning_rate"].field()
    max_text_tokens: int = _S["max_text_tokens"].field()
    eval_size: int = _S["eval_size"].field()
    shots: int = _S["shots"].field()
    seed: int = _S["seed"].field()
    split_seed: int = _S["split_seed"].field()
    output_dir: str = _S["output_dir"].field()
    instruction: str = _S["instruction"].field()
    template: str = _S["template"].field()
    verbalizer: tuple | None = _S["verbalizer"].field()

    def __post_init__(self):
        check_config(self)  # every setting, by its declaration
        if self.deep and self.placement != "append":
            raise ValueError(
                "`deep` prompts are added after the input: they need placement 'append'. "
                f"Received: deep=True with placement={self.placement!r}. Use --placement append, or leave out --deep."
            )


def _ids(tokenizer, text) -> list[int]:
    return [int(i) for i in np.asarray(tokenizer(text)).reshape(-1)]


class _Encoder:
    """Token ids of templated examples: `<bos>` (unless not `start`), an
    optional fixed prefix, the text cut to `max_text_tokens`, the template's end."""

    def __init__(self, tokenizer, max_text_tokens, prefix="", start=True, template=TEMPLATE):
        self.tokenizer = tokenizer
        self.max_text_tokens = max_text_tokens
        head, tail = template.split("{text}")
        # The prefix apart from the template: a cache of `start + prefix` then serves every row.
        self.prefix = [tokenizer.start_token_id] * start + (_ids(tokenizer, prefix) if prefix else [])
        self.head = self.prefix + _ids(tokenizer, head)
        self.tail = _ids(tokenizer, tail)

    def __call__(self, text) -> list[int]:
        return self.head + _ids(self.tokenizer, text)[: self.max_text_tokens] + self.tail


def _pad(rows, length=None):
    """Right-padded `(ids, mask)`, all rows to `length` (one shape: one trace)."""
    length = length or max(map(len, rows))
    ids = np.zeros((len(rows), length), "int32")
    mask = np.zeros((len(rows), length), "int32")
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    return ids, mask


def first_word(text: str) -> str:
    words = text.strip().split()
    return words[0].strip(".,;:!?\"'").lower() if words else ""


def next_token_outputs(lm, rows, reduce, prefix_length=0, batch_size=16) -> np.ndarray:
    """`reduce(logits)` of `lm.next_token_logits` for every row, batched.

    Rows that share their first `prefix_length` tokens (a few-shot prompt)
    read them once: the prefix's keys and values are computed for one row
    and every batch continues after them, so a long hard prompt costs about
    what a short one does.
    """
    decoder = lm.decoder
    prefix = None
    if prefix_length:
        ids = np.asarray([rows[0][:prefix_length]], "int32")
        prefix = decoder.read(ids, np.ones_like(ids), max(map(len, rows)) - prefix_length)

    @tf.function(reduce_retracing=True)
    def run(ids, mask):
        if prefix is None:
            return reduce(lm.next_token_logits({"token_ids": ids, "padding_mask": mask}))
        hidden, _ = decoder.continue_from(tile_cache(prefix, tf.shape(ids)[0]), decoder.embed_tokens(ids))
        last = keras.ops.sum(mask, axis=1) - 1
        return reduce(decoder.logits(keras.ops.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]))

    out = []
    for start in range(0, len(rows), batch_size):
        ids, mask = _pad([row[prefix_length:] for row in rows[start : start + batch_size]])
        out.append(keras.ops.convert_to_numpy(run(ids, mask)))
    return np.concatenate(out)


def token_labels(tokenizer, label_names) -> np.ndarray:
    """`(vocabulary,)`: the class whose label each token reads as (`first_word`:
    " Positive" and "positive" read as "positive"), or -1."""
    names = {name.lower(): i for i, name in enumerate(label_names)}
    pieces = tokenizer.get_vocabulary()
    return np.array([names.get(first_word(piece.replace("\u2581", " ")), -1) for piece in pieces], "int32")


def first_token_accuracy(lm, rows, labels, token_classes, prefix_length=0) -> dict:
    """Share of rows whose next token (greedy generation's first) reads as
    their label (`token_labels`), as `generation_accuracy` reads the first
    word; scored from `next_token_outputs`, without generating."""
    predicted = next_token_outputs(lm, rows, lambda logits: keras.ops.argmax(logits, axis=-1), prefix_length)
    classes = np.asarray(token_classes)[predicted]
    labels = np.asarray(labels[: len(rows)])
    return {
        "first_token_accuracy": float(np.mean(classes == labels)),
        "first_token_invalid": float(np.mean(classes < 0)),
        "examples": len(rows),
    }


def generation_accuracy(model, tokenizer, rows, labels, label_names, batch_size=16) -> dict:
    """Share of rows whose first generated word is their label's name."""
    length = max(map(len, rows))
    words = []
    for start in range(0, len(rows), batch_size):
        ids, mask = _pad(rows[start : start + batch_size], length)
        out = model.generate(ids, mask, NEW_TOKENS, end_token_ids=[tokenizer.end_token_id])
        for tokens, valid in zip(out["token_ids"], out["padding_mask"]):
            words.append(first_word(str(tokenizer.detokenize(tokens[valid]))))
    names = [name.lower() for name in label_names]
    correct = sum(word == names[label] for word, label in zip(words, labels))
    invalid = sum(word not in names for word in words)
    return {"accuracy": correct / len(rows), "invalid": invalid / len(rows), "examples": len(rows)}


class _NextTokenLogits(keras.Model):
    """Full-vocabulary logits of the token after each input (after the
    prompt), the prediction generation makes first, without logits at every
    position; takes an appended prompt's `InputCache` too."""

    def __init__(self, lm, **kwargs):
        super().__init__(**kwargs)
        self.lm = lm

    def call(self, inputs):
        return self.lm.next_token_logits(inputs)


def _label_token_ids(tokenizer, label_names) -> np.ndarray:
    """The first token of each label word as generated (" positive")."""
    label_ids = [_ids(tokenizer, ANSWER.format(label=name))[0] for name in label_names]
    if len(set(label_ids)) != len(label_ids):
        raise ValueError(f"The label words {label_names} start with the same token; they must differ.")
    return np.array(label_ids, "int32")


def _soft_prompt_encoder(tokenizer, config) -> _Encoder:
    """The framing of a soft prompt's inputs: a prompt that starts as the
    few-shot prompt, in front, holds the `<bos>` itself."""
    starts = config.initializer == "few_shot" and config.placement == "prepend"
    return _Encoder(tokenizer, config.max_text_tokens, start=not starts, template=config.template)


def _batches(rows, targets, size=64):
    """Right-padded batches, widths rounded up to a multiple of 16: a few
    shapes, so reading them traces a few functions, not one per batch."""
    def width(batch):
        return -(-max(map(len, batch)) // PAD_TO_MULTIPLE) * PAD_TO_MULTIPLE

    return [(dict(zip(("token_ids", "padding_mask"), _pad(rows[i : i + size], width(rows[i : i + size])))),
             targets[i : i + size]) for i in range(0, len(rows), size)]  # fmt: skip


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class LabelWordLoss(keras.losses.Loss):
    """Cross-entropy of next-token logits against a distribution over the
    label words: one-hot for labels, the teacher's for context distillation.

    `over="vocabulary"` normalizes over the whole vocabulary, so the label
    word must beat every word, as greedy generation needs; `"label_words"`
    over the label words alone.
    """

    def __init__(self, label_ids, over="vocabulary", **kwargs):
        super().__init__(**kwargs)
        self.label_ids = np.asarray(label_ids, "int32")
        self.over = check_choice("loss", over, LOSSES)

    def call(self, y_true, y_pred):
        label_logits = keras.ops.take(y_pred, self.label_ids, axis=-1)
        if self.over == "vocabulary":
            log_probs = label_logits - keras.ops.logsumexp(y_pred, axis=-1, keepdims=True)
        else:
            log_probs = keras.ops.log_softmax(label_logits, axis=-1)
        return -keras.ops.sum(keras.ops.cast(y_true, log_probs.dtype) * log_probs, axis=-1)

    def get_config(self):
        return {**super().get_config(), "label_ids": self.label_ids.tolist(), "over": self.over}


def _optimizer(config):
    rate = config.learning_rate
    if config.warmup_steps:
        # From 0 to the rate over the warmup, then constant (alpha=1: no decay).
        rate = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=1, alpha=1.0, warmup_target=config.learning_rate, warmup_steps=config.warmup_steps
        )
    if config.optimizer == "adafactor":
        return keras.optimizers.Adafactor(rate)
    return keras.optimizers.Adam(rate)


def train_soft_prompt(lm, rows, targets, label_ids, config, print_fn=print, dev=None, token_classes=None) -> dict:
    """Trains `lm`'s prompt on `targets` `(rows, labels)`, the distribution
    each row's next token should have over the label words `label_ids`.

    With `dev` (`(rows, labels)`), scores the dev rows before training and
    every `config.eval_every` steps (the first token greedy decoding would
    write must read as the label: `token_classes`, from `token_labels`, or
    else be the label word's own first token) and keeps the prompt that
    scored best.
    Returns `{"losses", "dev_curve": [[step, accuracy], ...]}`.
    """
    if len(rows) < config.batch_size:
        raise ValueError(
            f"`batch_size` is {config.batch_size} but there are {len(rows)} training examples. "
            "Use a smaller batch or more data."
        )
    model = _NextTokenLogits(lm, name="next_token_logits")
    step = make_train_step(model, loss=LabelWordLoss(label_ids, config.loss), optimizer=_optimizer(config))
    targets = np.asarray(targets, "float32")
    appended = lm.placement == "append"
    with contextlib.ExitStack() as stack:
        # An appended prompt's inputs are read once; every step then runs the prompt only.
        read = (lambda r, t: stack.enter_context(InputCacheStore.read(lm, _batches(r, t)))) if appended else None
        scorer = None
        if dev is not None:
            dev_labels = np.asarray(dev[1])
            dev_batches = read(dev[0], dev_labels).batches(64) if appended else _batches(dev[0], dev_labels)
            dev_batches = list(dev_batches)
            classes = token_classes
            if classes is None:  # each label word's first token reads as its class, nothing else does
                classes = np.full(lm.backbone.vocabulary_size, -1, "int32")
                classes[np.asarray(label_ids)] = np.arange(len(label_ids))

            def scorer():
                hits = [classes[keras.ops.convert_to_numpy(keras.ops.argmax(lm.next_token_logits(x), axis=-1))] == y
                        for x, y in dev_batches]  # fmt: skip
                return float(np.mean(np.concatenate(hits)))

        if appended:
            store = read(rows, targets)
            print_fn(f"  read {store.num_tokens} input tokens once ({store.num_tokens * store.bytes_per_token / 2**20:.0f} MB)")
            batches = _cached_batches(store, config)
        else:
            batches = _sampled_batches(rows, targets, config)
        return _train_loop(lm, step, batches, scorer, config, print_fn)


def _cached_batches(store, config):
    """Full shuffled batches of the store, epoch after epoch."""
    epoch = 0
    while True:
        for cache, y in store.batches(config.batch_size, shuffle=True, seed=config.seed + epoch):
            if len(y) == config.batch_size:  # full batches: one compiled shape per width
                yield cache, y
        epoch += 1


def _sampled_batches(rows, targets, config):
    rng = np.random.default_rng(config.seed)
    length = max(map(len, rows))
    while True:
        batch = rng.choice(len(rows), config.batch_size, replace=False)
        ids, mask = _pad([rows[j] for j in batch], length)
        yield {"token_ids": ids, "padding_mask": mask}, targets[batch]


def _train_loop(lm, step, batches, scorer, config, print_fn) -> dict:
    losses, curve, best = [], [], None
    if scorer is not None:
        curve.append([0, scorer()])
        best = (curve[0][1], [v.numpy() for v in lm.prompt.trainable_weights])
        print_fn(f"  step 0: dev accuracy {curve[0][1]:.4f}")
    for x, y in batches:
        losses.append(float(step(x, y)))
        done = len(losses)
        if done % 10 == 0:
            print_fn(f"  step {done}/{config.steps}  loss {np.mean(losses[-10:]):.4f}")
        if scorer is not None and (done % config.eval_every == 0 or done == config.steps):
            curve.append([done, scorer()])
            print_fn(f"  step {done}: dev accuracy {curve[-1][1]:.4f}")
            if best is None or curve[-1][1] > best[0]:
                best = (curve[-1][1], [v.numpy() for v in lm.prompt.trainable_weights])
        if done == config.steps:
            break
    if best is not None:
        for variable, value in zip(lm.prompt.trainable_weights, best[1]):
            variable.assign(value)
    return {"losses": losses, "dev_curve": curve}


def few_shot_text(train, names, config) -> str:
    """`config.shots` solved training examples, balanced, in a seeded random order."""
    rng = np.random.default_rng(config.seed)
    picks = [int(rng.choice(np.flatnonzero(train.labels == label))) for label in range(len(names))]
    picks = [int(i) for i in rng.permutation(np.resize(picks, config.shots))]
    return "".join(
        config.template.replace("{text}", train.texts[i]) + ANSWER.format(label=names[train.labels[i]]) for i in picks
    )


def _soft_prompt_lm(backbone, tokenizer, names, few_shot_prefix, config) -> PromptCausalLM:
    num_tokens, initializer = config.num_tokens, config.initializer
    if initializer == "few_shot":
        # `<bos>` and the few-shot prompt's tokens: prepended to inputs without
        # their `<bos>`, the model starts exactly as the few-shot prompt.
        ids = [tokenizer.start_token_id] + _ids(tokenizer, few_shot_prefix)
        num_tokens = len(ids)
        initializer = FromArray(keras.ops.convert_to_numpy(backbone.token_embedding.embeddings)[ids])
    elif initializer in ("text", "labels"):
        initializer = make_prompt_initializer(
            initializer, backbone=backbone, num_tokens=num_tokens, tokenizer=tokenizer, text=config.instruction,
            label_names=[ANSWER.format(label=name).strip() for name in names], seed=config.seed,
        )  # fmt: skip
    return PromptCausalLM(
        backbone, num_tokens=num_tokens, prompt_initializer=initializer, placement=config.placement,
        deep=config.deep, seed=config.seed,
    )  # fmt: skip


def _label_distribution(lm, rows, label_ids, prefix_length=0) -> np.ndarray:
    """`(rows, labels)`: `lm`'s next-token probabilities over the label words, renormalized."""
    label_ids = np.asarray(label_ids)

    def reduce(logits):
        return keras.ops.softmax(keras.ops.take(logits, label_ids, axis=-1))

    return next_token_outputs(lm, rows, reduce, prefix_length).astype("float32")


class LabelWriter:
    """A soft prompt trained by `generate-labels`, ready to label texts.

    Its prompt file keeps the training settings, template and verbalizer,
    so loading it rebuilds the whole path: each text is framed by the
    template, the frozen LM reads it (and the prompt), and the next token's
    logits give the label. `predict` returns, per text, the label word with
    the highest probability among the label words (`label`, `probability`,
    `probabilities`) and what greedy generation would write first
    (`written`: the label its first token reads as, or None for another word).
    """

    def __init__(self, lm, tokenizer, config: LabelGenerationConfig, label_names):
        self.lm, self.config, self.label_names = lm, config, list(label_names)
        self.tokenizer = tokenizer
        self.encode = _soft_prompt_encoder(tokenizer, config)
        self.label_ids = _label_token_ids(tokenizer, self.label_names)
        self.token_classes = token_labels(tokenizer, self.label_names)

    @classmethod
    def load(cls, path, backbone: str | None = None) -> LabelWriter:
        """The writer a `generate-labels` prompt file holds (`backbone`: a
        backbone name other than the one it was trained on, e.g. a local preset)."""
        loaded = read_prompt_file(path, "causal_lm")
        settings, names = loaded.metadata.get("train_config"), loaded.metadata.get("verbalizer")
        if not isinstance(settings, dict) or not names:
            raise ValueError(
                f"{loaded.path!r} holds an LM prompt without the template and label words that "
                "`generate-labels` saves. Label texts with a prompt file that command wrote, or load "
                "this one into a PromptCausalLM to generate."
            )
        fields = {field.name for field in dataclasses.fields(LabelGenerationConfig)}
        config = LabelGenerationConfig(**{k: v for k, v in settings.items() if k in fields})
        backbone_model, tokenizer = load_backbone(backbone or config.backbone)
        return cls(PromptCausalLM.from_prompt_file(loaded, backbone_model), tokenizer, config, names)

    def _outputs(self, texts):
        label_ids = self.label_ids

        def reduce(logits):
            return keras.ops.concatenate(
                [keras.ops.softmax(keras.ops.take(logits, label_ids, axis=-1)),
                 keras.ops.cast(keras.ops.argmax(logits, axis=-1), "float32")[:, None]], axis=-1,
            )  # fmt: skip

        out = next_token_outputs(self.lm, [self.encode(t) for t in texts], reduce)
        return out[:, :-1], self.token_classes[out[:, -1].astype("int64")]

    def predict(self, texts) -> list[dict]:
        probabilities, written = self._outputs(list(texts))
        return [
            {"text": text, "label": self.label_names[int(p.argmax())], "probability": float(p.max()),
             "probabilities": dict(zip(self.label_names, map(float, p))),
             "written": self.label_names[w] if w >= 0 else None}
            for text, p, w in zip(texts, probabilities, written)
        ]  # fmt: skip

    def export(self, path: str, *, overwrite: bool = False) -> str:
        """Writes a SavedModel for TF Serving whose `serve_text` signature
        takes strings (`text`) and returns, per text, `label` (the most
        probable label word), `probability` (its probability among the label
        words) and `probabilities`: `predict`'s answer, tokenizer and template
        inside the graph, no tf_prompt_tuning needed to serve."""
        tokenizer = ready_for_graphs(self.tokenizer)
        head = tf.constant(self.encode.head, tf.int32)
        tail = tf.constant(self.encode.tail, tf.int32)
        names = tf.constant(self.label_names)
        label_ids = tf.constant(self.label_ids, tf.int32)
        max_text_tokens, lm = self.config.max_text_tokens, self.lm

        def serve_text(text):
            ids = tf.cast(tokenizer(text), tf.int32)[:, :max_text_tokens]
            rows = tf.shape(text)[0]
            framed = tf.concat(
                [tf.RaggedTensor.from_tensor(tf.tile(head[None], [rows, 1])), ids,
                 tf.RaggedTensor.from_tensor(tf.tile(tail[None], [rows, 1]))], axis=1,
            )  # fmt: skip
            token_ids = framed.to_tensor(0)
            mask = tf.sequence_mask(framed.row_lengths(), tf.shape(token_ids)[1], tf.int32)
            logits = lm.next_token_logits({"token_ids": token_ids, "padding_mask": mask})
            probabilities = tf.nn.softmax(tf.gather(logits, label_ids, axis=-1))
            best = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
            return {"label": tf.gather(names, best), "probability": tf.reduce_max(probabilities, axis=-1),
                    "probabilities": probabilities}  # fmt: skip

        if not tokenizer.built:
            tokenizer.build(None)  # tracking needs a built layer; tokenizers have no weights
        archive = keras.export.ExportArchive()
        archive.track(tokenizer)
        archive.add_endpoint("serve_text", serve_text, input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        return write_archive(archive, path, lm, overwrite=overwrite)

    def evaluate(self, texts, labels) -> dict:
        """`accuracy` of the most probable label word and `written_accuracy`
        of greedy generation's first token, on `labels` (class indices)."""
        probabilities, written = self._outputs(list(texts))
        labels = np.asarray(labels)
        return {
            "accuracy": float(np.mean(probabilities.argmax(-1) == labels)),
            "written_accuracy": float(np.mean(written == labels)),
            "examples": len(labels),
        }


def run_label_generation(config: LabelGenerationConfig, methods=METHODS, print_fn=print) -> dict:
    """Runs and scores each method on the same held-out split; writes
    `results.json` to `config.output_dir` at the end (nothing before)."""
    from tf_prompt_tuning.app.datasets import load_dataset

    for method in methods:
        check_choice("method", method, METHODS)
    if os.path.exists(config.output_dir) and not os.path.isdir(config.output_dir):
        raise ValueError(f"`output_dir` {config.output_dir!r} is a file; pass a directory.")
    backbone, tokenizer = load_backbone(config.backbone)
    train, dev, test = load_dataset(config.data).split(seed=config.split_seed)
    if config.test_data is not None:  # the user's held-out file, in the data's label order
        test = load_dataset(config.test_data, label_names=list(train.label_names))
    test = test.subset(np.arange(min(config.eval_size, len(test))))
    names = list(train.label_names) if config.verbalizer is None else list(config.verbalizer)
    if len(names) != len(train.label_names):
        raise ValueError(
            f"`verbalizer` must give one word per class: {len(train.label_names)} for {list(train.label_names)}. "
            f"Received: verbalizer={list(config.verbalizer)!r}."
        )
    label_ids = _label_token_ids(tokenizer, names)
    results = {"config": dataclasses.asdict(config), "label_names": names, "metric": config.score, "methods": {}}
    base = PromptCausalLM(backbone, num_tokens=0)
    few_shot_prefix = config.instruction + few_shot_text(train, names, config)

    token_classes = token_labels(tokenizer, names)

    def score(rows, lm, prefix_length=0):
        if config.score == "first_token":
            result = first_token_accuracy(lm, rows, test.labels, token_classes, prefix_length)
            return {"accuracy": result.pop("first_token_accuracy"), "invalid": result.pop("first_token_invalid"), **result}
        return generation_accuracy(lm, tokenizer, rows, test.labels, names)

    for method in methods:
        start = time.time()
        if method in ("zero_shot", "few_shot"):
            prefix = config.instruction if method == "zero_shot" else few_shot_prefix
            encode = _Encoder(tokenizer, config.max_text_tokens, prefix, template=config.template)
            result = score([encode(t) for t in test.texts], base, len(encode.prefix))
        elif method == "soft_prompt":
            lm = _soft_prompt_lm(backbone, tokenizer, names, few_shot_prefix, config)
            encode = _soft_prompt_encoder(tokenizer, config)
            texts = train.texts[: config.train_size or config.steps * config.batch_size * 2]
            rows = [encode(t) for t in texts]
            if config.targets == "few_shot":  # the few-shot model's answers, not the labels
                teacher = _Encoder(tokenizer, config.max_text_tokens, few_shot_prefix, template=config.template)
                targets = _label_distribution(base, [teacher(t) for t in texts], label_ids, len(teacher.prefix))
            else:
                targets = np.eye(len(names), dtype="float32")[train.labels[: len(rows)]]
            scored = None
            if config.dev_size:
                scored = dev.subset(np.arange(min(config.dev_size, len(dev))))
                scored = ([encode(t) for t in scored.texts], scored.labels)
            trained = train_soft_prompt(
                lm, rows, targets, label_ids, config, print_fn, dev=scored, token_classes=token_classes
            )
            test_rows = [encode(t) for t in test.texts]
            result = score(test_rows, lm)
            if config.score == "generation":  # both measures of the same prompt: they may be compared
                result.update(first_token_accuracy(lm, test_rows, test.labels, token_classes))
            trained_lm = lm
            result.update(trained, train_examples=len(rows), num_tokens=lm.num_tokens)
            if config.targets == "few_shot":
                agreement = np.argmax(targets, axis=1) == train.labels[: len(rows)]
                result["teacher_train_accuracy"] = float(np.mean(agreement))
        result["seconds"] = round(time.time() - start, 1)
        results["methods"][method] = result
        invalid = f"  invalid {result['invalid']:.3f}" if "invalid" in result else ""
        print_fn(f"{method}: {config.score} accuracy {result['accuracy']:.3f}{invalid}  ({result['seconds']} s)")
    if "soft_prompt" in results["methods"]:
        os.makedirs(config.output_dir, exist_ok=True)
        save_prompts(
            trained_lm, os.path.join(config.output_dir, "soft_prompt.safetensors"),
            extra={"train_config": dataclasses.asdict(config), "verbalizer": names},
        )  # fmt: skip
    write_atomically(os.path.join(config.output_dir, "results.json"), json.dumps(results, indent=1).encode())
    return results
