"""The CPU a benchmark ran on, in one line for its table header.

    .venv/bin/python benchmarks/cpu_flags.py

A speed figure without its CPU cannot be compared with another. The same
Gemma generation benchmark gave KerasHub's generate 2.5 tokens/s in one
session and 42.7 in another: TensorFlow turns its oneDNN kernels on by
default only on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX, and
without them one product ran 17x slower (docs/gemma.md). Any benchmark run as a script can
`from cpu_flags import cpu_description` (the script's folder is on its path)
and print it above its table. The line names the model, the cores this
process may use, the instruction-set flags that decide which kernels run,
whether TensorFlow's oneDNN kernels are on, and the settings that cap or
change those kernels when set: `XLA_FLAGS`, `ONEDNN_MAX_CPU_ISA`,
`TF_ENABLE_ONEDNN_OPTS`.
"""

from __future__ import annotations

import os

FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
         "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
# TensorFlow's Linux default (`DefaultOneDnnPolicy` in tensorflow/core/util/port.cc):
# its oneDNN kernels are on only when the CPU has one of these.
ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
SETTINGS = ("XLA_FLAGS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")


def read_cpuinfo(path: str = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """The first processor's model name and flags; ("unknown", set()) where
    the file cannot be read (not Linux)."""
    model, flags = "unknown", set()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "unknown":
                    model = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, flags


def isa_summary(flags: set[str]) -> str:
    """The short name the docs use: "AVX2-only", or "AVX-512" with or
    without AVX512_BF16 and AMX."""
    if "avx512f" not in flags:
        return "AVX2-only" if "avx2" in flags else "no AVX2"
    bf16 = "with AVX512_BF16" if "avx512_bf16" in flags else "no AVX512_BF16"
    amx = "with AMX" if "amx_bf16" in flags else "no AMX"
    return f"AVX-512 {bf16}, {amx}"


def onednn_kernels(flags: set[str]) -> str:
    """Whether TensorFlow runs its oneDNN kernels in graph mode ("on"/"off"),
    as TensorFlow reports it when it can be asked, else by its rule."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # private; the rule below if it moves

        return "on" if _pywrap_util_port.IsMklEnabled() else "off"
    except (ImportError, AttributeError):
        setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").lower()
        if setting in ("0", "false", "1", "true"):
            return "on" if setting in ("1", "true") else "off"
        return "on" if flags & set(ONEDNN_DEFAULT_FLAGS) else "off"


def cpu_description() -> str:
    """One line: model, usable cores, ISA summary, each flag yes/no,
    TensorFlow's oneDNN kernels on/off, and the kernel settings that are set."""
    model, flags = read_cpuinfo()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    line = (f"CPU: {model}, {cores} cores, {isa_summary(flags)} ("
            + ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in FLAGS)
            + f"); TensorFlow oneDNN kernels {onednn_kernels(flags)}")
    settings = [f"{name}={os.environ[name]}" for name in SETTINGS if name in os.environ]
    return line + (f"; {', '.join(settings)}" if settings else "")


if __name__ == "__main__":
    print(cpu_description())
