"""Causal tracing (loco_lib.trace) and DiffQuickFix (loco_lib.diffquickfix).

Each test checks a property that a wrong implementation breaks: the state list against the order in
which a real forward calls the modules, restore-all against the clean run bit for bit, the corrupted
run against an independent corruption, causal reachability, batched against the loop, the seeded
noise, the cache, and the DiffQuickFix minimiser.
"""
import json
import os

import numpy as np
import pytest
import torch

from loco_lib import diffquickfix, locoedit, models, trace
from loco_lib.architectures import meta_unet
from loco_lib.errors import LocoError
from loco_lib.generate import sample_batch
from loco_lib.hooks import Record, hooks
from loco_lib.layers import cross_attention_layers
from loco_lib.text import encode
from floats import ULPS, close, ulps  # tests/floats.py

STEPS = 3
PROMPT = "a photo of a cat in the style of van gogh"


@pytest.fixture(scope="module")
def sd15():
    return models.load("tiny-sd15", progress=False)


@pytest.fixture(scope="module")
def toy():
    return models.load("toy", progress=False)


@pytest.fixture(scope="module")
def toy_t5():
    return models.load("toy-t5", progress=False)


def _call_order(module, names):
    """Module names in the order a real forward *starts* them (independent of loco's list)."""
    seen, handles = [], []
    for name in names:
        m = module.get_submodule(name)
        handles.append(m.register_forward_pre_hook(lambda mod, args, name=name: seen.append(name)))
    return seen, handles


@pytest.mark.parametrize("granularity", ["loco", "paper"])
@pytest.mark.parametrize("name", ["tiny-sd15", "tiny-sdxl", "tiny-if", "toy"])
def test_unet_states_are_in_execution_order(name, granularity):
    pipe = models.load(name, progress=False)
    states = trace.unet_states(pipe.unet, trace.UNET_GRANULARITY[granularity])
    names = [s.name for s in states]
    assert len(set(names)) == len(names)
    seen, handles = _call_order(pipe.unet, names)
    try:
        prompt = "a red circle" if name == "toy" else "a cat"
        sample_batch(pipe, encode(pipe, [prompt]), [0], steps=1, guidance=2.0, output_type="np")
    finally:
        for h in handles:
            h.remove()
    assert list(dict.fromkeys(seen)) == names
    n_text = sum(s.kind in ("cross-attention", "attention") for s in states)
    assert n_text == len(cross_attention_layers(pipe.unet))
    assert {s.kind for s in trace.unet_states(pipe.unet, kinds="resnet")} == {"resnet"}


@pytest.mark.parametrize("arch", ["sd15", "sd21", "sdxl", "deepfloyd-if"])
def test_full_size_unets_on_the_meta_device(arch):
    unet = meta_unet(arch)
    states = trace.unet_states(unet)
    kinds = [s.kind for s in states]
    assert kinds.count("cross-attention") + kinds.count("attention") == len(cross_attention_layers(unet))
    assert kinds.count("resnet") == sum(len(getattr(b, "resnets", []) or []) for b in
                                        [*unet.down_blocks, unet.mid_block, *unet.up_blocks])
    for s in states:
        unet.get_submodule(s.name)


def test_the_paper_granularity_gives_the_posters_counts():
    """The poster's UNet panels end at 70 (SD-2.1) and 227 (SD-XL) states: each ResNet block and each
    transformer block's self-attention, cross-attention and feed-forward. loco's default (whole
    transformer blocks and their cross-attention) stays as it was."""
    expected = {"sd15": (54, 70), "sd21": (54, 70), "sdxl": (157, 227), "deepfloyd-if": (52, 52)}
    for arch, (loco, paper) in expected.items():
        unet = meta_unet(arch)
        assert len(trace.unet_states(unet)) == loco
        states = trace.unet_states(unet, trace.PAPER_UNET_KINDS)
        assert len(states) == paper
        for s in states:
            module = unet.get_submodule(s.name)
            assert s.kind != "feed-forward" or type(module).__name__ == "FeedForward"
            assert s.kind != "self-attention" or not module.is_cross_attention
    assert trace.State(0, "x.attn1", "self-attention").label == " attn1"


