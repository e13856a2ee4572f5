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


# caches: a damaged entry is reported (one line, with its path) and computed again ---------------

SWEEP = dict(originals=["a house in the style of van gogh"], targets=["a house in the style of a painting"],
             layer_sets=[[], [8, 9], [3]], seeds=[0], steps=1, batch_size=4, progress=False)


def _one_line_warnings(record) -> list[str]:
    from loco_lib.errors import LocoWarning

    msgs = [str(w.message) for w in record if issubclass(w.category, LocoWarning)]
    assert all("\n" not in m for m in msgs), msgs
    return msgs


def test_damaged_sweep_cache_entries_are_computed_again(sd15, tmp_path):
    import numpy as np
    from loco_lib.sweep import run_sweep

    first = run_sweep(sd15, cache_dir=tmp_path, **SWEEP)
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 3
    cut_png, cut_json, list_json = pngs[0], pngs[1].with_suffix(".json"), pngs[2].with_suffix(".json")
    cut_png.write_bytes(cut_png.read_bytes()[:60])
    cut_json.write_text(cut_json.read_text()[:20])
    list_json.write_text("[1, 2]")
    with pytest.warns(UserWarning) as record:
        again = run_sweep(sd15, cache_dir=tmp_path, **SWEEP)
    msgs = _one_line_warnings(record)
    assert len(msgs) == 3
    for path in (cut_png, cut_json, list_json):
        assert sum(str(path) in m for m in msgs) == 1, (path, msgs)
    assert len(again.computed) == 3
    for job, img in first.images.items():
        assert np.array_equal(np.asarray(again.images[job]), np.asarray(img))
    assert run_sweep(sd15, cache_dir=tmp_path, **SWEEP).computed == []  # repaired


def test_sweep_cache_key_has_the_batch_size(sd15, tmp_path):
    from loco_lib.sweep import run_sweep

    assert len(run_sweep(sd15, cache_dir=tmp_path, **SWEEP).computed) == 3
    other = run_sweep(sd15, cache_dir=tmp_path, **{**SWEEP, "batch_size": 2})
    assert len(other.computed) == 3, "another batch size is another cache entry"
    assert run_sweep(sd15, cache_dir=tmp_path, **SWEEP).computed == []


def test_damaged_report_part_is_measured_again(tmp_path):
    from loco_lib import organism

    memo = organism.protocol._Memo(tmp_path, "toy", [0], None)
    assert memo("sample", lambda: {"shape": 0.5}) == {"shape": 0.5}
    (path,) = (tmp_path / "toy").glob("sample-*.json")
    path.write_text('{"shape": 0.')
    again = organism.protocol._Memo(tmp_path, "toy", [0], None)
    with pytest.warns(UserWarning) as record:
        assert again("sample", lambda: {"shape": 0.75}) == {"shape": 0.75}
    (msg,) = _one_line_warnings(record)
    assert str(path) in msg and again.computed == ["sample"]
    assert organism.protocol._Memo(tmp_path, "toy", [0], None)("sample", lambda: pytest.fail("measured again")) == {"shape": 0.75}


def test_report_cache_that_is_a_file_fails_before_measuring(tmp_path, monkeypatch):
    from loco_lib import organism

    monkeypatch.setattr(organism.protocol, "sample_accuracy", lambda *a, **k: pytest.fail("measured before the cache check"))
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("loaded before the cache check"))
    afile = tmp_path / "cache.txt"
    afile.write_text("not a folder")
    assert "is a file" in loco_error(organism.report, "toy", cache_dir=afile, progress=False)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "toy").write_text("a file where the model's folder goes")
    assert "is a file" in loco_error(organism.report, "toy", cache_dir=tmp_path / "c", progress=False)
    assert "at most 999" in loco_error(organism.report, "toy", steps=5000, cache_dir=None, progress=False)
    assert "more than once" in loco_error(organism.report, "toy", seeds=[1, 1], cache_dir=None, progress=False)


# edit files: reproducible bytes, ordinary permissions, old files still load ---------------------------

def test_same_edit_same_bytes_and_ordinary_permissions(sd15, tmp_path):
    import os

    from loco_lib.locoedit import Edit, compute_edit

    args = (sd15, [8, 9], ["a house in the style of van gogh"], ["a painting"], ["van gogh"])
    a, b = compute_edit(*args), compute_edit(*args)
    assert a.edit_seconds >= 0 and b.edit_seconds >= 0  # the timing stays on the object
    old = os.umask(0o022)
    try:
        pa, pb = a.save(tmp_path / "a.safetensors"), b.save(tmp_path / "b.safetensors")
    finally:
        os.umask(old)
    assert open(pa, "rb").read() == open(pb, "rb").read()
    assert os.stat(pa).st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors"]  # no temp files left
    loaded = Edit.load(pa)
    assert "edit_seconds" not in loaded.meta and loaded.meta["lambda"] == a.meta["lambda"]
    assert all(torch.equal(loaded.weights[k], a.weights[k]) for k in a.weights)
    b.save(pa)  # overwriting an edit file gives the same bytes again
    assert open(pa, "rb").read() == open(pb, "rb").read()


