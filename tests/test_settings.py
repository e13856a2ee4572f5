"""Run settings are checked in one place (loco_lib.settings): every bad value is one clear LocoError,
every valid value means what it meant before, and window labels have one formatter."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from loco_lib import generate, load, settings
from loco_lib.errors import LocoError
from loco_lib.layers import format_layers, parse_layers

REFERENCE = Path(__file__).parent / "data" / "settings_reference.npz"


@pytest.fixture(scope="module")
def sd15():
    return load("tiny-sd15", progress=False)


@pytest.fixture(scope="module")
def toy():
    return load("toy", progress=False)


def one_line(fn, *args, **kw) -> str:
    """``fn`` must raise LocoError with a one-line message; returns it."""
    with pytest.raises(LocoError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


# -- each setting ----------------------------------------------------------------------------------

def test_steps(sd15):
    assert settings.steps(sd15, None) == 50 and settings.steps(sd15, 3) == 3
    assert settings.steps(sd15, np.int64(4)) == 4 and settings.steps(sd15, 5.0) == 5
    assert settings.steps(sd15, 999) == 999  # the most DDIM ("leading", offset 1) can lay out
    assert settings.steps(None, None) is None and settings.steps(None, 5000) == 5000  # value only
    assert "2.7" in one_line(settings.steps, sd15, 2.7)
    assert "'two'" in one_line(settings.steps, sd15, "two")
    assert "at least 1" in one_line(settings.steps, sd15, 0)
    for bad in (True, float("nan"), None.__class__):
        one_line(settings.steps, sd15, bad)
    msg = one_line(settings.steps, sd15, 5000)
    assert "at most 999" in msg and "5000" in msg
    assert "at most 999" in one_line(settings.steps, sd15, 1000)  # diffusers would index past its table
    assert "--steps" in one_line(settings.steps, sd15, 0, "--steps")


def test_steps_limit_follows_the_scheduler():
    from loco_lib.models import build_tiny

    if_pipe = build_tiny("tiny-if")  # DDPM lays out every one of its 1000 timesteps
    assert settings.steps(if_pipe, 1000) == 1000
    assert "at most 1000" in one_line(settings.steps, if_pipe, 1001)


def test_one_step_is_refused_where_the_pipeline_cannot_take_it():
    """PixArt's pipelines read a second output of the scheduler's step at 1 step: with a DPM-Solver
    (one output) that is a one-line error before any work, with DDIM (two outputs) it samples."""
    from diffusers import DDIMScheduler

    pipe = load("tiny-pixart", progress=False)
    with pytest.raises(LocoError, match="steps must be at least 2 here: the PixArt pipeline"):
        settings.steps(pipe, 1)
    assert settings.steps(pipe, 2) == 2
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    assert settings.steps(pipe, 1) == 1
    assert len(generate(pipe, "a cat", steps=1, progress=False).images) == 1


def test_guidance(sd15):
    assert settings.guidance(sd15, None) == 7.5 and settings.guidance(sd15, 1) == 1.0
    assert settings.guidance(sd15, np.float32(3.5)) == 3.5
    for bad in (0.5, 0, -2.0, float("nan"), float("inf"), "high", True, [7.5]):
        msg = one_line(settings.guidance, sd15, bad)
        assert "guidance" in msg
    assert "1 means no guidance" in one_line(settings.guidance, sd15, 0.5)


def test_seeds():
    assert settings.seeds(3) == [3] and settings.seeds([0, 1]) == [0, 1] and settings.seeds((2,)) == [2]
    assert settings.seeds(np.int64(4)) == [4] and settings.seeds(np.array([5, 6])) == [5, 6]
    assert settings.seeds([np.int32(1), np.int64(2)]) == [1, 2] and settings.seeds(range(2)) == [0, 1]
    assert settings.seeds("0, 1") == [0, 1]
    assert all(type(s) is int for s in settings.seeds(np.array([5, 6])))
    assert "more than once" in one_line(settings.seeds, [0, 0])
    assert "no seeds" in one_line(settings.seeds, [])
    for bad in (1.5, [1.5], True, [True], None, [None], -1, [0, -1], 2**64, "a,b", "-1"):
        assert "seed" in one_line(settings.seeds, bad)
    assert "cannot read seeds 'a,b'" in one_line(settings.seeds, "a,b", "--seeds")


def test_seeds_per_prompt():
    assert settings.seeds_per_prompt(7, 3) == [7, 7, 7]
    assert settings.seeds_per_prompt(np.array([1, 1]), 2) == [1, 1]  # repeats are fine per prompt
    assert "2 prompts" in one_line(settings.seeds_per_prompt, [1], 2)
    for bad in (1.5, None, "0", [0.5]):
        one_line(settings.seeds_per_prompt, bad, 1)


def test_batch_size_size_lam():
    assert settings.batch_size(None, 8) == 8 and settings.batch_size(np.int64(2)) == 2
    for bad in (0, -1, 1.5, "4"):
        assert "batch_size" in one_line(settings.batch_size, bad, 8)
    assert settings.size(None) is None and settings.size(72) == 72 and settings.size(64.0) == 64
    assert "multiple of 8" in one_line(settings.size, 20)
    assert "64.5" in one_line(settings.size, 64.5)
    assert settings.lam(0.01) == 0.01
    for bad in (0, -1, "x", float("nan"), float("inf"), None):
        assert "positive number" in one_line(settings.lam, bad)


def test_device():
    assert settings.device("cpu") == "cpu" and settings.device(torch.device("cpu")) == "cpu"
    assert settings.device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    msg = one_line(settings.device, "banana")
    assert "banana" in msg and "cpu" in msg
    assert "banana" in one_line(settings.device, "banana:3")
    one_line(settings.device, 5)
    if not torch.cuda.is_available():
        assert "no CUDA" in one_line(settings.device, "cuda")
        assert "no CUDA" in one_line(settings.device, "cuda:1")
        assert "no CUDA" in one_line(load, "tiny-sd15", device="cuda")
    else:
        assert "cuda:99" in one_line(settings.device, "cuda:99")


def test_organism_prompts_must_use_its_words(toy, sd15):
    assert settings.prompts(toy, "A Red Circle in the style of van gogh") == ["A Red Circle in the style of van gogh"]
    msg = one_line(settings.prompts, toy, ["a red circle", "a red dog, in the style of dali"])
    assert "'dog'" in msg and "','" in msg and "'dali'" in msg and "circle" in msg
    assert settings.prompts(sd15, "a red dog, in the style of dali") == ["a red dog, in the style of dali"]


# -- the entry points use them, before any work ------------------------------------------------------

def test_entry_points_refuse_before_generating(sd15, monkeypatch):
    """generate, the sweep, LocoGen, evaluate and k_sweep refuse bad settings before sampling."""
    import importlib

    import loco_lib.sweep as sweep_mod
    from loco_lib.clip_score import ClipScorer
    from loco_lib.evaluate import evaluate
    from loco_lib.locogen import locogen
    from loco_lib.sweep import run_sweep

    def never(*a, **k):
        raise AssertionError("sampled before the settings were checked")

    gen_mod = importlib.import_module("loco_lib.generate")  # (loco_lib.generate is also the function)
    monkeypatch.setattr(gen_mod, "sample_batch", never)
    monkeypatch.setattr(sweep_mod, "sample_batch", never)
    pair = (["a house"], ["a tree"])
    scorer = ClipScorer.tiny()
    calls = [
        lambda **kw: generate(sd15, "a cat", progress=False, **kw),
        lambda **kw: run_sweep(sd15, *pair, [[8]], progress=False, **kw),
        lambda **kw: locogen(sd15, pair, "style", 2, scorer=scorer, progress=False, **kw),
        lambda **kw: evaluate(sd15, ["a cat"], scorer=scorer, progress=False, **kw),
    ]
    for call in calls:
        for bad in (dict(steps=5000), dict(steps=2.7), dict(steps="two"), dict(guidance=float("nan")),
                    dict(guidance=0.5), dict(guidance="high"), dict(seeds=1.5), dict(batch_size=0)):
            one_line(call, **bad)
    for call in calls[1:]:  # the commands that take a set of seeds
        assert "more than once" in one_line(call, seeds=[0, 0])
        assert "seed" in one_line(call, seeds=[-1])
        assert "no seeds" in one_line(call, seeds=[])


def test_k_sweep_checks_its_settings_before_the_first_k(sd15, monkeypatch):
    import loco_lib.neurons as neurons

    monkeypatch.setattr(neurons, "neurons_replaced", lambda *a, **k: pytest.fail("ran before checking"))
    for bad in (dict(guidance="high"), dict(guidance=0.0), dict(steps=0), dict(seeds=1.5), dict(batch_size=0)):
        one_line(neurons.k_sweep, sd15, None, ["a cat"], ks=[0], **bad)


def test_python_api_errors_are_loco_errors(sd15, tmp_path):
    from loco_lib import models
    from loco_lib.locoedit import Edit, compute_edit

    assert "prompt" in one_line(generate, sd15, None)
    assert "prompt" in one_line(generate, sd15, prompt=None)
    assert "not both" in one_line(generate, sd15, "a cat", prompt="a dog")
    same = dict(steps=1, output_type="np", progress=False)
    assert np.array_equal(generate(sd15, prompt="a cat", **same)[0], generate(sd15, "a cat", **same)[0])
    assert "prompt" in one_line(generate, sd15, ["a cat", None])
    assert "prompt" in one_line(generate, sd15, 5)
    assert "seed" in one_line(generate, sd15, "a cat", seeds=1.5)
    assert "steps" in one_line(generate, sd15, "a cat", steps="two")
    assert "guidance" in one_line(generate, sd15, "a cat", guidance="high")
    assert "lam" in one_line(compute_edit, sd15, [8], ["a cat"], ["a dog"], lam="x")
    assert "lam" in one_line(compute_edit, sd15, [8], ["a cat"], ["a dog"], lam=0)
    assert "path" in one_line(Edit.load, None)
    assert "path" in one_line(Edit.load, 5)
    msg = one_line(models.load, 5)
    assert "5" in msg and "tiny-sd15" in msg


# -- valid values: the same images as before ----------------------------------------------------------

def reference_images() -> dict:
    """Images (uint8) of valid settings on tiny-sd15; ``tests/data/settings_reference.npz`` holds the
    same computed by loco before settings were resolved in one place (commit b69d17f)."""
    from loco_lib.sweep import run_sweep

    pipe = load("tiny-sd15", progress=False)
    u8 = lambda a: (np.clip(np.asarray(a), 0, 1) * 255).round().astype(np.uint8)
    kw = dict(output_type="np", progress=False)
    out = {
        "steps3": u8(generate(pipe, "a house in the style of van gogh", seeds=5, steps=3, **kw).images[0]),
        "default_steps": u8(generate(pipe, "a cat", **kw).images[0]),
        "guidance1": u8(generate(pipe, "a cat", steps=2, guidance=1.0, **kw).images[0]),
        "altered": u8(np.stack(generate(pipe, ["a house", "a tree"], alt_prompts="a dog", layers=[8, 9], seeds=[1, 2],
                                        steps=3, guidance=4.0, size=72, batch_size=1, **kw).images)),
    }
    res = run_sweep(pipe, ["a house in the style of van gogh"], ["a house in the style of a painting"], [[], [8, 9]],
                    [0, 3], steps=2, batch_size=4, keep_arrays=True, progress=False)
    out["sweep"] = u8(np.stack([res.arrays[j] for j in sorted(res.arrays, key=lambda j: (j.seed, j.layers))]))
    return out


def test_valid_settings_give_the_images_they_gave_before():
    ref = np.load(REFERENCE)
    now = reference_images()
    assert set(now) == set(ref.files)
    for name in ref.files:  # uint8: at most one level of float rounding between machines
        diff = np.abs(now[name].astype(int) - ref[name].astype(int)).max()
        assert diff <= 1, (name, diff)


def test_numpy_values_mean_what_python_values_mean(sd15):
    kw = dict(output_type="np", progress=False)
    plain = generate(sd15, "a cat", seeds=5, steps=3, guidance=4.0, **kw).images[0]
    numpy = generate(sd15, "a cat", seeds=np.int64(5), steps=np.int64(3), guidance=np.float32(4.0), **kw).images[0]
    assert np.array_equal(plain, numpy)


# -- window labels --------------------------------------------------------------------------------------

def test_format_layers_labels():
    assert format_layers([8, 9]) == "8-9" and format_layers([8]) == "8" and format_layers((4, 5, 6)) == "4-6"
    assert format_layers(np.array([3, 4])) == "3-4" and format_layers(7) == "7"
    assert format_layers([0, 1, 5]) == "0-1,5" and format_layers([9, 8]) == "8-9" and format_layers([]) == "none"
    for layers in ([8, 9], [8], [0, 1, 5], [2, 4, 6, 7], []):
        assert parse_layers(format_layers(layers), 16) == sorted(layers)


def test_every_window_label_comes_from_the_formatter(monkeypatch):
    """The labels of LocoGen tables, the organism's report and its summary are the ones they were."""
    from loco_lib import organism

    rep = organism.load_report(organism.recorded_dir() / "toy-seed1.json")
    lines = organism.summary(rep)
    for attr in ("style", "objects", "colour", "facts"):
        best = getattr(rep.locogen, attr).best
        label = f"{best[0]}-{best[-1]}"
        assert format_layers(best) == label
        assert any(r["layers"] == label for r in getattr(rep.locogen, attr).table)  # read back from recorded JSON
    assert lines["LocoGen style window, readout moved"].startswith(f"{format_layers(rep.locogen.style.best)}: ")
    table = organism.edit_table(rep)
    assert f"window {format_layers(rep.edit.window.layers)}" in set(table["edit at"])
    assert "all 0-15" in set(table["edit at"])
