import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_prompt_tuning.training.distribution import make_strategy

SCRIPT = pathlib.Path(__file__).parent / "mirrored_two_cpus.py"


def _run_script(*args, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_mirrored_on_two_cpus_matches_one_device(tmp_path):
    result = _run_script(str(tmp_path / "checkpoints"))
    assert result["replicas"] == 2
    assert result["model_strategy"] == "MirroredStrategy"
    assert result["prompt_moved"] > 1e-2
    # Same global batches (one split unevenly, 4 + 3) and seed: the same prompt
    # and head, up to the all-reduce's summation order (measured: 6e-8, with
    # XLA 1.5e-7; test_mirrored_matches_one_device_step_by_step has MiniLM).
    assert result["mirrored_vs_single"] < 1e-6
    assert result["loss_diff"] < 1e-6
    assert result["mirrored_xla_vs_single"] < 1e-6
    # Stopped after epoch 1; a fresh model resumed for epoch 2 under the strategy.
    assert result["resumed_vs_single"] < 1e-6
    assert result["resumed_steps"] == 8
    assert result["outside_error"].startswith(
        "Under a MirroredStrategy, the variables ['prompt/prompt', 'head/kernel', 'head/bias'] "
        "must be created in its scope, and were not."
    )
    assert re.match(r"Under a MirroredStrategy, the optimizer 'adam(_\d+)?' must be created", result["optimizer_error"])
    # Deep prompts started from the hidden states in the strategy's scope: as on one device.
    assert result["deep_from_states_vs_single"] < 1e-6
    assert result["deep_from_states_vs_uniform"] > 1e-2


# Max abs differences from one device after 3 steps at lr 0.02, measured on
# 2 logical CPUs (prompt / loss):
#   tiny    SGD  4+4 7e-9 / 6e-8,    4+3 1.5e-8 / 6e-8
#           Adam 4+4 6e-8 / 6e-8,    4+3 3e-8 / 6e-8
#   MiniLM  SGD  4+4 3e-8 / 6e-8,    4+3 3e-8 / 6e-8
#           Adam 4+4 1.3e-6 / 1.2e-7, 4+3 1.4e-6 / 2.4e-7
# Adam divides by sqrt(v) + 1e-7: where a prompt gradient is near zero, the
# rounding of the differently ordered all-reduce moves the update by up to
# lr * |dg| / 1e-7. On MiniLM other data, seeds and prompt lengths gave
# 0.9e-6 to 1.1e-5 (6e-8 with epsilon=1e-3); the losses stay within 2.4e-7.
PROMPT_TOLERANCE = {
    ("tiny", "sgd"): 1e-6, ("tiny", "adam"): 1e-6, ("minilm", "sgd"): 1e-6, ("minilm", "adam"): 3e-5,
}


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["tiny", "minilm"])
def test_mirrored_matches_one_device_step_by_step(backbone):
    rows = _run_script("--compare", backbone, timeout=1800)
    assert {(row["optimizer"], row["split"]) for row in rows} == {
        ("sgd", "4+4"), ("sgd", "4+3"), ("adam", "4+4"), ("adam", "4+3")
    }
    for row in rows:
        assert row["steps"] == 3, row
        assert row["prompt_moved"] > 1e-4, row
        assert row["prompt_diff"] < PROMPT_TOLERANCE[backbone, row["optimizer"]], row
        assert row["loss_diff"] < 1e-6, row


def test_default_and_mirrored_strategies():
    assert make_strategy() is tf.distribute.get_strategy()
    assert make_strategy("mirrored").num_replicas_in_sync >= 1


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        make_strategy("multi-worker")


def test_unknown_strategy():
    with pytest.raises(ValueError, match=r"`strategy` must be one of .*Received: strategy='horovod'"):
        make_strategy("horovod")


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_over_loopback_match_one_device(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    from mirrored_two_cpus import LOSS, build, dataset

    from tf_prompt_tuning import train

    single = build()
    train(single, dataset, loss=LOSS, optimizer=keras.optimizers.Adam(0.02), epochs=2, verbose=0)
    expected = [keras.ops.convert_to_numpy(v) for v in single.trainable_variables]

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    ports = [str(p) for p in _free_ports(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT.parent / "multi_worker.py"), str(i), *ports, str(tmp_path / "ckpt")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["replicas"] == 2
        # Resumed for epoch 2 from the chief's checkpoint: 4 + 4 steps in all.
        assert result["steps"] == 8
        for actual, want in zip(result["prompt"], expected):
            np.testing.assert_allclose(actual, want, rtol=0, atol=1e-6)
    # Only the chief's checkpoints are kept; the other worker's scratch copy is gone.
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt"))
    assert [p.name for p in (tmp_path / "ckpt").iterdir() if p.name.startswith(".")] == []