def _restore_all(pipe, prompt, subject, where, **kw):
    """Restore every state at once (text: every layer's output of the traced encoders, all tokens)."""
    states = trace.unet_states(pipe.unet) if where == "unet" else trace.encoder_states(pipe, kw.get("encoder", 1), ("layer",))
    kinds = None if where == "unet" else ("layer",)
    extra = {} if where == "unet" else {"tokens": "all"}
    return trace.trace(pipe, prompt, subject, where=where, kinds=kinds, sets=[tuple(range(len(states)))], steps=STEPS,
                       seeds=[0], progress=False, keep_arrays=True, **extra, **kw)


@pytest.mark.parametrize("where", ["unet", "text"])
@pytest.mark.parametrize("name", ["tiny-sd15", "tiny-if", "toy", "toy-t5"])
def test_restoring_every_state_gives_the_clean_image_bit_for_bit(name, where):
    pipe = models.load(name, progress=False)
    prompt, subject = ("a red circle in the style of van gogh", "van gogh") if name.startswith("toy") else (PROMPT, "cat")
    r = _restore_all(pipe, prompt, subject, where)
    clean, corrupted, restored = (r.arrays[trace.Run(0, 0, x)] for x in (None, (), r.sets[0]))
    assert np.abs(clean - corrupted).max() > 1e-3  # the corruption changes the image
    assert np.array_equal(restored, clean)


def test_sdxl_text_restore_of_one_encoder_gives_its_half_of_the_embedding():
    pipe = models.load("tiny-sdxl", progress=False)
    d1 = pipe.text_encoder.config.hidden_size
    for encoder, half in ((1, slice(0, d1)), (2, slice(d1, None))):
        component = trace.encoder_component(pipe, encoder)
        states = trace.encoder_states(pipe, encoder, ("layer",))
        from loco_lib.hooks import FromSample, Patch

        patches = trace.corruption(pipe, PROMPT, "cat", 0, [1]) + [
            Patch(s.site, FromSample(0), samples=[1], steps=[0]) for s in states]
        with hooks(pipe, patches=patches):
            cond = encode(pipe, [PROMPT, PROMPT])
        with hooks(pipe, patches=trace.corruption(pipe, PROMPT, "cat", 0, [1])):
            corrupted = encode(pipe, [PROMPT, PROMPT])
        other = slice(d1, None) if encoder == 1 else slice(0, d1)
        assert torch.equal(cond.embeds[1][:, half], cond.embeds[0][:, half]), component
        assert torch.equal(cond.embeds[1][:, other], corrupted.embeds[1][:, other])
        assert not torch.equal(cond.embeds[1][:, other], cond.embeds[0][:, other])
        assert torch.equal(cond.negative[0], cond.negative[1])  # the negative prompt is never touched
    assert (torch.equal(cond.pooled[0], corrupted.pooled[0]))


def test_corrupted_run_equals_an_independent_corruption(sd15):
    """The corrupted row of a batch full of restored rows equals a run fed the corrupted embedding
    computed by hand (token embeddings + the seeded noise, through the encoder's own layers)."""
    r = trace.trace(sd15, PROMPT, "cat", where="unet", steps=STEPS, seeds=[3], progress=False, keep_arrays=True)
    from loco_lib.tokens import subject_tokens

    ids = sd15.tokenizer([PROMPT], padding="max_length", max_length=sd15.tokenizer.model_max_length, return_tensors="pt").input_ids
    enc = sd15.text_encoder
    table = enc.get_input_embeddings()
    gen = torch.Generator().manual_seed(trace.CORRUPTION_SEED + 3)
    pos = subject_tokens(sd15, PROMPT, "cat")
    noise = torch.randn(len(pos), table.weight.shape[1], generator=gen) * 3 * table.weight.std()
    with torch.no_grad():
        tokens = table(ids)
        tokens[0, pos] += noise
        h = table.register_forward_hook(lambda m, args, out: tokens)  # a plain torch hook, not loco's
        try:
            hidden = enc(ids).last_hidden_state
        finally:
            h.remove()
    cond = encode(sd15, [PROMPT])
    cond.embeds = hidden
    from loco_lib import settings

    img = sample_batch(sd15, cond, [3], steps=STEPS, guidance=settings.guidance(sd15, None), output_type="np")[0]
    assert close(img, r.arrays[trace.Run(0, 3, ())])


