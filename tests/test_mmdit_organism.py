"""The joint-attention organism's wing (loco_lib/organism/mmdit.py): an SD3-topology transformer with
two CLIP-style encoders and a droppable T5-style one, trained by rectified flow, resumably; a
trained folder loads through ``loco_lib.load`` and runs with or without T5. Tiny batches, a few steps."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from loco_lib.organism import mmdit

KW = dict(batch=2, warmup=1, progress=False, save_every=1)


def _weights(folder):
    from safetensors.torch import load_file

    return {f"{part}.{k}": v for part in ("transformer",) + mmdit.TEXT
            for k, v in load_file(next((folder / part).glob("*.safetensors"))).items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy-mmdit")
    mmdit.train(steps=2, out=str(folder), **KW)
    return folder


def test_the_organism_has_sd3s_layout_at_toy_widths():
    pipe = mmdit.build()
    assert len(pipe.transformer.transformer_blocks) == mmdit.MMDIT_BLOCKS == 12
    assert pipe.transformer.transformer_blocks[-1].context_pre_only
    text, pooled = mmdit.encode(pipe, ["a red circle in the style of van gogh"])
    assert text.shape == (1, 12 + 12, 64) and pooled.shape == (1, 64)  # CLIP part, then T5 part; two pooled CLIPs


def test_a_dropped_t5_is_what_the_pipeline_feeds_without_t5(trained):
    with_t5, without = mmdit.load(trained), mmdit.load(trained, without_t5=True)
    caption = ["a blue square in the style of monet"]
    with torch.no_grad():
        dropped, _ = mmdit.encode(with_t5, caption, t5_keep=torch.tensor([False]))
        none, _ = mmdit.encode(without, caption)
        full, _ = mmdit.encode(with_t5, caption)
    assert torch.equal(dropped, none) and not torch.equal(full, none)
    assert torch.equal(none[:, 12:], torch.zeros_like(none[:, 12:]))


def test_a_resumed_training_equals_an_uninterrupted_one(tmp_path):
    mmdit.train(steps=1, out=str(tmp_path / "r"), **KW)
    resumed = mmdit.train(steps=2, out=str(tmp_path / "r"), **KW)
    whole = mmdit.train(steps=2, out=str(tmp_path / "w"), **KW)
    assert resumed["loss_curve"] == whole["loss_curve"]
    a, b = _weights(tmp_path / "r"), _weights(tmp_path / "w")
    assert all(torch.equal(a[k], b[k]) for k in a)
    info = json.loads((tmp_path / "r" / "training.json").read_text())
    assert (info["kind"], info["unet"], info["steps"]) == ("clip+t5", "mmdit", 2)


def test_a_trained_folder_runs_every_ported_method_through_loco(trained):
    from loco_lib import compute_edit, cross_attention_layers, generate, load
    from loco_lib.families import registry

    pipe = load(str(trained), progress=False)
    assert registry.pipeline_family(pipe).name == "sd3" and len(cross_attention_layers(pipe)) == 12
    kw = dict(seeds=0, steps=3, output_type="np", progress=False)
    plain = generate(pipe, ["a red circle"], **kw).images[0]
    every = generate(pipe, ["a red circle in the style of van gogh"], alt_prompts=["a red circle"], layers="all",
                     swap_text_paths=True, **kw).images[0]
    assert plain.shape == (32, 32, 3) and np.abs(every - plain).max() < 1e-4
    e = compute_edit(pipe, [3, 4], ["a red circle in the style of van gogh"], ["a red circle in the style of a painting"],
                     "van gogh", "a painting", runs=dict(steps=3))
    assert e.meta["n_rows"] == 1 * 1 * 3 * 2  # prompt, seed, step, CLIP and T5 part
