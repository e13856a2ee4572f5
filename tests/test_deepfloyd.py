"""The DeepFloyd/T5 chapter's tools: the IF-topology organisms, per-prompt LocoGen windows, the text
encoders' attention maps (Fig. 62) and the 2x2 findings."""
import copy

import numpy as np
import pytest
import torch

import loco_lib
from loco_lib import models
from loco_lib.errors import LocoError
from loco_lib.organism import model as toy
from loco_lib.organism.figures import two_by_two, two_by_two_findings
from loco_lib.organism.records import load_report, recorded_dir
from loco_lib.text import attention_map


def test_if_topology_organism_unet():
    """toy-if's UNet has IF-I's block types, added-K/V attention with a bias, encoder_hid_proj and
    the pooled text embedding, and as many cross-attention layers as the SD one."""
    unet = toy.unet("if")
    assert unet.config.down_block_types[0] == "ResnetDownsampleBlock2D"
    assert set(unet.config.down_block_types[1:]) == {"SimpleCrossAttnDownBlock2D"}
    assert unet.config.mid_block_type == "UNetMidBlock2DSimpleCrossAttn"
    assert unet.encoder_hid_proj is not None and unet.add_embedding is not None
    layers = loco_lib.cross_attention_layers(unet)
    assert len(layers) == len(loco_lib.cross_attention_layers(toy.unet("sd"))) == 16
    assert all(layer.key == "add_k_proj" for layer in layers)
    assert unet.get_submodule(layers[0].name).add_k_proj.bias is not None
    with pytest.raises(ValueError, match="unknown UNet kind"):
        toy.unet("dit")


