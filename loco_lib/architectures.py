"""Full-size architectures of the real checkpoints, built on the meta device.

``data/architectures.json`` holds the UNet and text-encoder configs of SD-1.4/1.5, OpenJourney,
SD-2.1, SD-XL and DeepFloyd IF-I-XL (read from their public config files). Building a UNet under
``accelerate.init_empty_weights`` gives the exact module tree, names and parameter shapes with no
memory and no download, so the layer map and the editing code are tested on the real shapes.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

# short model name -> key in architectures.json
ARCH_KEYS = {
    "sd14": "sd14",
    "sd15": "sd15",
    "openjourney": "openjourney",
    "sd21": "sd21",
    "sdxl": "sdxl",
    "deepfloyd-if": "if_i_xl",
}


@lru_cache(maxsize=1)
def architectures() -> dict:
    with resources.files("loco_lib").joinpath("data/architectures.json").open() as fh:
        return json.load(fh)


def arch_key(name: str) -> str:
    from .errors import LocoError

    if name in ARCH_KEYS:
        return ARCH_KEYS[name]
    if name in architectures() and not name.startswith(("_", "expected")):
        return name
    raise LocoError(f"no full-size architecture for {name!r}; known: {', '.join(ARCH_KEYS)}")


def unet_config(name: str) -> dict:
    return dict(architectures()[arch_key(name)]["unet"])


def expected_layer_count(name: str) -> int:
    return architectures()["expected_cross_attention_layers"][arch_key(name)]


def meta_unet(name: str):
    """The full-size UNet of ``name`` on the meta device (no weights, no memory)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    with init_empty_weights():
        unet = UNet2DConditionModel(**unet_config(name))
    return unet.eval()


def random_unet(name: str, dtype=None, device="cpu", seed: int = 0):
    """The full-size UNet with seeded random weights of the real shapes (for timing on a GPU)."""
    import torch
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**unet_config(name))
    return unet.to(device=device, dtype=dtype).eval()
