"""Training options of the organisms (loco_lib.organism.training): the pooled-text dropout of the
IF-topology organism whose attention carries the caption (``toy-if-xattn``), the long-context T5
organism (``--context``, ``--init``), and resuming from a checkpoint. Tiny batches, a few steps."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from loco_lib.organism import training
from loco_lib.organism.model import MAX_TOKENS, models_dir


def _weights(folder, part="unet"):
    return load_file(str(next((folder / part).glob("*.safetensors"))))


def test_pooled_dropout_cuts_the_pooled_path_from_training(tmp_path):
    """With every sample's pooled text zeroed, add_embedding gets no gradient and keeps its
    initial weights; with none zeroed it learns, so the mask is what reaches the path."""
    cut = training.train("t5", "if", steps=2, out=str(tmp_path / "cut"), batch=2, warmup=1, progress=False, pooled_drop=1.0)
    kept = training.train("t5", "if", steps=2, out=str(tmp_path / "kept"), batch=2, warmup=1, progress=False, pooled_drop=0.0)
    assert cut["pooled_dropout"] == 1.0 and kept["pooled_dropout"] == 0.0
    a, b = _weights(tmp_path / "cut"), _weights(tmp_path / "kept")
    names = [k for k in a if k.startswith("add_embedding.")]
    assert names
    from loco_lib.organism import model as toy

    init = {k: v.to(torch.float16) for k, v in toy.build("t5", seed=0, unet_kind="if").unet.state_dict().items()}
    assert all(torch.equal(a[k], init[k]) for k in names)
    assert any(not torch.equal(b[k], init[k]) for k in names)


def test_training_options_are_checked_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="IF-topology"):
        training.train("clip", "sd", steps=1, out=str(tmp_path / "a"), batch=2, progress=False, pooled_drop=0.5)
    with pytest.raises(ValueError, match="fraction"):
        training.train("t5", "if", steps=1, out=str(tmp_path / "b"), batch=2, progress=False, pooled_drop=1.5)
    with pytest.raises(ValueError, match="T5 encoder"):
        training.train("clip", "sd", steps=1, out=str(tmp_path / "c"), batch=2, progress=False, context=32)
    with pytest.raises(ValueError, match="not a trained"):
        training.train("t5", "sd", steps=1, out=str(tmp_path / "d"), batch=2, progress=False, init=str(models_dir() / "toy"))


def test_long_context_organism_pads_to_its_context(tmp_path):
    out = tmp_path / "long"
    info = training.train("t5", "sd", steps=1, out=str(out), batch=2, lr=1e-5, warmup=1, progress=False, context=24,
                          init=str(models_dir() / "toy-t5"))
    assert info["context"] == 24 and info["init"] == "toy-t5"
    assert training.trained_context(str(out)) == 24
    assert training.trained_context("toy-t5") is None and training.trained_context("tiny-sd15") is None
    pipe = training.load_long_context(str(out))
    ids = pipe.tokenizer(["a red circle in the style of van gogh"], padding="max_length",
                         max_length=pipe.tokenizer.model_max_length, return_tensors="pt").input_ids
    assert ids.shape[1] == 24 > MAX_TOKENS
    from loco_lib.errors import LocoError

    with pytest.raises(LocoError, match="longer context"):
        training.load_long_context("toy-t5")


def test_a_resumed_training_equals_an_uninterrupted_one(tmp_path):
    """Stopped after 2 steps and run again to 3, the weights equal a 3-step run's bit for bit: the
    batches, the pooled-path masks and the noise are all drawn from the step's seed or the saved
    RNG state."""
    kw = dict(batch=2, warmup=1, progress=False, pooled_drop=0.5, save_every=1)
    training.train("t5", "if", steps=2, out=str(tmp_path / "r"), **kw)
    resumed = training.train("t5", "if", steps=3, out=str(tmp_path / "r"), **kw)
    whole = training.train("t5", "if", steps=3, out=str(tmp_path / "w"), **kw)
    assert resumed["loss_curve"] == whole["loss_curve"]
    a, b = _weights(tmp_path / "r"), _weights(tmp_path / "w")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "r" / "training.json").read_text())["steps"] == 3
