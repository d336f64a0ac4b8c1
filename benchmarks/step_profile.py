"""Where the XLA prompt step's time goes: the compiled program's pieces, from a profiler trace.

    .venv/bin/python benchmarks/step_profile.py                           # MiniLM, batch 32
    .venv/bin/python benchmarks/step_profile.py --backbone gemma3_270m --batch-size 8

The prompted classifier of `train_step.py` (20-token prompt, fixed random
token ids of `--length`, no padding): its inference call and its prompt
step, each compiled with XLA, warmed up, then traced with TensorFlow's
profiler for `--repeats` calls. XLA's CPU runtime records each piece of the
compiled program it runs (a "thunk": one matrix product, or one fusion of
element-wise work) as a trace event named after its HLO instruction; their
durations are summed by kind:

- dot: matrix products;
- copy / transpose: fusions whose root is a copy or transpose (layout
  changes, e.g. a product's operand transposed for the backward pass);
- other fusions: element-wise and reduction work (softmax, norms,
  activations and their gradients, rotary positions, ...).

Thunks can overlap on the runtime's threads, so their sum is not wall time;
compare the shares, and each kind between the forward and the step. The
matrix-product floor of `train_step.py` says what the step's dot time alone
would give.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import tempfile
import time

import keras
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from cpu_flags import cpu_description
import tf_prompt_tuning as tpt

_THUNK = re.compile(r"[a-z][a-z0-9_\-]*(\.\d+)?")


def kind(name: str) -> str:
    """The kind of an HLO thunk, from its instruction name."""
    base = re.sub(r"\.\d+$", "", name)
    if base in ("dot", "convolution") or base.startswith("dot_"):
        return "dot"
    if base.startswith(("copy", "transpose")) or base.endswith(("_copy_fusion", "_transpose_fusion")):
        return "copy / transpose"
    return "other fusions"


def thunk_seconds(function, repeats: int) -> tuple[float, collections.Counter, collections.Counter]:
    """Wall seconds per call, and thunk seconds per call by kind and by name."""
    with tempfile.TemporaryDirectory() as directory:
        tf.profiler.experimental.start(directory)
        start = time.perf_counter()
        for _ in range(repeats):
            function()
        wall = (time.perf_counter() - start) / repeats
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        for path in glob.glob(f"{directory}/**/*.xplane.pb", recursive=True):
            with open(path, "rb") as f:
                space.MergeFromString(f.read())
    by_kind, by_name = collections.Counter(), collections.Counter()
    for plane in space.planes:
        names = {key: value.name for key, value in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if _THUNK.fullmatch(name):
                    seconds = event.duration_ps / 1e12 / repeats
                    by_kind[kind(name)] += seconds
                    by_name[re.sub(r"\.\d+$", "", name)] += seconds
    return wall, by_kind, by_name


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2", help="a load_backbone name")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=8, help="also list the N costliest thunk names")
    args = parser.parse_args()
    print(cpu_description())

    from train_step import _make_step, random_batch

    backbone, _ = tpt.load_backbone(args.backbone)
    keras.utils.set_random_seed(0)
    options = {"placement": "prepend", "pooling": "last"} if "segment_ids" not in backbone.input else {}
    model = tpt.PromptTextClassifier(backbone, 2, num_tokens=20, **options)
    x, y = random_batch(args.batch_size, args.length, tuple(backbone.input))
    step = _make_step(model, xla=True)
    forward = tf.function(lambda x: model(x, training=False), jit_compile=True)
    calls = {"forward": lambda: forward(x).numpy(), "prompt step": lambda: step(x, y).numpy()}
    for call in calls.values():  # trace, compile and run once before timing
        call()
    results = {name: thunk_seconds(call, args.repeats) for name, call in calls.items()}

    print(
        f"{args.backbone}, batch {args.batch_size}, {args.length} + 20 tokens, XLA, "
        f"{args.repeats} profiled calls each, {tf.config.threading.get_intra_op_parallelism_threads() or 'all'} "
        "intra-op threads\n"
    )
    print("| thunk kind | forward s/call | share | prompt step s/call | share | step / forward |")
    print("|---|---|---|---|---|---|")
    (wall_f, kinds_f, _), (wall_s, kinds_s, names_s) = results["forward"], results["prompt step"]
    for name in ("dot", "copy / transpose", "other fusions"):
        f, s = kinds_f[name], kinds_s[name]
        print(
            f"| {name} | {f:.3f} | {100 * f / sum(kinds_f.values()):.0f}% | {s:.3f} | "
            f"{100 * s / sum(kinds_s.values()):.0f}% | {s / f if f else float('nan'):.2f} |"
        )
    f, s = sum(kinds_f.values()), sum(kinds_s.values())
    print(f"| all thunks | {f:.3f} | 100% | {s:.3f} | 100% | {s / f:.2f} |")
    print(f"| wall time | {wall_f:.3f} | | {wall_s:.3f} | | {wall_s / wall_f:.2f} |")
    print("\nCostliest thunks in the prompt step (s/call): " + ", ".join(
        f"{name} {seconds:.3f}" for name, seconds in names_s.most_common(args.top)
    ))  # fmt: skip


if __name__ == "__main__":
    main()
