"""SD3 and SD3.5 (loco_lib/families/sd3.py) on their tiny twins: 24 joint-attention blocks whose text
stream every block updates (SD3.5-Medium's: keys RMS-normed after projection, image-only attn2 in
blocks 0-12). "Block i reads T'" takes what block i reads in a run of T' riding in the same batch
(a donor sample); the family's facts are checked against the pipeline's own runs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from loco_lib import cross_attention_layers, generate
from loco_lib.errors import LocoError
from loco_lib.families import registry
from loco_lib.hooks import Record, hooks, text_site
from loco_lib.models import load
from loco_lib.text import encode

P = ["a photo of a cat in the style of van gogh", "a red dog on the grass"]
T = ["a photo of a cat", "a blue cat"]
KW = dict(seeds=0, steps=3, output_type="np", progress=False)
# a sample whose every block reads T' equals T''s own run up to float rounding: here the batch holds
# P's samples and T''s donors where T''s plain run holds T alone (measured: 5e-6 at 4 steps)
BATCH_ROUNDING = 1e-4


@pytest.fixture(scope="module", params=["tiny-sd3", "tiny-sd35"])
def sd3(request):
    return load(request.param, progress=False)


def _np(g):
    return np.stack(g.images)


def test_the_family_knows_the_twin(sd3):
    assert registry.pipeline_family(sd3).name == "sd3" and registry.denoiser_family(sd3).name == "sd3"
    assert registry.denoiser(sd3) is sd3.transformer and registry.denoiser_name(sd3) == "transformer"
    layers = cross_attention_layers(sd3)
    assert [la.name for la in layers] == [f"transformer_blocks.{i}.attn" for i in range(24)]
    assert {(la.key, la.value, la.kv_dim) for la in layers} == {("add_k_proj", "add_v_proj", 32)}
    blocks = sd3.transformer.transformer_blocks
    sd35 = sd3.loco_name == "tiny-sd35"
    assert (blocks[0].attn.norm_added_k is not None) == sd35  # SD3.5 normalises the keys after add_k_proj
    assert [b.attn2 is not None for b in blocks] == [sd35 and i < 13 for i in range(24)]  # image-only, not a text layer
    c = encode(sd3, P)
    assert c.embeds.shape == (2, 77 + 256, 64) and c.mask is None  # CLIP tokens then T5 tokens, no padding mask
    assert c.pooled.shape == c.negative_pooled.shape == (2, 64)  # the two CLIPs' pooled projections


def test_loco_runs_the_pipeline_as_its_prompts_would(sd3):
    gens = [torch.Generator("cpu").manual_seed(0) for _ in P]
    ref = sd3(P, num_inference_steps=3, guidance_scale=7.0, generator=gens, output_type="np").images
    assert np.array_equal(_np(generate(sd3, P, **KW)), ref)


def test_every_block_and_the_pooled_text_from_the_donor_is_a_run_of_the_other_prompt(sd3):
    plain_t, plain_p = _np(generate(sd3, T, **KW)), _np(generate(sd3, P, **KW))
    every = _np(generate(sd3, P, alt_prompts=T, layers="all", swap_text_paths=True, **KW))
    assert np.abs(every - plain_t).max() < BATCH_ROUNDING
    # the pooled text reaches every block through the time embedding: a factor of its own
    blocks_only = _np(generate(sd3, P, alt_prompts=T, layers="all", **KW))
    assert np.abs(blocks_only - plain_t).max() > 1e-2 and np.abs(blocks_only - plain_p).max() > 1e-2
    window = _np(generate(sd3, P, alt_prompts=T, layers="3-4", **KW))
    assert np.abs(window - plain_p).max() > 1e-3 and np.abs(window - plain_t).max() > 1e-2


def test_an_altered_block_reads_the_donors_text_in_the_conditional_rows_only(sd3):
    """Block 5's text input, recorded in every row of the first step: the altered sample's
    unconditional row keeps its own, its conditional row is what T''s own run has there."""
    from loco_lib.generate import sample_batch

    site = text_site(cross_attention_layers(sd3)[5])
    kw = dict(steps=2, guidance=7.0, output_type="np")

    def seen(prompts, **more):
        with hooks(sd3, records=[Record(site, branch="all", steps=[0])]) as rec:
            sample_batch(sd3, encode(sd3, prompts), [0] * len(prompts), **kw, **more)
        return rec[site][0]

    own, other = seen(P[:1]), seen(T[:1])  # rows [uncond, cond]
    altered = seen(P[:1], alt=encode(sd3, T[:1]), layers=[5])  # rows [uncond P, uncond donor, cond P, cond donor]
    assert altered.shape[0] == 4
    assert torch.allclose(altered[2], other[1], atol=1e-5) and not torch.allclose(altered[2], own[1], atol=1e-2)
    # the patches select the conditional branch of the altered samples, and read the donor there
    from loco_lib.altered import altered_patches
    from loco_lib.hooks import FromSample

    patches = altered_patches(sd3, encode(sd3, T), [[5], [5, 6]], swap_text_paths=True, donors=[2, 3])
    assert {p.branch for p in patches} == {"cond"} and all(isinstance(p.value, FromSample) for p in patches)
    assert sorted((str(p.site), p.value.sample, tuple(sorted(p.samples))) for p in patches) == sorted([
        ("unet:transformer_blocks.5.attn:text", 2, (0,)), ("unet:transformer_blocks.5.attn:text", 3, (1,)),
        ("unet:transformer_blocks.6.attn:text", 3, (1,)),
        ("unet::input:pooled_projections", 2, (0,)), ("unet::input:pooled_projections", 3, (1,))])


def test_samples_altered_to_the_same_prompt_and_seed_share_one_donor(sd3):
    from loco_lib.generate import sample_batch

    counter: dict = {}
    c, alt = encode(sd3, [P[0], P[0], P[1]]), encode(sd3, [T[0], T[0], T[0]])
    sample_batch(sd3, c, [0, 0, 1], steps=2, guidance=7.0, alt=alt, layers=[[3], [4], []], output_type="np",
                 counter=counter)
    assert counter["calls"] == 2 and counter["rows"] == 2 * 2 * (3 + 1)  # 3 samples + 1 donor, [uncond, cond]


def test_sweep_batches_the_donors_with_the_runs_that_read_from_them(sd3, tmp_path):
    from loco_lib.sweep import Job, run_sweep

    sets = [[], [0, 1], [10, 11], list(range(24))]
    res = run_sweep(sd3, P, T, sets, [0], steps=2, keep_arrays=True, progress=False)
    for i in range(2):
        for layers in sets:
            ref = generate(sd3, P[i], alt_prompts=T[i] if layers else None, layers=layers or None, seeds=0, steps=2,
                           output_type="np", progress=False).images[0]
            assert np.abs(res.arrays[Job(i, tuple(layers), 0)] - ref).max() < BATCH_ROUNDING
    assert res.counter["calls"] == 2  # one pipeline call: 8 jobs and their 2 donors in one batch


def test_methods_that_need_the_text_from_the_prompt_alone_are_refused_in_one_line(sd3):
    from loco_lib.altered import altered_inputs
    from loco_lib.layers import kv_inputs

    with pytest.raises(LocoError, match="depends on the image and the timestep"):
        kv_inputs(sd3, cross_attention_layers(sd3)[:1], encode(sd3, T[:1]).embeds)
    with pytest.raises(LocoError, match="depends on the run"):
        with altered_inputs(sd3, encode(sd3, T[:1]), [3], guidance=True):
            pass


def test_the_command_line_on_the_twin_and_the_real_layouts(capsys, tmp_path):
    import json

    from loco_lib.cli import main

    assert main(["layers", "tiny-sd35", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == [f"transformer_blocks.{i}.attn" for i in range(24)]
    for name, n in (("sd3", 24), ("sd35-large", 38), ("sd35-medium", 24)):
        assert main(["layers", name, "--meta", "--json"]) == 0
        assert len(json.loads(capsys.readouterr().out)) == n
    assert main(["generate", "tiny-sd3", "--prompt", P[0], "--alt-prompt", T[0], "--layers", "3,4", "--joint-text",
                 "stream", "--steps", "2", "--quiet", "--out", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").exists()
    capsys.readouterr()
    assert main(["locogen", "tiny-sd3", "--attribute", "style", "--m", "12", "--limit", "1", "--steps", "2",
                 "--scorer", "tiny", "--cache", str(tmp_path / "c"), "--quiet", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [w["layers"] for w in res["windows"]] == [list(range(i, i + 12)) for i in range(13)]
    edit = tmp_path / "e.safetensors"
    assert main(["edit", "tiny-sd3", "--attribute", "style", "--layers", "3,4", "--out", str(edit)]) == 0
    assert main(["generate", "tiny-sd3", "--prompt", P[0], "--steps", "2", "--edit", str(edit), "--quiet",
                 "--out", str(tmp_path / "y.png")]) == 0


def test_the_stream_variant_gives_a_block_the_text_stream_entering_it_in_the_donors_run(sd3):
    """``joint_text="stream"``: block i gets the text stream entering it in T''s run, so the stream it
    writes back, which later blocks read, starts from T''s: every block (and the pooled text) is
    again T''s run, and a window reaches further than the same window of attention inputs."""
    plain_t, plain_p = _np(generate(sd3, T, **KW)), _np(generate(sd3, P, **KW))
    every = _np(generate(sd3, P, alt_prompts=T, layers="all", swap_text_paths=True, joint_text="stream", **KW))
    assert np.abs(every - plain_t).max() < BATCH_ROUNDING
    first = dict(alt_prompts=T, layers="0", **KW)
    attention, stream = _np(generate(sd3, P, **first)), _np(generate(sd3, P, joint_text="stream", **first))
    assert np.abs(attention - plain_p).max() > 1e-3 and np.abs(stream - attention).max() > 1e-3
    from loco_lib.sweep import Job, run_sweep

    res = run_sweep(sd3, P[:1], T[:1], [[0]], [0], steps=3, keep_arrays=True, progress=False, joint_text="stream")
    assert np.abs(res.arrays[Job(0, (0,), 0)] - stream[0]).max() < BATCH_ROUNDING


def test_joint_text_is_checked_in_one_line(sd3):
    with pytest.raises(LocoError, match="joint_text is 'attention' or 'stream', not 'both'"):
        generate(sd3, P, alt_prompts=T, layers="0", joint_text="both", **KW)
    pixart = load("tiny-pixart", progress=False)
    with pytest.raises(LocoError, match="has no text stream"):
        generate(pixart, P, alt_prompts=T, layers="0", joint_text="stream", **KW)


RUNS = dict(steps=2)  # rows recorded along 2-step runs of seed 0


def test_edit_rows_are_what_the_blocks_k_and_v_projections_read_along_the_run(sd3):
    """A row is block i's text input at the last subject token of the CLIP part and of the T5 part,
    at each step of the prompt's own guided run (conditional branch): exactly ``add_k_proj``'s input."""
    from loco_lib.hooks import Site
    from loco_lib.locoedit import kv_rows
    from loco_lib.tokens import subject_tokens

    rows = kv_rows(sd3, [3], P[:1], "van gogh", runs=RUNS)[3]
    assert rows.shape == (1 * 1 * 2 * 2, 32)  # prompt, seed, step, part
    clip, t5 = [p for p in subject_tokens(sd3, P[0], "van gogh") if p < 77], \
        [p for p in subject_tokens(sd3, P[0], "van gogh") if p >= 77]
    assert clip and t5
    site = Site("unet", "transformer_blocks.3.attn.add_k_proj", "input")
    with hooks(sd3, records=[Record(site)], n_samples=1, guidance=True) as seen:
        generate(sd3, P[:1], seeds=0, steps=2, output_type="np", progress=False)
    for step in range(2):
        read = seen[site][step][0]  # the conditional row
        assert torch.equal(rows[2 * step], read[clip[-1]]) and torch.equal(rows[2 * step + 1], read[t5[-1]])


def test_locoedit_of_the_localized_blocks_is_the_closed_form_optimum_on_the_recorded_rows(sd3):
    from loco_lib import compute_edit
    from loco_lib.locoedit import kv_rows, objective

    e = compute_edit(sd3, [3, 4], P[:1], T[:1], "van gogh", "a photo of a cat", runs=RUNS)
    assert sorted(e.weights) == sorted(f"transformer_blocks.{i}.attn.{p}.weight" for i in (3, 4)
                                      for p in ("add_k_proj", "add_v_proj"))
    assert e.meta["runs"] == RUNS and e.meta["n_rows"] == 4
    xo = kv_rows(sd3, [3], P[:1], "van gogh", runs=RUNS)[3].double()
    xt = kv_rows(sd3, [3], T[:1], "a photo of a cat", runs=RUNS)[3].double()
    attn = sd3.transformer.transformer_blocks[3].attn
    for proj in ("add_k_proj", "add_v_proj"):
        W_hat = getattr(attn, proj).weight.detach().double()
        W = e.weights[f"transformer_blocks.3.attn.{proj}.weight"].double().requires_grad_(True)
        objective(W, W_hat, xo, xt, 0.01).backward()
        assert W.grad.abs().max() < 1e-6 * max(1.0, float(W_hat.abs().max()))


def test_the_edit_maps_the_first_edited_blocks_values_and_normed_keys_to_the_targets_at_the_first_step(sd3):
    """At step 0 block 3 (the window's first) reads exactly the recorded rows, so after the edit its
    value projection gives there what the target's rows give through the old weights, up to the
    lambda term; for SD3.5 the keys are compared after their per-head RMS norm."""
    from loco_lib import compute_edit
    from loco_lib.hooks import Site
    from loco_lib.locoedit import kv_rows
    from loco_lib.tokens import subject_tokens

    e = compute_edit(sd3, [3, 4], P[:1], T[:1], "van gogh", "a photo of a cat", runs=RUNS)
    xo = kv_rows(sd3, [3], P[:1], "van gogh", runs=RUNS)[3][:2]  # step 0: the CLIP and the T5 row
    xt = kv_rows(sd3, [3], T[:1], "a photo of a cat", runs=RUNS)[3][:2]
    attn = sd3.transformer.transformer_blocks[3].attn

    def keys(x):  # the block's keys of rows x: projection, then the per-head norm where the model has one
        k = attn.add_k_proj(x)
        return k if attn.norm_added_k is None else attn.norm_added_k(k.view(len(x), attn.heads, -1)).flatten(1)

    with torch.no_grad():
        want_v, want_k, before_v = attn.add_v_proj(xt), keys(xt), attn.add_v_proj(xo)
        site = Site("unet", "transformer_blocks.3.attn.add_v_proj", "input")
        with e.applied(sd3):
            got_v, got_k = attn.add_v_proj(xo), keys(xo)
            with hooks(sd3, records=[Record(site, steps=[0])], n_samples=1, guidance=True) as seen:
                generate(sd3, P[:1], seeds=0, steps=2, output_type="np", progress=False)
    t5_last = subject_tokens(sd3, P[0], "van gogh")[-1]
    assert torch.equal(seen[site][0][0][t5_last], xo[1])  # the edited model reads the recorded row at step 0
    err_v = float((got_v - want_v).abs().max())
    assert err_v < 1e-2 * float(want_v.abs().max())
    assert float((got_k - want_k).abs().max()) < 1e-2 * float(want_k.abs().max())
    assert float((before_v - want_v).abs().max()) > 10 * err_v  # the edit moved them most of the way


def test_edit_positions_are_the_subjects_last_token_in_each_encoders_part(sd3):
    from loco_lib.tokens import edit_positions, subject_token_index, subject_tokens

    both = subject_tokens(sd3, P[0], "van gogh")
    assert edit_positions(sd3, P[0], "van gogh") == [max(p for p in both if p < 77), max(both)]
    clip_last, t5_last = edit_positions(sd3, P[0])  # no subject: the last prompt token of each part
    assert clip_last < 77 <= t5_last and t5_last == subject_token_index(sd3, P[0])
    sd15 = load("tiny-sd15", progress=False)
    for prompt, subject in ((P[0], "van gogh"), (P[1], None)):
        assert edit_positions(sd15, prompt, subject) == [subject_token_index(sd15, prompt, subject)]


def test_trace_states_are_the_pooled_path_then_each_blocks_two_streams(sd3):
    from loco_lib.trace import unet_states

    states = unet_states(sd3)
    assert [s.label for s in states[:3]] == ["pooled", "block 0 img", "block 0 txt"]
    assert len(states) == 1 + 2 * 24 - 1  # the last block (context_pre_only) hands on no text
    assert states[-1].label == "block 23 img" and str(states[-1].site) == "unet:transformer_blocks.23:output:1"
    finer = unet_states(sd3, ["attention", "feed-forward"])
    assert [s.label for s in finer[:4]] == ["block 0 attn img", "block 0 attn txt", "block 0 ff img", "block 0 ff txt"]
    assert len({s.ident for s in finer}) == len(finer)


def test_restoring_the_pooled_path_and_the_last_image_stream_restores_the_clean_image(sd3, tmp_path):
    """Corrupted in all three encoders (both CLIPs and T5), a run gets back the clean image exactly
    when the two things the output reads are restored: the last block's image stream and the time
    embedding (the pooled text). Either alone does not."""
    from loco_lib.trace import Run, trace, unet_states

    last = len(unet_states(sd3)) - 1
    r = trace(sd3, P[:1], "cat", steps=3, sets=[(0,), (last,), (0, last)], keep_arrays=True, progress=False,
              cache_dir=tmp_path)
    a = r.arrays
    clean, corrupted = a[Run(0, 0, None)], a[Run(0, 0, ())]
    assert np.abs(clean - corrupted).max() > 0.05
    assert np.abs(a[Run(0, 0, (0, last))] - clean).max() < BATCH_ROUNDING
    for alone in [(0,), (last,)]:
        assert np.abs(a[Run(0, 0, alone)] - clean).max() > 0.01


def test_an_output_site_patches_one_element_of_a_tuple_output(sd3):
    from loco_lib.hooks import Patch, Site

    text, image = Site("unet", "transformer_blocks.5", "output", 0), Site("unet", "transformer_blocks.5", "output", 1)
    with hooks(sd3, records=[Record(text), Record(image)], n_samples=1, guidance=True) as before:
        generate(sd3, P[:1], **KW)
    zero = Patch(image, lambda clean, call: torch.zeros_like(clean))
    with hooks(sd3, patches=[zero], records=[Record(Site("unet", "transformer_blocks.6", "input", "encoder_hidden_states")),
                                            Record(Site("unet", "transformer_blocks.6", "input", "hidden_states"))],
               n_samples=1, guidance=True) as after:
        generate(sd3, P[:1], **KW)
    # at the first step the text stream handed on is untouched and the image stream is zero
    assert torch.equal(after["unet:transformer_blocks.6:input:encoder_hidden_states"][0], before[text][0])
    assert after["unet:transformer_blocks.6:input:hidden_states"][0].abs().max() == 0
    with pytest.raises(LocoError, match="element of a tuple output"):
        Site("unet", "transformer_blocks.5", "output", "x")


def test_the_recomputed_joint_attention_is_the_processors_image_output(sd3):
    """The ranking's materialised softmax (image and text keys together) reproduces what the block's
    processor gives the image tokens; the ranking reads its text columns."""
    from loco_lib.families.sd3 import joint_attention
    from loco_lib.hooks import Site, attention_site

    layer = cross_attention_layers(sd3)[4]
    attn = sd3.transformer.get_submodule(layer.name)

    def full(attn, hidden, text, mask, samples):
        probs, values = joint_attention(attn, hidden, text)
        return attn.to_out[0](attn.batch_to_head_dim(torch.bmm(probs, values)))[:, : hidden.shape[1]]

    out = Site("unet", layer.name, "output", 0)
    with hooks(sd3, records=[Record(attention_site(layer), reduce=full), Record(out)], n_samples=1, guidance=True) as tr:
        generate(sd3, P[:1], **KW)
    for mine, theirs in zip(tr[attention_site(layer)], tr[out]):
        assert torch.allclose(mine, theirs, atol=1e-5 * float(theirs.abs().max()) + 1e-6)
    probs, _ = joint_attention(attn, torch.randn(1, 16, attn.to_q.in_features), torch.randn(1, 5, attn.add_k_proj.in_features))
    assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-5)


def test_the_ranking_scores_every_joint_block_from_the_subjects_tokens_in_both_parts(sd3):
    from loco_lib.ranking import agreement, rank_layers

    r = rank_layers(sd3, P[:1], "van gogh", steps=2, progress=False)
    assert r.scores.shape == (1, 1, 24) and np.isfinite(r.scores).all() and (r.scores > 0).all()
    assert agreement(r, [3, 4, 5])["layers"] == 24
    other = rank_layers(sd3, P[:1], "cat", steps=2, progress=False)
    assert not np.allclose(r.scores, other.scores)  # the knowledge tokens choose the columns


def test_the_corruption_noises_the_subjects_tokens_in_each_of_the_three_encoders(sd3):
    from loco_lib.tokens import subject_tokens
    from loco_lib.trace import corruption, embedding_site, model_encoders

    assert model_encoders(sd3) == [1, 2, 3]
    patches = corruption(sd3, P[0], "van gogh", 0, [1])
    assert [p.site.component for p in patches] == ["text_encoder", "text_encoder_2", "text_encoder_3"]
    sites = [embedding_site(sd3, p.site.component) for p in patches]
    with hooks(sd3, patches=patches, records=[Record(s) for s in sites]) as tr:
        encode(sd3, [P[0], P[0]])
    for p, site, tok in zip(patches, sites, [sd3.tokenizer, sd3.tokenizer_2, sd3.tokenizer_3]):
        rows = tr[site][0]  # the prompt's encoding: clean row 0, corrupted row 1
        changed = (rows[0] != rows[1]).any(-1).nonzero().flatten().tolist()
        assert changed == subject_tokens(tok, P[0], "van gogh"), p.site.component


def test_neurons_are_ranked_on_activations_along_each_prompts_runs_and_replaced_in_the_text_stream(sd3):
    from loco_lib.locoedit import rows_along_runs
    from loco_lib.neurons import kv_activations, neurons_replaced, rank_neurons
    from loco_lib.tokens import edit_positions

    with_style = [P[0], "a blue cat in the style of van gogh"]
    runs = dict(steps=2, seeds=[0, 1])
    acts = kv_activations(sd3, [3], with_style, "van gogh", runs=runs)
    rows = rows_along_runs(sd3, [3], with_style, [edit_positions(sd3, p, "van gogh") for p in with_style], **runs)[3]
    attn = sd3.transformer.get_submodule(cross_attention_layers(sd3)[3].name)
    per_prompt = attn.add_v_proj(rows).view(2, -1, attn.add_v_proj.out_features)
    assert per_prompt.shape[1] == 2 * 2 * 2  # seeds x steps x (CLIP part, T5 part)
    assert torch.allclose(acts[3]["value"], per_prompt.mean(1), atol=1e-6)
    r = rank_neurons(sd3, [3], with_style, T, subjects_with="van gogh", subjects_without="cat", runs=runs)
    assert r.n_with == 2 and r.n_without == 2
    site = "unet:" + cross_attention_layers(sd3)[3].name + ".add_v_proj:output"
    with neurons_replaced(sd3, r, 5, guidance=True) as edit, hooks(sd3, records=[Record(site)], n_samples=1,
                                                                   guidance=True) as seen:
        generate(sd3, P[:1], **KW)
    units = torch.as_tensor(edit.selection[(3, "value")])
    for v in seen[site]:  # every text token of the conditional row carries the style-free means
        assert torch.allclose(v[0][:, units], edit.values[(3, "value")].float().expand(v.shape[1], -1), atol=1e-6)


def test_uce_edits_the_text_embedder_in_closed_form(sd3):
    """UCE on a joint-attention model: the one linear map from c into the text stream
    (``context_embedder``), UCE's objective at its stationary point, and the erased concept's rows
    carried towards the guide's."""
    from loco_lib.uce import closed_form, embedder_rows, objective
    from loco_lib.uce import compute_edit as uce

    edit = uce(sd3, "van gogh", guide="", preserve=["a cat"])
    assert list(edit.weights) == ["context_embedder.weight"] and edit.layers == []
    X_e, X_g, X_p = embedder_rows(sd3, ["van gogh"], [""], ["a cat"])
    clip_end = sd3.tokenizer.model_max_length  # from the text's last token to each part's end
    n_clip = clip_end - len(sd3.tokenizer("van gogh")["input_ids"]) + 2
    t5 = registry.pipeline_family(sd3).max_length(sd3)
    assert X_e.shape[0] == n_clip + t5 - (len(sd3.tokenizer_3("van gogh")["input_ids"]) - 2) and \
        X_p.shape[0] == clip_end + t5
    W_hat = sd3.transformer.context_embedder.weight.detach().double()
    assert torch.equal(edit.weights["context_embedder.weight"], closed_form(sd3.transformer.context_embedder.weight,
                                                                            X_e, X_g, X_p).cpu())
    W = closed_form(W_hat, X_e.double(), X_g.double(), X_p.double()).clone().requires_grad_(True)
    f = objective(W, W_hat, X_e.double(), X_g.double(), X_p.double())
    (grad,) = torch.autograd.grad(f, W)
    assert grad.abs().max() < 1e-9 * max(1.0, float(f.detach()))
    before = (X_e.double() @ W_hat.T - X_g.double() @ W_hat.T).norm()
    after = (X_e.double() @ W.detach().T - X_g.double() @ W_hat.T).norm()  # the erased rows carried to the guide's
    assert after < 0.5 * before
    with edit.applied(sd3):
        assert torch.equal(sd3.transformer.context_embedder.weight, edit.weights["context_embedder.weight"])
    with pytest.raises(LocoError, match="UCE edits the text embedder"):
        uce(sd3, "van gogh", layers=[3])
