"""The cross-attention layer map: full-size meta-device UNets, the tiny twins, parse_layers.

The expected layer names are written out here from the paper's App. D (and the diffusers module
layout of each architecture); they are never derived from the code under test.
"""
from __future__ import annotations

import json
import re
import time
from importlib import resources

import pytest
import torch

from loco_lib import architectures, layers, models
from loco_lib.errors import LocoError

# ---------------------------------------------------------------------------------------------
# Expected layer maps (execution order: down -> mid -> up)
# ---------------------------------------------------------------------------------------------

SD_NAMES = (
    [f"down_blocks.{b}.attentions.{a}.transformer_blocks.0.attn2" for b in (0, 1, 2) for a in (0, 1)]
    + ["mid_block.attentions.0.transformer_blocks.0.attn2"]
    + [f"up_blocks.{b}.attentions.{a}.transformer_blocks.0.attn2" for b in (1, 2, 3) for a in (0, 1, 2)]
)

SDXL_NAMES = (
    [f"down_blocks.1.attentions.{a}.transformer_blocks.{t}.attn2" for a in (0, 1) for t in range(2)]
    + [f"down_blocks.2.attentions.{a}.transformer_blocks.{t}.attn2" for a in (0, 1) for t in range(10)]
    + [f"mid_block.attentions.0.transformer_blocks.{t}.attn2" for t in range(10)]
    + [f"up_blocks.0.attentions.{a}.transformer_blocks.{t}.attn2" for a in (0, 1, 2) for t in range(10)]
    + [f"up_blocks.1.attentions.{a}.transformer_blocks.{t}.attn2" for a in (0, 1, 2) for t in range(2)]
)

IF_NAMES = (
    [f"down_blocks.{b}.attentions.{a}" for b in (1, 2, 3) for a in (0, 1, 2)]
    + ["mid_block.attentions.0"]
    + [f"up_blocks.{b}.attentions.{a}" for b in (0, 1, 2) for a in (0, 1, 2, 3)]
)

EXPECTED_NAMES = {
    "sd14": SD_NAMES,
    "sd15": SD_NAMES,
    "openjourney": SD_NAMES,
    "sd21": SD_NAMES,
    "sdxl": SDXL_NAMES,
    "deepfloyd-if": IF_NAMES,
}
EXPECTED_COUNTS = {"sd14": 16, "sd15": 16, "openjourney": 16, "sd21": 16, "sdxl": 70, "deepfloyd-if": 22}
# width of the text input of the K/V projections (cross_attention_dim of each checkpoint)
EXPECTED_KV_DIM = {"sd14": 768, "sd15": 768, "openjourney": 768, "sd21": 1024, "sdxl": 2048, "deepfloyd-if": 2816}
EXPECTED_PARAMS = {"sd15": 859_520_964, "sd21": 865_910_724, "sdxl": 2_567_463_684, "deepfloyd-if": 4_304_695_110}
JSON_KEY = {"sd14": "sd14", "sd15": "sd15", "openjourney": "openjourney", "sd21": "sd21", "sdxl": "sdxl", "deepfloyd-if": "if_i_xl"}

TWINS = {"tiny-sd15": "sd15", "tiny-sd21": "sd21", "tiny-sdxl": "sdxl", "tiny-if": "deepfloyd-if"}


def _block_of(name: str) -> str:
    return {"down_blocks": "down", "mid_block": "mid", "up_blocks": "up"}[name.split(".")[0]]


def test_expected_lists_match_the_paper_counts():
    # guards the comprehensions above against typos
    assert len(SD_NAMES) == 16 and len(SDXL_NAMES) == 70 and len(IF_NAMES) == 22
    for names in (SD_NAMES, SDXL_NAMES, IF_NAMES):
        assert len(set(names)) == len(names)
    assert SD_NAMES[6] == "mid_block.attentions.0.transformer_blocks.0.attn2"
    assert SDXL_NAMES[24].startswith("mid_block.") and SDXL_NAMES[34].startswith("up_blocks.0.")
    assert IF_NAMES[9] == "mid_block.attentions.0"


@pytest.fixture(scope="module")
def meta_unets():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = architectures.meta_unet(name)
        return cache[name]

    return get


# ---------------------------------------------------------------------------------------------
# Full-size architectures on the meta device
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(EXPECTED_NAMES))
def test_meta_unet_layer_names_in_execution_order(meta_unets, name):
    unet = meta_unets(name)
    assert next(unet.parameters()).device.type == "meta"
    recs = layers.cross_attention_layers(unet)
    assert [r.name for r in recs] == EXPECTED_NAMES[name]
    assert len(recs) == EXPECTED_COUNTS[name]
    assert [r.index for r in recs] == list(range(len(recs)))


