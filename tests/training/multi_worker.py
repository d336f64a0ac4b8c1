"""One worker of a two-worker `MultiWorkerMirroredStrategy` run over loopback
(run by test_distribution.py as two processes): trains the tiny prompt-tuned
classifier of mirrored_two_cpus.py for one epoch, resumes a fresh model from
the chief's checkpoint for a second, and prints the prompt as JSON.

Usage: python multi_worker.py WORKER_INDEX PORT0 PORT1 CHECKPOINT_DIR
"""

import json
import os
import sys

index, ports, checkpoint_dir = int(sys.argv[1]), sys.argv[2:4], sys.argv[4]
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"localhost:{port}" for port in ports]},
    "task": {"type": "worker", "index": index},
})  # fmt: skip

import keras  # noqa: E402

from tf_prompt_tuning.training.distribution import make_strategy  # noqa: E402

# Before anything touches a device: collective ops are configured at startup.
strategy = make_strategy("multi-worker")
sys.path.insert(0, os.path.dirname(__file__))
from mirrored_two_cpus import run  # noqa: E402

# Epoch 1, then a fresh model resumed from the chief's checkpoint for epoch 2.
run(strategy, checkpoint_dir=checkpoint_dir, epochs=1)
model, history = run(strategy, checkpoint_dir=checkpoint_dir, epochs=2, start_from=7.0)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "prompt": [keras.ops.convert_to_numpy(v).tolist() for v in model.trainable_variables],
    "steps": len(history.step_losses),
}))
