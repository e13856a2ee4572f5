"""FLUX.1 (loco_lib/families/flux.py) on its tiny twin: FLUX.1-dev's 19 dual-stream and 38
single-stream blocks at tiny widths, guidance as an embedding (one conditional row per sample).
"Block i reads T'" takes what block i reads in a run of T' riding in the same batch; in a
single-stream block, the text positions of the joint sequence its attention reads."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from loco_lib import cross_attention_layers, generate
from loco_lib.errors import LocoError
from loco_lib.families import registry
from loco_lib.hooks import Record, Site, hooks
from loco_lib.models import load
from loco_lib.text import encode

P = ["a photo of a cat in the style of van gogh", "a red dog on the grass"]
T = ["a photo of a cat", "a blue cat"]
KW = dict(seeds=0, steps=3, output_type="np", progress=False)
BATCH_ROUNDING = 1e-4  # as for SD3 (tests/test_sd3.py): measured 2.5e-6 here at 3 steps


@pytest.fixture(scope="module")
def flux():
    return load("tiny-flux", progress=False)


def _np(g):
    return np.stack(g.images)


def test_the_family_knows_the_twin(flux):
    assert registry.pipeline_family(flux).name == "flux" and registry.denoiser_family(flux).name == "flux"
    layers = cross_attention_layers(flux)
    assert [la.name for la in layers] == ([f"transformer_blocks.{i}.attn" for i in range(19)]
                                          + [f"single_transformer_blocks.{j}.attn" for j in range(38)])
    assert {(la.key, la.value) for la in layers[:19]} == {("add_k_proj", "add_v_proj")}
    assert {(la.key, la.value) for la in layers[19:]} == {("to_k", "to_v")}
    c = encode(flux, P)
    assert c.embeds.shape == (2, 512, 32) and c.pooled.shape == (2, 32) and c.mask is None
    from loco_lib import settings

    assert settings.defaults(flux) == {"steps": 28, "guidance": 3.5}


def test_loco_runs_the_pipeline_as_its_prompts_would(flux):
    gens = [torch.Generator("cpu").manual_seed(0) for _ in P]
    ref = flux(P, num_inference_steps=3, guidance_scale=3.5, generator=gens, output_type="np").images
    assert np.array_equal(_np(generate(flux, P, **KW)), ref)


@pytest.mark.parametrize("joint_text", ["attention", "stream"])
def test_every_block_and_the_pooled_text_from_the_donor_is_a_run_of_the_other_prompt(flux, joint_text):
    plain_t, plain_p = _np(generate(flux, T, **KW)), _np(generate(flux, P, **KW))
    every = _np(generate(flux, P, alt_prompts=T, layers="all", swap_text_paths=True, joint_text=joint_text, **KW))
    assert np.abs(every - plain_t).max() < BATCH_ROUNDING
    single = _np(generate(flux, P, alt_prompts=T, layers="30,31", joint_text=joint_text, **KW))
    assert np.abs(single - plain_p).max() > 1e-3 and np.abs(single - plain_t).max() > 1e-2


def test_a_single_stream_block_takes_the_donors_text_positions_only(flux):
    """A single block's patch reads the donor at the input of its attention (the normed [text, image]
    sequence) with a token mask of the text's length: only the first 512 positions change."""
    from loco_lib.altered import altered_patches
    from loco_lib.hooks import FromSample

    for joint_text, site, n_tokens in (("attention", "unet:single_transformer_blocks.0.attn:input:hidden_states", 512),
                                       ("stream", "unet:single_transformer_blocks.0:input:encoder_hidden_states", None)):
        (patch,) = altered_patches(flux, encode(flux, T[:1]), [19], donors=[1], joint_text=joint_text)
        assert str(patch.site) == site
        assert isinstance(patch.value, FromSample) and patch.value.sample == 1 and patch.branch == "cond"
        assert (None if patch.tokens is None else int(patch.tokens.sum())) == n_tokens


def test_a_token_mask_shorter_than_the_sequence_covers_its_first_positions():
    from loco_lib.hooks import FromSample, Patch

    model = torch.nn.Sequential(torch.nn.Identity())
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    with hooks(model, patches=[Patch(Site("unet", "0", "input"), FromSample(1), samples=[0], branch="all",
                                     tokens=torch.ones(2, dtype=torch.bool))], n_samples=2, guidance=False):
        out = model(x)
    assert torch.equal(out[0, :2], x[1, :2]) and torch.equal(out[0, 2:], x[0, 2:]) and torch.equal(out[1], x[1])