@pytest.mark.parametrize("name", list(EXPECTED_NAMES))
def test_meta_unet_layer_records(meta_unets, name):
    unet = meta_unets(name)
    modules = dict(unet.named_modules())
    expect_key, expect_value = ("add_k_proj", "add_v_proj") if name == "deepfloyd-if" else ("to_k", "to_v")
    for rec in layers.cross_attention_layers(unet):
        assert rec.key == expect_key and rec.value == expect_value
        assert rec.block == _block_of(rec.name)
        assert rec.kv_dim == EXPECTED_KV_DIM[name]
        attn = modules[rec.name]
        k, v = getattr(attn, rec.key), getattr(attn, rec.value)
        assert isinstance(k, torch.nn.Linear) and isinstance(v, torch.nn.Linear)
        assert k.in_features == v.in_features == rec.kv_dim
        assert rec.as_dict()["name"] == rec.name


def test_meta_unet_resolutions_sd15(meta_unets):
    # SD-1.5 at 512 px: latent 64; down blocks 64/32/16, mid 8, up blocks 16/32/64
    recs = layers.cross_attention_layers(meta_unets("sd15"))
    assert [r.resolution for r in recs] == [64, 64, 32, 32, 16, 16, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64]


def test_layer_table(meta_unets):
    recs = layers.cross_attention_layers(meta_unets("sdxl"))
    table = layers.layer_table(recs)
    assert list(table.index) == list(range(70))
    assert list(table["name"]) == SDXL_NAMES
    assert (table["block"] == "mid").sum() == 10


@pytest.mark.parametrize("name, expected", list(EXPECTED_PARAMS.items()))
def test_meta_unet_parameter_counts(meta_unets, name, expected):
    unet = meta_unets(name)
    assert sum(p.numel() for p in unet.parameters()) == expected


def test_architectures_json_expectations():
    with resources.files("loco_lib").joinpath("data/architectures.json").open() as fh:
        data = json.load(fh)
    for name, n in EXPECTED_COUNTS.items():
        assert data["expected_cross_attention_layers"][JSON_KEY[name]] == n
        assert architectures.expected_layer_count(name) == n
    for name, n in EXPECTED_PARAMS.items():
        assert data["expected_unet_parameters"][JSON_KEY[name]] == n


def test_unknown_architecture_is_a_loco_error():
    with pytest.raises(LocoError, match="sd15"):
        architectures.meta_unet("sd99")


def _naive_text_attention_names(unet, family):
    """Text-reading attention modules in ``named_modules()`` (registration) order."""
    if family == "if":
        return [n for n, m in unet.named_modules() if getattr(m, "add_k_proj", None) is not None]
    return [n for n, _ in unet.named_modules() if n.endswith(".attn2")]


@pytest.mark.parametrize("name, family", [("sd15", "sd"), ("sdxl", "sdxl"), ("deepfloyd-if", "if")])
def test_named_modules_order_is_not_execution_order(meta_unets, name, family):
    unet = meta_unets(name)
    naive = _naive_text_attention_names(unet, family)
    expected = EXPECTED_NAMES[name]
    # the same set of modules ...
    assert sorted(naive) == sorted(expected)
    # ... but diffusers registers mid_block after up_blocks, so registration order is wrong
    assert naive != expected
    first_mid = min(i for i, n in enumerate(naive) if n.startswith("mid_block"))
    last_up = max(i for i, n in enumerate(naive) if n.startswith("up_blocks"))
    assert first_mid > last_up
    assert [r.name for r in layers.cross_attention_layers(unet)] == expected


# ---------------------------------------------------------------------------------------------
# Tiny twins
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def twins():
    built = {}
    seconds = {}
    for name in TWINS:
        t0 = time.perf_counter()
        built[name] = models.load(name, progress=False)
        seconds[name] = time.perf_counter() - t0
    return built, seconds


@pytest.mark.parametrize("twin", list(TWINS))
def test_twin_has_the_same_layer_names_as_the_full_model(twins, meta_unets, twin):
    pipe = twins[0][twin]
    tiny = [r.name for r in layers.cross_attention_layers(pipe.unet)]
    full = [r.name for r in layers.cross_attention_layers(meta_unets(TWINS[twin]))]
    assert tiny == EXPECTED_NAMES[TWINS[twin]]
    assert tiny == full
    # same K/V attribute names too
    tiny_keys = {(r.key, r.value) for r in layers.cross_attention_layers(pipe.unet)}
    full_keys = {(r.key, r.value) for r in layers.cross_attention_layers(meta_unets(TWINS[twin]))}
    assert tiny_keys == full_keys and len(tiny_keys) == 1


