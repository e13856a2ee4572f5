"""LocoEdit (paper Sec. 6, App. F, H, M): the closed form, the rows it reads, and edits on the twins."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from loco_lib import models
from loco_lib.errors import LocoError
from loco_lib.generate import generate
from loco_lib.hooks import Record, Site, hooks
from loco_lib.layers import cross_attention_layers
from loco_lib.edit_file import TIMING_KEYS, Edit
from loco_lib.locoedit import closed_form, compute_edit, kv_rows, objective
from loco_lib.prompts import OBJECT_TEMPLATES, STYLE_TEMPLATES, augment
from loco_lib.text import encode
from loco_lib.tokens import last_token_index, subject_token_index

STEPS = 2
PROMPT = "a house in the style of van gogh"


def rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def images(pipe, prompt=PROMPT) -> np.ndarray:
    out = generate(pipe, [prompt], seeds=0, steps=STEPS, output_type="np", progress=False)
    return np.stack([np.asarray(im) for im in out.images])


def unet_state(pipe) -> dict:
    return {k: v.detach().clone() for k, v in pipe.unet.state_dict().items()}


def changed_keys(before: dict, pipe) -> set:
    after = pipe.unet.state_dict()
    assert set(after) == set(before)
    return {k for k in before if not torch.equal(before[k], after[k])}


# ---------------------------------------------------------------------------------------------
# 1. The closed form
# ---------------------------------------------------------------------------------------------

# (in, out) of real projections: SD-1.5 to_k (768 -> 320), SD-XL to_k (2048 -> 640 / 1280)
SHAPES = [(768, 320), (2048, 640), (2048, 1280)]


def lstsq_solution(W_hat, Xo, Xt, lam):
    """The ridge problem as one stacked least-squares system, solved by torch.linalg.lstsq."""
    d = W_hat.shape[1]
    A = torch.cat([Xo, lam**0.5 * torch.eye(d, dtype=torch.float64)])
    B = torch.cat([Xt @ W_hat.T, lam**0.5 * W_hat.T])
    return torch.linalg.lstsq(A, B).solution.T  # back to Linear layout [out, in]


@pytest.mark.parametrize("din,dout", SHAPES, ids=[f"{a}x{b}" for a, b in SHAPES])
def test_closed_form_equals_lstsq(din, dout):
    W_hat, Xo, Xt = rand(dout, din, seed=1), rand(8, din, seed=2), rand(8, din, seed=3)
    W = closed_form(W_hat, Xo, Xt, 0.01)
    assert W.shape == W_hat.shape and W.dtype == W_hat.dtype
    ref = lstsq_solution(W_hat, Xo, Xt, 0.01)
    assert torch.allclose(W, ref, rtol=0, atol=1e-9), float((W - ref).abs().max())
    assert not torch.allclose(W, W_hat, atol=1e-3)  # the edit is not a no-op


def test_closed_form_more_rows_than_width_equals_lstsq():
    """N >= d takes the d x d system; it must give the same answer."""
    W_hat, Xo, Xt = rand(24, 32, seed=4), rand(50, 32, seed=5), rand(50, 32, seed=6)
    for lam in (0.01, 3.0):
        W = closed_form(W_hat, Xo, Xt, lam)
        assert torch.allclose(W, lstsq_solution(W_hat, Xo, Xt, lam), rtol=0, atol=1e-10)


def test_closed_form_matches_paper_formula():
    """W = (X^T X + lam I)^-1 (X^T X_t W_hat + lam W_hat) in the paper's row-vector layout."""
    din, dout, lam = 48, 20, 0.01
    A_hat, Xo, Xt = rand(dout, din, seed=7), rand(6, din, seed=8), rand(6, din, seed=9)
    W_hat = A_hat.T  # paper layout d x d'
    W_paper = torch.linalg.inv(Xo.T @ Xo + lam * torch.eye(din, dtype=torch.float64)) @ (Xo.T @ Xt @ W_hat + lam * W_hat)
    assert torch.allclose(closed_form(A_hat, Xo, Xt, lam), W_paper.T, atol=1e-8)


