"""SANA (loco_lib/families/sana.py) on its tiny twin: 20 blocks whose cross-attention reads a
projected, RMS-normalised caption from a causal Gemma-style encoder that ran over a prepended
instruction. The positions loco computes are checked against the pipeline's own sequences."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from loco_lib import compute_edit, cross_attention_layers, generate
from loco_lib.families import registry
from loco_lib.locoedit import closed_form, kv_rows
from loco_lib.models import load
from loco_lib.text import encode
from loco_lib.tokens import encoder_positions, subject_tokens
from loco_lib.trace import PAPER_UNET_KINDS, unet_states

P = ["a photo of a cat in the style of van gogh", "a red dog on the grass"]
T = ["a photo of a cat", "a blue cat"]
KW = dict(seeds=0, steps=3, output_type="np", progress=False)


@pytest.fixture(scope="module")
def sana():
    return load("tiny-sana", progress=False)


def _np(g):
    return np.stack(g.images)


def test_the_family_knows_the_twin(sana):
    assert registry.pipeline_family(sana).name == "sana" and registry.denoiser_family(sana).name == "sana"
    layers = cross_attention_layers(sana)
    assert [la.name for la in layers] == [f"transformer_blocks.{i}.attn2" for i in range(20)]  # SANA-1600M's 20 blocks
    c = encode(sana, P)
    assert c.embeds.shape[:2] == c.mask.shape == c.negative.shape[:2] == (2, 300)
    states = unet_states(sana, PAPER_UNET_KINDS)
    assert len(states) == 20 * 3 and [s.kind for s in states[:3]] == ["self-attention", "cross-attention", "feed-forward"]
    # what the blocks read: the caption projected, then RMS-normalised
    seen = registry.denoiser_family(sana).text_states(sana.transformer, c.embeds)
    assert seen.shape == (2, 300, 8) and not torch.equal(seen, sana.transformer.caption_projection(c.embeds))


def test_subject_positions_are_those_of_the_kept_sequence(sana):
    """The pipeline encodes instruction + prompt and keeps [first] + the last 299 positions: the
    subject's positions are where its token ids sit in that kept sequence, and in the encoder's own
    sequence they are ``encoder_positions``."""
    family = registry.pipeline_family(sana)
    chi = "\n".join(family.instruction(sana))
    tok = sana.tokenizer
    total = len(tok.encode(chi)) + 298
    full = tok([chi + P[0]], padding="max_length", max_length=total, truncation=True).input_ids[0]
    kept = [full[0]] + full[-299:]
    pos = subject_tokens(sana, P[0], "van gogh")
    pieces = tok.convert_ids_to_tokens([kept[i] for i in pos])
    assert "".join(pieces).replace("▁", " ").strip() == "van gogh"
    assert [full[i] for i in encoder_positions(sana, pos)] == [kept[i] for i in pos]
    # Gemma is causal: changing the subject leaves every kept state before it as it was
    a, b = encode(sana, [P[0]]).embeds[0], encode(sana, [P[0].replace("van gogh", "monet")]).embeds[0]
    assert torch.equal(a[: pos[0]], b[: pos[0]]) and not torch.equal(a[pos[0]], b[pos[0]])
    # the twin's instruction is the pipeline's own default, prepended
    assert chi.startswith("Given a user prompt") and chi.endswith("User Prompt: ")


def test_loco_runs_the_pipeline_as_its_prompts_would(sana):
    gens = [torch.Generator("cpu").manual_seed(0) for _ in P]
    ref = sana(P, num_inference_steps=3, guidance_scale=4.5, generator=gens, output_type="np", clean_caption=False,
               use_resolution_binning=False, height=32, width=32).images
    assert np.array_equal(_np(generate(sana, P, **KW)), ref)  # loco's default size is the transformer's (32 px)


def test_altering_every_block_is_a_run_of_the_other_prompt(sana):
    plain_t = _np(generate(sana, T, **KW))
    assert np.array_equal(_np(generate(sana, P, alt_prompts=T, layers="all", **KW)), plain_t)
    window = _np(generate(sana, P, alt_prompts=T, layers="3-4", **KW))
    assert not np.array_equal(window, _np(generate(sana, P, **KW))) and not np.array_equal(window, plain_t)


def test_locoedit_is_the_closed_form_optimum(sana):
    e = compute_edit(sana, [3], P[:1], T[:1], "van gogh")
    assert sorted(e.weights) == ["transformer_blocks.3.attn2.to_k.weight", "transformer_blocks.3.attn2.to_v.weight"]
    attn = sana.transformer.transformer_blocks[3].attn2
    xo, xt = kv_rows(sana, [3], P[:1], "van gogh")[3], kv_rows(sana, [3], T[:1])[3]
    W = e.weights["transformer_blocks.3.attn2.to_v.weight"].double()
    assert torch.allclose(W, closed_form(attn.to_v.weight.detach().double(), xo.double(), xt.double(), e.lam), atol=1e-10)
    # the rows are what block 3's to_v reads at the subject's last kept position
    seen = registry.denoiser_family(sana).text_states(sana.transformer, encode(sana, P[:1]).embeds)
    assert torch.allclose(xo[0], seen[0, subject_tokens(sana, P[0], "van gogh")[-1]].double().to(xo.dtype))


def test_every_method_runs_on_the_twin(sana, tmp_path):
    from loco_lib import diffquickfix, uce
    from loco_lib.clip_score import ClipScorer
    from loco_lib.locogen import locogen
    from loco_lib.neurons import neurons_replaced, rank_neurons
    from loco_lib.ranking import rank_layers
    from loco_lib.trace import trace

    scorer = ClipScorer.tiny()
    r = locogen(sana, (P, T), "style", 2, seeds=(0,), steps=2, cache_dir=tmp_path, progress=False, scorer=scorer)
    assert len(r.table) == 19
    tr = trace(sana, P[:1], ["van gogh"], where="denoiser", steps=2, cache_dir=tmp_path, progress=False, scorer=scorer,
               sets=[[0], [1, 2]])
    assert tr.states[0].name == "transformer_blocks.0" and tr.states[0].component == "transformer"
    text = trace(sana, P[:1], ["van gogh"], where="text", steps=2, cache_dir=tmp_path, progress=False, scorer=scorer,
                 sets=[[0]])
    assert text.states[0].name == "layers.0.self_attn"
    rk = rank_neurons(sana, [3], [P[0], "a blue cat in the style of van gogh"], T, subjects_with="van gogh")
    with neurons_replaced(sana, rk, 2, guidance=True):
        assert not np.array_equal(_np(generate(sana, P, **KW)), _np(generate(sana, T, **KW)))
    dqf = diffquickfix.compute_edit(sana, P[:1], ["a photo of a cat in the style of monet"], "van gogh", "monet")
    assert list(dqf.weights) == ["layers.0.self_attn.o_proj.weight"]
    u = uce.compute_edit(sana, "van gogh", "monet", layers=[3])
    assert sorted(u.weights) == ["transformer_blocks.3.attn2.to_k.weight", "transformer_blocks.3.attn2.to_v.weight"]
    assert rank_layers(sana, P[:1], "van gogh", steps=2, progress=False).scores.shape == (1, 1, 20)


def test_dqf_rows_are_read_at_the_encoders_own_position(sana):
    """DiffQuickFix reads the encoder's attention at the subject's last token in the encoder's own
    sequence (instruction included), not at its kept position."""
    from loco_lib import diffquickfix
    from loco_lib.hooks import Record, Site, hooks

    x = diffquickfix.rows(sana, P[:1], "van gogh")
    site = Site("text_encoder", "layers.0.self_attn.o_proj", "input")
    with hooks(sana, records=[Record(site, steps=[0])]) as rec:
        encode(sana, P[:1])
    full = rec[site][0][0]
    at = encoder_positions(sana, subject_tokens(sana, P[0], "van gogh"))[-1]
    assert at > 300 and torch.equal(x[0], full[at])


def test_the_command_line_on_the_twin(capsys):
    from loco_lib.cli import main

    assert main(["layers", "tiny-sana", "--json"]) == 0
    records = __import__("json").loads(capsys.readouterr().out)
    assert [r["name"] for r in records] == [f"transformer_blocks.{i}.attn2" for i in range(20)]
