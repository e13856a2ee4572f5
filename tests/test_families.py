"""Model families (loco_lib.families): one place says what a pipeline and its denoiser are; the hooks
lay out guidance rows on the denoiser whatever the pipeline calls it, and refuse a branch elsewhere."""
from __future__ import annotations

import pytest
import torch

from loco_lib import families
from loco_lib.errors import LocoError
from loco_lib.families.base import PipelineFamily
from loco_lib.hooks import Patch, Record, Site, hooks


def test_each_twin_has_its_family_and_denoiser(twin):
    name, pipe = twin
    fam = families.pipeline_family(pipe)
    assert fam.name == {"tiny-sd15": "sd", "tiny-sd21": "sd", "tiny-sdxl": "sdxl", "tiny-if": "if"}[name]
    assert families.by_name(fam.name) is fam
    assert families.denoiser(pipe) is pipe.unet and families.denoiser(pipe.unet) is pipe.unet
    assert families.denoiser_name(pipe) == families.denoiser_name(pipe.unet) == "unet"
    assert families.denoiser_family(pipe).name == "unet"
    assert fam.defaults == families.defaults()[fam.name]


def test_an_unknown_pipeline_or_denoiser_is_refused_in_one_line():
    with pytest.raises(LocoError, match="^dict is not supported: loco works with StableDiffusionPipeline, "
                                        "StableDiffusionXLPipeline, IFPipeline \\(stage I\\), PixArtAlphaPipeline, "
                                        "PixArtSigmaPipeline, SanaPipeline, StableDiffusion3Pipeline and FluxPipeline$"):
        families.pipeline_family({})
    with pytest.raises(LocoError, match="Linear is not supported as a denoiser"):
        families.denoiser_family(torch.nn.Linear(2, 2))
    with pytest.raises(LocoError, match="unknown model family 'hidream'"):
        families.by_name("hidream")


class _Denoiser(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.block = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.block(x)


class _TransformerPipe:
    """A pipeline whose denoiser is its ``transformer`` and whose calls lay out [uncond, cond]."""

    def __init__(self):
        self.transformer = _Denoiser()
        self.text_encoder = torch.nn.Linear(3, 3)


class _TransformerFamily(PipelineFamily):
    name = "test-transformer"
    denoiser = "transformer"
    describe = "_TransformerPipe"

    def matches(self, pipe):
        return isinstance(pipe, _TransformerPipe)


@pytest.fixture
def transformer_family():
    before = list(families.PIPELINES)
    families.register_pipeline(_TransformerFamily())
    yield
    families.PIPELINES[:] = before


def test_the_denoiser_of_a_registered_family_carries_the_guidance_rows(transformer_family):
    """A patch on the denoiser ("denoiser", or its alias "unet") changes only the conditional rows of
    a pipeline whose denoiser is called ``transformer``, as its family says: no literal UNet."""
    pipe = _TransformerPipe()
    assert families.denoiser(pipe) is pipe.transformer and families.denoiser_name(pipe) == "transformer"
    x = torch.arange(12.0).view(4, 3)  # 2 samples: rows [uncond 0, uncond 1, cond 0, cond 1]
    clean = pipe.transformer(x)
    for component in ("denoiser", "unet", "transformer"):
        with hooks(pipe, patches=[Patch(Site(component, "block", "output"), torch.zeros(1, 3))], n_samples=2):
            out = pipe.transformer(x)
        assert torch.equal(out[:2], clean[:2]), component  # unconditional rows untouched
        assert torch.equal(out[2:], torch.zeros(2, 3)), component
    with hooks(pipe, records=[Record(Site("denoiser", "block", "output"), branch="uncond")], n_samples=2) as tr:
        pipe.transformer(x)
    assert torch.equal(tr[Site("denoiser", "block", "output")][0], clean[:2])


def test_a_branch_on_a_component_without_guidance_rows_is_refused_not_widened(transformer_family):
    pipe = _TransformerPipe()
    with pytest.raises(LocoError, match="^text_encoder sites have no guidance branches"):
        Patch(Site("text_encoder", "", "output"), torch.zeros(1, 3), branch="cond")
    # "transformer" names a denoiser in general, but this pipeline's family says its denoiser is the
    # UNet-less "transformer"; on a pipeline whose denoiser is "unet", a transformer patch has no rows
    # to choose from: one line, before any call
    unet_pipe = _TransformerPipe()
    unet_pipe.unet = unet_pipe.transformer
    families.PIPELINES[:] = [f for f in families.PIPELINES if f.name != "test-transformer"]
    with pytest.raises(LocoError, match="transformer calls have no guidance rows.*cannot select the 'cond' branch"):
        with hooks(unet_pipe, patches=[Patch(Site("transformer", "block", "output"), torch.zeros(1, 3))], n_samples=2):
            pass
    # every row, asked for explicitly, is allowed there
    x = torch.ones(2, 3)
    with hooks(unet_pipe, patches=[Patch(Site("transformer", "block", "output"), torch.zeros(1, 3), branch="all")]):
        assert torch.equal(unet_pipe.transformer(x), torch.zeros(2, 3))


def test_text_sites_name_the_denoiser():
    assert Site("denoiser", "a.attn2", "text").component == "denoiser"
    with pytest.raises(LocoError, match="text sites are cross-attention layers of the denoiser"):
        Site("text_encoder", "a", "text")
