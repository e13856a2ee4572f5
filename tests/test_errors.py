"""Bad input raises LocoError with a readable one-line message (and nothing else happens)."""
from __future__ import annotations

import pytest
import torch

from loco_lib import models
from loco_lib.errors import LocoError
from loco_lib.generate import generate
from loco_lib.layers import parse_layers
from loco_lib.text import encode

from conftest import TWINS
N_LAYERS = {"tiny-sd15": 16, "tiny-sd21": 16, "tiny-sdxl": 70, "tiny-if": 22}


@pytest.fixture(scope="module")
def sd15():
    return models.load("tiny-sd15", progress=False)


def gen(pipe, prompts="a photo of a cat", **kw):
    kw.setdefault("steps", 1)
    return generate(pipe, prompts, output_type="np", progress=False, **kw)


def loco_error(fn, *args, **kw) -> str:
    """Call ``fn``; it must raise LocoError with a readable one-line message. Returns the message."""
    with pytest.raises(LocoError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert len(msg) >= 15 and "\n" not in msg, msg
    assert "Traceback" not in msg
    return msg


def test_loco_error_is_a_value_error():
    assert issubclass(LocoError, ValueError)


# prompts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt", ["", "   ", ["a cat", ""], ["a cat", " \t "], []])
def test_empty_prompt(twin, prompt):
    name, pipe = twin
    msg = loco_error(gen, pipe, prompt)
    assert "prompt" in msg.lower()


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt_in_encode(sd15, prompt):
    loco_error(encode, sd15, prompt)


@pytest.mark.parametrize("alt", ["", "  "])
def test_empty_alt_prompt(sd15, alt):
    msg = loco_error(gen, sd15, alt_prompts=alt, layers=[3])
    assert "prompt" in msg.lower()


def test_mismatched_alt_prompts(sd15):
    msg = loco_error(gen, sd15, ["a cat", "a dog", "a car"], alt_prompts=["x", "y"], layers=[3])
    assert "2" in msg and "3" in msg


# steps -----------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [0, -3])
def test_bad_steps(twin, steps):
    name, pipe = twin
    msg = loco_error(gen, pipe, steps=steps)
    assert "steps" in msg and str(steps) in msg


# layers ----------------------------------------------------------------------------------

def test_layer_index_out_of_range(twin):
    name, pipe = twin
    n = N_LAYERS[name]
    for bad in (n, -1, [2, n], f"{n - 1}-{n}", str(n)):
        msg = loco_error(gen, pipe, alt_prompts="a dog", layers=bad)
        assert "out of range" in msg and str(n) in msg
    # the last valid index is accepted
    assert len(gen(pipe, alt_prompts="a dog", layers=n - 1)) == 1


def test_layer_index_16_and_minus_one_on_sd15(sd15):
    msg = loco_error(gen, sd15, alt_prompts="a dog", layers=16)
    assert "16" in msg and "0..15" in msg
    msg = loco_error(gen, sd15, alt_prompts="a dog", layers=-1)
    assert "-1" in msg


def test_per_sample_layer_set_out_of_range(sd15):
    loco_error(gen, sd15, ["a cat", "a car"], alt_prompts=["a dog", "a boat"], layers=[[3, 4], [16]])


def test_wrong_number_of_per_sample_layer_sets(sd15):
    msg = loco_error(gen, sd15, ["a cat", "a car"], alt_prompts=["a dog", "a boat"], layers=[[3], [4], [5]])
    assert "3" in msg and "2" in msg


def test_unreadable_layer_spec(sd15):
    msg = loco_error(gen, sd15, alt_prompts="a dog", layers="eight")
    assert "eight" in msg


@pytest.mark.parametrize("layers", [[3], "all", 0, "4-6"])
def test_layers_without_alt_prompts(sd15, layers):
    msg = loco_error(gen, sd15, layers=layers)
    assert "alt" in msg.lower()


def test_parse_layers_errors_directly():
    assert "out of range" in loco_error(parse_layers, 16, 16)
    assert "out of range" in loco_error(parse_layers, -1, 16)
    assert "out of range" in loco_error(parse_layers, [0, 70], 70)


def test_batch_size_must_be_positive(sd15):
    msg = loco_error(gen, sd15, ["a cat", "a dog"], batch_size=0)
    assert "batch" in msg


def test_alt_condition_with_wrong_number_of_rows(sd15):
    from loco_lib.altered import altered_inputs

    alt = encode(sd15, ["a dog"])
    with altered_inputs(sd15, alt, [3]):
        loco_error(gen, sd15, ["a cat", "a car"])
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in sd15.unet.modules())


def test_alt_rows_that_only_fit_without_guidance_are_refused_when_guidance_is_on(sd15):
    """2 alt rows for 1 prompt: the CFG batch also has 2 rows; with guidance declared it is an error."""
    from loco_lib.altered import altered_inputs

    alt = encode(sd15, ["a dog", "a dog"])
    with altered_inputs(sd15, alt, "all", guidance=True):
        msg = loco_error(gen, sd15, "a cat", guidance=7.5)
    assert "with guidance" in msg


def test_bad_seeds(sd15):
    assert "seed" in loco_error(gen, sd15, "a cat", seeds=2**64)
    assert "seed" in loco_error(gen, sd15, "a cat", seeds=-1)
    assert "seed" in loco_error(gen, sd15, "a cat", seeds=[1.5])


# models ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["nope", "tiny-sd16", "Tiny-SD15", "", "   "])
def test_unknown_model_name(name):
    msg = loco_error(models.load, name, progress=False)
    for known in ("tiny-sd15", "tiny-sdxl", "tiny-if", "sd15"):
        assert known in msg
    if name.strip():
        assert repr(name) in msg or name in msg


def test_unknown_tiny_twin():
    msg = loco_error(models.build_tiny, "tiny-nope")
    assert "tiny-sd15" in msg


def test_unsupported_pipeline_object():
    msg = loco_error(generate, object(), "a cat", progress=False)
    assert "object" in msg


# seeds -----------------------------------------------------------------------------------

@pytest.mark.parametrize("seeds", [[1, 2, 3], [1], []])
def test_mismatched_number_of_seeds(sd15, seeds):
    msg = loco_error(gen, sd15, ["a cat", "a dog"], seeds=seeds)
    assert "seed" in msg and str(len(seeds)) in msg


# image size ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [12, 100, 7, 65, 0, -64])
def test_image_size_not_a_multiple(twin, bad):
    # no model in loco has a grid finer than 8 px (SD latents are 1/8 of the image; IF's UNet needs
    # the same), so these sizes are refused everywhere, before any work is done
    name, pipe = twin
    msg = loco_error(gen, pipe, size=bad)
    assert "multiple" in msg and str(bad) in msg


@pytest.mark.parametrize("size", [16, 72])
def test_accepted_image_size_is_produced(twin, size):
    name, pipe = twin
    out = gen(pipe, size=size, alt_prompts="a dog", layers=[3, 4])
    assert out.images[0].shape[:2] == (size, size)
