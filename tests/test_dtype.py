"""Half precision (float16, bfloat16) on the CPU, on the tiny twins: every method runs, and the dtype
rules of :func:`loco_lib.settings.dtype` hold (solves in float64 with one cast back, neuron
statistics in float64, caches keyed by dtype, weights restored bit for bit)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import loco_lib
from loco_lib import models, settings
from loco_lib.clip_score import ClipScorer
from loco_lib.errors import LocoError
from loco_lib.layers import cross_attention_layers

HALF = [torch.float16, torch.bfloat16]
PROMPT, ALT = "a house in the style of van gogh", "a house in the style of a painting"


@pytest.fixture(scope="module", params=HALF, ids=lambda d: str(d).replace("torch.", ""))
def half_sd15(request):
    return models.load("tiny-sd15", dtype=request.param, progress=False)


@pytest.fixture(scope="module")
def sd15_fp32():
    return models.load("tiny-sd15", progress=False)


def test_dtype_setting():
    assert settings.dtype(None, "cpu") == torch.float32
    assert settings.dtype(None, "cuda") == torch.float16
    assert settings.dtype("bf16") == torch.bfloat16 and settings.dtype("float16") == torch.float16
    assert settings.dtype(torch.float32) == torch.float32
    for bad in ("float8", "int8", torch.int64):
        with pytest.raises(LocoError, match="float32, float16 or bfloat16"):
            settings.dtype(bad)


@pytest.mark.parametrize("name", ["tiny-sd15", "tiny-sdxl", "tiny-if"])
@pytest.mark.parametrize("dtype", HALF, ids=lambda d: str(d).replace("torch.", ""))
def test_generate_with_altered_layers_in_half_precision(name, dtype):
    """Every module in the asked dtype, altered inputs run, and the image stays close to float32's."""
    half = models.load(name, dtype=dtype, progress=False)
    full = models.load(name, progress=False)
    for comp in half.components.values():
        if isinstance(comp, torch.nn.Module):
            assert {p.dtype for p in comp.parameters()} == {dtype}
    kw = dict(alt_prompts=ALT, layers=[1], seeds=0, steps=4, progress=False)
    a = np.asarray(loco_lib.generate(half, PROMPT, **kw).images[0]).astype(float)
    b = np.asarray(loco_lib.generate(full, PROMPT, **kw).images[0]).astype(float)
    assert a.std() > 0, "a blank image"
    assert np.abs(a - b).mean() < 8.0, f"{dtype} drifts from float32 by {np.abs(a - b).mean():.1f} of 255 on average"


def test_locogen_sweep_in_half_precision_is_cached_by_dtype(half_sd15, sd15_fp32, tmp_path):
    from loco_lib.prompts import PromptSet, default_prompts, load_pairs

    p = load_pairs(default_prompts("style", "tiny-sd15"))
    prompts = PromptSet(p.attribute, p.originals[:2], p.targets[:2], p.subjects[:2], p.target_subjects[:2], p.sources[:2])
    kw = dict(scorer=ClipScorer.tiny(), steps=3, cache_dir=tmp_path, progress=False)
    first = loco_lib.locogen(half_sd15, prompts, "style", 8, [0], **kw)
    again = loco_lib.locogen(half_sd15, prompts, "style", 8, [0], **kw)
    assert first.sweep.computed and not again.sweep.computed  # resumes from its cache
    assert again.table[["mean"]].equals(first.table[["mean"]])
    full = loco_lib.locogen(sd15_fp32, prompts, "style", 8, [0], **kw)
    assert len(full.sweep.computed) == len(first.sweep.computed)  # a float32 run never reads half-precision images


def test_locoedit_solves_in_float64_and_casts_back_once(half_sd15):
    from loco_lib.locoedit import closed_form, compute_edit, kv_rows

    dtype = half_sd15.unet.dtype
    layers = [8, 9]
    clean = {n: p.detach().clone() for n, p in half_sd15.unet.named_parameters()}
    edit = compute_edit(half_sd15, layers, [PROMPT, "a tree in the style of van gogh"], ["a painting", "a painting"],
                        subjects="van gogh")
    assert edit.meta["dtype"] == str(dtype).replace("torch.", "")
    rows_o = kv_rows(half_sd15, layers, [PROMPT, "a tree in the style of van gogh"], "van gogh")
    rows_t = kv_rows(half_sd15, layers, ["a painting", "a painting"])
    chosen = cross_attention_layers(half_sd15.unet)
    for i in layers:
        for proj in (chosen[i].key, chosen[i].value):
            name = f"{chosen[i].name}.{proj}.weight"
            want = closed_form(clean[name], rows_o[i], rows_t[i])  # float64 inside, one cast to the weight's dtype
            assert want.dtype == dtype and torch.equal(edit.weights[name], want)
    edit.apply(half_sd15)
    assert any(not torch.equal(p, clean[n]) for n, p in half_sd15.unet.named_parameters())
    edit.revert(half_sd15)
    assert all(torch.equal(p, clean[n]) for n, p in half_sd15.unet.named_parameters())


def test_neuron_statistics_are_float64(half_sd15):
    from loco_lib.neurons import kv_activations, neurons_replaced, rank_neurons, welch_statistic

    with_style = [PROMPT, "a tree in the style of van gogh", "a cat in the style of van gogh"]
    without = ["a house in the style of a painting", "a tree in the style of a painting", "a cat in the style of a painting"]
    ranking = rank_neurons(half_sd15, [8], with_style, without, "van gogh", "a painting")
    z = ranking.z[(8, "key")]
    assert z.dtype == np.float64
    acts_w = kv_activations(half_sd15, [8], with_style, "van gogh")
    acts_o = kv_activations(half_sd15, [8], without, "a painting")
    np.testing.assert_array_equal(z, welch_statistic(acts_w[8]["key"], acts_o[8]["key"]))
    with neurons_replaced(half_sd15, ranking, 4, guidance=True):
        img = loco_lib.generate(half_sd15, PROMPT, seeds=0, steps=3, progress=False).images[0]
    assert np.asarray(img).std() > 0


def test_trace_in_half_precision(half_sd15):
    from loco_lib.trace import trace

    res = trace(half_sd15, [PROMPT], "van gogh", where="unet", seeds=[0], steps=3, scorer=ClipScorer.tiny(),
                progress=False)
    scores = np.asarray(list(res.scores.values()), dtype=float)
    assert len(scores) == len(res.sets) + 2 and np.isfinite(scores).all()  # clean, corrupted, one run per state
    table = res.table() if callable(res.table) else res.table
    assert len(table) == len(res.sets)


def test_cli_dtype(capsys, tmp_path):
    from loco_lib.cli import main

    out = tmp_path / "h.png"
    assert main(["generate", "tiny-sd15", "--prompt", PROMPT, "--alt-prompt", ALT, "--layers", "1", "--steps", "3",
                 "--dtype", "bfloat16", "--out", str(out), "--quiet"]) == 0
    assert out.exists()
    capsys.readouterr()
    assert main(["generate", "tiny-sd15", "--prompt", PROMPT, "--steps", "3", "--dtype", "float8", "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dtype" in err[0] and "float16" in err[0]
