"""Full-size architectures of the real checkpoints, built on the meta device.

``data/architectures.json`` holds the UNet and text-encoder configs of SD-1.4/1.5, OpenJourney,
SD-2.1, SD-XL and DeepFloyd IF-I-XL (read from their public config files), and the transformer and
text-encoder configs of PixArt-alpha (1024 and 512 px), PixArt-Sigma, SANA (1600M, 600M), SD3-Medium, SD3.5 (Large, Medium) and FLUX.1 (dev, schnell). Building a UNet under
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
    "pixart-alpha": "pixart_alpha",
    "pixart-alpha-512": "pixart_alpha_512",
    "pixart-sigma": "pixart_sigma",
    "sana": "sana_1600m",
    "sana-600m": "sana_600m",
    "sd3": "sd3_medium",
    "sd35-large": "sd35_large",
    "sd35-medium": "sd35_medium",
    "flux-dev": "flux_dev",
    "flux-schnell": "flux_schnell",
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
    from .errors import LocoError

    arch = architectures()[arch_key(name)]
    if "unet" not in arch:
        raise LocoError(f"{name!r} has no UNet: its denoiser is a {arch['denoiser']['_class']}")
    return dict(arch["unet"])


def denoiser_config(name: str) -> tuple[str, dict]:
    """``(diffusers class name, config)`` of the full-size denoiser of ``name`` (a UNet or a transformer)."""
    arch = architectures()[arch_key(name)]
    if "unet" in arch:
        return "UNet2DConditionModel", dict(arch["unet"])
    cfg = dict(arch["denoiser"])
    return cfg.pop("_class"), cfg


def meta_denoiser(name: str):
    """The full-size denoiser of ``name`` (UNet or diffusion transformer) on the meta device."""
    import diffusers
    from accelerate import init_empty_weights

    cls, cfg = denoiser_config(name)
    with init_empty_weights():
        model = getattr(diffusers, cls)(**cfg)
    return model.eval()


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


# The Stable Diffusion VAE (SD-1.x/2.x and SD-XL share its layout; SD-XL scales latents by 0.13025).
_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512))


def _text_encoder(cfg: dict, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    keys = ("hidden_act", "hidden_size", "intermediate_size", "max_position_embeddings", "num_attention_heads",
            "num_hidden_layers", "projection_dim", "vocab_size", "layer_norm_eps")
    config = CLIPTextConfig(**{k: cfg[k] for k in keys}, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def random_pipeline(name: str, seed: int = 0, dtype=None):
    """A full-size pipeline of ``name`` with seeded random weights: the denoiser and the text
    encoders built from their real configs (``data/architectures.json``). Every real-size shape path
    runs on it; it knows nothing.

    * ``sd15``, ``sd14``, ``openjourney``, ``sd21``, ``sdxl``: the standard SD VAE, the real CLIP
      tokenizers (offline), the twins' schedulers; float32 unless ``dtype`` is given.
    * ``pixart-alpha``, ``pixart-alpha-512``, ``pixart-sigma``, ``sana``, ``sana-600m``: see
      :func:`random_dit_pipeline` (bfloat16 by default: T5-XXL alone is 19 GB in float32).
    * ``sd3``, ``sd35-medium``, ``sd35-large``: see :func:`random_sd3_pipeline` (bfloat16 by default).
      FLUX (12B parameters in its transformer) is built on the meta device only."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline

    from .errors import LocoError
    from .models import _ddim, _euler, quiet_libraries
    from .tokenizers import clip_tokenizer

    key = arch_key(name)
    arch = architectures()[key]
    if key == "if_i_xl":
        raise LocoError("random_pipeline builds the Stable Diffusion family and the DiTs (PixArt, SANA), not IF")
    if "denoiser" in arch and arch["denoiser"]["_class"] == "SD3Transformer2DModel":
        return random_sd3_pipeline(name, seed=seed, dtype=torch.bfloat16 if dtype is None else dtype)
    if "denoiser" in arch:
        return random_dit_pipeline(name, seed=seed, dtype=torch.bfloat16 if dtype is None else dtype)
    with quiet_libraries(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = random_unet(name)
        if key == "sdxl":
            pipe = StableDiffusionXLPipeline(
                vae=AutoencoderKL(**_VAE, scaling_factor=0.13025, sample_size=1024),
                text_encoder=_text_encoder(arch["text_encoder"]),
                text_encoder_2=_text_encoder(arch["text_encoder_2"], projection=True),
                tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(pad_token="!"), unet=unet, scheduler=_euler(),
                force_zeros_for_empty_prompt=True, add_watermarker=False)
        else:
            v = key == "sd21"
            pipe = StableDiffusionPipeline(
                vae=AutoencoderKL(**_VAE, sample_size=arch.get("resolution", 512)), text_encoder=_text_encoder(arch["text_encoder"]),
                tokenizer=clip_tokenizer(pad_token="!" if v else "<|endoftext|>"), unet=unet,
                scheduler=_ddim("v_prediction" if v else "epsilon"), safety_checker=None, feature_extractor=None,
                requires_safety_checker=False)
        if dtype is not None:
            pipe = pipe.to(dtype=dtype)
    return _finished(pipe, name)


def _finished(pipe, name: str):
    """A random pipeline ready for use: every module in eval mode, named ``random-<name>``, no bars."""
    import torch

    for comp in pipe.components.values():
        if isinstance(comp, torch.nn.Module):
            comp.eval()
    pipe.loco_name = f"random-{name}"
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _built_in(dtype, build):
    """``build()`` with ``dtype`` as torch's default floating type (a model too large for float32
    memory is created in its final type)."""
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return build()
    finally:
        torch.set_default_dtype(before)


def random_sd3_pipeline(name: str, seed: int = 0, dtype=None):
    """A full-size SD3 / SD3.5 pipeline with seeded random weights, in ``dtype`` (default bfloat16):
    the transformer from its real config; the three text encoders SD3's pipeline ships, CLIP-L and
    CLIP-G with projections (the configs of SD-XL's two encoders) and T5-v1.1-XXL (PixArt's); loco's
    offline tokenizers (CLIP; T5-style, 256 tokens, the pipeline's default); a 16-channel VAE of the
    SD layout without quant convs; flow-matching Euler with shift 3. SD3-Medium's pipeline has
    7.69B parameters, T5 4.76B of them (``benchmarks/results/full_size_sd3-cpu.json``); SD3.5-Large's
    transformer alone has 8.06B (``loco layers sd35-large --meta``)."""
    import diffusers
    import torch
    import transformers

    from .models import quiet_libraries
    from .tokenizers import clip_tokenizer, t5_style_tokenizer

    dtype = torch.bfloat16 if dtype is None else dtype
    cls, cfg = denoiser_config(name)
    arch = architectures()
    t5_cfg = dict(arch["pixart_alpha"]["text_encoder"])
    t5_cfg.pop("_class")
    with quiet_libraries(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = _built_in(dtype, lambda: getattr(diffusers, cls)(**cfg))
        clip_l = _built_in(dtype, lambda: _text_encoder(arch["sdxl"]["text_encoder"], projection=True))
        clip_g = _built_in(dtype, lambda: _text_encoder(arch["sdxl"]["text_encoder_2"], projection=True))
        tok3 = t5_style_tokenizer(model_max_length=256)
        t5 = _built_in(dtype, lambda: transformers.T5EncoderModel(transformers.T5Config(**t5_cfg)))
        vae = _built_in(dtype, lambda: diffusers.AutoencoderKL(**{**_VAE, "latent_channels": 16}, use_quant_conv=False,
                                                               use_post_quant_conv=False, scaling_factor=1.5305,
                                                               shift_factor=0.0609, sample_size=1024))
        pipe = diffusers.StableDiffusion3Pipeline(
            transformer=transformer, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
            text_encoder=clip_l, tokenizer=clip_tokenizer(), text_encoder_2=clip_g, tokenizer_2=clip_tokenizer(pad_token="!"),
            text_encoder_3=t5, tokenizer_3=tok3)
    return _finished(pipe, name)


def random_dit_pipeline(name: str, seed: int = 0, dtype=None):
    """A full-size PixArt or SANA pipeline with seeded random weights, in ``dtype`` (default
    bfloat16): the transformer and the text encoder (T5-v1.1-XXL; Gemma-2-2B) from their real
    configs, loco's offline tokenizers of the same formats (T5-style; Gemma-style), PixArt's SD VAE
    layout or a DC-AE of diffusers' default layout (32x downsampling, 32 latent channels), and the
    twins' schedulers."""
    import diffusers
    import torch
    import transformers

    from .models import quiet_libraries
    from .tokenizers import gemma_style_tokenizer, t5_style_tokenizer

    dtype = torch.bfloat16 if dtype is None else dtype
    key = arch_key(name)
    arch = architectures()[key]
    cls, cfg = denoiser_config(name)
    text_cfg = dict(arch["text_encoder"])
    text_cls = text_cfg.pop("_class")
    sana = key.startswith("sana")
    with quiet_libraries(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = _built_in(dtype, lambda: getattr(diffusers, cls)(**cfg))
        config_cls = transformers.Gemma2Config if sana else transformers.T5Config
        tok = gemma_style_tokenizer() if sana else t5_style_tokenizer(model_max_length=512)
        extra = dict(pad_token_id=0, eos_token_id=1, bos_token_id=2, attn_implementation="eager") if sana else {}
        text = _built_in(dtype, lambda: getattr(transformers, text_cls)(config_cls(**text_cfg, **extra)))
        if sana:
            from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline

            vae = _built_in(dtype, lambda: AutoencoderDC(scaling_factor=0.41407))
            pipe = SanaPipeline(tokenizer=tok, text_encoder=text, vae=vae, transformer=transformer,
                                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))
        else:
            from diffusers import AutoencoderKL, DPMSolverMultistepScheduler

            vae = _built_in(dtype, lambda: AutoencoderKL(**_VAE, sample_size=arch.get("resolution", 1024)))
            pipeline = diffusers.PixArtSigmaPipeline if key == "pixart_sigma" else diffusers.PixArtAlphaPipeline
            pipe = pipeline(tokenizer=tok, text_encoder=text, vae=vae, transformer=transformer,
                            scheduler=DPMSolverMultistepScheduler())
    return _finished(pipe, name)