def test_edit_files_with_timings_still_load(sd15, tmp_path):
    """Files written before the timings left the file carry them in their metadata."""
    import json

    from safetensors.torch import save_file

    from loco_lib.locoedit import Edit, compute_edit

    edit = compute_edit(sd15, [8], ["a house in the style of van gogh"], ["a painting"], ["van gogh"])
    path = tmp_path / "old.safetensors"
    edit.save(path)
    with __import__("safetensors").safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata())
    meta["meta"] = json.dumps({**json.loads(meta["meta"]), "edit_seconds": 0.25, "encode_seconds": 0.5})
    save_file(edit.weights, str(path), metadata=meta)
    old = Edit.load(path)
    assert old.edit_seconds == 0.25 and old.layers == [8]


# the Hugging Face Hub: the local cache first, one fast line without a network -------------------------

def _offline_env(tmp_path) -> dict:
    """A process with an empty Hugging Face cache and a Hub that refuses connections (no network)."""
    import os

    return {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9", "LOCO_PROGRESS": "0"}


def _run_offline(tmp_path, *argv, code=None):
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "loco_lib", *argv]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_offline_env(tmp_path), timeout=300)
    return proc, time.perf_counter() - start


def test_hub_scorer_without_network_is_one_fast_line(tmp_path):
    proc, seconds = _run_offline(tmp_path, "locogen", "tiny-sd15", "--attribute", "style", "--m", "2", "--limit", "1",
                                 "--steps", "1", "--scorer", "openai/clip-vit-base-patch32", "--quiet")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "cannot be reached" in lines[0] and "openai/clip-vit-base-patch32" in lines[0]
    assert seconds < 60, f"{seconds:.0f} s: retried instead of failing fast"


@pytest.mark.parametrize("model", ["deepfloyd-if", "sd15"])
def test_hub_model_without_network_says_network_not_gated(tmp_path, model):
    proc, seconds = _run_offline(tmp_path, "generate", model, "--prompt", "a cat", "--out", str(tmp_path / "a.png"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "cannot be reached" in lines[0] and "gated" not in lines[0] and "local_files_only" not in lines[0]
    assert seconds < 60


def test_cached_hub_scorer_loads_without_network(tmp_path):
    """A scorer in the local Hugging Face cache is used as it is, with no network and no retries."""
    from loco_lib.clip_score import ClipScorer

    snapshot = tmp_path / "hf" / "hub" / "models--loco-test--tiny-clip" / "snapshots" / ("0" * 40)
    tiny = ClipScorer.tiny()
    for part in (tiny.model, tiny.tokenizer, tiny.image_processor):
        part.save_pretrained(snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    code = ("from loco_lib.clip_score import ClipScorer; import numpy as np; "
            "s = ClipScorer('loco-test/tiny-clip', device='cpu'); print(float(s.score(np.zeros((32, 32, 3)), 'a cat')[0]))")
    proc, seconds = _run_offline(tmp_path, code=code)
    assert proc.returncode == 0, proc.stderr
    expected = float(tiny.score(__import__("numpy").zeros((32, 32, 3)), "a cat")[0])
    assert abs(float(proc.stdout.strip().splitlines()[-1]) - expected) < 1e-4
    assert seconds < 60


def test_hub_failures_are_told_apart(monkeypatch):
    """Gated (log in), wrong id, lost network and other errors each get their own sentence."""
    import httpx2
    from diffusers import DiffusionPipeline
    from huggingface_hub import errors

    def response(status):
        return httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/x"))

    raised = {}

    def fake(source, local_files_only=False, **kw):
        if local_files_only:
            raise OSError("not cached")
        raise raised["exc"]

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", staticmethod(fake))
    monkeypatch.setattr(models, "hub_unreachable", lambda: None)
    cases = {
        "gated": (errors.GatedRepoError("Access to model DeepFloyd/IF-I-XL-v1.0 is restricted", response=response(401)),
                  ["gated", models.IF_LICENSE_URL, "log in"]),
        "no repo": (errors.RepositoryNotFoundError("404 Client Error", response=response(404)), ["not on the Hugging Face Hub"]),
        "network": (OSError("Cannot load model: the model is not fully cached locally (To enable repo look-ups pass "
                            "'local_files_only=False' as input.)"), ["could not load", "not fully cached locally"]),
    }
    for name, (exc, needles) in cases.items():
        raised["exc"] = exc
        msg = loco_error(models.load, "deepfloyd-if", device="cpu", progress=False)
        assert all(n in msg for n in needles), (name, msg)
        assert "local_files_only" not in msg and "stacktrace" not in msg
        assert ("gated" in msg) == (name == "gated"), (name, msg)
    try:
        raise OSError("Cannot load model X. Please check out the root cause in the stacktrace above.") from httpx2.ConnectError("refused")
    except OSError as exc:
        raised["exc"] = exc
    msg = loco_error(models.load, "deepfloyd-if", device="cpu", progress=False)
    assert "no network" in msg and "gated" not in msg
