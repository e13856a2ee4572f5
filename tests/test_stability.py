"""loco_lib.organism.stability keeps every image of the organism's headline measurements, and
loco_lib.per_image reads them seed by seed: on the organism the per-image readouts give back the
protocol's own fractions; on readouts written by hand the seed-by-seed views say what they should."""
from pathlib import Path

import numpy as np
import pytest

import loco_lib
from loco_lib import per_image
from loco_lib.clip_score import get_scorer
from loco_lib.organism import protocol
from loco_lib.organism.stability import edit_images, picked, window_images
from loco_lib.prompts import default_prompts, load_controls, load_edit, load_pairs

STEPS = 3  # few steps: what is compared is the bookkeeping, not the pictures


@pytest.fixture(scope="module")
def toy():
    return loco_lib.load("toy", progress=False), get_scorer("toy-scorer")


def test_per_image_readouts_give_back_the_protocols_fractions(toy, tmp_path):
    pipe, scorer = toy
    pairs = load_pairs(default_prompts("style", "toy")).select([0, 3])
    w = window_images(pipe, scorer, pairs, "style", 2, seeds=[0, 1], steps=STEPS, cache_dir=tmp_path / "sweep")
    res, table = protocol.locogen_readouts(pipe, scorer, pairs, "style", 2, seeds=[0, 1], steps=STEPS,
                                           cache_dir=tmp_path / "sweep")  # the same images, read back from the cache
    assert w["images"] == [[0, 0], [0, 1], [1, 0], [1, 1]] and w["sets"] == list(table["layers"])
    t = per_image.window_seeds(w)
    for _, row in table.iterrows():
        for k in ("shape", "colour", "style"):
            assert np.mean(w["read"][row["layers"]][k]) == pytest.approx(row[k])
        if row["layers"] not in ("clean", "all"):
            assert t.loc[row["layers"], "moved"] == pytest.approx(row["moved"], nan_ok=True)
    assert picked(w) == loco_lib.format_layers(res.best["layers"])  # Algorithm 1's window, from the same scores


def test_edit_readouts_image_by_image_give_back_the_protocols(toy):
    pipe, scorer = toy
    src = default_prompts("style", "toy")
    keys = load_edit(src, "van gogh")
    groups = {"edited": load_pairs(src).originals[:2], "other styles": load_controls(src)["other styles"][:2]}
    mine = edit_images(pipe, scorer, [0, 1], keys, groups, seeds=[0], steps=STEPS)
    theirs = protocol.edit_readouts(pipe, scorer, [0, 1], keys, groups, seeds=[0], steps=STEPS)
    assert mine["layers"] == [0, 1]
    for group in groups:
        for phase in ("before", "after"):
            for k in ("shape", "colour", "style"):
                assert np.mean(mine["groups"][group][phase][k]) == pytest.approx(theirs[phase][group][k]), (group, phase, k)
    t = per_image.edit_seeds({"toy": {"edits": {"style": mine}}})
    assert t.loc[("toy", "edited", "style"), "after"] == pytest.approx(theirs["after"]["edited"]["style"])


def _windows(style_by_set: dict, clip_by_set: dict, images):
    """A hand-written window_images result: ``style_by_set[label]`` is each image's 0/1 style readout."""
    sets = ["clean", *[s for s in style_by_set if s not in ("clean", "all")], "all"]
    return {"attribute": "style", "m": 2, "keys": ["style"], "lower_is_better": True, "prompts": ["p0", "p1"],
            "images": images, "sets": sets, "clip": clip_by_set,
            "read": {s: {"shape": [1] * len(images), "colour": [1] * len(images), "style": style_by_set[s]} for s in sets}}


def test_a_window_that_moves_one_seed_only_is_shown_as_such():
    images = [[0, 0], [0, 1], [1, 0], [1, 1]]
    w = _windows({"clean": [1, 1, 1, 1], "0-1": [0, 1, 0, 1], "1-2": [1, 1, 1, 1], "all": [0, 0, 0, 0]},
                 {"clean": [30] * 4, "0-1": [10, 29, 12, 28], "1-2": [25, 20, 25, 20], "all": [5] * 4}, images)
    t = per_image.window_seeds(w)
    # 0-1 moves every image of seed 0 and none of seed 1: half way over all, and the seeds disagree
    assert t.loc["0-1", "moved"] == pytest.approx(0.5)
    assert t.loc["0-1", "seed 0"] == pytest.approx(1.0) and t.loc["0-1", "seed 1"] == pytest.approx(0.0)
    assert t.loc["0-1", "low"] < 0.5 < t.loc["0-1", "high"]
    # by CLIP-score seed 0 picks 0-1 (mean 11 < 25), seed 1 picks 1-2 (20 < 28.5)
    assert t.loc["0-1", "seeds picking it"] == "1 of 2" and t.loc["1-2", "seeds picking it"] == "1 of 2"
    h = per_image.window_headlines({"m": {"windows": {"style": w}}})
    row = h.loc[("m", "style")]
    assert row["window"] == "0-1" and row["seed 1"] == "1-2 (0.00)"
    assert not row["moved >= 0.5 on every seed"] and not row["interval above 0.5"]


def test_a_window_that_moves_every_image_is_stable():
    images = [[p, s] for p in range(2) for s in range(3)]
    w = _windows({"clean": [1] * 6, "0-1": [0] * 6, "1-2": [1] * 6, "all": [0] * 6},
                 {"clean": [30] * 6, "0-1": [10] * 6, "1-2": [25] * 6, "all": [5] * 6}, images)
    row = per_image.window_headlines({"m": {"windows": {"style": w}}}).loc[("m", "style")]
    assert row["moved"] == 1.0 and row["90% interval"] == "[1.00, 1.00]" and row["prompts picking it"] == "2 of 2"
    assert row["moved >= 0.5 on every seed"] and row["interval above 0.5"]


def test_a_readout_that_cannot_move_is_nan_not_zero():
    images = [[0, 0], [1, 0]]
    w = _windows({"clean": [1, 1], "0-1": [1, 1], "all": [1, 1]}, {"clean": [30, 30], "0-1": [20, 20], "all": [5, 5]}, images)
    assert np.isnan(per_image.window_seeds(w).loc["0-1", "moved"])


def test_the_report_does_not_depend_on_this_module():
    """Its docstring's promise: adding or changing it re-keys none of the kept measurements."""
    assert Path("loco_lib/organism/stability.py") not in protocol.measuring_code()
    assert Path("loco_lib/per_image.py") not in protocol.measuring_code()


def test_the_organisms_beside_the_2x2_are_keyed_by_name_not_by_path():
    """chapter 6 keeps their headlines: the key must not hold where the repository sits on this machine."""
    from loco_lib.errors import LocoError
    from loco_lib.fingerprint import ROOT
    from loco_lib.organism import kept, variants

    assert Path("loco_lib/organism/variants.py") not in protocol.measuring_code()
    scorer = get_scorer("toy-scorer")
    for name in variants.BESIDE:
        parts = kept.key_parts(variants.folder(name), variants.headlines, (name, scorer), {"seeds": [0, 1], "steps": None})
        assert parts is not None and str(ROOT) not in parts["call"] and name in parts["call"]
    assert variants.load("toy-t5-long").tokenizer.model_max_length == 77
    assert variants.load("toy-if-xattn").tokenizer.model_max_length == 12
    with pytest.raises(LocoError, match="not one of the organisms trained beside"):
        variants.folder("toy")
