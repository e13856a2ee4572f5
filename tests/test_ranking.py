"""Zarei et al.'s layer ranking (loco_lib/ranking.py): the recomputed attention is the layer's own,
the score is what its formula says, and batching does not change it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from loco_lib import cross_attention_layers
from loco_lib.errors import LocoError
from loco_lib.families import registry
from loco_lib.hooks import Record, Site, attention_site, hooks
from loco_lib.models import load
from loco_lib.ranking import agreement, contribution, rank_layers
from loco_lib.text import encode

P = ["a photo of a cat in the style of van gogh", "a red dog on the grass"]


@pytest.fixture(scope="module", params=["tiny-sd15", "tiny-pixart", "tiny-sana"])
def pipe(request):
    return load(request.param, progress=False)


def _one_call(pipe, layer, knowledge):
    """The layer's output and its contribution score with ``knowledge`` [2, L], in one guided call."""
    from loco_lib.generate import sample_batch

    family = registry.denoiser_family(pipe)
    seen = {}

    def reduce(attn, hidden, text, mask, samples):
        probs, values = family.text_attention(attn, hidden, text, mask)
        seen["probs"] = probs
        out = attn.to_out[0](attn.batch_to_head_dim(torch.bmm(probs, values)))
        seen.setdefault("mine", []).append(out)
        return contribution(attn, hidden, text, mask, knowledge[samples], family)

    records = [Record(attention_site(layer), reduce=reduce, steps=[0]), Record(Site("unet", layer.name), steps=[0])]
    cond = encode(pipe, P)
    with hooks(pipe, records=records, n_samples=2, guidance=True) as trace:
        sample_batch(pipe, cond, [0, 0], steps=2, guidance=4.0, output_type="pt")
    return trace, seen


def test_the_recomputed_attention_is_the_layers_own(pipe):
    layer = cross_attention_layers(pipe)[1]
    length = encode(pipe, P).embeds.shape[1]
    trace, seen = _one_call(pipe, layer, torch.ones(2, length, dtype=torch.bool))
    module_out = trace[Site("unet", layer.name)][0]
    assert torch.allclose(seen["mine"][0].cpu(), module_out, atol=1e-5)  # softmax materialised == the processor's
    assert torch.allclose(seen["probs"].sum(-1), torch.ones(()), atol=1e-5)
    # the score with every token as knowledge is the mean norm of the layer's output
    assert torch.allclose(trace[attention_site(layer)][0], module_out.norm(dim=-1).mean(1), atol=1e-5)


def test_knowledge_that_gets_no_attention_leaves_the_output_bias():
    """On PixArt the padding positions are masked out: as knowledge they contribute only W_o's bias."""
    pipe = load("tiny-pixart", progress=False)
    cond = encode(pipe, P)
    layer = cross_attention_layers(pipe)[0]
    knowledge = cond.mask == 0
    trace, _ = _one_call(pipe, layer, knowledge)
    bias = registry.denoiser(pipe).get_submodule(layer.name).to_out[0].bias
    assert torch.allclose(trace[attention_site(layer)][0], bias.norm().expand(2), atol=1e-4)


def test_ranking_does_not_depend_on_the_batch(pipe):
    kw = dict(seeds=[0, 1], steps=2, progress=False)
    one = rank_layers(pipe, P, ["van gogh", "dog"], batch_size=1, **kw)
    many = rank_layers(pipe, P, ["van gogh", "dog"], batch_size=8, **kw)
    assert one.scores.shape == (2, 2, len(cross_attention_layers(pipe)))
    np.testing.assert_allclose(one.scores, many.scores, rtol=1e-5)
    assert (one.scores > 0).all() and one.order() == many.order()


def test_ranking_on_an_added_kv_unet_reads_only_the_text_keys():
    pipe = load("tiny-if", progress=False)
    r = rank_layers(pipe, P[:1], "van gogh", steps=2, progress=False)
    assert r.scores.shape == (1, 1, len(cross_attention_layers(pipe))) and (r.scores > 0).all()
    layer = cross_attention_layers(pipe)[0]
    family = registry.denoiser_family(pipe)
    attn = registry.denoiser(pipe).get_submodule(layer.name)
    hidden, text = torch.randn(1, attn.to_q.in_features, 4, 4), torch.randn(1, 5, attn.add_k_proj.in_features)
    probs, values = family.text_attention(attn, hidden, text, None)
    assert probs.shape[-1] == values.shape[1] == 5 and (probs.sum(-1) < 1).all()  # the image's own keys take the rest


def test_agreement_and_bad_input(pipe):
    r = rank_layers(pipe, P[:1], "van gogh", steps=2, progress=False)
    top = r.top(2)
    a = agreement(r, top)
    assert a["overlap"] == 2 and a["best rank"] == 1 and a["worst rank"] == 2
    assert a["chance"] == pytest.approx(4 / len(r.layers))
    with pytest.raises(LocoError, match="does not occur"):
        rank_layers(pipe, P[:1], "monet", steps=2, progress=False)
    with pytest.raises(LocoError, match="subjects given"):
        rank_layers(pipe, P, ["cat"], steps=2, progress=False)
    with pytest.raises(LocoError, match="window"):
        agreement(r, [99])
    with pytest.raises(LocoError, match="reduce"):
        Record(attention_site(r.layers[0]))
    assert r.table()["rank"].tolist().count(1) == 1


def test_the_command_line(capsys):
    import json

    from loco_lib.cli import main

    assert main(["rank", "tiny-pixart", "--attribute", "style", "--limit", "1", "--steps", "2", "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["contribution"]) == 28 and len(out["top"]) == 2 and sorted(out["order"]) == list(range(28))
    assert out["top"] == sorted(out["order"][:2]) and [s.lower() for s in out["subjects"]] == ["van gogh"]
    assert main(["rank", "tiny-pixart", "--attribute", "style", "--top", "0"]) == 2
    assert capsys.readouterr().err.strip() == "loco: error: --top must be from 1 to 28 for tiny-pixart"


def test_the_localizer_comparison_on_an_organism():
    import math

    from loco_lib.clip_score import get_scorer
    from loco_lib.organism import localizers
    from loco_lib.prompts import default_prompts, load_pairs

    pipe = load("toy", progress=False)
    scorer = get_scorer(None, "toy")
    prompts = {"style": load_pairs(default_prompts("style", "toy"), limit=2)}
    res = localizers.compare(pipe, scorer, prompts, {"style": [0, 1]}, steps=3)["style"]
    r = rank_layers(pipe, prompts["style"].originals, prompts["style"].subjects, steps=3, progress=False)
    assert res["order"] == r.order() and res["agreement"] == agreement(r, [0, 1])
    assert res["sets"]["LocoGen window"] == "0-1" and res["sets"]["ranking top"] == res["agreement"]["top"]
    moved = res["moved"]
    assert moved["clean"] == 0.0 and (moved["all"] == 1.0 or math.isnan(moved["all"]))
    table = localizers.table({"toy": {"style": res}})
    assert table.loc[0, "LocoGen window"] == "0-1" and table.loc[0, "overlap"] == res["agreement"]["overlap"]
    with pytest.raises(LocoError, match="no LocoGen window given for style"):
        localizers.compare(pipe, scorer, prompts, {}, steps=3)
