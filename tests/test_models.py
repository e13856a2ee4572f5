"""Loading: short names, local folders, unsupported pipelines, the DeepFloyd licence message."""
import numpy as np
import pytest
import torch

from loco_lib import generate, load
from loco_lib.errors import LocoError
from loco_lib.models import IF_LICENSE_URL, pipeline_family


def test_local_folder_of_a_supported_family(tmp_path):
    pipe = load("tiny-sd15", progress=False)
    pipe.save_pretrained(tmp_path / "mine")
    again = load(str(tmp_path / "mine"), progress=False)
    assert pipeline_family(again) == "sd"
    assert again.unet.dtype == torch.float32  # fp32 on CPU
    assert all(not m.training for m in again.unet.modules())
    a = generate(pipe, "a red house", steps=2, seeds=3, output_type="np", progress=False).images[0]
    b = generate(again, "a red house", steps=2, seeds=3, output_type="np", progress=False).images[0]
    assert np.array_equal(a, b)


def test_unsupported_pipeline_is_refused(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 8), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path / "ddpm")
    with pytest.raises(LocoError, match="not supported"):
        load(str(tmp_path / "ddpm"), progress=False)


def test_gated_deepfloyd_says_what_to_do(monkeypatch):
    import diffusers

    from loco_lib import models

    def refuse(*args, **kwargs):
        raise OSError("You are trying to access a gated repo. Make sure to have access to it. 401 Client Error")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", refuse)
    monkeypatch.setattr(models, "hub_unreachable", lambda: None)  # the Hub answers (gated is not a network problem)
    with pytest.raises(LocoError) as info:
        load("deepfloyd-if", device="cpu")
    msg = str(info.value)
    assert IF_LICENSE_URL in msg and "token" in msg
    assert "\n" not in msg


def test_unreachable_hub_is_one_sentence(monkeypatch):
    import diffusers

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nmore lines\nmore")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", offline)
    with pytest.raises(LocoError) as info:
        load("sd15", device="cpu")
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in str(info.value)
    assert "\n" not in str(info.value)


def test_twins_are_seeded():
    a = load("tiny-sd21", progress=False).unet.state_dict()
    b = load("tiny-sd21", progress=False).unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
