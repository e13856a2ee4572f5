"""Models by short name: the real checkpoints and their offline tiny twins.

Real checkpoints (loaded from the hub in Colab; fp16 on CUDA, fp32 on CPU):

==============  ============================================  ===========
name            hub id                                        family
==============  ============================================  ===========
sd14            CompVis/stable-diffusion-v1-4                 sd
sd15            stable-diffusion-v1-5/stable-diffusion-v1-5   sd
openjourney     prompthero/openjourney                        sd
sd21            stabilityai/stable-diffusion-2-1              sd
sdxl            stabilityai/stable-diffusion-xl-base-1.0      sdxl
deepfloyd-if    DeepFloyd/IF-I-XL-v1.0 (gated)                if
==============  ============================================  ===========

SD-1.x / OpenJourney are sampled with DDIM as in the paper (Sec. 5.1); SD-2.1 ships DDIM, SD-XL
Euler, IF DDPM. Any other hub id or local folder of one of these pipeline families also works.

Tiny twins (``tiny-sd15``, ``tiny-sd21``, ``tiny-sdxl``, ``tiny-if``): the real block layout and
module names (so the same layer map and the same 16 / 16 / 70 / 22 layers), tiny widths, seeded
random weights, real tokenizers built offline, the real model's scheduler type and config; every
module in eval mode. They prove code paths run; they know nothing (no layer controls anything).

Model organisms (``toy``, ``toy-t5``, the default model): trained by loco on its synthetic world,
weights in ``models/``; they come as cards from the wing :mod:`loco_lib.organism` (see
:mod:`loco_lib.registry`), which this module does not import.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .errors import LocoError
from .settings import pipeline_family  # noqa: F401 (its home was here)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # a pipeline family of loco_lib.families: "sd", "sdxl", "if", "pixart", "sana"
    hub_id: str | None = None
    twin_of: str | None = None  # for tiny twins: the real model whose layout they copy
    note: str = ""


REAL = {
    "sd14": ModelSpec("sd14", "sd", "CompVis/stable-diffusion-v1-4"),
    "sd15": ModelSpec("sd15", "sd", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
    "openjourney": ModelSpec("openjourney", "sd", "prompthero/openjourney"),
    "sd21": ModelSpec("sd21", "sd", "stabilityai/stable-diffusion-2-1"),
    "sdxl": ModelSpec("sdxl", "sdxl", "stabilityai/stable-diffusion-xl-base-1.0"),
    "deepfloyd-if": ModelSpec("deepfloyd-if", "if", "DeepFloyd/IF-I-XL-v1.0", note="gated"),
    "pixart-alpha": ModelSpec("pixart-alpha", "pixart", "PixArt-alpha/PixArt-XL-2-1024-MS"),
    "pixart-alpha-512": ModelSpec("pixart-alpha-512", "pixart", "PixArt-alpha/PixArt-XL-2-512x512"),
    "pixart-sigma": ModelSpec("pixart-sigma", "pixart", "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"),
    "sana": ModelSpec("sana", "sana", "Efficient-Large-Model/Sana_1600M_1024px_diffusers"),
    "sana-600m": ModelSpec("sana-600m", "sana", "Efficient-Large-Model/Sana_600M_1024px_diffusers"),
    "sd3": ModelSpec("sd3", "sd3", "stabilityai/stable-diffusion-3-medium-diffusers", note="gated"),
    "sd35-large": ModelSpec("sd35-large", "sd3", "stabilityai/stable-diffusion-3.5-large", note="gated"),
    "sd35-medium": ModelSpec("sd35-medium", "sd3", "stabilityai/stable-diffusion-3.5-medium", note="gated"),
    "flux-dev": ModelSpec("flux-dev", "flux", "black-forest-labs/FLUX.1-dev", note="gated"),
    "flux-schnell": ModelSpec("flux-schnell", "flux", "black-forest-labs/FLUX.1-schnell"),
}
TINY = {
    "tiny-sd15": ModelSpec("tiny-sd15", "sd", twin_of="sd15"),
    "tiny-sd21": ModelSpec("tiny-sd21", "sd", twin_of="sd21"),
    "tiny-sdxl": ModelSpec("tiny-sdxl", "sdxl", twin_of="sdxl"),
    "tiny-if": ModelSpec("tiny-if", "if", twin_of="deepfloyd-if"),
    "tiny-pixart": ModelSpec("tiny-pixart", "pixart", twin_of="pixart-alpha"),
    "tiny-sana": ModelSpec("tiny-sana", "sana", twin_of="sana"),
    "tiny-sd3": ModelSpec("tiny-sd3", "sd3", twin_of="sd3"),
    "tiny-sd35": ModelSpec("tiny-sd35", "sd3", twin_of="sd35-medium"),
    "tiny-flux": ModelSpec("tiny-flux", "flux", twin_of="flux-dev"),
}
MODELS = {**REAL, **TINY}  # more models come as cards (loco_lib.registry), e.g. the model organisms
DEFAULT_MODEL = "toy"  # the model organism (registered by loco_lib.organism): trained, offline, CPU-sized
IF_LICENSE_URL = "https://huggingface.co/DeepFloyd/IF-I-XL-v1.0"


def known_models() -> list[str]:
    """Real checkpoints, tiny twins and the models registered as cards (the organisms)."""
    from .registry import named

    return list(MODELS) + [n for n in named() if n not in MODELS]


def progress_default() -> bool:
    """Progress bars on unless ``LOCO_PROGRESS=0`` (the book build sets it: no widgets in static pages)."""
    return os.environ.get("LOCO_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")


@contextmanager
def quiet_libraries():
    """Silence diffusers / transformers chatter (optional-dependency notices, dtype notes) for a block."""
    import diffusers
    import transformers

    old = (diffusers.utils.logging.get_verbosity(), transformers.utils.logging.get_verbosity())
    bars = transformers.utils.logging.is_progress_bar_enabled()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars of small local models
    try:
        yield
    finally:
        diffusers.utils.logging.set_verbosity(old[0])
        transformers.utils.logging.set_verbosity(old[1])
        if bars:
            transformers.utils.logging.enable_progress_bar()


def default_device() -> str:
    """CUDA when torch sees a GPU, else the CPU (:func:`loco_lib.settings.device`)."""
    from .settings import device

    return device(None)


def check_model_name(name: str) -> None:
    """Raise a LocoError listing the known names unless ``name`` is usable."""
    if not isinstance(name, str):
        raise LocoError(f"a model name must be text, got {name!r}; known models: {', '.join(known_models())}")
    if not name.strip():
        raise LocoError(f"empty model name; known models: {', '.join(known_models())}")
    if name in known_models() or os.path.isdir(name):
        return
    if name.count("/") == 1 and not name.startswith(("/", ".")) and " " not in name:
        return  # another hub id, e.g. "nitrosocke/Arcane-Diffusion"
    raise LocoError(f"unknown model {name!r}; known models: {', '.join(known_models())} (or a hub id 'owner/name', or a local folder)")


def load(name: str = DEFAULT_MODEL, device: str | None = None, dtype: torch.dtype | None = None, progress: bool | None = None):
    """Load a pipeline by short name, hub id or local folder (a diffusers pipeline folder, or an
    folder that a registered resolver knows, e.g. an organism training: :mod:`loco_lib.registry`).

    fp16 on CUDA (FLUX: bfloat16) and fp32 on CPU unless ``dtype`` is given (:func:`loco_lib.settings.dtype`: a torch
    dtype or ``"float32"`` / ``"float16"`` / ``"bfloat16"``). Every module is put in eval mode and the
    pipeline's own progress bar is on (``progress=False`` to silence it). In a run of several
    processes (``accelerate launch``) the default device is this process's GPU (:mod:`loco_lib.parallel`).
    """
    from . import parallel, registry, settings

    name = os.fspath(name) if isinstance(name, os.PathLike) else name
    check_model_name(name)
    device = settings.device(parallel.device() if device is None else device)
    card = registry.card(name)  # a resolver may refuse a folder here (e.g. an unfinished training)
    asked = dtype
    dtype = settings.dtype(dtype, device)
    if asked is None and dtype == torch.float16 and name in MODELS and MODELS[name].family == "flux":
        dtype = torch.bfloat16  # loco's choice for FLUX's 12B parameters on a GPU: float32's range in half the memory
    with quiet_libraries():
        if name in TINY:
            pipe = build_tiny(name)
        elif card is not None:
            pipe = card.load(name)
        else:
            pipe = _load_real(name, dtype)
        if (name in TINY or card is not None) and dtype != torch.float32:
            pipe = pipe.to(device=device, dtype=dtype)  # twins and organisms are built in fp32
        else:
            pipe = pipe.to(device)
    for comp in pipe.components.values():
        if isinstance(comp, torch.nn.Module):
            comp.eval()
    progress = progress_default() if progress is None else progress
    pipe.set_progress_bar_config(disable=not progress, leave=False)
    pipe.loco_name = name
    pipeline_family(pipe)  # refuses unsupported pipeline classes with a clear message
    return pipe


def _load_real(name: str, dtype: torch.dtype):
    from diffusers import DDIMScheduler, DiffusionPipeline

    spec = MODELS.get(name)
    source = spec.hub_id if spec else name
    kwargs: dict = {"dtype": dtype}
    family = spec.family if spec else None
    if family == "sd":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    if family == "if":
        kwargs.update(safety_checker=None, watermarker=None, feature_extractor=None, requires_safety_checker=False)
        if dtype == torch.float16:
            kwargs["variant"] = "fp16"
    pipe = from_hub(lambda local_files_only: DiffusionPipeline.from_pretrained(source, local_files_only=local_files_only, **kwargs),
                    source, "the model", license_url=IF_LICENSE_URL if family == "if" else None)
    if spec is not None and spec.name in ("sd14", "sd15", "openjourney"):
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # the paper samples with DDIM
    return pipe


# ---------------------------------------------------------------------------------------------
# The Hugging Face Hub: the local cache first, the network only when it answers, one line on failure
# ---------------------------------------------------------------------------------------------

def from_hub(load_fn, source: str, what: str, license_url: str | None = None):
    """``load_fn(local_files_only=...)`` for a hub id or folder ``source``: from the local cache (or
    folder) first, then from the Hub if it can be reached. Every failure is one LocoError line, fast
    when there is no network (no minutes of retries)."""
    try:
        return load_fn(local_files_only=True)
    except Exception as exc:  # not cached (or not fully): try the Hub
        if os.path.isdir(source):
            raise LocoError(f"could not load {what} from the folder {source!r}: {_plain(exc)}") from None
    reason = hub_unreachable()
    if reason is not None:
        raise LocoError(f"cannot download {what} {source!r}: it is not in the local Hugging Face cache and {reason}")
    try:
        return load_fn(local_files_only=False)
    except Exception as exc:  # network, auth, wrong id, missing files: one clear sentence
        raise LocoError(hub_failure(exc, source, what, license_url)) from None


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the Hugging Face Hub cannot be used now (offline mode, no answer) and what to do, or None
    if it answers."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return "offline mode is on: unset HF_HUB_OFFLINE to download it"
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # DNS, refused, timeout, proxy: the Hub does not answer
        return (f"the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached: connect to the internet, "
                "or download it once on a machine that has a network")
    return None


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from, outermost first."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def hub_failure(exc: BaseException, source: str, what: str, license_url: str | None = None) -> str:
    """One sentence for a failed download: gated (log in), not found (check the id), no network, or
    the error's own first line (without library hints a command-line user cannot act on)."""
    from huggingface_hub import errors

    chain = _causes(exc)
    status = {getattr(getattr(e, "response", None), "status_code", None) for e in chain}
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, errors.GatedRepoError) for e in chain) or status & {401, 403} or "gated" in text:
        url = license_url or f"https://huggingface.co/{source}"
        return (f"{what} {source!r} is gated: accept its license at {url} and log in with a Hugging Face token "
                "(`hf auth login` or the HF_TOKEN variable), then load it again")
    if any(isinstance(e, errors.RepositoryNotFoundError) for e in chain) or 404 in status:
        return f"{what} {source!r} is not on the Hugging Face Hub (or is private): check the id"
    names = " ".join(type(e).__name__ for e in chain)
    if any(k in names for k in ("Connect", "Timeout", "Offline", "LocalEntryNotFound")):
        return f"cannot download {what} {source!r}: the Hugging Face Hub stopped answering (no network?); try again"
    return f"could not load {what} {source!r}: {_plain(exc)}"


