"""What a model family is, in one place.

A loaded model is a pair of families: its :class:`~.base.PipelineFamily` (by pipeline class: how
prompts become a text condition, the pipeline-call keywords, sampling defaults) and its
:class:`~.base.DenoiserFamily` (by denoiser class: the text-reading layers in execution order, what
their K/V projections read, the text paths outside them, the states causal tracing restores).
Every method asks :func:`pipeline_family` / :func:`denoiser_family`; a new family is one module
here that registers itself, plus its tiny twin.
"""
from __future__ import annotations

from .base import DenoiserFamily, PipelineFamily  # noqa: F401
from . import deepfloyd, flux, pixart, sana, sd, sd3, unet  # noqa: F401
from .registry import (DENOISERS, PIPELINES, by_name, defaults, denoiser, denoiser_family, denoiser_name,  # noqa: F401
                       pipeline_family, register_denoiser, register_pipeline)