@pytest.mark.parametrize("din,dout", [(768, 320), (2048, 640)])
def test_gradient_vanishes_at_solution(din, dout):
    W_hat, Xo, Xt = rand(dout, din, seed=10), rand(8, din, seed=11), rand(8, din, seed=12)
    W = closed_form(W_hat, Xo, Xt, 0.01).requires_grad_(True)
    (g,) = torch.autograd.grad(objective(W, W_hat, Xo, Xt, 0.01), W)
    W0 = W_hat.clone().requires_grad_(True)
    (g0,) = torch.autograd.grad(objective(W0, W_hat, Xo, Xt, 0.01), W0)
    assert g0.norm() > 1.0  # the starting point is not optimal
    assert g.norm() / g0.norm() < 1e-10
    assert objective(W.detach(), W_hat, Xo, Xt, 0.01) < objective(W_hat, W_hat, Xo, Xt, 0.01)


@pytest.mark.parametrize("n,din,dout", [(8, 768, 320), (16, 2048, 1280), (32, 32, 16)])
def test_small_lambda_maps_keys_to_target_keys(n, din, dout):
    """lam -> 0 with N <= d: every original row's new key is its target's old key."""
    W_hat, Xo, Xt = rand(dout, din, seed=13), rand(n, din, seed=14), rand(n, din, seed=15)
    W = closed_form(W_hat, Xo, Xt, 1e-8)
    target = Xt @ W_hat.T
    assert torch.allclose(Xo @ W.T, target, atol=1e-5 * float(target.abs().max()))
    # ... and the regulariser matters at the paper's lambda when rows are small
    W_reg = closed_form(W_hat, 0.05 * Xo, 0.05 * Xt, 0.01)
    assert not torch.allclose(0.05 * Xo @ W_reg.T, 0.05 * target, atol=1e-3)


def test_update_is_low_rank_and_leaves_orthogonal_inputs_alone():
    W_hat, Xo, Xt = rand(320, 768, seed=16), rand(5, 768, seed=17), rand(5, 768, seed=18)
    W = closed_form(W_hat, Xo, Xt, 0.01)
    assert torch.linalg.matrix_rank(W - W_hat) == 5
    v = rand(3, 768, seed=19)
    v = v - (v @ torch.linalg.pinv(Xo)) @ Xo  # project out the rows' span
    assert torch.allclose(v @ W.T, v @ W_hat.T, atol=1e-9)


def test_closed_form_keeps_dtype_and_checks_inputs():
    W16 = rand(16, 32, seed=20).half()
    out = closed_form(W16, rand(3, 32).float(), rand(3, 32, seed=1).float())
    assert out.dtype == torch.float16 and out.shape == (16, 32)
    with pytest.raises(LocoError, match="shape"):
        closed_form(W16, rand(3, 31), rand(3, 31))
    with pytest.raises(LocoError, match="rows"):
        closed_form(W16, rand(3, 32), rand(4, 32))
    with pytest.raises(LocoError, match="lambda"):
        closed_form(W16, rand(3, 32), rand(3, 32), lam=0.0)


# ---------------------------------------------------------------------------------------------
# 2. Prompt variants
# ---------------------------------------------------------------------------------------------

def test_augment_style_follows_the_authors():
    o, t, s = augment("style", "van gogh")
    assert o == ["van gogh", "a painting in the style of van gogh", "a photo in the style of van gogh",
                 "a picture in the style of van gogh"]
    assert t == ["a painting"] * 4 and s == ["van gogh"] * 4
    assert len(STYLE_TEMPLATES) == 4


def test_augment_objects_facts_and_lists():
    o, t, s = augment("objects", "r2d2")
    assert o[1] == "an image of r2d2" and t[1] == "an image of robot" and set(s) == {"r2d2"}
    assert OBJECT_TEMPLATES == ("{}", "an image of {}", "a photo of {}", "a picture of {}")  # the authors' design_objects
    o, t, s = augment("facts", "the president of the united states")
    assert t[0] == "joe biden" and len(o) == len(t) == len(s) == 4
    o, t, s = augment("style", ["monet", "van gogh"], target="a photo", templates=["{}", "art by {}"])
    assert o == ["monet", "art by monet", "van gogh", "art by van gogh"] and t == ["a photo"] * 4
    with pytest.raises(LocoError, match="target"):
        augment("objects", "blorp")
    with pytest.raises(LocoError, match="attribute"):
        augment("colour", "red")


# ---------------------------------------------------------------------------------------------
# 3. tiny-sd15: rows, edits, files
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd15():
    return models.load("tiny-sd15", progress=False)


@pytest.fixture(scope="module")
def edit15(sd15):
    o, t, s = augment("style", "van gogh")
    return compute_edit(sd15, [8, 9], o, t, s)


