"""Offline tokenizers: OpenAI CLIP ids, and the T5-format tokenizer of the IF twin."""
from __future__ import annotations

import pytest

from loco_lib.tokenizers import clip_tokenizer, t5_style_tokenizer

BOS, EOS = 49406, 49407


@pytest.fixture(scope="module")
def clip():
    return clip_tokenizer()


@pytest.fixture(scope="module")
def clip_bang():
    return clip_tokenizer(pad_token="!")


@pytest.fixture(scope="module")
def t5():
    return t5_style_tokenizer()


# ids of the real OpenAI CLIP tokenizer (openai/clip-vit-large-patch14), as SD-1.x sees them
@pytest.mark.parametrize(
    "text, ids",
    [
        ("a photo of a cat", [BOS, 320, 1125, 539, 320, 2368, EOS]),
        ("a photo of a dog", [BOS, 320, 1125, 539, 320, 1929, EOS]),
        ("the painting, in the style of", [BOS, 518, 3086, 267, 530, 518, 1844, 539, EOS]),
        ("", [BOS, EOS]),
    ],
)
def test_clip_ids(clip, text, ids):
    assert clip(text).input_ids == ids


def test_clip_lowercases_and_collapses_whitespace(clip):
    assert clip("A  Photo Of A CAT").input_ids == clip("a photo of a cat").input_ids


def test_clip_vocabulary(clip):
    assert len(clip) == 49408
    assert clip.bos_token_id == BOS and clip.eos_token_id == EOS
    assert clip.convert_ids_to_tokens([0, 256, 320, BOS, EOS]) == ["!", "!</w>", "a</w>", "<|startoftext|>", "<|endoftext|>"]
    assert clip.model_max_length == 77


def test_clip_default_pad_is_end_of_text(clip):
    assert clip.pad_token_id == EOS
    ids = clip("a cat", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77
    assert ids[:4] == [BOS, 320, 2368, EOS] and set(ids[4:]) == {EOS}


def test_clip_bang_pad_is_zero(clip_bang):
    assert len(clip_bang) == 49408
    assert clip_bang.pad_token_id == 0
    ids = clip_bang("a photo of a cat", padding="max_length", max_length=77).input_ids
    assert ids[:7] == [BOS, 320, 1125, 539, 320, 2368, EOS]
    assert len(ids) == 77 and set(ids[7:]) == {0}


def test_clip_truncates_to_77(clip):
    ids = clip("cat " * 200, truncation=True, max_length=clip.model_max_length).input_ids
    assert len(ids) == 77
    assert ids[0] == BOS and ids[-1] == EOS and set(ids[1:-1]) == {2368}


def test_t5_special_ids(t5):
    assert t5.pad_token_id == 0
    assert t5.eos_token_id == 1
    assert t5.unk_token_id == 2
    assert t5.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    assert t5.model_max_length == 77
    # 100 T5 sentinel ids at the end of the vocabulary
    sentinels = t5.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(100)])
    assert sorted(sentinels) == list(range(len(t5) - 100, len(t5)))


@pytest.mark.parametrize(
    "text",
    ["a photo of a cat", "A painting of a dog in the style of Van Gogh", "xqzw 1920!", "Snoopy, a photo"],
)
def test_t5_ends_with_eos_no_unknowns(t5, text):
    ids = t5(text).input_ids
    assert ids[-1] == 1
    assert 1 not in ids[:-1] and 0 not in ids and 2 not in ids
    assert t5.decode(ids, skip_special_tokens=True) == text


def test_t5_word_pieces_and_padding(t5):
    ids = t5("a photo of a cat", padding="max_length", max_length=12).input_ids
    assert len(ids) == 12
    end = ids.index(1)
    assert set(ids[end + 1 :]) == {0}
    assert "▁cat" in t5.convert_ids_to_tokens(ids[:end])
    # different words get different ids
    assert t5("a cat").input_ids != t5("a dog").input_ids