def test_the_noise_is_seeded_and_sits_on_the_subject_tokens(sd15):
    site = trace.embedding_site(sd15)

    def corrupted(seed):
        with hooks(sd15, records=[Record(site, steps=[0])], patches=trace.corruption(sd15, PROMPT, "cat", seed, [1])) as rec:
            encode(sd15, [PROMPT, PROMPT])
        return rec[site][0]

    a, b, c = corrupted(0), corrupted(0), corrupted(1)
    assert torch.equal(a, b) and not torch.equal(a[1], c[1])
    from loco_lib.tokens import subject_tokens

    pos = subject_tokens(sd15, PROMPT, "cat")
    changed = (a[1] != a[0]).any(-1).nonzero().flatten().tolist()
    assert changed == pos
    noise = (a[1] - a[0])[pos]
    expected = trace.noise_scale(sd15)
    assert 0.5 * expected < float(noise.std()) < 1.5 * expected


@pytest.mark.parametrize("name,causal", [("toy", True), ("tiny-sd15", True), ("toy-t5", False)])
def test_states_before_the_subject_cannot_restore_a_causal_encoder(name, causal):
    """In a causal encoder the positions before the subject never see the noise: restoring them
    leaves the corrupted image exactly as it is. T5 is bidirectional: there they carry it."""
    pipe = models.load(name, progress=False)
    prompt, subject = ("a red circle in the style of van gogh", "van gogh") if name.startswith("toy") else (PROMPT, "cat")
    from loco_lib.tokens import subject_tokens

    before = list(range(subject_tokens(pipe, prompt, subject)[0]))
    r = trace.trace(pipe, prompt, subject, where="text", kinds=("layer",), tokens=before, steps=STEPS, progress=False,
                    keep_arrays=True)
    corrupted = r.arrays[trace.Run(0, 0, ())]
    same = [np.array_equal(r.arrays[trace.Run(0, 0, st)], corrupted) for st in r.sets]
    assert all(same) if causal else not any(same)


@pytest.mark.parametrize("where", ["unet", "text"])
def test_batched_trace_equals_the_loop(toy, where):
    kw = dict(where=where, steps=4, seeds=[0], progress=False, keep_arrays=True, batch_size=8)
    a = trace.trace(toy, "a blue square in the style of monet", "monet", **kw)
    b = trace.trace(toy, "a blue square in the style of monet", "monet", batched=False, **kw)
    assert a.arrays.keys() == b.arrays.keys()
    diff = max(ulps(a.arrays[r], b.arrays[r]) for r in a.arrays)
    assert diff <= ULPS, diff
    assert a.counter["rows"] < b.counter["rows"] and a.counter["calls"] < b.counter["calls"]


