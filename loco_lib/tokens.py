"""Where the subject sits in a tokenized prompt (paper Sec. 6 and 7: "the last subject token").

LocoEdit and neuron editing read the text encoder's output at the *last token of the subject*
("van gogh" in "a house in the style of van gogh"). The position is found from the tokenizer's
character offsets, so it is right for multi-token subjects, subjects at the end of the prompt or
followed by more words, and for both CLIP BPE and T5 sentencepiece tokenizers. Without a subject,
the position is the last prompt token before the first end-of-text (the authors' convention for
prompts that end with the subject).
"""
from __future__ import annotations

import re

from .errors import LocoError


def _prepare(pipe_or_tokenizer, prompt: str):
    """(tokenizer, text as the pipeline feeds it to the tokenizer, a function giving the ids and
    character offsets of the sequence the text encoder's output is indexed by)."""
    from .families.registry import PIPELINES

    tok = getattr(pipe_or_tokenizer, "tokenizer", pipe_or_tokenizer)
    family = next((f for f in PIPELINES if f.matches(pipe_or_tokenizer)), None)
    if family is None:
        return tok, prompt, lambda text: _encode_with_offsets(tok, text)
    # IF and PixArt lower-case; SANA prepends an instruction and keeps part of the sequence
    return tok, family.tokenizer_text(prompt), lambda text: family.token_offsets(pipe_or_tokenizer, tok, text)


def _encode_with_offsets(tok, text: str):
    enc = tok(text, truncation=True, max_length=tok.model_max_length, return_offsets_mapping=True)
    return enc["input_ids"], enc["offset_mapping"]


def last_token_index(pipe_or_tokenizer, prompt: str) -> int:
    """Position of the last prompt token before the first end-of-text token."""
    tok, text, encode = _prepare(pipe_or_tokenizer, prompt)
    if not text.strip():
        raise LocoError("empty prompt: there is no last token")
    ids, offsets = encode(text)
    content = [i for i, (a, b) in enumerate(offsets) if b > a and ids[i] not in tok.all_special_ids]
    if not content:
        raise LocoError(f"prompt {prompt!r} has no tokens")
    return content[-1]


def subject_token_index(pipe_or_tokenizer, prompt: str, subject: str | None = None) -> int:
    """Position (in the padded token sequence the text encoder sees) of the last token of ``subject``.

    The first whole-word, case-insensitive occurrence of ``subject`` in ``prompt`` is used. A
    subject that does not occur, or that is cut off by the 77-token limit, is a LocoError.
    """
    if subject is None:
        return last_token_index(pipe_or_tokenizer, prompt)
    return subject_tokens(pipe_or_tokenizer, prompt, subject)[-1]


def subject_tokens(pipe_or_tokenizer, prompt: str, subject: str) -> list[int]:
    """Positions of every token of ``subject`` in ``prompt`` (see :func:`subject_token_index`)."""
    tok, text, encode = _prepare(pipe_or_tokenizer, prompt)
    if not subject.strip():
        raise LocoError(f"empty subject for prompt {prompt!r}")
    match = re.search(r"(?<!\w)" + re.escape(subject.strip()) + r"(?!\w)", text, flags=re.IGNORECASE)
    if match is None:
        raise LocoError(f"subject {subject!r} does not occur in prompt {prompt!r}")
    start, end = match.span()
    ids, offsets = encode(text)
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start and ids[i] not in tok.all_special_ids]
    if not inside:
        raise LocoError(f"subject {subject!r} of prompt {prompt!r} falls beyond the tokenizer's {tok.model_max_length}-token limit")
    last = inside[-1]
    if offsets[last][1] < end and last == len(ids) - 1:
        raise LocoError(f"subject {subject!r} of prompt {prompt!r} is cut off by the {tok.model_max_length}-token limit")
    return inside


def edit_positions(pipe, prompt: str, subject: str | None = None) -> list[int]:
    """The last token of ``subject`` (None: the last prompt token) in each text encoder's part of the
    sequence the denoiser reads (:meth:`~loco_lib.families.base.PipelineFamily.text_parts`): one
    position for most families; SD3's CLIP part and T5 part each hold the subject."""
    from .families.registry import pipeline_family

    if subject is not None:
        positions = subject_tokens(pipe, prompt, subject)
    else:
        tok, text, encode = _prepare(pipe, prompt)
        if not text.strip():
            raise LocoError("empty prompt: there is no last token")
        ids, offsets = encode(text)
        positions = [i for i, (a, b) in enumerate(offsets) if b > a and ids[i] not in tok.all_special_ids]
        if not positions:
            raise LocoError(f"prompt {prompt!r} has no tokens")
    starts = pipeline_family(pipe).text_parts(pipe)
    ends = starts[1:] + [float("inf")]
    return [inside[-1] for a, b in zip(starts, ends) if (inside := [p for p in positions if a <= p < b])]


def encoder_positions(pipe_or_tokenizer, positions) -> list[int]:
    """Token ``positions`` of an encoded prompt (what the denoiser reads) as positions in the
    sequence the text encoder runs over: the same for every family but SANA, whose pipeline
    prepends an instruction and keeps only the end of the encoder's output."""
    from .families.registry import PIPELINES

    family = next((f for f in PIPELINES if f.matches(pipe_or_tokenizer)), None)
    return [int(p) for p in positions] if family is None else family.encoder_positions(pipe_or_tokenizer, positions)


def subject_token_indices(pipe, prompts, subjects=None) -> list[int]:
    """:func:`subject_token_index` for many prompts (``subjects``: one per prompt, one for all, or None)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if subjects is None or isinstance(subjects, str):
        subjects = [subjects] * len(prompts)
    if len(subjects) != len(prompts):
        raise LocoError(f"{len(subjects)} subjects given for {len(prompts)} prompts")
    return [subject_token_index(pipe, p, s) for p, s in zip(prompts, subjects)]


TOKEN_SETS = ("subject", "after", "subject+after", "all")


def token_mask(pipe, prompts, subject: str, which: str, length: int):
    """A boolean ``[n_prompts, length]`` mask of token positions (paper App. M's token swap):
    ``"subject"`` (the subject's tokens), ``"after"`` (every position after the subject: the rest of
    the prompt, end-of-text and padding), ``"subject+after"``, or ``"all"``."""
    import torch

    if which not in TOKEN_SETS:
        raise LocoError(f"unknown token set {which!r}: use one of {', '.join(TOKEN_SETS)}")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    mask = torch.zeros(len(prompts), length, dtype=torch.bool)
    for i, p in enumerate(prompts):
        if which == "all":
            mask[i] = True
            continue
        inside = subject_tokens(pipe, p, subject)
        if which in ("subject", "subject+after"):
            mask[i, inside[0]: inside[-1] + 1] = True
        if which in ("after", "subject+after"):
            mask[i, inside[-1] + 1:] = True
    return mask