def test_locoedit_edits_dual_stream_blocks_in_closed_form_and_refuses_single_ones(flux):
    from loco_lib import compute_edit
    from loco_lib.locoedit import kv_rows, objective

    runs = dict(steps=2)
    e = compute_edit(flux, [3, 4], P[:1], T[:1], "van gogh", "a photo of a cat", runs=runs)
    assert e.meta["n_rows"] == 2  # one T5 part: 1 prompt x 1 seed x 2 steps x 1 position
    xo = kv_rows(flux, [3], P[:1], "van gogh", runs=runs)[3].double()
    xt = kv_rows(flux, [3], T[:1], "a photo of a cat", runs=runs)[3].double()
    attn = flux.transformer.transformer_blocks[3].attn
    for proj in ("add_k_proj", "add_v_proj"):
        W_hat = getattr(attn, proj).weight.detach().double()
        W = e.weights[f"transformer_blocks.3.attn.{proj}.weight"].double().requires_grad_(True)
        objective(W, W_hat, xo, xt, 0.01).backward()
        assert W.grad.abs().max() < 1e-6 * max(1.0, float(W_hat.abs().max()))
    with pytest.raises(LocoError, match="single 0 is a single-stream FLUX block"):
        compute_edit(flux, [19], P[:1], T[:1], "van gogh", runs=runs)


def test_the_ranking_is_refused_in_one_line_and_neurons_and_uce_run(flux):
    from loco_lib.neurons import rank_neurons
    from loco_lib.ranking import rank_layers
    from loco_lib.uce import compute_edit as uce

    with pytest.raises(LocoError, match="ranking of joint-attention blocks \\(flux\\).*RoPE"):
        rank_layers(flux, P[:1], "van gogh", steps=2, progress=False)
    with_style = [P[0], "a blue cat in the style of van gogh"]
    r = rank_neurons(flux, [3], with_style, T, subjects_with="van gogh", subjects_without="cat", runs=dict(steps=2))
    assert r.width((3, "key")) == flux.transformer.transformer_blocks[3].attn.add_k_proj.out_features
    with pytest.raises(LocoError, match="single 0 is a single-stream FLUX block"):
        rank_neurons(flux, [19], with_style, T, subjects_with="van gogh", subjects_without="cat", runs=dict(steps=2))
    edit = uce(flux, "van gogh", guide="", preserve=["a cat"])
    assert list(edit.weights) == ["context_embedder.weight"]


def test_the_sweep_equals_the_naive_loop(flux):
    from loco_lib.sweep import Job, run_sweep

    sets = [[], [0, 1], [30, 31], list(range(57))]
    res = run_sweep(flux, P, T, sets, [0], steps=2, keep_arrays=True, progress=False)
    for i in range(2):
        for layers in sets:
            ref = generate(flux, P[i], alt_prompts=T[i] if layers else None, layers=layers or None, seeds=0, steps=2,
                           output_type="np", progress=False).images[0]
            assert np.abs(res.arrays[Job(i, tuple(layers), 0)] - ref).max() < BATCH_ROUNDING
    assert res.counter["calls"] == 2 and res.counter["rows"] == 2 * (8 + 2)  # 8 jobs and 2 donors, no guidance rows


def test_the_real_layouts_on_the_meta_device(capsys):
    import json

    from loco_lib.cli import main

    for name in ("flux-dev", "flux-schnell"):
        assert main(["layers", name, "--meta", "--json"]) == 0
        names = [r["name"] for r in json.loads(capsys.readouterr().out)]
        assert len(names) == 57 and names[19] == "single_transformer_blocks.0.attn"


def test_restoring_the_time_embedding_and_the_last_image_stream_restores_the_clean_image(flux, tmp_path):
    """Corrupted in CLIP (the pooled text) and T5, a run gets back the clean image when the time
    embedding and the last single block's image positions are restored; either alone does not.
    The states: the time embedding, each dual block's two streams, each single block's image and text
    positions (the last one's text is dropped by the model)."""
    from loco_lib.trace import Run, trace, unet_states

    states = unet_states(flux)
    assert [s.label for s in states[:3]] == ["pooled", "dual 0 img", "dual 0 txt"]
    assert len(states) == 1 + 2 * 19 + 2 * 38 - 1 and states[-1].label == "single 37 img"
    assert [s.label for s in unet_states(flux, "attention")[-1:]] == ["single 37 attn joint"]
    last = len(states) - 1
    r = trace(flux, P[:1], "cat", steps=2, sets=[(0,), (last,), (0, last)], keep_arrays=True, progress=False,
              cache_dir=tmp_path)
    a = r.arrays
    clean, corrupted = a[Run(0, 0, None)], a[Run(0, 0, ())]
    assert np.abs(clean - corrupted).max() > 0.05
    assert np.abs(a[Run(0, 0, (0, last))] - clean).max() < 1e-4
    assert np.abs(a[Run(0, 0, (last,))] - clean).max() > 0.01
    assert np.abs(a[Run(0, 0, (0,))] - clean).max() > 10 * 1e-4  # measured 2.4e-3: the twin's T5 part matters little