def _plain(exc: BaseException) -> str:
    """The first line of an error, without sentences about ``local_files_only`` or stack traces."""
    import re

    text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"\s*\([^()]*local_files_only[^()]*\)", "", text)
    keep = [s for s in re.split(r"(?<=\.)\s+", text) if "local_files_only" not in s and "stacktrace" not in s.lower()]
    return (" ".join(keep) or type(exc).__name__)[:300]


# ---------------------------------------------------------------------------------------------
# Tiny twins
# ---------------------------------------------------------------------------------------------

def _ddim(prediction_type: str):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type,
    )


def _euler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        steps_offset=1, timestep_spacing="leading", interpolation_type="linear", prediction_type="epsilon",
    )


def _ddpm_if():
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", variance_type="learned_range",
        prediction_type="epsilon", thresholding=True, dynamic_thresholding_ratio=0.95,
        sample_max_value=1.5, clip_sample=True, clip_sample_range=1.0,
    )


def _tiny_vae(**config):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16), sample_size=64, **config,
    )


def _clip_text(hidden: int, act: str, projection: int | None = None, with_projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, hidden_act=act, projection_dim=projection or hidden,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=1,
    )
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg)


def _sd_unet(sd21: bool):
    from diffusers import UNet2DConditionModel

    extra = dict(attention_head_dim=(2, 2, 4, 4), use_linear_projection=True, upcast_attention=True) if sd21 else dict(attention_head_dim=4)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(16, 16, 32, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32 if not sd21 else 48, norm_num_groups=8, **extra,
    )


