"""The model organism: a small text-to-image diffusion model trained by loco on its synthetic world.

Four models share data, seed, sampler and training budget and differ in two factors, the text
encoder and how the UNet reads text (the 2x2 design of the DeepFloyd chapter):

* ``toy``: a transformers ``CLIPTextModel`` (causal attention, like SD's) and an SD-1.5-topology UNet;
* ``toy-t5``: a transformers ``T5EncoderModel`` (bidirectional) and the same SD UNet, the controlled
  test of the paper's App. M hypothesis (T5 leaks the attribute into tokens after the subject);
* ``toy-if``: T5 and a DeepFloyd-IF-topology UNet (:func:`unet` with ``kind="if"``);
* ``toy-if-clip``: the CLIP-style encoder and the IF-topology UNet;
* ``toy-dit``: T5 and a PixArt-alpha-topology diffusion transformer (:func:`transformer`), which
  reads the text by cross-attention in each of its 12 blocks (chapter "Diffusion transformers").

The SD UNet is an SD-1.5-topology ``UNet2DConditionModel`` (the same 16 cross-attention layers and
module names, tiny widths). The IF UNet has IF-I's block types (``ResnetDownsampleBlock2D``,
``SimpleCrossAttn*``), its added-K/V attention (text keys and values concatenated with the image's
own), ``encoder_hid_proj`` before it and the pooled text ``add_embedding`` in the time embedding.
Both are trained jointly with their encoder. Its latent is the image itself, rearranged losslessly: a 2x2
pixel-unshuffle of the [-1, 1] image (32x32x3 -> 16x16x12), decoded by :class:`PixelShuffleCodec`,
which stands where SD's VAE stands. The pipeline is a plain diffusers ``StableDiffusionPipeline``,
so LocoGen, LocoEdit, neurons and tracing run on it through exactly the code used on SD.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from .world import SIZE, vocabulary

SAMPLING = {"steps": 15, "guidance": 3.0}  # the organism's default DDIM steps and guidance scale
MAX_TOKENS = 12  # the longest caption is 8 words, plus start and end tokens
UNSHUFFLE = 2


class PixelShuffleCodec(ModelMixin, ConfigMixin):
    """A lossless stand-in for SD's VAE: latent = pixel-unshuffle of the [-1, 1] image.

    ``block_out_channels`` only tells the pipeline the downsampling factor (2 ** (len - 1)).
    """

    @register_to_config
    def __init__(self, factor: int = UNSHUFFLE, scaling_factor: float = 1.0, block_out_channels=(1, 1), latent_channels: int = 12):
        super().__init__()
        self.register_buffer("_anchor", torch.zeros(1), persistent=False)  # gives the codec a device and dtype

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> latents [B, 3 * f^2, H / f, W / f]."""
        return F.pixel_unshuffle(images, self.config.factor) * self.config.scaling_factor

    def decode(self, latents: torch.Tensor, return_dict: bool = False, generator=None):
        images = F.pixel_shuffle(latents, self.config.factor)
        return (images,) if not return_dict else {"sample": images}