def test_rows_are_the_subject_token_embeddings(sd15):
    prompts = ["a cat on a sofa in the style of van gogh", "a house in the style of van gogh", "a painting"]
    subjects = ["cat", "van gogh", None]
    rows = kv_rows(sd15, [8, 9], prompts, subjects)
    assert set(rows) == {8, 9}
    emb = encode(sd15, prompts).embeds
    pos = [subject_token_index(sd15, p, s) for p, s in zip(prompts, subjects)]
    assert pos[0] < last_token_index(sd15, prompts[0])  # the subject is not the last token
    expected = torch.stack([emb[i, p] for i, p in enumerate(pos)])
    assert rows[8].shape == (3, 32)
    assert torch.equal(rows[8], expected) and torch.equal(rows[9], expected)
    assert not torch.equal(rows[8][0], emb[0, last_token_index(sd15, prompts[0])])


def test_edit_changes_exactly_the_chosen_projections(sd15, edit15):
    layers = cross_attention_layers(sd15.unet)
    expected = {f"{layers[i].name}.{p}.weight" for i in (8, 9) for p in ("to_k", "to_v")}
    assert set(edit15.weights) == expected
    before = unet_state(sd15)
    text_before = {k: v.clone() for k, v in sd15.text_encoder.state_dict().items()}
    edit15.apply(sd15)
    try:
        assert changed_keys(before, sd15) == expected
    finally:
        edit15.revert(sd15)
    assert changed_keys(before, sd15) == set()  # bit-for-bit
    assert all(torch.equal(v, sd15.text_encoder.state_dict()[k]) for k, v in text_before.items())


def test_metadata(sd15, edit15):
    import loco_lib

    m = edit15.meta
    assert m["model"] == "tiny-sd15" and m["layers"] == [8, 9] and m["lambda"] == 0.01
    assert m["loco_lib_version"] == loco_lib.__version__ and m["originals"][0] == "van gogh"
    assert edit15.layers == [8, 9] and 0 <= edit15.edit_seconds < 5
    assert len(edit15.fingerprint) == 32


def test_edited_key_is_the_target_key(sd15):
    """After the edit, to_k / to_v of the original row give the old output of the target row."""
    o, t, s = augment("style", "van gogh")
    edit = compute_edit(sd15, [8], o, t, s, lam=1e-7)
    layer = cross_attention_layers(sd15.unet)[8]
    attn = sd15.unet.get_submodule(layer.name)
    xo = kv_rows(sd15, [8], o, s)[8]
    xt = kv_rows(sd15, [8], t)[8]
    with torch.no_grad():
        k_target, v_target, k_before = attn.to_k(xt), attn.to_v(xt), attn.to_k(xo)
        with edit.applied(sd15):
            k_after, v_after = attn.to_k(xo), attn.to_v(xo)
    assert not torch.allclose(k_before, k_target, atol=1e-2)
    assert torch.allclose(k_after, k_target, atol=1e-3) and torch.allclose(v_after, v_target, atol=1e-3)


def test_preserve_rows_keep_their_keys(sd15):
    o, t, s = augment("style", "van gogh")
    keep = ["a photo of a dog", "a red car"]
    layer = cross_attention_layers(sd15.unet)[9]
    attn = sd15.unet.get_submodule(layer.name)
    xp = kv_rows(sd15, [9], keep)[9]
    with torch.no_grad():
        k0 = attn.to_k(xp)
        plain = compute_edit(sd15, [9], o, t, s)
        kept = compute_edit(sd15, [9], o, t, s, preserve=keep)
        with plain.applied(sd15):
            k_plain = attn.to_k(xp)
        with kept.applied(sd15):
            k_kept = attn.to_k(xp)
    assert kept.meta["n_rows"] == 6 and kept.meta["preserve"] == keep
    err_plain, err_kept = float((k_plain - k0).abs().max()), float((k_kept - k0).abs().max())
    assert err_kept < 0.2 * err_plain, (err_kept, err_plain)


def test_save_load_generate_equals_in_memory(sd15, edit15, tmp_path):
    from safetensors import safe_open

    clean = images(sd15)
    with edit15.applied(sd15):
        edited = images(sd15)
    assert not np.array_equal(clean, edited)  # the edit changes the image
    path = edit15.save(tmp_path / "vangogh.safetensors")
    with safe_open(path, framework="pt") as fh:
        meta = fh.metadata()
        assert set(fh.keys()) == set(edit15.weights)  # only the changed weights
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["model"] == "tiny-sd15" and json.loads(meta["layers"]) == [8, 9] and float(meta["lambda"]) == 0.01
    loaded = Edit.load(path)
    assert loaded.layers == [8, 9] and loaded.fingerprint == edit15.fingerprint
    assert loaded.meta == {k: v for k, v in edit15.meta.items() if k not in TIMING_KEYS}  # timings stay in memory
    assert all(torch.equal(loaded.weights[k], v) for k, v in edit15.weights.items())
    with loaded.applied(sd15):
        again = images(sd15)
    assert np.array_equal(again, edited)
    assert np.array_equal(images(sd15), clean)  # reverted


