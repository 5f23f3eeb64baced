"""Build the embedded tiny model's tokenizer: the real CLIP BPE, offline.

The tiny model's text encoder is trained from scratch, but its tokenizer must be CLIP's own so
that any prompt splits into the same familiar ids (and a later swap to a real CLIP text tower
needs no retokenising). The BPE merges ship inside the ``open-clip-torch`` wheel as
``open_clip/bpe_simple_vocab_16e6.txt.gz``; we read that file directly (importing ``open_clip``
may fail) and rebuild vocab.json/merges.txt exactly as OpenAI's ``simple_tokenizer`` does.

Usage: python scripts/build_tokenizer.py [OUT_DIR]
       (default: src/flipsketch/models/weights/tiny/tokenizer)
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import sys
from pathlib import Path

REFERENCE = ("a fish moving to the right",
             [49406, 320, 2759, 3584, 531, 518, 1155, 49407])


def find_bpe() -> Path:
    """The merges file inside the installed open_clip package, located without importing it."""
    spec = importlib.util.find_spec("open_clip")
    roots = list(spec.submodule_search_locations or []) if spec else []
    roots += [str(Path(p) / "open_clip") for p in sys.path if p]
    for root in roots:
        path = Path(root) / "bpe_simple_vocab_16e6.txt.gz"
        if path.is_file():
            return path
    raise SystemExit("open_clip/bpe_simple_vocab_16e6.txt.gz not found; "
                     "pip install open-clip-torch (the file is all that is needed)")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character map."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def build(out_dir: Path) -> None:
    lines = gzip.open(find_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408, len(vocab)

    out_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
    }
    files = {
        "vocab.json": json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges),
        "tokenizer_config.json": json.dumps(config, indent=2) + "\n",
        "special_tokens_map.json": json.dumps(
            {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")},
            indent=2) + "\n",
    }
    for name, text in files.items():  # atomic: a reader never sees half a vocabulary
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out_dir / name)

    from transformers import CLIPTokenizer

    ids = CLIPTokenizer.from_pretrained(out_dir)(REFERENCE[0]).input_ids
    if ids != REFERENCE[1]:
        raise SystemExit(f"tokenizer check failed: {ids} != {REFERENCE[1]}")
    print(f"wrote {out_dir} ({len(vocab)} tokens, {len(merges)} merges); reference ids match")


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[1] / "src/flipsketch/models/weights/tiny/tokenizer"
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
