"""Text paths outside cross-attention: SD-XL's pooled embedding and IF's add_embedding.

By default they keep the original prompt (only the chosen cross-attention layers read T'); with
``swap_text_paths=True`` the conditional rows get T'. The unconditional rows never change. IF's
substitute reaches its attention layers through the UNet's own ``encoder_hid_proj``.
"""
import pytest
import torch

from loco_lib import load
from loco_lib.altered import altered_inputs
from loco_lib.hooks import Record, Site, hooks, unet_input
from loco_lib.text import encode

A, B = ["a house in the style of van gogh", "a red car"], ["a house in the style of a painting", "a blue boat"]


def _one_unet_call(pipe, cond, steps=1):
    from loco_lib.models import pipeline_family

    with torch.no_grad():
        pipe(**cond.pipeline_kwargs(pipeline_family(pipe)), num_inference_steps=steps, guidance_scale=5.0,
             generator=[torch.Generator().manual_seed(0) for _ in range(len(cond))], output_type="np",
             **({"clean_caption": False} if pipeline_family(pipe) == "if" else {}))


@pytest.fixture(scope="module")
def sdxl():
    return load("tiny-sdxl", progress=False)


@pytest.fixture(scope="module")
def tiny_if():
    return load("tiny-if", progress=False)


@pytest.mark.parametrize("swap", [False, True])
def test_sdxl_pooled_embedding(sdxl, swap):
    cond, alt = encode(sdxl, A), encode(sdxl, B)
    given, received = unet_input("added_cond_kwargs.text_embeds"), Site("unet", "add_embedding", "input")
    # installed before the alteration: sees the pipeline's own input; installed inside it: what the UNet uses
    with hooks(sdxl, records=[Record(given, branch="all")]) as outer:
        with altered_inputs(sdxl, alt, [3, 4], swap_text_paths=swap):
            with hooks(sdxl, records=[Record(received, branch="all")]) as inner:
                _one_unet_call(sdxl, cond)
    seen, used = outer[given], inner[received]
    n = len(A)
    pooled_dim = cond.pooled.shape[1]
    text_part = used[0][:, :pooled_dim]  # add_embedding input = concat(pooled, time-id features)
    assert torch.equal(text_part[:n], cond.negative_pooled), "the unconditional rows must never change"
    expected = alt.pooled if swap else cond.pooled
    assert torch.equal(text_part[n:], expected)
    assert torch.equal(seen[0][n:], cond.pooled), "the pipeline's own kwargs are not mutated"


@pytest.mark.parametrize("swap", [False, True])
def test_if_add_embedding(tiny_if, swap):
    outs = []
    site = Site("unet", "add_embedding", "output")

    def capture(run):  # installed inside the alteration, so it sees the output the UNet uses
        with hooks(tiny_if, records=[Record(site, branch="all")]) as trace:
            _one_unet_call(tiny_if, run)
        outs.append(trace[site][0])

    cond, alt = encode(tiny_if, A), encode(tiny_if, B)
    capture(cond)
    with altered_inputs(tiny_if, alt, [2], swap_text_paths=swap):
        capture(cond)
    capture(alt)
    plain_a, altered, plain_b = outs
    n = len(A)
    assert torch.equal(altered[:n], plain_a[:n])
    assert torch.equal(altered[n:], plain_b[n:] if swap else plain_a[n:])


def test_if_substitute_goes_through_encoder_hid_proj(tiny_if):
    """The altered layer's attention sees encoder_hid_proj(c'), the others encoder_hid_proj(c)."""
    from loco_lib.layers import cross_attention_layers

    layers = cross_attention_layers(tiny_if.unet)
    mods = dict(tiny_if.unet.named_modules())
    cond, alt = encode(tiny_if, A), encode(tiny_if, B)
    sites = {l.index: Site("unet", f"{l.name}.add_k_proj", "input") for l in layers[:3]}
    with altered_inputs(tiny_if, alt, [1]):
        with hooks(tiny_if, records=[Record(s, branch="all", steps=[0]) for s in sites.values()]) as trace:
            _one_unet_call(tiny_if, cond)
    seen = {i: trace[s][0] for i, s in sites.items()}
    n = len(A)
    with torch.no_grad():
        proj_c = tiny_if.unet.encoder_hid_proj(torch.cat([cond.negative, cond.embeds]))
        proj_alt = tiny_if.unet.encoder_hid_proj(torch.cat([cond.negative, alt.embeds]))
        gn = mods[layers[1].name].norm_cross
        # add_k_proj reads the group-normed text states
        want_alt = gn(proj_alt.transpose(1, 2)).transpose(1, 2)
        want_c = gn(proj_c.transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(seen[1][n:], want_alt[n:], atol=1e-6)
    assert torch.allclose(seen[1][:n], want_c[:n], atol=1e-6)
    assert torch.allclose(seen[0], want_c, atol=1e-6) and torch.allclose(seen[2], want_c, atol=1e-6)
