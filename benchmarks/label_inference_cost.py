"""What a label costs to serve: a trained soft prompt against the few-shot prompt.

    .venv/bin/python benchmarks/label_inference_cost.py PROMPT_FILE [--eval-size 256] [--repeats 3]

PROMPT_FILE is a `generate-labels` prompt file (`soft_prompt.safetensors`).
Its training settings give the data, template, instruction, verbalizer and
seed; the few-shot prompt is the one `generate-labels` scores beside it
(the instruction and the same `shots` solved training examples). Each way
labels the first `--eval-size` held-out texts as `LabelWriter.predict`
serves them (batches of 16, the next token's logits, no generation):

- soft prompt: the file's prompt with the bare template;
- few-shot: the frozen model with the instruction and solved examples in
  front of every text, read anew for each batch, as a served prompt is;
- few-shot, shared prefix: the same, the part every row shares read once
  for all (what `generate-labels` does to score it; a server that keeps a
  prefix cache could do the same).

Each is run once to trace its shapes, then `--repeats` times interleaved
with the others; the table gives the median seconds, texts a second, the
positions a text fills (prompt, instruction, examples and templated text)
and each way's time against the soft prompt's, measured in this run.
"""

import argparse
import dataclasses
import statistics
import time

import keras
import numpy as np

from cpu_flags import cpu_description
from tf_prompt_tuning.app.datasets import load_dataset
from tf_prompt_tuning.app.label_generation_job import LabelWriter, few_shot_text, next_token_outputs
from tf_prompt_tuning.models.prompt_causal_lm import PromptCausalLM

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("prompt_file", help="a generate-labels soft_prompt.safetensors")
parser.add_argument("--eval-size", type=int, default=256)
parser.add_argument("--repeats", type=int, default=3)
args = parser.parse_args()

try:
    soft = LabelWriter.load(args.prompt_file)
except ValueError as error:  # a missing, corrupt or non-label prompt file: one line
    parser.error(str(error))
print(cpu_description())
config = soft.config
train, _, test = load_dataset(config.data).split(seed=config.split_seed)
if config.test_data is not None:
    test = load_dataset(config.test_data, label_names=list(train.label_names))
texts = test.texts[: args.eval_size]
prefix = config.instruction + few_shot_text(train, soft.label_names, config)
# The few-shot prompt as a template: the examples in front of each framed text.
few_shot = LabelWriter(
    PromptCausalLM(soft.lm.backbone, num_tokens=0), soft.tokenizer,
    dataclasses.replace(config, template=prefix + config.template), soft.label_names,
)  # fmt: skip
shared = len(few_shot.encode.head)  # <bos>, instruction, examples, the template's head


def label(writer, prefix_length=0):
    rows = [writer.encode(t) for t in texts]

    def reduce(logits):
        return keras.ops.argmax(logits, axis=-1)

    return next_token_outputs(writer.lm, rows, reduce, prefix_length)


ways = {
    "soft prompt": (soft, 0),
    "few-shot": (few_shot, 0),
    "few-shot, shared prefix read once": (few_shot, shared),
}
answers = {name: label(writer, length) for name, (writer, length) in ways.items()}  # traces every shape
# The shared prefix changes how the work is split, not the answer.
agree = float(np.mean(answers["few-shot"] == answers["few-shot, shared prefix read once"]))
seconds = {name: [] for name in ways}
for _ in range(args.repeats):
    for name, (writer, length) in ways.items():
        start = time.perf_counter()
        label(writer, length)
        seconds[name].append(time.perf_counter() - start)

print(f"\n{config.data if config.test_data is None else config.test_data}: {len(texts)} held-out texts, "
      f"Gemma 3 270M (float32), median of {args.repeats} interleaved runs")
print(f"few-shot answers with and without the shared prefix agree on {agree:.3f} of the texts")
print("| way | positions a text | seconds | texts/s | time / soft prompt's |\n|---|---|---|---|---|")
base = statistics.median(seconds["soft prompt"])
for name, (writer, _) in ways.items():
    positions = np.mean([len(writer.encode(t)) for t in texts]) + writer.lm.num_tokens
    median = statistics.median(seconds[name])
    print(f"| {name} | {positions:.1f} | {median:.2f} | {len(texts) / median:.1f} | {median / base:.2f}x |")