@pytest.mark.parametrize("twin", list(TWINS))
def test_twin_builds_fast(twins, twin):
    assert twins[1][twin] < 5.0
    t0 = time.perf_counter()
    pipe = models.build_tiny(twin)
    assert time.perf_counter() - t0 < 5.0
    assert pipe.loco_name == twin


@pytest.mark.parametrize("twin", list(TWINS))
@pytest.mark.parametrize("how", ["load", "build_tiny"])
def test_twin_is_in_eval_mode(twins, twin, how):
    pipe = twins[0][twin] if how == "load" else models.build_tiny(twin)
    comps = {k: v for k, v in pipe.components.items() if isinstance(v, torch.nn.Module)}
    assert "unet" in comps and "text_encoder" in comps
    training = [f"{c}.{n}" for c, comp in comps.items() for n, m in comp.named_modules() if m.training]
    assert training == []


@pytest.mark.parametrize("twin", list(TWINS))
def test_twin_execution_order_observed(twins, twin):
    """Run the twin's UNet once and record the order in which the text attention modules fire."""
    pipe = twins[0][twin]
    unet = pipe.unet
    expected = EXPECTED_NAMES[TWINS[twin]]
    modules = dict(unet.named_modules())
    fired: list[str] = []
    shapes: dict[str, tuple] = {}

    def hook_for(name):
        def hook(module, args, kwargs):
            fired.append(name)
            hs = args[0] if args else kwargs["hidden_states"]
            shapes[name] = tuple(hs.shape)

        return hook

    handles = [modules[n].register_forward_pre_hook(hook_for(n), with_kwargs=True) for n in expected]
    try:
        cfg = unet.config
        side = cfg.sample_size
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, cfg.in_channels, side, side, generator=g)
        width = cfg.encoder_hid_dim if cfg.encoder_hid_dim else cfg.cross_attention_dim
        ehs = torch.randn(1, 7, width, generator=g)
        kwargs = {}
        if cfg.addition_embed_type == "text_time":
            pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
            kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(1, pooled, generator=g), "time_ids": torch.zeros(1, 6)}
        with torch.no_grad():
            unet(x, torch.tensor([10]), encoder_hidden_states=ehs, **kwargs)
    finally:
        for h in handles:
            h.remove()
    assert fired == expected
    # the recorded resolution is the side of the feature map the layer actually sees
    for rec in layers.cross_attention_layers(unet):
        shape = shapes[rec.name]
        side_seen = shape[-1] if len(shape) == 4 else int(round(shape[1] ** 0.5))
        assert rec.resolution == side_seen, rec.name


# ---------------------------------------------------------------------------------------------
# parse_layers
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "spec, n, expected",
    [
        ("8,9", 16, [8, 9]),
        ("4-6", 16, [4, 5, 6]),
        ("1, 4-6", 16, [1, 4, 5, 6]),
        ("all", 16, list(range(16))),
        ("ALL", 22, list(range(22))),
        (" all ", 70, list(range(70))),
        (7, 16, [7]),
        (0, 16, [0]),
        ([9, 8, 8], 16, [8, 9]),
        ((3, 4), 16, [3, 4]),
        ([], 16, []),
        (None, 16, []),
        ("", 16, []),
        ("15", 16, [15]),
        ("60-69", 70, list(range(60, 70))),
    ],
)
def test_parse_layers(spec, n, expected):
    assert layers.parse_layers(spec, n) == expected


@pytest.mark.parametrize("spec", [16, -1, "16", "-1", "15-16", [3, 16], "a,b", "4-x", "eight"])
def test_parse_layers_rejects(spec):
    with pytest.raises(LocoError) as info:
        layers.parse_layers(spec, 16)
    msg = str(info.value)
    assert msg and "\n" not in msg
    if re.fullmatch(r"-?\d+", str(spec)) or spec in ("15-16", [3, 16]):
        assert "out of range" in msg and "16" in msg


def test_parse_layers_reversed_range_is_not_silently_empty():
    # "5-3" is a typo for "3-5": it must give those layers or a LocoError, never an empty selection
    # (an empty selection makes an "altered" run silently equal to the plain one)
    try:
        got = layers.parse_layers("5-3", 16)
    except LocoError:
        return
    assert got == [3, 4, 5]


