"""PixArt (loco_lib/families/pixart.py) on its tiny twin: 28 blocks whose cross-attention reads a
projected, masked caption. Every method runs through the family, and the family's facts are checked
against the pipeline's own runs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from loco_lib import compute_edit, cross_attention_layers, generate
from loco_lib.families import registry
from loco_lib.hooks import Record, Site, hooks, text_site
from loco_lib.locoedit import closed_form, kv_rows, objective
from loco_lib.models import load
from loco_lib.text import encode
from loco_lib.trace import PAPER_UNET_KINDS, unet_states

P = ["a photo of a cat in the style of van gogh", "a red dog on the grass"]
T = ["a photo of a cat", "a blue cat"]  # other lengths than P: the masks differ
KW = dict(seeds=0, steps=3, output_type="np", progress=False)


@pytest.fixture(scope="module")
def pixart():
    return load("tiny-pixart", progress=False)


def _np(g):
    return np.stack(g.images)


def test_the_family_knows_the_twin(pixart):
    assert registry.pipeline_family(pixart).name == "pixart" and registry.denoiser_family(pixart).name == "pixart"
    assert registry.denoiser(pixart) is pixart.transformer and registry.denoiser_name(pixart) == "transformer"
    layers = cross_attention_layers(pixart)
    assert [l.name for l in layers] == [f"transformer_blocks.{i}.attn2" for i in range(28)]
    assert {(l.key, l.value, l.kv_dim) for l in layers} == {("to_k", "to_v", 24)}  # the projected caption's width
    attn = pixart.transformer.get_submodule(layers[0].name)
    assert attn.to_k.bias is not None and attn.to_v.bias is not None
    c = encode(pixart, P)
    assert c.embeds.shape[:2] == c.mask.shape == (2, 120)  # PixArt-alpha pads to 120 tokens, with its mask
    assert c.mask.sum(1).tolist() != encode(pixart, T).mask.sum(1).tolist()
    states = unet_states(pixart, PAPER_UNET_KINDS)
    assert len(states) == 28 * 3 and states[0].name == "transformer_blocks.0.attn1"
    assert [s.kind for s in states[:3]] == ["self-attention", "cross-attention", "feed-forward"]


def test_loco_runs_the_pipeline_as_its_prompts_would(pixart):
    gens = [torch.Generator("cpu").manual_seed(0) for _ in P]
    ref = pixart(P, num_inference_steps=3, guidance_scale=4.5, generator=gens, output_type="np", clean_caption=False,
                 use_resolution_binning=False).images
    assert np.array_equal(_np(generate(pixart, P, **KW)), ref)


def test_altering_every_block_is_a_run_of_the_other_prompt_mask_included(pixart, monkeypatch):
    plain_t = _np(generate(pixart, T, **KW))
    assert np.array_equal(_np(generate(pixart, P, alt_prompts=T, layers="all", **KW)), plain_t)
    window = _np(generate(pixart, P, alt_prompts=T, layers="3-4", **KW))
    assert not np.array_equal(window, _np(generate(pixart, P, **KW))) and not np.array_equal(window, plain_t)
    # without T''s padding mask the blocks would read T''s tokens through P's mask: not T''s run
    monkeypatch.setattr(type(registry.denoiser_family(pixart)), "text_mask", lambda self, model, mask: None)
    assert not np.array_equal(_np(generate(pixart, P, alt_prompts=T, layers="all", **KW)), plain_t)


def test_an_altered_block_changes_only_the_conditional_rows(pixart):
    """The unconditional branch of a guided PixArt call keeps the negative prompt's text in an
    altered block (the rule the hooks once widened to every row on any component but the UNet)."""
    from loco_lib.altered import altered_patches

    layer = cross_attention_layers(pixart)[5]
    c, alt = encode(pixart, P[:1]), encode(pixart, T[:1])
    site = text_site(layer)
    with hooks(pixart, records=[Record(site, branch="all", steps=[0])], n_samples=1, guidance=True) as clean:
        generate(pixart, P[:1], **{**KW, "steps": 2})
    with hooks(pixart, records=[Record(site, branch="all", steps=[0])], n_samples=1, guidance=True) as seen, \
            hooks(pixart, patches=altered_patches(pixart, alt, [5]), n_samples=1, guidance=True):
        generate(pixart, P[:1], **{**KW, "steps": 2})
    before, after = clean[site][0], seen[site][0]  # rows [uncond, cond]
    assert torch.equal(after[0], before[0])
    proj = registry.denoiser_family(pixart).text_states(pixart.transformer, alt.embeds)
    assert torch.equal(after[1], proj[0]) and not torch.equal(after[1], before[1])
    assert torch.equal(before[1], registry.denoiser_family(pixart).text_states(pixart.transformer, c.embeds)[0])


def test_locoedit_with_biased_projections_is_the_closed_form_optimum(pixart):
    """K = W c + b: the bias is the same on both sides of LocoEdit's fit, so it cancels; the edit
    changes the weights only, and its weight minimises the objective with the biases in."""
    e = compute_edit(pixart, [3], P[:1], T[:1], "van gogh")
    assert sorted(e.weights) == ["transformer_blocks.3.attn2.to_k.weight", "transformer_blocks.3.attn2.to_v.weight"]
    attn = pixart.transformer.transformer_blocks[3].attn2
    xo, xt = kv_rows(pixart, [3], P[:1], "van gogh")[3], kv_rows(pixart, [3], T[:1])[3]
    for proj in (attn.to_k, attn.to_v):
        W_hat, b = proj.weight.detach().double(), proj.bias.detach().double()
        W = e.weights[f"transformer_blocks.3.attn2.{'to_k' if proj is attn.to_k else 'to_v'}.weight"].double()
        assert torch.allclose(W, closed_form(W_hat, xo.double(), xt.double(), e.lam), atol=1e-10)
        W = W.clone().requires_grad_(True)
        with_bias = ((xo.double() @ W.T + b - (xt.double() @ W_hat.T + b)) ** 2).sum() + e.lam * ((W - W_hat) ** 2).sum()
        assert torch.allclose(with_bias, objective(W, W_hat, xo.double(), xt.double(), e.lam))
        (grad,) = torch.autograd.grad(with_bias, W)
        assert grad.abs().max() < 1e-8 * max(1.0, float(W_hat.abs().max()))
    biases = [attn.to_k.bias.detach().clone(), attn.to_v.bias.detach().clone()]
    weight = attn.to_k.weight.detach().clone()
    with e.applied(pixart):  # the weights change, the biases do not: the edit holds no bias
        assert not torch.equal(attn.to_k.weight, weight)
        assert torch.equal(attn.to_k.bias, biases[0]) and torch.equal(attn.to_v.bias, biases[1])
    assert not any(k.endswith("bias") for k in e.weights)


def test_every_method_runs_on_the_twin(pixart, tmp_path):
    from loco_lib.clip_score import ClipScorer
    from loco_lib.locogen import locogen
    from loco_lib.neurons import neurons_replaced, rank_neurons
    from loco_lib.trace import trace

    scorer = ClipScorer.tiny()
    r = locogen(pixart, (P, T), "style", 2, seeds=(0,), steps=2, cache_dir=tmp_path, progress=False, scorer=scorer)
    assert len(r.table) == 27 and r.table["layers"].iloc[-1] == "26-27"  # every window of 2 of the 28 blocks
    tr = trace(pixart, P[:1], ["van gogh"], where="unet", steps=2, cache_dir=tmp_path, progress=False, scorer=scorer,
               sets=[[0], [1, 2]])
    assert tr.states[0].name == "transformer_blocks.0" and tr.states[0].component == "transformer"
    rk = rank_neurons(pixart, [3], [P[0], "a blue cat in the style of van gogh"], T, subjects_with="van gogh")
    with neurons_replaced(pixart, rk, 5, guidance=True) as ed:
        assert ed.n_neurons == 10
        edited = _np(generate(pixart, P, **KW))
    assert not np.array_equal(edited, _np(generate(pixart, P, **KW)))


def test_the_command_line_on_the_twin(capsys, tmp_path, monkeypatch):
    from loco_lib.cli import main

    assert main(["layers", "tiny-pixart", "--json"]) == 0
    records = __import__("json").loads(capsys.readouterr().out)
    assert [r["name"] for r in records] == [f"transformer_blocks.{i}.attn2" for i in range(28)]
    monkeypatch.setenv("LOCO_CACHE_DIR", str(tmp_path))
    assert main(["trace", "tiny-pixart", "--where", "denoiser", "--prompt", P[0], "--subject", "van gogh",
                 "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "transformer_blocks.0" in out or "block 0" in out