def test_trace_batch_halves_on_out_of_memory(toy, monkeypatch):
    """The tracer runs on the job engine of the sweep: a call that runs out of memory is halved and
    tried again (the clean run riding in each), later calls keep the size that fitted, and every run
    comes out as in a trace that never ran out."""
    import sys

    generate_mod = sys.modules["loco_lib.generate"]  # (the package's ``generate`` is the function)
    kw = dict(where="unet", steps=2, seeds=[0], progress=False, keep_arrays=True, batch_size=8)
    ref = trace.trace(toy, "a blue square in the style of monet", "monet", **kw)
    real, sizes = generate_mod.sample_batch, []

    def small_gpu(pipe, cond, seeds, **k):
        sizes.append(len(seeds))
        if len(seeds) > 4:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(pipe, cond, seeds, **k)

    monkeypatch.setattr(generate_mod, "sample_batch", small_gpu)
    res = trace.trace(toy, "a blue square in the style of monet", "monet", **kw)
    assert sizes[:2] == [8, 4]  # clean + 7 restored runs, then clean + 3
    assert set(sizes[1:]) <= {4, 3, 2} and len(sizes) > 3
    assert res.arrays.keys() == ref.arrays.keys() and set(res.computed) == set(ref.computed)
    assert max(ulps(ref.arrays[r], res.arrays[r]) for r in ref.arrays) <= ULPS

    monkeypatch.setattr(generate_mod, "sample_batch", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("broken")))
    with pytest.raises(RuntimeError, match="broken"):
        trace.trace(toy, "a blue square in the style of monet", "monet", **kw)


def test_trace_resumes_from_its_cache(toy, tmp_path):
    kw = dict(where="text", steps=3, seeds=[0, 1], progress=False, cache_dir=tmp_path)
    first = trace.trace(toy, "a red square in the style of monet", "monet", **kw)
    assert len(first.computed) == 2 * (2 + len(first.sets))
    again = trace.trace(toy, "a red square in the style of monet", "monet", **kw)
    assert again.computed == [] and again.scores == first.scores
    victim = sorted(tmp_path.glob("*.png"))[0]
    victim.write_bytes(b"broken")
    with pytest.warns(Warning, match="damaged cache entry"):
        third = trace.trace(toy, "a red square in the style of monet", "monet", **kw)
    assert len(third.computed) == 1


def test_result_json_and_states_needed(toy):
    # (at 3 steps the noised "monet" moves this prompt's score by under a point: van gogh's corrupts)
    r = trace.trace(toy, "a red circle in the style of van gogh", "van gogh", where="unet", steps=3, progress=False)
    assert r.summary()["left out"] == 0
    out = json.loads(json.dumps(r.to_json()))
    assert {"clean", "corrupted", "layers"} <= set(out)
    assert [x["index"] for x in out["layers"]] == list(range(len(r.states)))
    assert {"index", "name", "score", "restored"} <= set(out["layers"][0])
    best = max(out["layers"], key=lambda x: x["score"])
    assert best["restored"] == pytest.approx((best["score"] - out["corrupted"]) / (out["clean"] - out["corrupted"]))
    needed = trace.states_needed(toy, r, ks=[1, len(r.states)], progress=False)
    assert needed.curve["restored"].iloc[-1] == pytest.approx(1.0)  # every state restored = clean
    assert needed.needed[0.9] in (1, len(r.states))


