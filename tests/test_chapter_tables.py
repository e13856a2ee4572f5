"""The library functions behind the chapters' tables (so no chapter computes a result itself):
evaluate.compare, locoedit.fit_table / lambda_table / weights_checksum, k_sweep's kept images."""
from __future__ import annotations

import numpy as np
import pytest

from loco_lib import models
from loco_lib.clip_score import ClipScorer, get_scorer
from loco_lib.errors import LocoError
from loco_lib.evaluate import compare
from loco_lib.generate import generate
from loco_lib.locoedit import compute_edit, fit_table, lambda_table, objective, kv_rows, weights_checksum
from loco_lib.neurons import k_sweep, neurons_replaced, rank_neurons

VG = ["a house in the style of van gogh", "a tree in the style of van gogh"]
PAINT = ["a house in the style of a painting", "a tree in the style of a painting"]
STEPS = 2


@pytest.fixture(scope="module")
def sd15():
    return models.load("tiny-sd15", progress=False)


@pytest.fixture(scope="module")
def edit(sd15):
    return compute_edit(sd15, [8, 9], VG, PAINT, "van gogh", "a painting")


def test_compare_scores_every_image_of_every_model(sd15, edit):
    scorer = ClipScorer.tiny()
    res = compare(sd15, VG, PAINT, {"original": None, "edited": edit, "again": None}, seeds=[0, 1],
                  groups=["in", "out"], scorer=scorer, steps=STEPS)
    plain = generate(sd15, [p for p in VG for _ in (0, 1)], seeds=[0, 1, 0, 1], steps=STEPS, progress=False)
    with edit.applied(sd15):
        edited = generate(sd15, [p for p in VG for _ in (0, 1)], seeds=[0, 1, 0, 1], steps=STEPS, progress=False)
    same = lambda a, b: all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert same(res.generations["original"].images, plain.images)
    assert same(res.generations["edited"].images, edited.images)
    assert not edit.is_applied(sd15)
    t = res.table
    assert len(t) == 4 and list(t.index.get_level_values("group")) == ["in", "in", "out", "out"]
    np.testing.assert_allclose(t[("CLIP vs T", "edited")], scorer.score(edited.images, [p for p in VG for _ in (0, 1)]).numpy())
    np.testing.assert_allclose(t[("CLIP vs T'", "original")], scorer.score(plain.images, [p for p in PAINT for _ in (0, 1)]).numpy())
    assert (t[("pixel change", "again")] == 0).all() and (t[("pixel change", "edited")] > 0).all()
    assert ("pixel change", "original") not in t.columns
    by_group = res.mean("group")
    assert by_group.loc["in", ("CLIP vs T", "edited")] == pytest.approx(t.loc["in", ("CLIP vs T", "edited")].mean())
    total = res.mean("prompt", total=True)
    assert total.loc[("", "mean"), ("CLIP vs T", "original")] == pytest.approx(t[("CLIP vs T", "original")].mean())
    assert len(res.images("edited", 1, 1, seed_index=1)) == 1
    assert np.array_equal(np.asarray(res.images("edited", 1, 1, seed_index=1)[0]), np.asarray(edited.images[3]))
    with pytest.raises(LocoError, match="organism"):
        res.readouts()
    with pytest.raises(LocoError, match="groups"):
        compare(sd15, VG, groups=["in"], scorer=scorer, steps=STEPS)


def test_compare_readouts_on_the_organism():
    toy = models.load("toy", progress=False)
    scorer = get_scorer(None, "toy")
    prompts = ["a red circle in the style of van gogh", "a blue square in the style of monet"]
    res = compare(toy, prompts, scorer=scorer, steps=STEPS, groups=["a", "b"])
    want = scorer.accuracy(res.generations["original"].images[1:], prompts[1:])
    assert res.readouts("b").loc["original"].to_dict() == want


def test_fit_table_and_lambda(sd15, edit):
    t = fit_table(sd15, edit, VG, PAINT, "van gogh", "a painting")
    assert len(t) == 4 and set(t["layer"]) == {8, 9} and set(t["matrix"]) == {"to_k", "to_v"}
    assert (t["fit after"] < 1e-3 * t["fit before"]).all() and (t["weight change"] > 0).all()
    layer8 = next(n for n in edit.weights if n.startswith(edit.layer_names[8] + ".") and ".to_k." in n)
    xo, xt = kv_rows(sd15, [8], VG, "van gogh")[8].double(), kv_rows(sd15, [8], PAINT, "a painting")[8].double()
    w = sd15.unet.get_parameter(layer8).detach().double()
    row = t[(t["layer"] == 8) & (t["matrix"] == "to_k")].iloc[0]
    assert row["fit before"] == pytest.approx(float(objective(w, w, xo, xt, 0.0)))
    lt = lambda_table(sd15, [8, 9], VG, PAINT, "van gogh", "a painting", lams=(100.0, 0.01, 1.0))
    assert list(lt["lambda"]) == [0.01, 1.0, 100.0]
    assert lt["fit left"].is_monotonic_increasing and lt["weight change"].is_monotonic_decreasing
    with edit.applied(sd15):
        with pytest.raises(LocoError, match="applied"):
            fit_table(sd15, edit, VG, PAINT, "van gogh", "a painting")


def test_weights_checksum_sees_an_edit_and_its_revert(sd15, edit):
    clean = weights_checksum(sd15.unet)
    with edit.applied(sd15):
        assert weights_checksum(sd15.unet) != clean
    assert weights_checksum(sd15.unet) == clean


def test_k_sweep_keeps_the_images_it_scored(sd15):
    r = rank_neurons(sd15, [8, 9], VG, PAINT, "van gogh", "a painting")
    df = k_sweep(sd15, r, VG, ks=(0, 4), scorer=ClipScorer.tiny(), seeds=0, steps=STEPS, keep_images=True)
    assert "accuracy" not in df  # the tiny scorer has no readouts
    with neurons_replaced(sd15, r, 4, guidance=True):
        pil = generate(sd15, VG, seeds=0, steps=STEPS, progress=False).images
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(df["images"][1], pil))
    assert "images" not in k_sweep(sd15, r, VG, ks=0, scorer=ClipScorer.tiny(), steps=STEPS)
