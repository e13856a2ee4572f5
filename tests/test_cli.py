"""The command line: layer maps, one generated image, and one clear line for each bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from loco_lib.cli import main

EXPECTED = {"sd14": 16, "sd15": 16, "openjourney": 16, "sd21": 16, "sdxl": 70, "deepfloyd-if": 22}


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