def test_sdxl_both_encoders_restore_the_same_state_in_each():
    """encoder="both": each entry is one layer and kind of encoder 1 with the same of encoder 2 (past
    encoder 1's depth, encoder 2's alone). Restoring an entry puts back, in each encoder, what the
    single-encoder restore puts back: the conditional embedding of a "both" restore is encoder 1's
    restore in its half and encoder 2's in the other half, and the pooled embedding is encoder 2's.
    Restoring every layer output of both encoders gives the clean image bit for bit; one encoder alone
    does not."""
    pipe = models.load("tiny-sdxl", progress=False)
    with pytest.raises(LocoError, match="one text encoder"):
        trace.encoder_states(models.load("tiny-sd15", progress=False), "both")
    assert trace.model_encoders(pipe) == [1, 2, "both"]
    states = trace.encoder_states(pipe, "both")
    groups = trace.entries(states)
    n1, n2 = pipe.text_encoder.config.num_hidden_layers, pipe.text_encoder_2.config.num_hidden_layers
    assert len(groups) == 2 * max(n1, n2)
    for g in groups:
        pair = [states[i] for i in g]
        assert len({(s.layer, s.kind) for s in pair}) == 1
        assert [s.component for s in pair] == (["text_encoder", "text_encoder_2"] if pair[0].layer < n1 else ["text_encoder_2"])
    d1 = pipe.text_encoder.config.hidden_size
    from loco_lib.hooks import FromSample, Patch

    def restored(chosen):
        patches = trace.corruption(pipe, PROMPT, "cat", 0, [1]) + [
            Patch(s.site, FromSample(0), samples=[1], steps=[0]) for s in chosen]
        with hooks(pipe, patches=patches):
            return encode(pipe, [PROMPT, PROMPT])

    pair = [states[i] for i in groups[0]]
    both = restored(pair)
    alone = {s.component: restored([s]) for s in pair}
    assert torch.equal(both.embeds[1][:, :d1], alone["text_encoder"].embeds[1][:, :d1])
    assert torch.equal(both.embeds[1][:, d1:], alone["text_encoder_2"].embeds[1][:, d1:])
    assert torch.equal(both.pooled[1], alone["text_encoder_2"].pooled[1])
    r = _restore_all(pipe, PROMPT, "cat", "text", encoder="both")
    clean, corrupted, every = (r.arrays[trace.Run(0, 0, x)] for x in (None, (), r.sets[0]))
    assert np.abs(clean - corrupted).max() > 1e-3 and np.array_equal(every, clean)
    one = _restore_all(pipe, PROMPT, "cat", "text", encoder=1)
    assert not np.array_equal(one.arrays[trace.Run(0, 0, one.sets[0])], clean)
    t = trace.trace(pipe, PROMPT, "cat", where="text", encoder="both", steps=2, progress=False)
    assert len(t.sets) == len(groups) and t.set_name(0).count("+") == 1
    assert t.to_json()["encoder"] == "both"
    needed = trace.states_needed(pipe, t, ks=[1, 2], progress=False)
    first, second = (t.sets[k] for k in t.ranking()[:2])
    assert needed.curve["states"].tolist() == [[t._state_id(i) for i in first],
                                               [t._state_id(i) for i in sorted(first + second)]]


def test_sdxl_text_trace_of_each_encoder():
    pipe = models.load("tiny-sdxl", progress=False)
    for encoder in (1, 2):
        r = trace.trace(pipe, PROMPT, "cat", where="text", encoder=encoder, steps=2, progress=False)
        enc = getattr(pipe, trace.encoder_component(pipe, encoder))
        assert len(r.sets) == 2 * enc.config.num_hidden_layers
        assert all(s.component == trace.encoder_component(pipe, encoder) for s in r.states)
        assert r.clean != r.corrupted


def test_windows_and_bands():
    assert trace.windows(5, 1) == [(0,), (1,), (2,), (3,), (4,)]
    assert trace.windows(5, 3) == [(0, 1), (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4)]
    assert trace.step_bands(10, 3) == [(0, 1, 2), (3, 4, 5, 6), (7, 8, 9)]
    with pytest.raises(LocoError, match="bands"):
        trace.step_bands(3, 4)


def test_bad_trace_inputs_are_one_line_errors(toy):
    cases = [
        (dict(where="middle"), "unknown place"),
        (dict(subjects="monet", prompts="a red circle"), "does not occur"),
        (dict(encoder=2, where="text"), "one text encoder"),
        (dict(encoder=2), "goes with where='text'"),
        (dict(kinds="mlp"), "unknown state kind"),
        (dict(where="text", tokens="middle"), "unknown token choice"),
        (dict(where="text", bands=2), "go with where='unet'"),
        (dict(bands=99), "bands must be"),
        (dict(window=0), "window must be"),
        (dict(batch_size=1), "batch_size >= 2"),
        (dict(factor=-1), "noise factor"),
        (dict(sets=[(999,)]), "restored set"),
        (dict(subjects=["van gogh", "monet"]), "2 subjects given for 1 prompts"),
        (dict(subjects=None), "give subjects"),
    ]
    for kw, msg in cases:
        args = {"prompts": "a red circle in the style of van gogh", "subjects": "van gogh", "steps": 2, "progress": False, **kw}
        prompts, subjects = args.pop("prompts"), args.pop("subjects")
        with pytest.raises(LocoError, match=msg):
            trace.trace(toy, prompts, subjects, **args)