@pytest.mark.parametrize("kind", ["clip", "t5"])
def test_if_organism_pipeline_generates_and_reads_the_text(kind):
    pipe = toy.build(kind, unet_kind="if")
    out = pipe(["a red circle in the style of monet"], num_inference_steps=2, guidance_scale=3.0, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()


def test_organism_kinds():
    assert toy.organism_kinds("toy") == ("clip", "sd") and toy.organism_kinds("toy-if") == ("t5", "if")
    assert toy.organism_kinds("toy-if-clip") == ("clip", "if") and toy.organism_kind("toy-if") == "t5"
    assert toy.organism_kinds("sd15") is None


def test_prompt_windows_pick_each_prompts_own_best():
    from loco_lib.clip_score import ClipScorer
    from loco_lib.locogen import locogen
    from loco_lib.prompts import load_pairs

    pipe = models.load("tiny-if", progress=False)
    res = locogen(pipe, load_pairs("style", limit=3), "style", 2, [0, 1], scorer=ClipScorer.tiny(), steps=2, progress=False)
    per = res.prompt_windows()
    assert list(per["prompt"]) == res.originals and len(per) == 3
    for i, row in per.iterrows():
        scores = [r.per_prompt[i] for r in res.table.itertuples()]
        assert row["score"] == pytest.approx(min(scores))  # style: lower CLIP-score vs T is better
        assert row["window"] == res.table["layers"].iloc[int(np.argmin(scores))]
    mean_best = res.best["layers"]
    assert res.table.loc[res.table["mean"].idxmin(), "layer_list"] == mean_best


@pytest.mark.parametrize("name, causal", [("tiny-sd15", True), ("tiny-if", False), ("toy", True), ("toy-t5", False)])
def test_attention_map_is_causal_only_for_clip(name, causal):
    pipe = models.load(name, progress=False)
    before = pipe.text_encoder.config._attn_implementation
    prompt = "a red circle in the style of van gogh"
    m = attention_map(pipe, prompt)
    assert m.causal is causal and pipe.text_encoder.config._attn_implementation == before
    assert torch.allclose(m.weights.sum(-1), torch.ones(len(m.tokens)), atol=1e-4)
    assert m.weights.shape == (len(m.tokens), len(m.tokens))
    pos = loco_lib.tokens.subject_token_index(pipe, prompt, "van gogh")
    assert (m.after(pos) == 0.0) is causal
    with pytest.raises(LocoError, match="layers 0.."):
        attention_map(pipe, prompt, layer=99)


def _fake(rep, kind, unet, works=True, after=1.0):
    r = copy.deepcopy(rep)
    r.training = {**(r.training or {}), "kind": kind, "unet": unet}
    if not works:
        r.edit.window.after["edited"].style = 1.0
    r.swap("after").style = after
    return r


def test_two_by_two_findings_name_the_factor():
    base = load_report(recorded_dir() / "toy-2seeds.json")
    cells = [("clip", "sd"), ("t5", "sd"), ("clip", "if"), ("t5", "if")]
    names = ["a", "b", "c", "d"]
    all_work = {n: _fake(base, k, u) for n, (k, u) in zip(names, cells)}
    lines = two_by_two_findings(all_work)
    assert "Neither factor breaks" in lines[1]
    only_t5 = {n: _fake(base, k, u, works=(k == "clip")) for n, (k, u) in zip(names, cells)}
    assert "bidirectional encoder breaks" in two_by_two_findings(only_t5)[1]
    only_if = {n: _fake(base, k, u, works=(u == "sd")) for n, (k, u) in zip(names, cells)}
    assert "added-K/V UNet breaks" in two_by_two_findings(only_if)[1]
    both = {n: _fake(base, k, u, works=(k, u) != ("t5", "if")) for n, (k, u) in zip(names, cells)}
    assert "Only the combination" in two_by_two_findings(both)[1]
    with pytest.raises(LocoError, match="missing"):
        two_by_two_findings({"a": all_work["a"]})
    table = two_by_two(all_work)
    assert table.shape[1] == 4 and table.columns.names == ["text encoder", "UNet", "organism"]


def test_two_by_two_of_the_recorded_organisms():
    """The recorded reports load, a readout that no window can move prints as n/a (recorded as
    null), and the findings name the IF-topology UNet, as the chapter reads them."""
    import json

    from loco_lib import organism

    names = ["toy", "toy-t5", "toy-if-clip", "toy-if"]
    reports = {n: organism.recorded_report(n) for n in names}
    artists = {n: json.loads((organism.two_by_two_dir() / f"{n}-artists.json").read_text()) for n in names}
    table = two_by_two(reports, None, artists)
    assert table.loc["LocoGen style window (readout moved)"].str.contains("n/a").tolist() == [False, False, True, True]
    lines = two_by_two_findings(reports, artists)
    assert lines[1] == "The added-K/V UNet breaks the edit with either encoder."
    with pytest.raises(LocoError, match="no recorded"):
        organism.recorded_report("toy-seed9")


def test_two_by_two_text_rows_count_the_images_left_out_and_give_the_interval():
    """The text-trace rows read the trace over the images that corrupt: how many of how many, the
    strongest state's fraction with its bootstrap interval and its count of images at half."""
    from loco_lib import organism
    from loco_lib.trace import Run, State, TraceResult

    # three seeds; seed 2's corruption moves the score by 1 (under 5% of 70): left out
    clean, corrupted = [90, 80, 70], [40, 50, 69]
    restored = [[90, 50, 70], [65, 65, 200]]
    scores = {}
    for s in range(3):
        scores[Run(0, s, None)], scores[Run(0, s, ())] = clean[s], corrupted[s]
        for k in range(2):
            scores[Run(0, s, (k,))] = restored[k][s]
    states = [State(k, f"encoder.layers.{k}.self_attn", "self-attention", "text_encoder", f"layer {k}") for k in range(2)]
    tr = TraceResult("text", 1, ["p"], ["x"], [0, 1, 2], states, [(0,), (1,)], [(0,)], "last", scores)
    table = two_by_two({"toy": organism.recorded_report("toy")}, {"toy": tr})
    col = table.iloc[:, 0]
    assert col["text trace: images corrupted / traced"] == "2 / 3"
    assert col["text trace: states restoring >= half the gap"] == "2"  # (70 - 45) / 40 and (65 - 45) / 40
    row = col["text trace: strongest state (restored [90% interval]; images >= half)"]
    assert row.startswith(f"{states[0].label} (0.62 [") and row.endswith("; 1 of 2)")
