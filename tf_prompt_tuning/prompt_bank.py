"""`PromptBank`: many tasks on one frozen backbone, mixed in one batch.

Each task is a prompt and a head (a prompt alone in a `PromptCausalLMBank`,
which generates); a `PromptBank` task may also have deep prompts (one per
transformer layer, or key/value prefixes in every attention layer) and
share batches with input-level ones. An integer
`task_id` input picks, per example, which prompt goes into the sequence and
which head reads it, so a batch that mixes tasks runs in one forward pass
through the backbone. Adding a task adds its own variables and touches no
other task's.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tf_prompt_tuning import initializers
from tf_prompt_tuning._checks import check_positive_int
from tf_prompt_tuning.freezing import freeze
from tf_prompt_tuning.prefix_layer import PrefixLayer, is_prefixable
from tf_prompt_tuning.prompt_causal_lm import PromptCausalLM
from tf_prompt_tuning.prompt_file import backbone_fingerprint, check_kind, load_prompts, restore_prompts
from tf_prompt_tuning.prompt_layer import PromptLayer, insert_block
from tf_prompt_tuning.prompted_backbone import check_sequence_fits, prompted_backbone
from tf_prompt_tuning.text_classifier import POOLINGS, PromptTextClassifier, check_deep, pool

# Logit given to the classes a task does not have, so softmax gives them 0.
_ABSENT_CLASS_LOGIT = -1e9


def _same_backbone(a, b) -> bool:
    # Hashing every weight (91 MB for MiniLM) is needed only for two different objects.
    return a is b or backbone_fingerprint(a) == backbone_fingerprint(b)


def check_task_ids(task_id, num_tasks: int):
    """`task_id` as int32, each checked to be in `[0, num_tasks)`.

    A gather would read another task's row for a negative id and clamp (XLA)
    or fail only on some devices for a large one: a wrong answer, silently.
    Eagerly the check raises `ValueError`; in a graph (a `tf.function`, a
    SavedModel) an `InvalidArgumentError` when it runs. XLA drops graph
    assertions, so the banks declare `supports_jit = False` and the library's
    compiled steps honour it.
    """
    message = f"`task_id` must be in [0, {num_tasks}), the bank's task ids"
    if tf.executing_eagerly():
        ids = np.asarray(keras.ops.convert_to_numpy(task_id))
        if ids.dtype.kind not in "iu" or ids.size and (ids.min() < 0 or ids.max() >= num_tasks):
            raise ValueError(f"{message}. Received: task_id={ids.tolist()!r}.")
        return ops.convert_to_tensor(ids.astype("int32"))
    task_id = tf.convert_to_tensor(task_id)
    if not task_id.dtype.is_integer:
        raise TypeError(f"{message}; received a {task_id.dtype.name} tensor. Pass integer ids.")
    checks = [
        tf.debugging.assert_greater_equal(task_id, tf.cast(0, task_id.dtype), message=message),
        tf.debugging.assert_less(task_id, tf.cast(num_tasks, task_id.dtype), message=message),
    ]
    with tf.control_dependencies(checks):
        return tf.cast(tf.identity(task_id), "int32")


def _per_example(blocks, task_id, shape, dtype):
    """Each example's task's block; `blocks` has one per task (`None`: zeros of `shape`)."""
    stacked = ops.stack([ops.zeros(shape, dtype) if b is None else ops.cast(b, dtype) for b in blocks])
    return ops.take(stacked, ops.cast(task_id, "int32"), axis=0)


def _task_flags(flags, task_id):
    """Each example's task's entry of the per-task booleans `flags`, `(batch,)`."""
    return ops.take(ops.convert_to_tensor(flags), ops.cast(task_id, "int32"))


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PromptBankLayer(PromptLayer):
    """One `(num_tokens, dim)` prompt per task, chosen per example by `task_id`.

    Tasks share the prompt length: text tokens then sit at the same positions
    whatever the task, so a mixed batch gives each example exactly what its
    task alone would.

    With `num_layers`, tasks may also be deep (a `DeepPromptLayer`'s
    per-layer prompts): before each later transformer layer, the prompt
    positions of a deep task's examples are rewritten with its prompt for
    that layer, and those of the other tasks' examples are left as they are.

    A task with key/value prefixes (`deep="prefix"`, held by a
    `PrefixBankLayer`) has no input prompt: its examples keep their text at
    the positions it has without a prompt (so position embeddings match the
    task's own model) and get `num_tokens` padding positions at the end.

    Args:
        num_tokens: prompt length of every task.
        placement: as in `PromptLayer`.
        num_layers: the backbone's transformer layers, to hold deep tasks;
            `None` (default) for input-level prompts only.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: float tensor `(batch, seq, dim)`.
        task_id: int tensor `(batch,)`.
        layer_index: 0 to insert the prompts, `i > 0` to rewrite them
            before transformer layer `i` (deep banks).
    """

    extra_inputs = {"task_id": ((), "int32")}

    def __init__(self, num_tokens, placement="prepend", num_layers=None, **kwargs):
        super().__init__(num_tokens, initializer="zeros", placement=placement, **kwargs)
        self.num_layers = num_layers
        self.prompts = []
        self.deep_prompts = []  # per task: (num_layers - 1, num_tokens, dim) or None
        self.prefix_tasks = []  # per task: True for key/value prefixes (no input prompt)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "`PromptBankLayer` expects (batch, seq, dim) inputs with a known dim. "
                f"Received: input_shape={tuple(input_shape)}."
            )
        self.dim = input_shape[-1]

    def add_prompt(self, name: str, initializer="uniform", deep=False):
        """Adds a task's prompt variable (and its deeper layers' prompts) and returns it.

        A task with key/value prefixes (`deep="prefix"`) gets no variable here
        (`None`); its prefixes live in the bank's `PrefixBankLayer`.
        """
        deep = check_deep(deep)
        if deep == "prefix":
            self.prompts.append(None)
            self.deep_prompts.append(None)
            self.prefix_tasks.append(True)
            return None
        if deep and not self.num_layers:
            raise ValueError(
                f"Task {name!r} has deep prompts, but this bank holds input-level prompts "
                "only: make its `PromptBankLayer` with `num_layers`."
            )
        # A built layer's state is locked; unlock it to grow, as Keras's own
        # `enable_lora` does.
        self._tracker.unlock()
        variable = self.add_weight(
            name=f"prompt_{name}",
            shape=(self.num_tokens, self.dim),
            initializer=initializers.get(initializer),
            dtype="float32",
        )
        deep_variable = None
        if deep:
            deep_variable = self.add_weight(
                name=f"deep_prompts_{name}",
                shape=(self.num_layers - 1, self.num_tokens, self.dim),
                # Random, not zeros: equal vectors would get equal gradients and stay equal.
                initializer=initializers.uniform(),
                dtype="float32",
            )
        self._tracker.lock()
        self.prompts.append(variable)
        self.deep_prompts.append(deep_variable)
        self.prefix_tasks.append(False)
        return variable

    def _layout(self, sequence, inserted, task_id):
        """Per example: `inserted`, or for prefix tasks the sequence then padding."""
        if not any(self.prefix_tasks):
            return inserted
        padding = ops.repeat(ops.zeros_like(sequence[:, :1]), self.num_tokens, axis=1)
        is_prefix = ops.reshape(_task_flags(self.prefix_tasks, task_id), (-1,) + (1,) * (len(sequence.shape) - 1))
        return ops.where(is_prefix, ops.concatenate([sequence, padding], axis=1), inserted)

    def extend_mask(self, mask, fill_value=True, task_id=None):
        """As `PromptLayer.extend_mask`; with `task_id`, prefix tasks' examples
        get `num_tokens` zeros (padding) at the end instead."""
        # Not `super()`: autograph, converting a compiled `generate`, cannot resolve it.
        inserted = PromptLayer.extend_mask(self, mask, fill_value)
        return inserted if task_id is None else self._layout(mask, inserted, task_id)

    def call(self, inputs, task_id=None, padding_mask=None, mask=None, layer_index=0):
        if task_id is None:
            raise ValueError("`PromptBankLayer` needs a `task_id` input.")
        if layer_index:
            return self._rewrite(inputs, task_id, layer_index)
        if not self.prompts:  # symbolic build, before any task exists
            block = ops.zeros((ops.shape(inputs)[0], self.num_tokens, self.dim), dtype=inputs.dtype)
        else:
            block = _per_example(self.prompts, task_id, (self.num_tokens, self.dim), inputs.dtype)
        return self._layout(inputs, insert_block(inputs, block, self.placement), task_id)

    def _rewrite(self, inputs, task_id, layer_index):
        if all(v is None for v in self.deep_prompts):
            return inputs  # no deep task (yet): nothing to rewrite
        start = 0 if self.placement == "prepend" else 1
        end = start + self.num_tokens
        blocks = [None if v is None else v[layer_index - 1] for v in self.deep_prompts]
        # Shallow tasks' examples keep the hidden states they have.
        block = ops.where(
            _task_flags([v is not None for v in self.deep_prompts], task_id)[:, None, None],
            _per_example(blocks, task_id, (self.num_tokens, self.dim), inputs.dtype),
            inputs[:, start:end],
        )
        return ops.concatenate([inputs[:, :start], block, inputs[:, end:]], axis=1)

    def compute_mask(self, inputs, mask=None, padding_mask=None, layer_index=0, task_id=None):
        if layer_index:
            return mask  # same positions, rewritten in place
        return super().compute_mask(inputs, mask=mask, padding_mask=padding_mask)

    def get_config(self):
        config = super().get_config()
        config.pop("initializer")
        config["num_layers"] = self.num_layers
        return config


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PrefixBankLayer(PrefixLayer):
    """Per-task key/value prefixes (or none), chosen per example by `task_id`.

    The other tasks' examples get prefixes that are not visible, so their
    attention is what it is without any.

    Args:
        num_tokens: prefix length of every task.
        num_layers: the backbone's transformer layers.
        **kwargs: standard layer arguments.
    """

    extra_inputs = {"task_id": ((), "int32")}

    def __init__(self, num_tokens, num_layers, **kwargs):
        kwargs.pop("initializer", None)
        super().__init__(num_tokens, num_layers, initializer="zeros", **kwargs)
        self.task_prefixes = []  # per task: (num_layers, 2, num_tokens, dim) or None

    def build(self, input_shape):
        self.dim = input_shape[-1]

    @property
    def active(self) -> bool:
        """Whether any task has prefixes (if none, layers run as they are)."""
        return any(v is not None for v in self.task_prefixes)

    def add_prefixes(self, name: str, enabled: bool, initializer="uniform"):
        """Adds a task: its prefix variable if `enabled`, else none. Returns it."""
        variable = None
        if enabled:
            self._tracker.unlock()
            variable = self.add_weight(
                name=f"prefixes_{name}",
                shape=(self.num_layers, 2, self.num_tokens, self.dim),
                # Random, not zeros: equal vectors would get equal gradients and stay equal.
                initializer=initializers.get(initializer),
                dtype="float32",
            )
            self._tracker.lock()
        self.task_prefixes.append(variable)
        return variable

    def call(self, inputs, task_id=None, layer_index=0):
        if task_id is None:
            raise ValueError("`PrefixBankLayer` needs a `task_id` input.")
        blocks = [None if v is None else v[layer_index] for v in self.task_prefixes]
        chosen = _per_example(blocks, task_id, (2, self.num_tokens, self.dim), inputs.dtype)
        has = _task_flags([v is not None for v in self.task_prefixes], task_id)
        visible = ops.repeat(has[:, None], self.num_tokens, axis=1)
        return chosen[:, 0], chosen[:, 1], visible

    def get_config(self):
        config = super().get_config()
        config.pop("initializer")
        return config


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PromptBank(keras.Model):
    """Serves many prompt-tuned tasks from one frozen backbone.

    Tasks are usually trained one by one as `PromptTextClassifier`s (or
    loaded from their prompt files) and then added with `add_classifier` or
    `add_prompt_file`. The model takes the backbone's inputs plus `task_id`
    `(batch,)` and returns `(batch, max_classes)` float32 logits; classes a
    task does not have get a logit of -1e9 (probability 0). Deep-prompt
    tasks (`PromptTextClassifier(..., deep=True)`) sit next to input-level
    ones: before each transformer layer, a deep task's examples get its
    prompt for that layer and the others keep theirs. So do key/value-prefix
    tasks (`deep="prefix"`, on KerasHub `TransformerEncoder` backbones):
    their examples read their task's keys and values in every layer, and
    have no input prompt (see `PromptBankLayer`).

    Args:
        backbone: the frozen KerasHub backbone all tasks share.
        num_tokens: prompt length of every task.
        placement: "after_first" (default) or "prepend".
        pooling: "mean" (default), "cls" or "last".
        tasks: task specs `{"name", "num_classes", "label_names", "deep"}`
            (`deep`: False, "hidden" or "prefix") to
            create (used when loading a saved bank).
        **kwargs: standard model arguments.
    """

    def __init__(
        self,
        backbone,
        *,
        num_tokens=20,
        placement="after_first",
        pooling="mean",
        tasks: Sequence[dict] = (),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"`pooling` must be one of {POOLINGS}. Received: pooling={pooling!r}.")
        self.backbone = backbone
        # Room for deep-prompt tasks: a bank without any runs no extra op, one
        # with some a per-layer select (no measurable cost, benchmarks/deep_bank.py).
        num_layers = len(getattr(backbone, "transformer_layers", ())) or None
        self.prompts = PromptBankLayer(num_tokens, placement=placement, num_layers=num_layers, name="prompts")
        # Room for key/value-prefix tasks where the layers take them; layers
        # run as they are until such a task is added.
        self.prefixes = None
        if is_prefixable(backbone):
            self.prefixes = PrefixBankLayer(num_tokens, num_layers, name="prefixes")
        self.encoder = prompted_backbone(backbone, self.prompts, prefixes=self.prefixes)
        # XLA would drop the task-id check (`check_task_ids`); Keras's
        # `jit_compile="auto"` and `make_train_step` honour this.
        self.supports_jit = False
        self.hidden_dim = self.encoder.output["sequence_output"].shape[-1]
        self.heads = []
        self.tasks = []
        self.num_tokens = num_tokens
        self.placement = placement
        self.pooling = pooling
        self.built = True
        for task in tasks:
            self.add_task(**task)

    @property
    def task_names(self) -> list[str]:
        return [task["name"] for task in self.tasks]

    def task_id(self, name: str) -> int:
        """The integer id of a task, for the `task_id` input."""
        if name not in self.task_names:
            raise KeyError(f"No task {name!r} in the bank. Its tasks are {self.task_names}.")
        return self.task_names.index(name)

    def add_task(
        self, name: str, num_classes: int, label_names=None, prompt_initializer="uniform", deep=False
    ) -> int:
        """Adds an untrained task (with deep prompts if `deep`: "hidden" or
        "prefix", as in `PromptTextClassifier`); returns its id."""
        deep = check_deep(deep)
        if deep == "prefix" and self.prefixes is None:
            raise ValueError(
                f"Task {name!r} has key/value prefixes, but the bank's backbone "
                f"{self.backbone.name!r} has no KerasHub TransformerEncoder layers to take them. "
                "Train the task with deep='hidden' instead."
            )
        if name in self.task_names:
            raise ValueError(f"The bank already has a task {name!r}. Pick another name.")
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(
                f"`label_names` has {len(label_names)} names for {num_classes} classes."
            )
        self.prompts.add_prompt(name, prompt_initializer, deep=deep)
        if self.prefixes is not None:
            self.prefixes.add_prefixes(name, enabled=deep == "prefix", initializer=prompt_initializer)
        head = keras.layers.Dense(num_classes, dtype="float32", name=f"head_{name}")
        head.build((None, self.hidden_dim))
        self._tracker.unlock()
        self.heads.append(head)
        self._tracker.lock()
        self.tasks.append(
            {"name": name, "num_classes": int(num_classes),
             "label_names": list(label_names) if label_names is not None else None,
             "deep": deep}
        )  # fmt: skip
        freeze(self, trainable_layers=[self.prompts, *self.heads])
        # Functions Keras compiled for `fit`/`predict`/`evaluate` hold the old
        # task list; they are rebuilt on next use.
        self.train_function = self.test_function = self.predict_function = None
        return len(self.tasks) - 1

    def _check_compatible(self, num_tokens, placement, pooling, what):
        mine = (self.num_tokens, self.placement, self.pooling)
        if (num_tokens, placement, pooling) != mine:
            raise ValueError(
                f"{what} has num_tokens, placement, pooling = {(num_tokens, placement, pooling)}, "
                f"but the bank's are {mine}. Tasks in one bank share them."
            )

    def add_classifier(self, name: str, classifier: PromptTextClassifier, label_names=None) -> int:
        """Adds a trained `PromptTextClassifier` built on this bank's backbone."""
        if not _same_backbone(classifier.backbone, self.backbone):
            raise ValueError(
                f"Task {name!r} was trained on another backbone. Add only classifiers "
                "of the bank's backbone."
            )
        self._check_compatible(
            classifier.num_tokens, classifier.placement, classifier.pooling, f"Classifier {name!r}"
        )
        task = self.add_task(name, classifier.num_classes, label_names, deep=classifier.deep)
        if classifier.deep == "prefix":
            self.prefixes.task_prefixes[task].assign(classifier.prefixes.prefixes)
        else:
            self.prompts.prompts[task].assign(classifier.prompt.prompt_value())
        if classifier.deep == "hidden":
            self.prompts.deep_prompts[task].assign(classifier.prompt.deep_prompts)
        self.heads[task].kernel.assign(classifier.head.kernel)
        self.heads[task].bias.assign(classifier.head.bias)
        return task

    def add_prompt_file(self, name: str, path: str) -> int:
        """Adds a task from its prompt file (checked against the bank's backbone)."""
        metadata = load_prompts(path).metadata
        check_kind(metadata, "classifier", path)
        self._check_compatible(
            metadata["num_tokens"], metadata.get("placement"), metadata.get("pooling"), repr(path)
        )
        classifier = PromptTextClassifier(
            self.backbone, metadata["num_classes"], num_tokens=metadata["num_tokens"],
            prompt_initializer="zeros", placement=self.placement, pooling=self.pooling,
            deep=metadata.get("deep", False),
        )  # fmt: skip
        restore_prompts(classifier, path)
        return self.add_classifier(name, classifier, metadata.get("label_names"))

    def check_input_length(self, length: int | None):
        """Raises if `length` tokens plus the prompt exceed the backbone's limit."""
        check_sequence_fits(self.backbone, self.num_tokens, length)

    def call(self, inputs, training=None):
        self.check_input_length(inputs["token_ids"].shape[1])
        if not self.tasks:
            raise ValueError("The bank has no tasks. Add one with add_classifier or add_prompt_file.")
        inputs = dict(inputs, task_id=check_task_ids(inputs["task_id"], len(self.tasks)))
        encoded = self.encoder(inputs, training=False)
        pooled = pool(encoded["sequence_output"], encoded["padding_mask"], self.pooling)
        width = max(task["num_classes"] for task in self.tasks)
        logits = []
        for head, task in zip(self.heads, self.tasks):
            task_logits = head(pooled)
            missing = width - task["num_classes"]
            if missing:
                filler = ops.full_like(task_logits[:, :1], _ABSENT_CLASS_LOGIT)
                task_logits = ops.concatenate([task_logits, ops.repeat(filler, missing, axis=1)], 1)
            logits.append(task_logits)
        stacked = ops.stack(logits, axis=1)  # (batch, tasks, classes)
        return ops.take_along_axis(stacked, inputs["task_id"][:, None, None], axis=1)[:, 0]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "num_tokens": self.num_tokens,
                "placement": self.placement,
                "pooling": self.pooling,
                "tasks": [dict(task) for task in self.tasks],
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="tf_prompt_tuning")
class PromptCausalLMBank(PromptCausalLM):
    """Generates for many prompt-tuned tasks from one frozen causal LM.

    A `PromptCausalLM` whose prompt is picked per example by `task_id`
    (`(batch,)` int, in `call` and `generate`), so a batch that mixes tasks
    generates each row as its task's own model would. Tasks are usually
    trained one by one as `PromptCausalLM`s and added with `add_lm` or
    `add_prompt_file`.

    Args:
        backbone: the frozen KerasHub causal LM backbone all tasks share.
        num_tokens: prompt length of every task.
        tasks: names of the tasks to create (used when loading a saved bank).
        **kwargs: standard model arguments.
    """

    takes_task_id = True

    def __init__(self, backbone, *, num_tokens=20, tasks: Sequence[str] = (), **kwargs):
        super().__init__(backbone, num_tokens=check_positive_int("num_tokens", num_tokens), **kwargs)
        self.supports_jit = False  # as in PromptBank; `generate` checks ids before XLA
        self.tasks = []
        for name in tasks:
            self.add_task(name)

    def make_prompt_layer(self, num_tokens, initializer) -> PromptBankLayer:
        return PromptBankLayer(num_tokens, name="prompts")

    def prompt_arguments(self, task_id) -> dict:
        if task_id is None:
            raise ValueError("A `PromptCausalLMBank` needs `task_id`, each row's task.")
        if not self.tasks:
            raise ValueError("The bank has no tasks. Add one with add_lm or add_prompt_file.")
        return {"task_id": check_task_ids(task_id, len(self.tasks))}

    def task_id(self, name: str) -> int:
        """The integer id of a task, for the `task_id` input."""
        if name not in self.tasks:
            raise KeyError(f"No task {name!r} in the bank. Its tasks are {self.tasks}.")
        return self.tasks.index(name)

    def add_task(self, name: str, prompt_initializer="uniform") -> int:
        """Adds an untrained task; returns its id."""
        if name in self.tasks:
            raise ValueError(f"The bank already has a task {name!r}. Pick another name.")
        self.prompt.add_prompt(name, prompt_initializer)
        self.tasks.append(name)
        # A compiled generate function holds the prompts as they were when it
        # was traced; a new task needs new ones.
        self._generate_functions.clear()
        return len(self.tasks) - 1

    def add_lm(self, name: str, lm: PromptCausalLM) -> int:
        """Adds the prompt of a trained `PromptCausalLM` on this bank's backbone."""
        if not _same_backbone(lm.backbone, self.backbone):
            raise ValueError(
                f"Task {name!r} was trained on another backbone. Add only models of "
                "the bank's backbone."
            )
        if isinstance(lm, PromptCausalLMBank) or lm.num_tokens != self.num_tokens:
            raise ValueError(
                f"Task {name!r} must be a PromptCausalLM with the bank's num_tokens="
                f"{self.num_tokens}. Received: {type(lm).__name__} with num_tokens={lm.num_tokens}."
            )
        task = self.add_task(name)
        self.prompt.prompts[task].assign(lm.prompt.prompt_value())
        return task

    def add_prompt_file(self, name: str, path: str) -> int:
        """Adds a task from its generation prompt file (checked against the backbone)."""
        metadata = load_prompts(path).metadata
        check_kind(metadata, "causal_lm", path)
        lm = PromptCausalLM(self.backbone, num_tokens=metadata["num_tokens"], prompt_initializer="zeros")
        restore_prompts(lm, path)
        return self.add_lm(name, lm)

    def generate(self, token_ids, padding_mask=None, max_new_tokens: int = 16, *, task_id=None, **options) -> dict:
        """`PromptCausalLM.generate`, each row with the prompt of its `task_id`."""
        if task_id is None or not self.tasks:
            self.prompt_arguments(task_id)  # says what is missing
        if not self._valid_task_ids(task_id, len(token_ids)):
            raise ValueError(
                f"`task_id` must hold one id in [0, {len(self.tasks)}) per row of "
                f"`token_ids` ({len(token_ids)} rows). Received: task_id={task_id!r}."
            )
        return super().generate(token_ids, padding_mask, max_new_tokens, task_id=task_id, **options)

    def _valid_task_ids(self, task_id, batch: int) -> bool:
        ids = np.asarray(task_id)
        return ids.shape == (batch,) and bool(np.all((ids >= 0) & (ids < len(self.tasks))))

    def get_config(self):
        config = super().get_config()
        config["tasks"] = list(self.tasks)
        return config


def ensemble_probabilities(bank: PromptBank, inputs: dict, task_names: Sequence[str]):
    """Averages the class probabilities of several tasks' prompts in one pass.

    Lester et al. (2021) ensemble prompts trained for the same task on one
    frozen model: the batch is repeated once per member, with each member's
    `task_id`, and the K x batch examples go through the backbone together.

    Returns:
        `(batch, num_classes)` mean probabilities.
    """
    ids = [bank.task_id(name) for name in task_names]
    classes = {bank.tasks[i]["num_classes"] for i in ids}
    if len(classes) != 1:
        raise ValueError(f"Ensemble members must have the same classes. Received: {task_names}.")
    batch = ops.shape(inputs["token_ids"])[0]
    tiled = {k: ops.tile(v, [len(ids)] + [1] * (len(v.shape) - 1)) for k, v in inputs.items() if k != "task_id"}
    tiled["task_id"] = ops.repeat(ops.convert_to_tensor(np.asarray(ids, "int32")), batch)
    probabilities = ops.softmax(bank(tiled, training=False))[:, : classes.pop()]
    return ops.mean(ops.reshape(probabilities, (len(ids), batch, -1)), axis=0)