# -- DiffQuickFix -----------------------------------------------------------------------------------

ORIG = ["a red circle in the style of van gogh", "a blue square in the style of van gogh", "a green cross in the style of van gogh"]
TARG = ["a red circle in the style of a painting", "a blue square in the style of a painting", "a green cross in the style of a painting"]


def _out_proj_inputs(pipe, prompts, encoder=1):
    """Independent of loco's hooks: a torch pre-hook on the first self-attention's output projection."""
    seen = []
    component, _, name = diffquickfix.projection(pipe, 0, encoder)
    proj = getattr(pipe, component).get_submodule(name)
    h = proj.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    try:
        encode(pipe, prompts)
    finally:
        h.remove()
    return seen[0]


@pytest.mark.parametrize("name,encoder", [("toy", 1), ("toy-t5", 1), ("tiny-sd15", 1), ("tiny-if", 1), ("tiny-sdxl", 2)])
def test_diffquickfix_rows_and_minimiser(name, encoder):
    pipe = models.load(name, progress=False)
    orig, targ, subj, tsubj = (ORIG, TARG, "van gogh", "a painting") if name.startswith("toy") else (
        ["a cat in the style of van gogh", "a dog in the style of van gogh"], ["a cat", "a dog"], "van gogh", None)
    from loco_lib.tokens import subject_token_index

    component = trace.encoder_component(pipe, encoder)
    x = diffquickfix.rows(pipe, orig, subj, encoder=encoder)
    ref = _out_proj_inputs(pipe, orig, encoder)
    tok = pipe if encoder == 1 else pipe.tokenizer_2
    pos = [subject_token_index(tok, p, subj) for p in orig]
    assert torch.equal(x, ref[torch.arange(len(orig)), pos])
    edit = diffquickfix.compute_edit(pipe, orig, targ, subj, tsubj, encoder=encoder)
    assert edit.component == component and edit.method == "diffquickfix"
    (pname, W), = edit.weights.items()
    W_hat = getattr(pipe, component).get_parameter(pname).detach()
    xo, xt = x.double(), diffquickfix.rows(pipe, targ, tsubj, encoder=encoder).double()
    W = W.double().requires_grad_(True)
    loss = locoedit.objective(W, W_hat.double(), xo, xt, locoedit.LAMBDA)
    (grad,) = torch.autograd.grad(loss, W)
    assert float(grad.abs().max()) < 1e-4 * max(1.0, float(loss.detach()))
    for _ in range(3):
        other = W.detach() + 1e-3 * torch.randn_like(W)
        assert float(locoedit.objective(other, W_hat.double(), xo, xt)) > float(loss.detach())