def test_apply_twice_and_revert_without_apply_are_errors(sd15, edit15):
    before = unet_state(sd15)
    edit15.apply(sd15)
    try:
        with pytest.raises(LocoError, match="already applied"):
            edit15.apply(sd15)
        other = Edit(dict(edit15.weights), dict(edit15.fingerprints), edit15.layers, edit15.layer_names, dict(edit15.meta))
        with pytest.raises(LocoError, match="another applied edit"):
            other.apply(sd15)
    finally:
        edit15.revert(sd15)
    with pytest.raises(LocoError, match="not applied"):
        edit15.revert(sd15)
    with pytest.raises(RuntimeError):
        with edit15.applied(sd15):
            raise RuntimeError("boom")
    assert changed_keys(before, sd15) == set() and not edit15.is_applied(sd15)


def test_fingerprint_guards_other_weights(sd15, edit15):
    name = next(iter(edit15.weights))
    p = sd15.unet.get_parameter(name)
    saved = p.detach().clone()
    with torch.no_grad():
        p.add_(0.01)
    try:
        with pytest.raises(LocoError, match="not the ones"):
            edit15.apply(sd15)
        edit15.apply(sd15, force=True)
        assert torch.equal(p, edit15.weights[name])
        edit15.revert(sd15)
        assert torch.equal(p, saved + 0.01)
    finally:
        with torch.no_grad():
            p.copy_(saved)


@pytest.mark.parametrize("other,width", [("tiny-sd21", 48), ("tiny-sdxl", 64)])
def test_edit_for_another_model_is_refused(edit15, tmp_path, other, width):
    path = edit15.save(tmp_path / "e.safetensors")
    pipe = models.load(other, progress=False)
    before = unet_state(pipe)
    with pytest.raises(LocoError) as err:
        Edit.load(path).apply(pipe)
    msg = str(err.value)
    assert "layer 8" in msg and "(32, 32)" in msg and f"(32, {width})" in msg and "tiny-sd15" in msg
    assert "\n" not in msg
    assert changed_keys(before, pipe) == set()


def test_bad_files(tmp_path, edit15):
    from safetensors.torch import save_file

    with pytest.raises(LocoError, match="no edit file"):
        Edit.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01 not a safetensors file at all")
    with pytest.raises(LocoError, match="not a readable"):
        Edit.load(junk)
    cut = tmp_path / "cut.safetensors"
    data = open(edit15.save(tmp_path / "full.safetensors"), "rb").read()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(LocoError):
        Edit.load(cut)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(LocoError, match="not a LocoEdit file"):
        Edit.load(plain)
    with pytest.raises(LocoError, match="does not exist"):
        edit15.save(tmp_path / "no" / "such" / "dir.safetensors")


def test_user_mistakes(sd15):
    with pytest.raises(LocoError, match="out of range"):
        compute_edit(sd15, [16], ["van gogh"], ["a painting"])
    with pytest.raises(LocoError, match="no layers"):
        compute_edit(sd15, [], ["van gogh"], ["a painting"])
    with pytest.raises(LocoError, match="target prompts"):
        compute_edit(sd15, [8], ["van gogh", "monet"], ["a", "b", "c"])
    with pytest.raises(LocoError, match="does not occur"):
        compute_edit(sd15, [8], ["a house"], ["a painting"], subjects="van gogh")


