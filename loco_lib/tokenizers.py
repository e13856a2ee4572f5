"""Tokenizers built offline, for the tiny twins.

The real checkpoints bring their own tokenizers from the hub. The tiny twins must run with no
network, yet tokenize exactly like the real models so that subject-token positions, padding and
end-of-text handling are tested on the same ids a user sees in Colab:

* :func:`clip_tokenizer` rebuilds OpenAI's CLIP byte-level BPE tokenizer (49,408 ids, the one used
  by SD-1.x/2.x/SD-XL) from the merges list that ``open_clip_torch`` ships (MIT). Only the data
  file is read; the package is never imported (it would need torchvision).
* :func:`t5_style_tokenizer` builds a small SentencePiece-unigram tokenizer in the T5 format
  (``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, ``▁`` word prefixes, 100 sentinel ids) whose pieces
  are taken from the same CLIP vocabulary. No package ships T5's real sentencepiece model.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
from functools import lru_cache
from pathlib import Path

from .errors import LocoError

_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
# CLIP keeps the first 49152 - 256 - 2 merges of the file (the vocabulary is then 49,408 ids).
_N_MERGES = 49152 - 256 - 2


def _bpe_path() -> Path:
    env = os.environ.get("LOCO_CLIP_BPE")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise LocoError(
            "the offline CLIP vocabulary is missing: run `pip install --no-deps open_clip_torch==3.3.0` "
            "(or set LOCO_CLIP_BPE to a bpe_simple_vocab_16e6.txt.gz file)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / _BPE_FILE


def _byte_alphabet() -> list[str]:
    """The printable stand-in character for each of the 256 bytes, in CLIP's (GPT-2's) order.

    Printable latin-1 bytes map to themselves; the others are moved to code points from 256 up, in
    byte order. The vocabulary lists these 256 symbols in the order: printable ones first (by byte
    value), then the moved ones.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    keep = set(printable)
    moved = [b for b in range(256) if b not in keep]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(moved))]


@lru_cache(maxsize=1)
def _clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    with gzip.open(_bpe_path(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = lines[1 : 1 + _N_MERGES]
    symbols = _byte_alphabet()
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += [m.replace(" ", "") for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer(pad_token: str = "<|endoftext|>", model_max_length: int = 77):
    """The real CLIP tokenizer, built offline.

    ``pad_token`` is ``<|endoftext|>`` for SD-1.x and the first SD-XL encoder, ``"!"`` for SD-2.x and
    SD-XL's second encoder (the OpenCLIP convention).
    """
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab_and_merges()
    tok = CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split(" ")) for m in merges], pad_token=pad_token)
    tok.model_max_length = model_max_length
    if len(tok) != 49408:
        raise LocoError(f"offline CLIP tokenizer has {len(tok)} ids, expected 49408")
    return tok


def _word_pieces(n_pieces: int) -> list[tuple[str, float]]:
    """The unigram pieces of loco's offline T5- and Gemma-style tokenizers, after their special
    tokens: the ``n_pieces`` most frequent whole words of the CLIP vocabulary as ``▁word`` (and the
    first 1000 capitalised), then single printable characters, alone and as ``▁c``."""
    vocab, _ = _clip_vocab_and_merges()
    words: list[str] = []
    for tok in vocab:  # dict order is vocabulary (merge) order: frequent words first
        if tok.endswith("</w>"):
            w = tok[:-4]
            if w.isascii() and w.isalnum() and len(w) > 1:
                words.append(w)
        if len(words) >= n_pieces:
            break
    chars = [chr(c) for c in range(ord("!"), ord("~") + 1)]
    pieces = [("▁" + w, -3.0 - i / len(words)) for i, w in enumerate(words)]
    pieces += [("▁" + w.capitalize(), -4.0 - i / len(words)) for i, w in enumerate(words[:1000]) if w.isalpha()]
    return pieces + [(c, -10.0) for c in chars] + [("▁" + c, -9.0) for c in chars]


def t5_style_tokenizer(n_pieces: int = 4000, model_max_length: int = 77):
    """A T5-format unigram tokenizer (ids 0/1/2 = pad/eos/unk, 100 sentinels) built offline.

    Pieces are the ``n_pieces`` most frequent whole words of the CLIP vocabulary (as ``▁word``) plus
    single characters, so any English prompt tokenizes, multi-token words included.
    """
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + _word_pieces(n_pieces)
    tok = T5Tokenizer(vocab=pieces, extra_ids=100)
    tok.model_max_length = model_max_length
    return tok


def gemma_style_tokenizer(n_pieces: int = 4000, model_max_length: int = 512):
    """A Gemma-format tokenizer (ids 0/1/2/3 = pad/eos/bos/unk; a first ``<bos>`` added, no end
    token; right padding) built offline, for SANA's twin: a unigram model over the ``n_pieces`` most
    frequent whole words of the CLIP vocabulary (as ``▁word``), single characters and the newline,
    so that SANA's multi-line instruction and any English prompt tokenize, with character offsets."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = [("<pad>", 0.0), ("<eos>", 0.0), ("<bos>", 0.0), ("<unk>", 0.0), ("▁", -2.0), ("\n", -2.0)]
    core = Tokenizer(models.Unigram(pieces + _word_pieces(n_pieces), unk_id=3))
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                  unk_token="<unk>", model_max_length=model_max_length, padding_side="right")
    return tok