def test_diffquickfix_edit_applies_reverts_and_saves(toy, tmp_path):
    edit = diffquickfix.compute_edit(toy, ORIG, TARG, "van gogh", "a painting")
    before = {k: v.clone() for k, v in toy.text_encoder.state_dict().items()}
    unet_before = {k: v.clone() for k, v in toy.unet.state_dict().items()}
    with edit.applied(toy):
        x = diffquickfix.rows(toy, ORIG, "van gogh")
        proj = toy.text_encoder.get_submodule(diffquickfix.projection(toy)[2])
        target_out = torch.nn.functional.linear(diffquickfix.rows(toy, TARG, "a painting"),
                                                before[diffquickfix.projection(toy)[2] + ".weight"], proj.bias)
        # the originals' output at the causal state now moves to the targets' (lambda keeps it inexact)
        assert (proj(x) - target_out).norm() < 0.2 * (torch.nn.functional.linear(
            x, before[diffquickfix.projection(toy)[2] + ".weight"], proj.bias) - target_out).norm()
    assert all(torch.equal(v, toy.text_encoder.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, toy.unet.state_dict()[k]) for k, v in unet_before.items())
    path = edit.save(tmp_path / "dqf.safetensors")
    loaded = locoedit.Edit.load(path)
    assert loaded.component == "text_encoder" and loaded.method == "diffquickfix"
    assert all(torch.equal(loaded.weights[k], edit.weights[k]) for k in edit.weights)
    with pytest.raises(LocoError, match="give the whole pipeline"):
        loaded.apply(toy.unet)
    with pytest.raises(LocoError, match="self-attention layers 0..2"):
        diffquickfix.compute_edit(toy, ORIG, TARG, "van gogh", "a painting", layer=7)


def test_cli_trace_and_diffquickfix(tmp_path, capsys):
    from loco_lib.cli import main

    assert main(["trace", "toy", "--where", "text", "--prompt", "a red circle in the style of monet", "--subject",
                 "monet", "--steps", "2", "--json", "--quiet", "--cache", str(tmp_path / "c")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"clean", "corrupted", "layers"} <= set(out) and len(out["layers"]) == 6
    assert main(["trace", "tiny-sdxl", "--where", "text", "--encoder", "both", "--prompt", "a photo of a cat", "--subject",
                 "cat", "--steps", "2", "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["encoder"] == "both" and " + text_encoder_2." in out["layers"][0]["name"]
    assert main(["trace", "toy", "--where", "unet", "--states", "paper", "--prompt", "a red circle in the style of monet",
                 "--subject", "monet", "--steps", "2", "--json", "--quiet", "--cache", str(tmp_path / "c")]) == 0
    kinds = {x["kind"] for x in json.loads(capsys.readouterr().out)["layers"]}
    assert kinds == {"resnet", "self-attention", "cross-attention", "feed-forward"}
    for argv, msg in [
        (["trace", "toy", "--where", "text", "--prompt", "a red circle", "--subject", "monet"], "does not occur"),
        (["trace", "toy", "--where", "text", "--encoder", "2", "--prompt", "a red circle", "--subject", "circle"], "one text encoder"),
        (["trace", "toy", "--where", "middle"], "invalid choice"),
        (["trace", "toy", "--where", "unet", "--prompt", "a red circle"], "needs --subject"),
        (["trace", "toy", "--where", "text", "--bands", "2"], "goes with --where unet"),
        (["trace", "toy", "--where", "text", "--states", "paper"], "goes with --where unet"),
        (["trace", "toy", "--where", "unet", "--encoder", "both"], "goes with --where text"),
        (["trace", "toy", "--where", "text", "--encoder", "both", "--prompt", "a red circle", "--subject", "circle"], "one text encoder"),
        (["trace", "toy", "--where", "unet", "--noise", "-1"], "--noise"),
        (["edit", "toy", "--method", "diffquickfix", "--attribute", "style", "--layers", "1", "--out", str(tmp_path / "e.safetensors")], "--layers"),
        (["edit", "toy", "--attribute", "style", "--out", str(tmp_path / "e.safetensors")], "needs the localized layers"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and msg in err, err
    path = str(tmp_path / "dqf.safetensors")
    assert main(["edit", "toy", "--method", "diffquickfix", "--attribute", "style", "--out", path]) == 0
    assert "diffquickfix" in capsys.readouterr().out and os.path.isfile(path)
    assert main(["evaluate", "toy", "--attribute", "style", "--edit", path, "--limit", "2", "--steps", "2", "--json", "--quiet"]) == 0
    assert "clip_score" in json.loads(capsys.readouterr().out)
