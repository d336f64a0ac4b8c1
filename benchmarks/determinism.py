"""What TensorFlow's op determinism costs the main job, and whether runs repeat.

    cd benchmarks && ../.venv/bin/python determinism.py [--train-size 2048] [--repeats 2]

`tf-prompt-tuning train` turns on `tf.config.experimental.enable_op_determinism`
(it cannot be turned off in a process once on). This runs the job's own
`run_training` (prompt + head on the real MiniLM, the README's settings,
no head-only baseline, `--train-size` sentences) in fresh subprocesses,
alternately with and without it, and prints each run's training time and
whether the results (test accuracy, loss and every step's loss) are
identical to the first run's of the same mode and across modes.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

RUN = """
import json, sys
import tensorflow as tf
if sys.argv[1] == "on":
    tf.config.experimental.enable_op_determinism()
from tf_prompt_tuning.app.classification_job import TrainConfig, run_training
config = TrainConfig(train_size=int(sys.argv[2]), baseline=False, eval_every=10**6, output_dir=sys.argv[3])
metrics = run_training(config, print_fn=lambda *a: None)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(__file__))
    from cpu_flags import cpu_description

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for mode in ("on", "off"):
                out = os.path.join(tmp, f"{mode}{repeat}")
                subprocess.run([sys.executable, "-c", RUN, mode, str(args.train_size), out], check=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=subprocess.DEVNULL)
                with open(os.path.join(out, "metrics.json")) as f:
                    (result,) = json.load(f)["results"].values()
                runs.append((mode, result))
                print(f"run {len(runs)}: determinism {mode}, {result['train_seconds']:.1f} s", file=sys.stderr, flush=True)

    def key(result):
        return (result["test_accuracy"], result["test_loss"], result["epoch_losses"])

    print(cpu_description())
    print(f"MiniLM prompt + head, {args.train_size} training sentences, batch 32, 1 epoch; "
          f"{args.repeats} runs per mode, alternating, each in a fresh process\n")
    print("| op determinism | train s (each run) | median s | test accuracy | identical across its runs |\n|---|---|---|---|---|")
    medians = {}
    for mode in ("on", "off"):
        results = [r for m, r in runs if m == mode]
        seconds = [r["train_seconds"] for r in results]
        medians[mode] = statistics.median(seconds)
        same = all(key(r) == key(results[0]) for r in results)
        print(f"| {mode} | {', '.join(f'{s:.1f}' for s in seconds)} | {medians[mode]:.1f} "
              f"| {results[0]['test_accuracy']:.4f} | {same} |")
    on, off = ([r for m, r in runs if m == mode][0] for mode in ("on", "off"))
    print(f"\non / off time: {medians['on'] / medians['off']:.3f}; on == off results: {key(on) == key(off)}")


if __name__ == "__main__":
    main()