def test_time_edit_full_size_code_path(monkeypatch, sd15):
    """The full-size timing benchmark on a stand-in UNet (the real SD-XL build takes ~40 s and 10 GB)."""
    import importlib.util
    import sys
    from pathlib import Path

    import loco_lib.architectures as arch

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "locoedit_full_size.py"
    spec = importlib.util.spec_from_file_location("locoedit_full_size", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "locoedit_full_size", bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    time_edit_full_size = bench.time_edit_full_size

    unet = models.build_tiny("tiny-sd15").unet
    monkeypatch.setattr(arch, "random_unet", lambda name, dtype=None, device="cpu", seed=0: unet)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    t = time_edit_full_size("sd15", n_prompts=4)
    assert t.layers == [8, 9] and len(t.per_projection) == 4 and t.seconds > 0
    assert all(s == (32, 32) for s in t.shapes.values())
    changed = {k for k, v in unet.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == set(t.per_projection)


# ---------------------------------------------------------------------------------------------
# 4. tiny-if: the rows are what add_k_proj actually reads
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_if():
    pipe = models.load("tiny-if", progress=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # give every layer its own GroupNorm affine, so a per-layer mix-up shows
        for layer in cross_attention_layers(pipe.unet):
            norm = pipe.unet.get_submodule(layer.name).norm_cross
            norm.weight.copy_(1 + 0.5 * torch.randn(norm.weight.shape, generator=g))
            norm.bias.copy_(0.5 * torch.randn(norm.bias.shape, generator=g))
    return pipe


def test_if_rows_equal_captured_projection_inputs(tiny_if):
    prompts = ["a house in the style of van gogh", "a cat on a sofa in the style of monet"]
    subjects = ["van gogh", "cat"]
    layers = cross_attention_layers(tiny_if.unet)
    chosen = [3, 12]
    sites = {i: Site("unet", f"{layers[i].name}.{layers[i].key}", "input") for i in chosen}
    with hooks(tiny_if, records=[Record(s, branch="all", steps=[0]) for s in sites.values()]) as trace:
        generate(tiny_if, prompts, seeds=0, steps=1, output_type="np", progress=False)
    captured = {i: trace[s][0] for i, s in sites.items()}
    rows = kv_rows(tiny_if, chosen, prompts, subjects)
    pos = [subject_token_index(tiny_if, p, s) for p, s in zip(prompts, subjects)]
    n = len(prompts)
    raw = encode(tiny_if, prompts).embeds
    for i in chosen:
        seen = captured[i]  # [uncond; cond] x 77 x kv_dim
        assert seen.shape[0] == 2 * n
        actual = torch.stack([seen[n + j, p] for j, p in enumerate(pos)])
        assert rows[i].shape == actual.shape == (n, layers[i].kv_dim)
        assert torch.allclose(rows[i], actual, atol=1e-5, rtol=1e-5), float((rows[i] - actual).abs().max())
        # what a naive implementation would use does not match
        naive = tiny_if.unet.encoder_hid_proj(raw)[torch.arange(n), torch.tensor(pos)]
        assert not torch.allclose(naive, actual, atol=1e-2)
    assert not torch.allclose(rows[3], rows[12], atol=1e-2)  # per-layer norm


def test_if_edit_keeps_bias_and_reverts(tiny_if):
    o, t, s = augment("style", "van gogh")
    edit = compute_edit(tiny_if, [12, 13, 14], o, t, s)
    assert all(n.endswith(("add_k_proj.weight", "add_v_proj.weight")) for n in edit.weights) and len(edit.weights) == 6
    before = unet_state(tiny_if)
    with edit.applied(tiny_if):
        changed = changed_keys(before, tiny_if)
    assert changed == set(edit.weights)  # biases untouched
    assert changed_keys(before, tiny_if) == set()


# ---------------------------------------------------------------------------------------------
# 5. tiny-sdxl: 64-d concatenated rows and a round trip
# ---------------------------------------------------------------------------------------------

def test_sdxl_rows_and_round_trip(tmp_path):
    pipe = models.load("tiny-sdxl", progress=False)
    o, t, s = augment("style", "van gogh")
    rows = kv_rows(pipe, [45, 46, 47], o, s)
    emb = encode(pipe, o).embeds
    assert emb.shape[-1] == 64 and rows[45].shape == (4, 64)
    pos = [subject_token_index(pipe, p, x) for p, x in zip(o, s)]
    assert torch.equal(rows[45], torch.stack([emb[i, p] for i, p in enumerate(pos)]))
    edit = compute_edit(pipe, "45-47", o, t, s)
    assert edit.layers == [45, 46, 47] and len(edit.weights) == 6
    before = unet_state(pipe)
    loaded = Edit.load(edit.save(tmp_path / "xl.safetensors"))
    loaded.apply(pipe)
    try:
        assert changed_keys(before, pipe) == set(edit.weights)
        assert all(torch.equal(pipe.unet.get_parameter(k), v) for k, v in edit.weights.items())
    finally:
        loaded.revert(pipe)
    assert changed_keys(before, pipe) == set()