def word_tokenizer(kind: str = "clip"):
    """A word-level tokenizer in transformers format for the world's captions.

    ``kind="clip"``: ``<|startoftext|> words <|endoftext|>``, padded with ``<|endoftext|>`` (like
    CLIP's); ``kind="t5"``: ``words </s>``, padded with ``<pad>`` = 0 (like T5's).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = vocabulary()
    if kind == "clip":
        specials = ["<|startoftext|>", "<|endoftext|>", "<unk>"]
        vocab = {t: i for i, t in enumerate(specials + words)}
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tok.post_processor = processors.TemplateProcessing(
            single="<|startoftext|> $A <|endoftext|>",
            special_tokens=[("<|startoftext|>", vocab["<|startoftext|>"]), ("<|endoftext|>", vocab["<|endoftext|>"])],
        )
        extra = dict(bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<unk>")
    elif kind == "t5":
        specials = ["<pad>", "</s>", "<unk>"]
        vocab = {t: i for i, t in enumerate(specials + words)}
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
        extra = dict(eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    from tokenizers import normalizers

    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=MAX_TOKENS, **extra)
    return fast


def text_encoder(kind: str, vocab_size: int):
    if kind == "clip":
        from transformers import CLIPTextConfig, CLIPTextModel

        return CLIPTextModel(CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS, hidden_act="quick_gelu", projection_dim=64,
            bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ))
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=vocab_size, d_model=64, d_kv=16, d_ff=128, num_layers=3, num_heads=4,
                   relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
                   feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    cfg.use_attention_mask = True  # StableDiffusionPipeline then passes the padding mask, as in training
    return T5EncoderModel(cfg)


def unet(kind: str = "sd"):
    """The organism's UNet: ``"sd"`` (SD-1.5 topology) or ``"if"`` (DeepFloyd IF-I topology).

    Both have the same widths (64, 64, 96, 96) and 2 layers per block (loco's choice for IF, whose
    real UNet has 3: with 2 the two UNets differ in how they read text, not in depth). The IF one
    follows IF-I-XL's config in everything else: its block types, GELU, scale-shift time
    conditioning, group-norm on the text before each added-K/V attention, ``encoder_hid_proj``
    (text width 64 -> 96, the last block's width, as IF's 4096 -> 2816) and ``addition_embed_type
    "text"``; head dim 16 (IF: 64).
    """
    from diffusers import UNet2DConditionModel

    if kind == "if":
        return UNet2DConditionModel(
            sample_size=SIZE // UNSHUFFLE, in_channels=3 * UNSHUFFLE**2, out_channels=3 * UNSHUFFLE**2,
            layers_per_block=2, block_out_channels=(64, 64, 96, 96), act_fn="gelu", attention_head_dim=16,
            norm_num_groups=16, cross_attention_dim=96, cross_attention_norm="group_norm",
            down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
            up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
            mid_block_type="UNetMidBlock2DSimpleCrossAttn", encoder_hid_dim=64, encoder_hid_dim_type="text_proj",
            addition_embed_type="text", addition_embed_type_num_heads=4, resnet_time_scale_shift="scale_shift",
        )
    if kind != "sd":
        raise ValueError(f"unknown UNet kind {kind!r}")
    return UNet2DConditionModel(
        sample_size=SIZE // UNSHUFFLE, in_channels=3 * UNSHUFFLE**2, out_channels=3 * UNSHUFFLE**2, layers_per_block=2,
        block_out_channels=(64, 64, 96, 96), attention_head_dim=4, norm_num_groups=16, cross_attention_dim=64,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )


DIT_BLOCKS = 12  # the DiT organism's blocks (PixArt-alpha has 28)


def transformer():
    """The DiT organism's denoiser: a ``PixArtTransformer2DModel`` with PixArt-alpha's block (adaLN-single
    time conditioning, self-attention, cross-attention on the projected caption with its padding
    mask, GELU feed-forward) at toy widths: 12 blocks of width 128 (4 heads of 32), patches of 2x2 on
    the 16x16x12 latent (64 tokens), caption projection 64 -> 128. No learned variance (PixArt
    predicts it; the organism's v-prediction does not). Sizes are loco's choice: the widest that
    trains at about a second a step on 2 cores.
    """
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(
        sample_size=SIZE // UNSHUFFLE, num_layers=DIT_BLOCKS, patch_size=2, attention_head_dim=32, num_attention_heads=4,
        caption_channels=64, in_channels=3 * UNSHUFFLE**2, out_channels=3 * UNSHUFFLE**2, cross_attention_dim=128,
        attention_bias=True, activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=False,
    )


def denoise(model, noisy, t, text, mask):
    """The denoiser's prediction in training: a UNet reads the text states alone (as its pipeline
    gives them), the DiT also their padding mask (as ``PixArtAlphaPipeline`` gives it)."""
    if hasattr(model, "transformer_blocks"):
        return model(noisy, encoder_hidden_states=text, encoder_attention_mask=mask, timestep=t,
                     added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
    return model(noisy, t, encoder_hidden_states=text).sample


def train_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")


def sample_scheduler():
    from diffusers import DDIMScheduler

    # "leading" spacing with steps_offset 1: a trailing schedule starts at t = 999,
    # where the cosine schedule has almost no signal (loco's choice, found while training the organism)
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")


def build(kind: str = "clip", seed: int = 0, unet_kind: str = "sd"):
    """A freshly initialised (untrained) organism pipeline: text encoder ``kind`` "clip" or "t5",
    denoiser ``unet_kind`` "sd" or "if" (UNets: toy, toy-t5, toy-if-clip, toy-if) or "pixart" (the
    DiT of toy-dit, in a ``PixArtAlphaPipeline``)."""
    from diffusers import StableDiffusionPipeline

    tok = word_tokenizer(kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if unet_kind == "pixart":
            from diffusers import PixArtAlphaPipeline

            pipe = PixArtAlphaPipeline(tokenizer=tok, text_encoder=text_encoder(kind, len(tok)), vae=PixelShuffleCodec(),
                                       transformer=transformer(), scheduler=sample_scheduler())
            pipe.loco_text_length = MAX_TOKENS  # the pipeline pads to 120 tokens unless told
            return pipe
        pipe = StableDiffusionPipeline(
            vae=PixelShuffleCodec(), text_encoder=text_encoder(kind, len(tok)), tokenizer=tok, unet=unet(unet_kind),
            scheduler=sample_scheduler(), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    return pipe


# the organisms shipped in models/: name -> (text encoder, UNet)
BUILTIN = {"toy": ("clip", "sd"), "toy-t5": ("t5", "sd"), "toy-if": ("t5", "if"), "toy-if-clip": ("clip", "if"),
           "toy-dit": ("t5", "pixart")}
DENOISERS = ("sd", "if", "pixart", "mmdit")  # the denoiser topologies (mmdit: :mod:`.mmdit`); their folder in a trained organism:


def denoiser_folder(unet_kind: str) -> str:
    return "transformer" if unet_kind in ("pixart", "mmdit") else "unet"


def models_dir():
    """Where the trained organisms live: ``models/`` at the repository root (or ``LOCO_MODELS_DIR``)."""
    import os
    from pathlib import Path

    return Path(os.environ.get("LOCO_MODELS_DIR") or Path(__file__).resolve().parents[2] / "models")


def organism_kind(name) -> str | None:
    """The text encoder, ``"clip"`` or ``"t5"``, if ``name`` is a model organism, else None: a shipped
    one (:data:`BUILTIN`), or a folder written by :mod:`loco_lib.organism.training` (its ``training.json`` names the kind),
    e.g. a second training seed."""
    return (organism_kinds(name) or (None,))[0]


def organism_kinds(name) -> tuple[str, str] | None:
    """``(text encoder, UNet)`` kinds of an organism, e.g. ``("t5", "if")`` for ``toy-if``; None if
    ``name`` is not one. A folder's ``training.json`` without ``unet`` is an SD-topology one."""
    import json
    from pathlib import Path

    if isinstance(name, str) and name in BUILTIN:
        return BUILTIN[name]
    try:
        meta = Path(name) / "training.json"
        if meta.is_file():
            info = json.loads(meta.read_text())
            kind, unet_kind = info.get("kind"), info.get("unet", "sd")
            if unet_kind == "mmdit":  # two CLIP-style encoders and a T5-style one, as SD3 (:mod:`.mmdit`)
                return (kind, unet_kind) if kind == "clip+t5" else None
            return (kind, unet_kind) if kind in ("clip", "t5") and unet_kind in DENOISERS else None
    except (TypeError, OSError, ValueError):
        return None
    return None