def test_parse_layers_accepts_numpy_integers():
    np = pytest.importorskip("numpy")
    # indices from numpy (argmax over a layer sweep, np.arange windows) are ints too
    assert layers.parse_layers(np.int64(8), 16) == [8]
    assert layers.parse_layers(np.arange(3, 6), 16) == [3, 4, 5]


@pytest.mark.parametrize("name", ["pixart-alpha", "pixart-alpha-512", "pixart-sigma", "sana", "sana-600m"])
def test_full_size_transformers_from_their_configs(name):
    """The DiT entries of the architectures file build the transformers the checkpoints' names
    describe (PixArt-alpha 0.6B, SANA 1600M / 600M, within 3%), with one text layer per block, each
    reading the caption at the block's width through biased K/V projections."""
    key = architectures.arch_key(name)
    model = architectures.meta_denoiser(name)
    n = sum(p.numel() for p in model.parameters())
    nominal = architectures.architectures()["expected_denoiser_parameters_nominal"][key]
    assert abs(n / nominal - 1) < 0.03, n
    recs = layers.cross_attention_layers(model)
    assert len(recs) == architectures.expected_layer_count(name) == len(model.transformer_blocks)
    inner = model.config.num_attention_heads * model.config.attention_head_dim
    assert {la.kv_dim for la in recs} == {inner}  # the caption is projected to the blocks' width first
    attn = model.get_submodule(recs[0].name)
    assert attn.to_k.bias is not None and attn.to_v.bias is not None
    with pytest.raises(LocoError, match="has no UNet"):
        architectures.unet_config(name)


@pytest.mark.parametrize("name", ["sd3", "sd35-large", "sd35-medium"])
def test_full_size_joint_attention_transformers_from_their_configs(name):
    """SD3-Medium and SD3.5 (Large, Medium) from the architectures file: the sizes their names give
    (2B, 8.1B, 2.5B; counted with the position-embedding table, which is a buffer: SD3.5-Medium's
    384 x 384 positions are about 0.23B of its 2.5B), one text layer per joint block whose text-stream
    K/V projections (``add_k_proj`` / ``add_v_proj``, biased) read the stream at the blocks' width,
    and a last block that only reads the text (``context_pre_only``)."""
    key = architectures.arch_key(name)
    model = architectures.meta_denoiser(name)
    n = sum(p.numel() for p in model.parameters()) + model.pos_embed.pos_embed.numel()
    nominal = architectures.architectures()["expected_denoiser_parameters_nominal"][key]
    assert abs(n / nominal - 1) < 0.05, n
    recs = layers.cross_attention_layers(model)
    assert len(recs) == architectures.expected_layer_count(name) == len(model.transformer_blocks)
    assert [r.name for r in recs] == [f"transformer_blocks.{i}.attn" for i in range(len(recs))]
    assert {(r.key, r.value, r.kv_dim) for r in recs} == {("add_k_proj", "add_v_proj", model.config.caption_projection_dim)}
    attn = model.get_submodule(recs[0].name)
    assert attn.add_k_proj.bias is not None and attn.add_v_proj.bias is not None
    assert model.transformer_blocks[-1].context_pre_only and not model.transformer_blocks[0].context_pre_only
    assert (attn.norm_added_k is not None) == (model.config.qk_norm == "rms_norm")  # SD3.5 normalises keys after add_k_proj


@pytest.mark.parametrize("name", ["flux-dev", "flux-schnell"])
def test_full_size_flux_from_its_config(name):
    """FLUX.1 from the architectures file: 12B parameters (within 3%), 19 dual-stream blocks whose text
    K/V projections are add_k_proj / add_v_proj, then 38 single-stream blocks whose to_k / to_v
    serve text and image alike: 57 text layers in execution order."""
    key = architectures.arch_key(name)
    model = architectures.meta_denoiser(name)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / architectures.architectures()["expected_denoiser_parameters_nominal"][key] - 1) < 0.03, n
    recs = layers.cross_attention_layers(model)
    assert len(recs) == architectures.expected_layer_count(name) == 19 + 38
    assert [r.key for r in recs] == ["add_k_proj"] * 19 + ["to_k"] * 38
    assert {r.kv_dim for r in recs} == {3072}
    assert hasattr(model.time_text_embed, "guidance_embedder") == (name == "flux-dev")  # schnell has no guidance embedding