def _t5_text(tok, d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(
        vocab_size=len(tok), d_model=d_model, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", relative_attention_num_buckets=32,
        relative_attention_max_distance=128, eos_token_id=1, pad_token_id=0, dropout_rate=0.1,
    ))


def build_tiny(name: str, seed: int = 0):
    """Build a tiny twin with seeded random weights (no network, under a second)."""
    from diffusers import IFPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    from .tokenizers import clip_tokenizer, t5_style_tokenizer

    if name not in TINY:
        raise LocoError(f"unknown tiny twin {name!r}; known: {', '.join(TINY)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name in ("tiny-sd15", "tiny-sd21"):
            sd21 = name == "tiny-sd21"
            unet = _sd_unet(sd21)
            text = _clip_text(48, "gelu") if sd21 else _clip_text(32, "quick_gelu")
            pipe = StableDiffusionPipeline(
                vae=_tiny_vae(), text_encoder=text, tokenizer=clip_tokenizer(pad_token="!" if sd21 else "<|endoftext|>"),
                unet=unet, scheduler=_ddim("v_prediction" if sd21 else "epsilon"),
                safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            )
        elif name == "tiny-sdxl":
            from diffusers import UNet2DConditionModel

            unet = UNet2DConditionModel(
                sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(16, 32, 32),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                transformer_layers_per_block=(1, 2, 10), attention_head_dim=(2, 4, 4), use_linear_projection=True,
                cross_attention_dim=64, norm_num_groups=8, addition_embed_type="text_time",
                addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8,
            )
            pipe = StableDiffusionXLPipeline(
                vae=_tiny_vae(), text_encoder=_clip_text(32, "quick_gelu"),
                text_encoder_2=_clip_text(32, "gelu", projection=32, with_projection=True),
                tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(pad_token="!"), unet=unet,
                scheduler=_euler(), force_zeros_for_empty_prompt=True, add_watermarker=False,
            )
        elif name == "tiny-pixart":  # PixArt-alpha's 28 blocks at tiny widths (diffusers' test sizes)
            from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

            tok = t5_style_tokenizer()
            transformer = PixArtTransformer2DModel(
                sample_size=8, num_layers=28, patch_size=2, attention_head_dim=8, num_attention_heads=3,
                caption_channels=32, in_channels=4, out_channels=8, cross_attention_dim=24, attention_bias=True,
                activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
                norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=False,
            )
            pipe = PixArtAlphaPipeline(tokenizer=tok, text_encoder=_t5_text(tok), vae=_tiny_vae(), transformer=transformer,
                                       scheduler=DPMSolverMultistepScheduler())
        elif name == "tiny-sana":  # SANA-1600M's 20 blocks at tiny widths (diffusers' test sizes), Gemma-2-style text
            from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
            from transformers import Gemma2Config, Gemma2Model

            from .tokenizers import gemma_style_tokenizer

            tok = gemma_style_tokenizer()
            text = Gemma2Model(Gemma2Config(head_dim=16, hidden_size=8, intermediate_size=64, num_attention_heads=2,
                                            num_hidden_layers=1, num_key_value_heads=2, vocab_size=len(tok),
                                            pad_token_id=0, eos_token_id=1, bos_token_id=2, attn_implementation="eager"))
            transformer = SanaTransformer2DModel(
                patch_size=1, in_channels=4, out_channels=4, num_layers=20, num_attention_heads=2, attention_head_dim=4,
                num_cross_attention_heads=2, cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
                sample_size=16, attention_bias=False,
            )
            vae = AutoencoderDC(in_channels=3, latent_channels=4, attention_head_dim=2, encoder_block_types=("ResBlock", "EfficientViTBlock"),
                                decoder_block_types=("ResBlock", "EfficientViTBlock"), encoder_block_out_channels=(8, 8),
                                decoder_block_out_channels=(8, 8), encoder_qkv_multiscales=((), (5,)),
                                decoder_qkv_multiscales=((), (5,)), encoder_layers_per_block=(1, 1),
                                decoder_layers_per_block=(1, 1), upsample_block_type="interpolate",
                                downsample_block_type="stride_conv", decoder_norm_types="rms_norm",
                                decoder_act_fns="silu", scaling_factor=0.41407)
            pipe = SanaPipeline(tokenizer=tok, text_encoder=text, vae=vae, transformer=transformer,
                                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))
        elif name in ("tiny-sd3", "tiny-sd35"):
            # SD3-Medium's 24 joint blocks at tiny widths (diffusers' test sizes); tiny-sd35: SD3.5-Medium's,
            # with keys and queries RMS-normed per head after projection and image-only attn2 in blocks 0-12
            from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

            tok3 = t5_style_tokenizer()
            sd35 = dict(qk_norm="rms_norm", dual_attention_layers=tuple(range(13))) if name == "tiny-sd35" else {}
            transformer = SD3Transformer2DModel(
                sample_size=8, patch_size=2, in_channels=4, num_layers=24, attention_head_dim=8, num_attention_heads=4,
                joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=64, out_channels=4,
                pos_embed_max_size=16, **sd35,
            )
            pipe = StableDiffusion3Pipeline(
                transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                vae=_tiny_vae(shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False),
                text_encoder=_clip_text(32, "quick_gelu", projection=32, with_projection=True), tokenizer=clip_tokenizer(),
                text_encoder_2=_clip_text(32, "gelu", projection=32, with_projection=True),
                tokenizer_2=clip_tokenizer(pad_token="!"), text_encoder_3=_t5_text(tok3, d_model=64), tokenizer_3=tok3,
            )
        elif name == "tiny-flux":  # FLUX.1-dev's 19 dual-stream and 38 single-stream blocks at tiny widths (diffusers' test sizes)
            from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

            tok2 = t5_style_tokenizer(model_max_length=512)
            transformer = FluxTransformer2DModel(
                patch_size=1, in_channels=16, num_layers=19, num_single_layers=38, attention_head_dim=16,
                num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
                axes_dims_rope=(4, 4, 8),
            )
            vae = AutoencoderKL(
                in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=(8, 8, 16, 16), sample_size=64, use_quant_conv=False, use_post_quant_conv=False,
                shift_factor=0.1159, scaling_factor=0.3611,
            )
            pipe = FluxPipeline(
                transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
                text_encoder=_clip_text(32, "quick_gelu"), tokenizer=clip_tokenizer(), text_encoder_2=_t5_text(tok2),
                tokenizer_2=tok2,
            )
            pipe.default_sample_size = 8  # 64 px at the VAE's 8x: 4 x 4 packed latent tokens
        else:  # tiny-if
            from diffusers import UNet2DConditionModel

            tok = t5_style_tokenizer()
            text = _t5_text(tok)
            unet = UNet2DConditionModel(
                sample_size=16, in_channels=3, out_channels=6, act_fn="gelu", layers_per_block=3,
                block_out_channels=(16, 16, 32, 32), attention_head_dim=8, cross_attention_dim=32,
                down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
                up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
                mid_block_type="UNetMidBlock2DSimpleCrossAttn", cross_attention_norm="group_norm",
                encoder_hid_dim=32, encoder_hid_dim_type="text_proj", addition_embed_type="text",
                addition_embed_type_num_heads=2, resnet_time_scale_shift="scale_shift", norm_num_groups=8,
            )
            pipe = IFPipeline(
                tokenizer=tok, text_encoder=text, unet=unet, scheduler=_ddpm_if(),
                safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False,
            )
    for comp in pipe.components.values():
        if isinstance(comp, torch.nn.Module):
            comp.eval()
    pipe.loco_name = name
    return pipe
