"""The command line: layer maps, one generated image, and one clear line for each bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import loco_lib
from loco_lib.cli import main

EXPECTED = {"sd14": 16, "sd15": 16, "openjourney": 16, "sd21": 16, "sdxl": 70, "deepfloyd-if": 22,
            "pixart-alpha": 28, "pixart-alpha-512": 28, "pixart-sigma": 28, "sana": 20, "sana-600m": 28}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_layers_meta_json(capsys, model):
    code, out, err = run(capsys, "layers", model, "--meta", "--json")
    assert code == 0, err
    records = json.loads(out)
    assert len(records) == EXPECTED[model]
    assert [r["index"] for r in records] == list(range(EXPECTED[model]))
    assert all(set(r) >= {"index", "name", "kv_dim", "resolution", "block"} for r in records)


def test_layers_table_on_a_twin(capsys):
    code, out, _ = run(capsys, "layers", "tiny-sdxl")
    assert code == 0
    assert out.strip().endswith("70 cross-attention layers")
    assert "down_blocks.1.attentions.0.transformer_blocks.0.attn2" in out


def test_generate_writes_the_image_of_the_library_call(capsys, tmp_path):
    from loco_lib import generate, load

    path = tmp_path / "house.png"
    code, out, err = run(capsys, "generate", "tiny-sd15", "--prompt", "a house in the style of van gogh",
                         "--alt-prompt", "a house in the style of a painting", "--layers", "8,9",
                         "--steps", "3", "--seed", "5", "--quiet", "--out", str(path))
    assert code == 0, err
    assert "wrote" in out
    img = np.asarray(Image.open(path))
    assert img.shape == (64, 64, 3)
    pipe = load("tiny-sd15", progress=False)
    ref = generate(pipe, "a house in the style of van gogh", alt_prompts="a house in the style of a painting",
                   layers=[8, 9], steps=3, seeds=5, progress=False).images[0]
    assert np.array_equal(img, np.asarray(ref))


BAD = {
    "unknown model": (["generate", "no-such-model", "--prompt", "a cat", "--out", "{tmp}/a.png"], "known models: sd14"),
    "unknown model (layers)": (["layers", "no-such-model"], "tiny-sd15"),
    "layer out of range": (["generate", "tiny-sd15", "--prompt", "a cat", "--alt-prompt", "a dog", "--layers", "16", "--out", "{tmp}/a.png"], "out of range"),
    "layer out of range sdxl": (["generate", "tiny-sdxl", "--prompt", "a cat", "--alt-prompt", "a dog", "--layers", "69,70", "--out", "{tmp}/a.png"], "70 cross-attention layers"),
    "bad layer list": (["generate", "tiny-sd15", "--prompt", "a cat", "--alt-prompt", "a dog", "--layers", "eight", "--out", "{tmp}/a.png"], "cannot read layer list"),
    "empty prompt": (["generate", "tiny-sd15", "--prompt", "", "--out", "{tmp}/a.png"], "empty prompt"),
    "blank prompt": (["generate", "tiny-sd15", "--prompt", "   ", "--out", "{tmp}/a.png"], "empty prompt"),
    "empty alt prompt": (["generate", "tiny-sd15", "--prompt", "a cat", "--alt-prompt", "", "--layers", "1", "--out", "{tmp}/a.png"], "empty alt prompt"),
    "steps zero": (["generate", "tiny-sd15", "--prompt", "a cat", "--steps", "0", "--out", "{tmp}/a.png"], "at least 1"),
    "missing folder": (["generate", "tiny-sd15", "--prompt", "a cat", "--out", "{tmp}/nope/a.png"], "does not exist"),
    "not an image name": (["generate", "tiny-sd15", "--prompt", "a cat", "--out", "{tmp}/a.txt"], ".png"),
    "output is a folder": (["generate", "tiny-sd15", "--prompt", "a cat", "--out", "{tmp}/dir.png"], "folder"),
    "layers without alt": (["generate", "tiny-sd15", "--prompt", "a cat", "--layers", "3", "--out", "{tmp}/a.png"], "--alt-prompt"),
    "meta on a twin": (["layers", "tiny-sd15", "--meta"], "full-size"),
    "missing --out": (["generate", "tiny-sd15", "--prompt", "a cat"], "--out"),
    "steps not a number": (["generate", "tiny-sd15", "--prompt", "a cat", "--steps", "ten", "--out", "{tmp}/a.png"], "invalid int"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_clear_line(capsys, tmp_path, case):
    argv, needle = BAD[case]
    (tmp_path / "dir.png").mkdir()
    code, out, err = run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("loco: error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in err
    assert not any(tmp_path.glob("*.png")) or (tmp_path / "dir.png").is_dir()


def test_unwritable_output(capsys, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/loco.png"  # root may write anywhere else
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "a.png")
    code, _, err = run(capsys, "generate", "tiny-sd15", "--prompt", "a cat", "--out", target)
    assert code == 2 and err.startswith("loco: error: cannot write")


def test_module_entry_point_exits_nonzero_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "loco_lib", "layers", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("loco: error: unknown model 'nope'")
    assert "Traceback" not in proc.stderr


def test_locogen_json(capsys, tmp_path):
    code, out, err = run(capsys, "locogen", "tiny-sd15", "--attribute", "style", "--m", "2", "--limit", "2",
                         "--steps", "2", "--cache", str(tmp_path / "cache"), "--quiet", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert [w["start"] for w in res["windows"]] == list(range(15))
    assert all(set(w) >= {"start", "layers", "mean", "std"} and len(w["layers"]) == 2 for w in res["windows"])
    means = [w["mean"] for w in res["windows"]]
    assert res["best"]["mean"] == min(means) and res["best"]["layers"] == res["windows"][means.index(min(means))]["layers"]
    assert isinstance(res["clean"], float) and isinstance(res["altered_all"], float)
    # resumed from the cache: same numbers, nothing recomputed
    code, out2, _ = run(capsys, "locogen", "tiny-sd15", "--attribute", "style", "--m", "2", "--limit", "2",
                        "--steps", "2", "--cache", str(tmp_path / "cache"), "--quiet", "--json")
    assert json.loads(out2) == res


def test_edit_then_generate_with_it(capsys, tmp_path):
    from loco_lib import generate, load
    from loco_lib.locoedit import Edit

    path = tmp_path / "vangogh.safetensors"
    code, out, err = run(capsys, "edit", "tiny-sd15", "--attribute", "style", "--layers", "8,9", "--out", str(path))
    assert code == 0, err and path.exists()
    img_path = tmp_path / "edited.png"
    code, _, err = run(capsys, "generate", "tiny-sd15", "--prompt", "a house in the style of van gogh", "--steps", "2",
                       "--edit", str(path), "--quiet", "--out", str(img_path))
    assert code == 0, err
    pipe = load("tiny-sd15", progress=False)
    plain = np.asarray(generate(pipe, "a house in the style of van gogh", steps=2, progress=False).images[0])
    Edit.load(path).apply(pipe)
    edited = np.asarray(generate(pipe, "a house in the style of van gogh", steps=2, progress=False).images[0])
    got = np.asarray(Image.open(img_path))
    assert np.array_equal(got, edited) and not np.array_equal(got, plain)


BAD_MORE = {
    "locogen m too large": (["locogen", "tiny-sd15", "--attribute", "style", "--m", "17"], "--m must be from 1 to 16"),
    "locogen bad attribute": (["locogen", "tiny-sd15", "--attribute", "colour", "--m", "2"], "unknown attribute"),
    "locogen bad seeds": (["locogen", "tiny-sd15", "--attribute", "style", "--m", "2", "--seeds", "a,b"], "cannot read seeds"),
    "locogen missing prompts file": (["locogen", "tiny-sd15", "--attribute", "style", "--m", "2", "--prompts", "{tmp}/none.yaml"], "none.yaml"),
    "edit bad layer": (["edit", "tiny-sd15", "--attribute", "style", "--layers", "16", "--out", "{tmp}/e.safetensors"], "out of range"),
    "edit bad suffix": (["edit", "tiny-sd15", "--attribute", "style", "--layers", "8", "--out", "{tmp}/e.png"], ".safetensors"),
    "edit unknown concept": (["edit", "tiny-sd15", "--attribute", "style", "--layers", "8", "--concept", "vermeer", "--out", "{tmp}/e.safetensors"], "vermeer"),
    "edit bad lambda": (["edit", "tiny-sd15", "--attribute", "style", "--layers", "8", "--lam", "0", "--out", "{tmp}/e.safetensors"], "--lam"),
    "generate missing edit": (["generate", "tiny-sd15", "--prompt", "a cat", "--edit", "{tmp}/none.safetensors", "--out", "{tmp}/a.png"], "none.safetensors"),
}


@pytest.mark.parametrize("case", sorted(BAD_MORE))
def test_bad_input_more(capsys, tmp_path, case):
    argv, needle = BAD_MORE[case]
    code, out, err = run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("loco: error: ") and needle in lines[0], err


def test_edit_for_another_model_is_one_line(capsys, tmp_path):
    path = tmp_path / "e.safetensors"
    assert run(capsys, "edit", "tiny-sd15", "--attribute", "style", "--layers", "8,9", "--out", str(path))[0] == 0
    code, _, err = run(capsys, "generate", "tiny-sd21", "--prompt", "a cat", "--edit", str(path), "--out", str(tmp_path / "a.png"))
    assert code == 2 and err.count("\n") == 1 and "shape" in err


# -- the model organism's default prompt sets and `loco evaluate` ---------------------------------

def test_organism_commands_need_no_prompts(capsys, tmp_path):
    """`loco locogen toy` and `loco edit toy` use the organism's own prompt sets; `loco evaluate`
    measures a set's own attribute, and an edit at the style window removes the style it names."""
    code, out, err = run(capsys, "locogen", "toy", "--attribute", "style", "--m", "2", "--limit", "2", "--quiet", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert len(res["windows"]) == 15 and res["clean"] > res["altered_all"]
    edit = tmp_path / "vg.safetensors"
    code, out, err = run(capsys, "edit", "toy", "--attribute", "style", "--layers", "0,1", "--out", str(edit))
    assert code == 0, err
    assert "4 prompt rows" in out
    code, out, err = run(capsys, "evaluate", "toy", "--attribute", "style", "--limit", "4", "--quiet", "--json")
    assert code == 0, err
    before = json.loads(out)
    assert before["n"] == 4 and set(before["accuracy"]) == {"shape", "colour", "style"}
    assert before["clip_score"] > before["clip_score_target"]  # the images show van gogh, not "a painting"
    code, out, err = run(capsys, "evaluate", "toy", "--attribute", "style", "--limit", "4", "--edit", str(edit),
                         "--controls", "--quiet", "--json")
    assert code == 0, err
    after = json.loads(out)
    assert after["accuracy"]["style"] < before["accuracy"]["style"]
    assert after["accuracy_target"]["style"] > before["accuracy_target"]["style"]
    assert set(after["controls"]) == {"other styles", "style-free"} and after["controls"]["style-free"]["n"] == 8


def test_evaluate_on_a_real_model_set_has_no_readouts(capsys):
    code, out, err = run(capsys, "evaluate", "tiny-sd15", "--attribute", "objects", "--limit", "1", "--steps", "2",
                         "--quiet", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["n"] == 1 and "accuracy" not in res and res["clip_score_target"] is not None


@pytest.mark.parametrize("argv,msg", [
    (["evaluate", "toy", "--attribute", "colour"], "unknown attribute 'colour'"),
    (["evaluate", "toy", "--attribute", "style", "--seeds", "a"], "cannot read seeds"),
    (["evaluate", "toy", "--attribute", "style", "--steps", "0"], "--steps must be at least 1"),
    (["evaluate", "tiny-sd15", "--attribute", "style", "--controls"], "has no `controls` block"),
    (["evaluate", "toy", "--attribute", "style", "--edit", "/nonexistent.safetensors"], "nonexistent"),
    (["evaluate", "nomodel", "--attribute", "style"], "unknown model"),
])
def test_evaluate_bad_input(capsys, argv, msg):
    code, out, err = run(capsys, *argv)
    assert code == 2 and msg in err and "Traceback" not in err and err.count("\n") == 1, err


# -- `loco report`: the organism's whole protocol -----------------------------------------------------

@pytest.mark.parametrize("argv,msg", [
    (["report", "tiny-sd15"], "is not one"),
    (["report", "toy", "--seeds", "x"], "cannot read seeds"),
    (["report", "toy", "--steps", "0"], "--steps must be at least 1"),
    (["report", "toy", "--out", "report.txt"], "must end in .json"),
    (["report", "nomodel"], "unknown model"),
])
def test_report_bad_input(capsys, argv, msg):
    code, out, err = run(capsys, *argv)
    assert code == 2 and msg in err and "Traceback" not in err and err.count("\n") == 1, err


def test_report_prints_the_summary_and_writes_the_report(capsys, tmp_path, monkeypatch):
    """The command's own work (arguments, summary, --out) on a recorded report; the protocol itself is
    computed by tests/test_organism.py and by the organism chapter."""
    from loco_lib import organism

    recorded = organism.load_report(organism.recorded_dir() / "toy-seed1.json")
    calls = []

    def fake_report(model, seeds, steps, cache_dir, progress, dtype):
        calls.append((model, seeds, steps, str(cache_dir), dtype))
        return recorded

    monkeypatch.setattr(organism, "report", fake_report)
    out_file = tmp_path / "r.json"
    code, out, err = run(capsys, "report", "toy", "--seeds", "0,1", "--steps", "9", "--cache", str(tmp_path / "c"),
                         "--out", str(out_file), "--quiet")
    assert code == 0, err
    assert calls == [("toy", [0, 1], 9, str(tmp_path / "c"), torch.float32)]
    best = recorded.locogen.style.best
    assert f"LocoGen style window, readout moved: {best[0]}-{best[-1]}" in out
    assert "training seed 1" in out
    second = recorded.edit.second_window
    assert f"second style window edit: edited style kept: {second.layers[0]}-{second.layers[-1]}: " \
           f"{second.after['edited'].style:.2f}" in out
    assert len(out.strip().splitlines()) == 1 + len(organism.summary(recorded))
    again = organism.load_report(out_file)
    strip = lambda r: {k: v for k, v in r.to_json().items() if k != "recorded"}
    assert strip(again) == strip(recorded)
    assert {"loco_commit", "date"} <= set(again.recorded) <= {"loco_commit", "date", "key"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": "toy"}')
    with pytest.raises(loco_lib.LocoError, match="not an organism report"):
        organism.load_report(bad)


# -- run settings: one line each, before any model is loaded (loco_lib.settings) -----------------------

SETTINGS_BAD = {
    "steps beyond the scheduler": (["generate", "tiny-sd15", "--prompt", "a cat", "--steps", "5000", "--out", "{tmp}/a.png"],
                                   "--steps must be at most 999"),
    "guidance nan": (["generate", "tiny-sd15", "--prompt", "a cat", "--guidance", "nan", "--out", "{tmp}/a.png"], "--guidance"),
    "guidance below one": (["generate", "tiny-sd15", "--prompt", "a cat", "--guidance", "0.5", "--out", "{tmp}/a.png"],
                           "1 means no guidance"),
    "negative seed": (["generate", "tiny-sd15", "--prompt", "a cat", "--seed", "-1", "--out", "{tmp}/a.png"], "--seed"),
    "size off the grid": (["generate", "tiny-sd15", "--prompt", "a cat", "--size", "20", "--out", "{tmp}/a.png"], "multiple of 8"),
    "unknown device": (["generate", "tiny-sd15", "--prompt", "a cat", "--device", "banana", "--out", "{tmp}/a.png"],
                       "unknown --device 'banana'"),
    "batch size zero": (["locogen", "tiny-sd15", "--attribute", "style", "--m", "2", "--batch-size", "0"], "--batch-size must be at least 1"),
    "repeated seeds": (["locogen", "tiny-sd15", "--attribute", "style", "--m", "2", "--seeds", "0,0"], "more than once"),
    "evaluate repeated seeds": (["evaluate", "toy", "--attribute", "style", "--seeds", "1,1"], "more than once"),
    "evaluate steps beyond": (["evaluate", "toy", "--attribute", "style", "--steps", "1000"], "at most 999"),
    "locogen cache is a file": (["locogen", "tiny-sd15", "--attribute", "style", "--m", "2", "--cache", "{tmp}/afile"], "is a file"),
    "report cache is a file": (["report", "toy", "--cache", "{tmp}/afile"], "is a file"),
    "report steps beyond": (["report", "toy", "--steps", "5000"], "at most 999"),
    "report repeated seeds": (["report", "toy", "--seeds", "0,0"], "more than once"),
    "edit lambda negative": (["edit", "tiny-sd15", "--attribute", "style", "--layers", "8", "--lam", "-1",
                              "--out", "{tmp}/e.safetensors"], "--lam must be a positive number"),
    "trace floor above one": (["trace", "tiny-sd15", "--where", "text", "--floor", "5"], "--floor is a fraction"),
}


@pytest.mark.parametrize("case", sorted(SETTINGS_BAD))
def test_bad_settings_are_one_line_before_any_work(capsys, tmp_path, monkeypatch, case):
    import importlib

    from loco_lib import organism

    argv, needle = SETTINGS_BAD[case]
    (tmp_path / "afile").write_text("a file, not a folder")
    fail = lambda *a, **k: pytest.fail("worked before the settings were checked")
    monkeypatch.setattr(importlib.import_module("loco_lib.generate"), "sample_batch", fail)
    monkeypatch.setattr(importlib.import_module("loco_lib.sweep"), "sample_batch", fail)
    monkeypatch.setattr(organism.protocol, "sample_accuracy", fail)
    code, out, err = run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("loco: error: ") and needle in lines[0], err
    assert out == "" and not (tmp_path / "a.png").exists()


def test_cuda_without_a_gpu_is_one_line(capsys, tmp_path):
    import torch

    device = "cuda:99" if torch.cuda.is_available() else "cuda"
    code, _, err = run(capsys, "generate", "tiny-sd15", "--prompt", "a cat", "--device", device, "--out", str(tmp_path / "a.png"))
    assert code == 2 and err.count("\n") == 1 and f"--device '{device}' is not available" in err, err


def test_organism_prompts_with_unknown_words_are_refused_up_front(capsys, tmp_path, monkeypatch):
    import importlib

    prompts = tmp_path / "mine.yaml"
    pair = "{original: 'a red circle in the style of van gogh', target: 'a red circle in the style of dali', subject: 'van gogh'}"
    prompts.write_text(f"attribute: style\nsource: test\npairs:\n  - {pair}\nedits:\n  'van gogh':\n    keys:\n      - {pair}\n")
    monkeypatch.setattr(importlib.import_module("loco_lib.sweep"), "sample_batch", lambda *a, **k: pytest.fail("computed"))
    for command in (["locogen", "toy", "--attribute", "style", "--m", "2"], ["evaluate", "toy", "--attribute", "style"],
                    ["edit", "toy", "--attribute", "style", "--layers", "0,1", "--out", str(tmp_path / "e.safetensors")]):
        code, out, err = run(capsys, *command, "--prompts", str(prompts))
        assert code == 2 and err.count("\n") == 1 and "'dali'" in err and "van gogh" in err, err
    code, _, err = run(capsys, "generate", "toy", "--prompt", "a red dog!", "--out", str(tmp_path / "a.png"))
    assert code == 2 and err.count("\n") == 1 and "('dog', '!')" in err, err


def test_json_never_prints_nan(capsys, monkeypatch):
    """A scorer that gives every image the same score: clean and all layers score the same, so the
    best window's fraction of the way is 0/0."""
    import importlib

    import torch

    clip_score = importlib.import_module("loco_lib.clip_score")  # (loco_lib.clip_score is also a function)

    class Flat:
        name = "flat"

        def score(self, images, texts):
            return torch.full((len(images),), 25.0)

    monkeypatch.setattr(clip_score, "get_scorer", lambda name=None, model=None: Flat())
    argv = ["locogen", "tiny-sd15", "--attribute", "style", "--m", "8", "--limit", "1", "--steps", "1", "--quiet"]
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    assert "NaN" not in out
    res = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in --json output"))
    assert res["best"]["fraction"] is None and "equal" in res["best"]["fraction_note"]
    code, out, err = run(capsys, *argv)
    assert code == 0 and "nan" not in out.lower() and "no way to go" in out, out


def test_json_writer_turns_nan_into_null_with_a_note():
    from loco_lib.jsonout import dumps

    text = dumps({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2.0}})
    data = json.loads(text, parse_constant=lambda c: pytest.fail(c))
    assert data["a"] is None and data["b"] == [1.0, None] and data["c"] == {"d": 2.0}
    assert len(data["notes"]) == 2 and "a is null" in data["notes"][0] and "b[1]" in data["notes"][1]
    assert dumps({"x": 1}) == '{"x": 1}'


def test_damaged_cache_entry_is_one_warning_line(capsys, tmp_path):
    argv = ["locogen", "tiny-sd15", "--attribute", "style", "--m", "8", "--limit", "1", "--steps", "1",
            "--cache", str(tmp_path), "--quiet", "--json"]
    code, first, err = run(capsys, *argv)
    assert code == 0, err
    png = sorted(tmp_path.glob("*.png"))[0]
    png.write_bytes(png.read_bytes()[:50])
    code, again, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 0 and len(lines) == 1 and lines[0].startswith("loco: warning: damaged cache entry") and str(png) in lines[0], err
    before, after = json.loads(first), json.loads(again)  # the recomputed image sat in another batch: float rounding
    assert [w["mean"] for w in after["windows"]] == pytest.approx([w["mean"] for w in before["windows"]], abs=1e-3)


def test_edit_of_other_weights_names_what_the_cli_user_can_do(capsys, tmp_path):
    """toy and toy-t5 have UNets of the same shapes but other weights: no `force=True` advice."""
    path = tmp_path / "vg.safetensors"
    assert run(capsys, "edit", "toy", "--attribute", "style", "--layers", "0,1", "--out", str(path))[0] == 0
    for command in (["generate", "toy-t5", "--prompt", "a red circle", "--out", str(tmp_path / "a.png")],
                    ["evaluate", "toy-t5", "--attribute", "style", "--limit", "1"]):
        code, _, err = run(capsys, *command, "--edit", str(path))
        assert code == 2 and err.count("\n") == 1, err
        assert "force" not in err and "loco edit toy-t5" in err and "'toy'" in err, err


def test_report_measures_a_long_context_organism_at_its_context(monkeypatch, tmp_path, capsys):
    """`loco report` on an organism trained with --context pads its prompts to that context (the
    pipeline it passes the protocol) and keeps its cache apart; a shipped organism gets none."""
    from loco_lib import organism
    from loco_lib.organism.model import models_dir

    recorded = organism.load_report(organism.recorded_dir() / "toy-seed1.json")
    seen = []

    def fake_report(model, seeds, steps, cache_dir, progress, dtype, pipe=None):
        seen.append((pipe.tokenizer.model_max_length if pipe is not None else None, str(cache_dir)))
        return recorded

    monkeypatch.setattr(organism, "report", fake_report)
    long_dir = str(models_dir() / "toy-t5-long")
    code, _, err = run(capsys, "report", long_dir, "--cache", str(tmp_path / "c"), "--quiet")
    assert code == 0, err
    code, _, err = run(capsys, "report", "toy-t5", "--cache", str(tmp_path / "c"), "--quiet")
    assert code == 0, err
    assert seen == [(77, str(tmp_path / "c" / "context-77")), (None, str(tmp_path / "c"))]


def test_trace_says_which_images_it_left_out(capsys):
    """At 3 steps the noised "monet" barely moves toy's score for this prompt: the command says the
    image was left out instead of printing a fraction of a gap that is not there; --floor 0 reads it."""
    argv = ["trace", "toy", "--where", "text", "--prompt", "a red circle in the style of monet", "--subject", "monet",
            "--steps", "3", "--quiet"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "no image's corruption corrupts: their corruption lowers the score by less than 5% of the clean one" in out
    code, out, err = run(capsys, *argv, "--floor", "0")
    assert code == 0 and "left out" not in out and "of the gap" in out
