"""`freeze`: everything but the prompts (and named head layers) stops training."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable

import keras
import numpy as np

from tf_prompt_tuning.backbones._keras_internals import (
    inner_layers,
    own_trainable_variables,
)
from tf_prompt_tuning.layers.prefix_layer import PrefixLayer
from tf_prompt_tuning.layers.prompt_layer import PromptLayer


@dataclasses.dataclass(frozen=True)
class ParameterSummary:
    """Trainable and total parameter counts of a model.

    `str()` gives a PEFT-style line plus a breakdown by trainable layer.

    Example:

    >>> import tf_prompt_tuning as tpt
    >>> summary = tpt.ParameterSummary(trainable=16, total=80, by_layer={"prompt": 16})
    >>> summary.frozen, summary.trainable_percent
    (64, 20.0)
    >>> print(summary)
    trainable params: 16 || frozen params: 64 || all params: 80 || trainable%: 20.0000
      trainable prompt: 16
    """

    trainable: int
    total: int
    by_layer: dict[str, int]

    @property
    def frozen(self) -> int:
        return self.total - self.trainable

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        lines = [
            f"trainable params: {self.trainable:,} || frozen params: {self.frozen:,} "
            f"|| all params: {self.total:,} || trainable%: {self.trainable_percent:.4f}"
        ]
        lines += [f"  trainable {name}: {count:,}" for name, count in self.by_layer.items()]
        return "\n".join(lines)


def _count(variables) -> int:
    return int(sum(np.prod(v.shape) for v in variables))


def parameter_summary(model: keras.layers.Layer) -> ParameterSummary:
    """Counts trainable and total parameters, and who owns the trainable ones.

    Example:

    >>> import keras
    >>> import tf_prompt_tuning as tpt
    >>> model = keras.Sequential([keras.Input((4, 8)), tpt.PromptLayer(2, name="prompt"),
    ...                           keras.layers.Dense(3, name="head")])
    >>> summary = tpt.parameter_summary(model)  # before freezing: everything trains
    >>> summary.trainable, summary.total, summary.by_layer
    (43, 43, {'prompt': 16, 'head': 27})
    """
    by_layer: dict[str, int] = {}
    for layer in inner_layers(model):
        own = [v for v in own_trainable_variables(layer) if v.trainable and layer.trainable]
        if own:
            by_layer[layer.name] = by_layer.get(layer.name, 0) + _count(own)
    return ParameterSummary(
        trainable=_count(model.trainable_weights),
        total=_count(model.weights),
        by_layer=by_layer,
    )


def _resolve_keep(model, trainable_layers) -> set[int]:
    """Ids of the layers to keep trainable: prompt layers and the named ones."""
    layers = inner_layers(model)
    by_name = {layer.name: layer for layer in layers}
    keep = {id(layer) for layer in layers if isinstance(layer, (PromptLayer, PrefixLayer))}
    for item in trainable_layers:
        if isinstance(item, keras.layers.Layer):
            if item not in layers:
                raise ValueError(
                    f"`trainable_layers` has layer {item.name!r}, which is not part of "
                    f"{model.name!r}. Pass layers (or names) of the model being frozen."
                )
            keep.add(id(item))
        elif item in by_name:
            keep.add(id(by_name[item]))
        else:
            raise ValueError(
                f"`trainable_layers` names {item!r}, which is not a layer of "
                f"{model.name!r}. Its layers are: {sorted(by_name)}."
            )
    if not keep:
        # Freezing a base model before putting a prompt in front of it is
        # what Keras users do with `trainable = False`: do it, and say so.
        warnings.warn(
            f"{model.name!r} has no PromptLayer and `trainable_layers` is empty: all of it "
            "is now frozen. Put a PromptLayer in front of it (or name layers to keep "
            "trainable) to have something to train.",
            stacklevel=3,
        )
    return keep


def _freeze(layer, keep: set[int]) -> bool:
    """Freezes `layer` except kept sublayers. Returns whether any were kept."""
    if id(layer) in keep:
        layer.trainable = True
        return True
    children = inner_layers(layer, recursive=False)
    kept = [_freeze(child, keep) for child in children]
    if not any(kept):
        layer.trainable = False
        return False
    # A container of kept layers stays trainable (Keras hides all weights of a
    # non-trainable layer); its own variables are frozen one by one.
    layer.trainable = True
    for variable in own_trainable_variables(layer):
        variable.trainable = False
    return True


def freeze(
    model: keras.layers.Layer, *, trainable_layers: Iterable[str | keras.layers.Layer] = ()
) -> ParameterSummary:
    """Makes everything in `model` non-trainable but prompts and named layers.

    Every `PromptLayer` and `PrefixLayer` stays trainable; so do the layers in
    `trainable_layers` (a classification head, say), by name or object. A
    model with neither (a base model frozen before a prompt is put in front
    of it) is frozen whole, with a warning.
    Everything else is frozen with `layer.trainable = False`, so layers such
    as BatchNormalization also switch to inference behaviour, as Keras's
    transfer-learning guide recommends. Call it before `compile`.

    Args:
        model: a built or unbuilt Keras layer or model.
        trainable_layers: names or layer objects to keep trainable.

    Returns:
        The `ParameterSummary` after freezing.

    Example:

    >>> model = keras.Sequential([keras.Input((4, 8)), PromptLayer(2, name="prompt"),
    ...                           keras.layers.Dense(3, name="head")])
    >>> print(freeze(model, trainable_layers=["head"]))
    trainable params: 43 || frozen params: 0 || all params: 43 || trainable%: 100.0000
      trainable prompt: 16
      trainable head: 27
    """
    keep = _resolve_keep(model, list(trainable_layers))
    for child in inner_layers(model, recursive=False):
        _freeze(child, keep)
    for variable in own_trainable_variables(model):
        variable.trainable = False
    return parameter_summary(model)
