"""Does bfloat16 arithmetic pay on this CPU? One matrix product, float32
against bfloat16, in TensorFlow's graph mode (oneDNN's kernels only where TensorFlow turns them on: see the CPU line) and under XLA.

    .venv/bin/python benchmarks/bf16_matmul.py [--shape 512 640 2048] [--repeats 50]

The prompt step and generation are made of products like this one (Gemma
3 270M: 640 wide, 2048 in the MLP). bfloat16 halves the bytes moved, but
only units that multiply bfloat16 natively (AMX-BF16, AVX512_BF16) make
the arithmetic faster; the table starts with the CPU flags that say
whether this machine has them. All rows are measured in one run,
interleaved, so their ratios hold on a noisy machine.
"""

from __future__ import annotations

import argparse
import time

import tensorflow as tf
from cpu_flags import cpu_description

FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 640, 2048], metavar=("M", "K", "N"))
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    m, k, n = args.shape
    print(cpu_description())
    cases = {}
    for jit in (False, True):
        for dtype in (tf.float32, tf.bfloat16):
            a = tf.cast(tf.random.normal([m, k]), dtype)
            b = tf.cast(tf.random.normal([k, n]), dtype)
            fn = tf.function(lambda a, b: tf.matmul(a, b), jit_compile=jit)
            fn(a, b).numpy()  # trace and compile outside the timing
            cases[("XLA" if jit else "graph", dtype.name)] = (fn, a, b)
    best = {key: float("inf") for key in cases}
    for _ in range(args.rounds):  # interleaved
        for key, (fn, a, b) in cases.items():
            start = time.perf_counter()
            for _ in range(args.repeats):
                out = fn(a, b)
            out.numpy()
            best[key] = min(best[key], (time.perf_counter() - start) / args.repeats)
    print(f"\n| mode | dtype | ms per product ({m}x{k} @ {k}x{n}) | GFLOP/s | bfloat16 speed-up |\n|---|---|---|---|---|")
    for (mode, dtype), seconds in best.items():
        speedup = best[(mode, "float32")] / seconds
        print(f"| {mode} | {dtype} | {1e3 * seconds:.2f} | {2 * m * k * n / seconds / 1e9:.0f} | {speedup:.2f}x |")


if __name__ == "__main__":
    main()
