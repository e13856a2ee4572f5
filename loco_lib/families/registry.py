"""The registry of model families: which family a pipeline or a denoiser belongs to. The methods and
the modules under them (layers, text, settings) import this module; it imports and registers the
built-in families, so their code is in the content key of every measurement that asks them."""
from __future__ import annotations

import torch

from ..errors import LocoError
from .base import DenoiserFamily, PipelineFamily

PIPELINES: list[PipelineFamily] = []
DENOISERS: list[DenoiserFamily] = []


def register_pipeline(family: PipelineFamily) -> PipelineFamily:
    PIPELINES[:] = [f for f in PIPELINES if f.name != family.name] + [family]
    return family


def register_denoiser(family: DenoiserFamily) -> DenoiserFamily:
    DENOISERS[:] = [f for f in DENOISERS if f.name != family.name] + [family]
    return family


def _names(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def pipeline_family(pipe) -> PipelineFamily:
    """The family of a loaded pipeline; a one-line LocoError for a pipeline loco does not support."""
    for f in PIPELINES:
        if f.matches(pipe):
            return f
    raise LocoError(f"{type(pipe).__name__} is not supported: loco works with {_names(f.describe for f in PIPELINES)}")


def by_name(name: str) -> PipelineFamily:
    for f in PIPELINES:
        if f.name == name:
            return f
    raise LocoError(f"unknown model family {name!r}: loco knows {', '.join(f.name for f in PIPELINES)}")


def denoiser(pipe_or_model) -> torch.nn.Module:
    """The denoiser of a pipeline (its UNet or transformer), or the module itself."""
    if isinstance(pipe_or_model, torch.nn.Module):
        return pipe_or_model
    name = denoiser_name(pipe_or_model)
    model = getattr(pipe_or_model, name, None)
    if not isinstance(model, torch.nn.Module):
        raise LocoError(f"{type(pipe_or_model).__name__} has no denoiser {name!r}")
    return model


def denoiser_name(pipe_or_model) -> str:
    """The component name of the denoiser (``"unet"``, ``"transformer"``)."""
    if isinstance(pipe_or_model, torch.nn.Module):
        return denoiser_family(pipe_or_model).component
    family = next((f for f in PIPELINES if f.matches(pipe_or_model)), None)  # one pass over the families
    return "unet" if family is None else family.denoiser


def denoiser_family(pipe_or_model) -> DenoiserFamily:
    model = denoiser(pipe_or_model)
    for f in DENOISERS:
        if f.matches(model):
            return f
    raise LocoError(f"{type(model).__name__} is not supported as a denoiser: loco knows "
                    f"{_names([c for f in DENOISERS for c in f.classes_])}")


def defaults() -> dict:
    """``{family name: {"steps", "guidance"}}`` of every registered pipeline family."""
    return {f.name: dict(f.defaults) for f in PIPELINES}


from .deepfloyd import DeepFloydIF  # noqa: E402  (the families: their code keys every measurement that asks them)
from .flux import Flux, FluxTransformer  # noqa: E402
from .pixart import PixArt, PixArtTransformer  # noqa: E402
from .sana import Sana, SanaTransformer  # noqa: E402
from .sd import SD, SDXL  # noqa: E402
from .sd3 import SD3, SD3Transformer  # noqa: E402
from .unet import UNet  # noqa: E402

for _f in (SD(), SDXL(), DeepFloydIF(), PixArt(), Sana(), SD3(), Flux()):
    register_pipeline(_f)
for _d in (UNet(), PixArtTransformer(), SanaTransformer(), SD3Transformer(), FluxTransformer()):
    register_denoiser(_d)
