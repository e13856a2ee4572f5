"""The organism's training script: a few steps as a smoke test, exact resume, loading by name."""
import json

import numpy as np
import pytest
import torch

from loco_lib import generate, load
from loco_lib.errors import LocoError
from loco_lib.layers import cross_attention_layers
from loco_lib.organism.training import train

KW = dict(batch=4, save_every=1, progress=False)


@pytest.mark.parametrize("kind", ["clip", "t5"])
def test_train_resume_and_load(tmp_path, monkeypatch, kind):
    whole = train(kind, steps=3, out=str(tmp_path / "whole"), **KW)
    part = tmp_path / "part"
    train(kind, steps=2, out=str(part), **KW)  # "interrupted" after two steps
    resumed = train(kind, steps=3, out=str(part), **KW)  # picks up the checkpoint
    assert len(resumed["loss_curve"]) == 1 and resumed["steps"] == 3
    info = json.loads((part / "training.json").read_text())
    assert info["final_loss"] == pytest.approx(whole["final_loss"], rel=1e-5), "resume must continue the same run"

    name = "toy" if kind == "clip" else "toy-t5"
    monkeypatch.setenv("LOCO_MODELS_DIR", str(tmp_path / "models"))
    with pytest.raises(LocoError, match="python -m loco_lib.organism.training"):
        load(name, progress=False)
    (tmp_path / "models").mkdir()
    (tmp_path / "whole").rename(tmp_path / "models" / name)
    pipe = load(name, progress=False)
    assert len(cross_attention_layers(pipe.unet)) == 16 and pipe.unet.dtype == torch.float32
    img = generate(pipe, "a red circle in the style of monet", steps=2, guidance=3.0, output_type="np", progress=False).images[0]
    assert img.shape == (32, 32, 3) and np.isfinite(img).all()


def test_the_recorded_training_rate_of_an_organism(tmp_path):
    from pathlib import Path

    from loco_lib.organism.training import trained_lr

    record = Path(__file__).resolve().parent.parent / "models" / "toy" / "training.json"
    assert trained_lr("toy") == json.loads(record.read_text())["lr"] == 1e-3
    assert trained_lr("sd15") is None and trained_lr("tiny-sd15") is None and trained_lr(None) is None
    assert trained_lr(str(tmp_path)) is None  # a folder that holds no organism
