"""A table of `generate-labels` runs: each method's accuracy per run, and
mean and spread over the runs of one setting (seeds).

    .venv/bin/python benchmarks/label_generation_table.py benchmarks/results/label_generation/*/results.json

Runs of one setting are those whose configs differ only in `seed` and
`output_dir` (a setting a run's version did not have counts as its default;
for zero- and few-shot, only the settings their scores depend on count,
not the soft prompt's training). A data set other than the movie reviews
is named in brackets. Each row: the method, the metric its run scored with
("generation": the first generated word; "first_token": the first token
read as a word), the runs' accuracies, their mean and sample standard
deviation, invalid outputs, trained steps kept (best on dev), and seconds.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
from collections import defaultdict

from tf_prompt_tuning.app.label_generation_job import LabelGenerationConfig

VARYING = ("seed", "output_dir")
# What the zero- and few-shot scores depend on; the soft prompt's training settings do not count for them.
TEXT_PROMPT_SETTINGS = (
    "backbone", "data", "test_data", "score", "eval_size", "shots", "split_seed", "instruction", "template",
    "verbalizer", "max_text_tokens",
)  # fmt: skip


def _setting(config: dict, method: str) -> str:
    """What a run was, in the words that tell runs apart."""
    data = "" if config.get("data", "movie_reviews") == "movie_reviews" else f"[{config['data']}] "
    if method != "soft_prompt":
        return data + (f"{method} ({config['shots']} shots)" if method == "few_shot" else method)
    deep = "deep " if config.get("deep") else ""
    parts = [f"{config['placement']} {deep}soft prompt", f"{config['num_tokens']} tokens", f"init {config['initializer']}",
             f"lr {config['learning_rate']}", f"{config['steps']} steps", f"{config['train_size']} train"]
    if config.get("targets", "labels") != "labels":
        parts.append(f"targets {config['targets']}")
    if config.get("loss", "vocabulary") != "vocabulary":
        parts.append(f"loss {config['loss']}")
    if config.get("optimizer", "adam") != "adam":
        parts.append(config["optimizer"])
    if config.get("warmup_steps", 0):
        parts.append(f"warmup {config['warmup_steps']}")
    return data + ", ".join(parts)


def main(paths: list[str]):
    groups = defaultdict(list)
    for path in paths:
        with open(path) as f:
            results = json.load(f)
        # Settings added after a run was made had their defaults then.
        config = {**dataclasses.asdict(LabelGenerationConfig()), **results["config"]}
        for method, result in results["methods"].items():
            metric = results.get("metric", "generation")
            key_config = {
                k: v for k, v in config.items()
                if k not in VARYING and (method == "soft_prompt" or k in TEXT_PROMPT_SETTINGS)
            }  # fmt: skip
            groups[(_setting(config, method), metric, json.dumps(key_config, sort_keys=True))].append(
                (config["seed"], result)
            )
            if method == "soft_prompt" and "first_token_accuracy" in result and metric == "generation":
                first = dict(result, accuracy=result["first_token_accuracy"], invalid=result.get("first_token_invalid"))
                groups[(_setting(config, method), "first_token", json.dumps(key_config, sort_keys=True))].append(
                    (config["seed"], first)
                )
    print("| setting | metric | seeds | accuracy per seed | mean | sd | invalid | best step | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (setting, metric, _), runs in sorted(groups.items()):
        runs.sort(key=lambda run: run[0])
        accuracies = [r["accuracy"] for _, r in runs]
        sd = statistics.stdev(accuracies) if len(accuracies) > 1 else float("nan")
        invalid = [r.get("invalid") for _, r in runs if r.get("invalid") is not None]
        best = [max(r["dev_curve"], key=lambda point: point[1])[0] for _, r in runs if r.get("dev_curve")]
        seeds = ", ".join(str(seed) for seed, _ in runs)
        each = ", ".join(f"{a:.3f}" for a in accuracies)
        seconds = ", ".join(f"{r['seconds']:.0f}" for _, r in runs)
        print(
            f"| {setting} | {metric} | {seeds} | {each} | {statistics.mean(accuracies):.3f} | {sd:.3f} | "
            f"{f'{statistics.mean(invalid):.3f}' if invalid else '-'} | {', '.join(map(str, best)) or '-'} | {seconds} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
