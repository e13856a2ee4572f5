"""The last subject token (Sec. 6, 7): multi-token subjects, at the end or followed by more words."""
import pytest

from loco_lib import load
from loco_lib.errors import LocoError
from loco_lib.tokens import last_token_index, subject_token_index, subject_token_indices


@pytest.fixture(scope="module")
def sd15():
    return load("tiny-sd15", progress=False)


@pytest.fixture(scope="module")
def tiny_if():
    return load("tiny-if", progress=False)


def _token(pipe, prompt, i):
    text = prompt.lower() if type(pipe).__name__ == "IFPipeline" else prompt
    return pipe.tokenizer.convert_ids_to_tokens(pipe.tokenizer(text).input_ids[i])


# CLIP ids: <|startoftext|> a house in the style of van gogh <|endoftext|> -> "gogh</w>" at position 8
CASES_CLIP = [
    ("a house in the style of van gogh", "van gogh", 8, "gogh</w>"),  # multi-token, at the end
    ("van gogh painted a house", "Van Gogh", 2, "gogh</w>"),  # at the start, followed by words
    ("a photo of r2d2 on a beach", "r2d2", 7, "2</w>"),  # one word, four tokens: r 2 d 2
    ("The President of the United States giving a speech", "the president of the united states", 6, "states</w>"),
    ("a catalog of cats, and a cat", "cat", 8, "cat</w>"),  # whole word only: not "catalog" or "cats"
]


@pytest.mark.parametrize("prompt, subject, pos, tok", CASES_CLIP)
def test_clip_positions(sd15, prompt, subject, pos, tok):
    i = subject_token_index(sd15, prompt, subject)
    assert i == pos and _token(sd15, prompt, i) == tok


def test_sdxl_second_tokenizer_agrees():
    pipe = load("tiny-sdxl", progress=False)
    for prompt, subject, pos, _ in CASES_CLIP:
        ids2 = pipe.tokenizer_2(prompt).input_ids
        assert subject_token_index(pipe, prompt, subject) == pos
        assert pipe.tokenizer_2.convert_ids_to_tokens(ids2[pos]) == pipe.tokenizer.convert_ids_to_tokens(pipe.tokenizer(prompt).input_ids[pos])


def test_t5_positions(tiny_if):
    # T5 has no start token and the IF pipeline lower-cases: '▁van', 'g', 'o', 'g', 'h' style pieces
    i = subject_token_index(tiny_if, "A house in the style of Van Gogh", "van gogh")
    ids = tiny_if.tokenizer("a house in the style of van gogh").input_ids
    assert i == len(ids) - 2  # the last piece before </s>
    j = subject_token_index(tiny_if, "Van Gogh painted a house", "van gogh")
    pieces = tiny_if.tokenizer.convert_ids_to_tokens(tiny_if.tokenizer("van gogh painted a house").input_ids)
    assert pieces[j + 1] == "▁painted" and "".join(p.strip("▁") for p in pieces[: j + 1]) == "vangogh"


def test_no_subject_means_last_token_before_end_of_text(sd15, tiny_if):
    assert last_token_index(sd15, "a photo of a cat") == 5
    assert subject_token_index(sd15, "a photo of a cat", None) == 5
    ids = tiny_if.tokenizer("a photo of a cat").input_ids
    assert last_token_index(tiny_if, "a photo of a cat") == len(ids) - 2


@pytest.mark.parametrize("prompt, subject, needle", [
    ("a house in the style of monet", "van gogh", "does not occur"),
    ("a catalog", "cat", "does not occur"),
    ("a house", "  ", "empty subject"),
])
def test_missing_subject_is_a_clear_error(sd15, prompt, subject, needle):
    with pytest.raises(LocoError, match=needle):
        subject_token_index(sd15, prompt, subject)


def test_subject_beyond_the_token_limit(sd15):
    prompt = "a " * 80 + "in the style of van gogh"
    with pytest.raises(LocoError, match="limit"):
        subject_token_index(sd15, prompt, "van gogh")


def test_many(sd15):
    assert subject_token_indices(sd15, ["a house in the style of van gogh", "a photo of r2d2 on a beach"], ["van gogh", "r2d2"]) == [8, 7]
    with pytest.raises(LocoError, match="2 subjects given for 1 prompts"):
        subject_token_indices(sd15, ["a cat"], ["a", "b"])