# organisms that are another one's weights loaded another way: toy-mmdit without its T5 encoder
# (``text_encoder_3=None``, as SD3 runs without T5: zeros in the T5 positions)
VIEWS = {"toy-mmdit-no-t5": "toy-mmdit"}


def organism_folder(name):
    """The folder holding an organism's weights: ``models/<name>`` for the shipped ones (a view's:
    its organism's, :data:`VIEWS`), else ``name``."""
    from pathlib import Path

    return models_dir() / VIEWS.get(name, name) if name in BUILTIN or name in VIEWS else Path(name)


def load_trained(name: str):
    """A trained organism (``toy``, ``toy-t5``, ``toy-if``, ``toy-if-clip``) from ``models/<name>``, or a folder written by
    :mod:`loco_lib.organism.training` (fp32, eval mode)."""
    from diffusers import PixArtTransformer2DModel, UNet2DConditionModel

    from ..errors import LocoError

    kind, unet_kind = organism_kinds(name) or (None, None)
    folder = organism_folder(name)
    if kind is None:
        raise LocoError(f"{name!r} is not a model organism: give 'toy', 'toy-t5' or a folder written by "
                        "`python -m loco_lib.organism.training` (with its training.json)")
    if unet_kind == "mmdit":
        raise LocoError(f"{name!r} is a joint-attention organism: load it with loco_lib.organism.mmdit.load")
    part = denoiser_folder(unet_kind)
    if not (folder / part).is_dir() or not (folder / "text_encoder").is_dir():
        raise LocoError(f"no trained weights for {name!r} in {folder}: train them with "
                        f"`python -m loco_lib.organism.training --kind {kind} --unet {unet_kind} --out {folder}`")
    pipe = build(kind, unet_kind=unet_kind)
    cls = PixArtTransformer2DModel if part == "transformer" else UNet2DConditionModel
    pipe.register_modules(**{part: cls.from_pretrained(folder / part, dtype=torch.float32)})
    enc_cls = type(pipe.text_encoder)
    pipe.register_modules(text_encoder=enc_cls.from_pretrained(folder / "text_encoder", dtype=torch.float32))
    pipe.loco_defaults = dict(SAMPLING)
    return pipe
