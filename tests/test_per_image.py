"""loco_lib.per_image: a trace read image by image, on traces whose scores are written by hand."""
import math

import numpy as np
import pytest

from loco_lib import per_image
from loco_lib.errors import LocoError
from loco_lib.trace import Run, State, TraceResult


def _trace(clean, corrupted, restored):
    """A one-prompt trace with one seed per image: ``clean[i]``, ``corrupted[i]`` and, for each
    state k, ``restored[k][i]`` are the scores of image i."""
    seeds = list(range(len(clean)))
    states = [State(k, f"s{k}", "resnet") for k in range(len(restored))]
    scores = {}
    for s in seeds:
        scores[Run(0, s, None)] = clean[s]
        scores[Run(0, s, ())] = corrupted[s]
        for k in range(len(restored)):
            scores[Run(0, s, (k,))] = restored[k][s]
    return TraceResult("unet", 1, ["p"], ["x"], seeds, states, [(k,) for k in range(len(restored))],
                       [tuple(range(3))], "last", scores)


def test_an_image_that_does_not_corrupt_is_flagged_and_left_out():
    # image 2's corruption moves its score by 1 point, under 5% of its clean 70: not evidence
    r = _trace([90, 80, 70], [40, 50, 69], [[90, 50, 80], [65, 65, 60]])
    gaps = per_image.trace_gaps(r)
    assert gaps["gap"].tolist() == [50, 30, 1] and gaps["corrupts"].tolist() == [True, True, False]
    t = per_image.trace_by_image(r)
    row = t.loc["s0"]
    assert row["prompt 0, seed 0"] == pytest.approx(1.0) and row["prompt 0, seed 1"] == pytest.approx(0.0)
    assert math.isnan(row["prompt 0, seed 2"])  # a ratio of a 1-point gap (here 11 would come out) is not shown
    # ratio of means over the two images that corrupt: (70 - 45) / (85 - 45)
    assert row["restored"] == pytest.approx(25 / 40)
    assert row["images >= 50%"] == "1 of 2"
    assert t.loc["s1", "restored"] == pytest.approx((65 - 45) / 40) and t.loc["s1", "images >= 50%"] == "2 of 2"  # 25 of 50 and 15 of 30


def test_with_every_image_corrupting_the_ratio_is_the_traces_own():
    rng = np.random.default_rng(1)
    clean = rng.uniform(80, 95, 6)
    corrupted = rng.uniform(30, 50, 6)
    restored = [rng.uniform(30, 95, 6) for _ in range(4)]
    r = _trace(clean.tolist(), corrupted.tolist(), [x.tolist() for x in restored])
    t = per_image.trace_by_image(r, entries=range(4))
    for k in range(4):
        assert t.loc[f"s{k}", "restored"] == pytest.approx(r.restored(r._mean((k,))))
        assert t.loc[f"s{k}", "low"] <= t.loc[f"s{k}", "restored"] <= t.loc[f"s{k}", "high"]
    assert list(t.index) == [r.set_name(k) for k in range(4)]
    assert list(per_image.trace_by_image(r).index) == [r.set_name(k) for k in r.ranking()[:4]]  # default: the strongest


def test_an_average_that_hides_disagreement_gets_a_wide_interval():
    # one state restores all of the gap in half the images and none in the others: the ratio of
    # means is 0.5, the 90% interval spans [0.25, 0.75]; a state that restores half everywhere: no width
    split = _trace([90] * 8, [40] * 8, [[90, 40] * 4, [65] * 8])
    t = per_image.trace_by_image(split, entries=[0, 1])
    assert t.loc["s0", "restored"] == pytest.approx(0.5) and t.loc["s1", "restored"] == pytest.approx(0.5)
    assert t.loc["s0", "high"] - t.loc["s0", "low"] >= 0.4
    assert t.loc["s1", "low"] == pytest.approx(0.5) and t.loc["s1", "high"] == pytest.approx(0.5)
    assert t.loc["s0", "images >= 50%"] == "4 of 8" and t.loc["s1", "images >= 50%"] == "8 of 8"


def test_the_bootstrap_is_reproducible_and_handles_edges():
    a = per_image.bootstrap_ratio([90, 80, 85], [40, 50, 45], [70, 60, 80])
    assert a == per_image.bootstrap_ratio([90, 80, 85], [40, 50, 45], [70, 60, 80])  # a fixed generator
    assert per_image.bootstrap_ratio([90], [40], [65]) == pytest.approx((0.5, 0.5))
    assert all(math.isnan(x) for x in per_image.bootstrap_ratio([], [], []))


def test_no_image_corrupts():
    r = _trace([50, 50], [49, 51], [[50, 50]])
    t = per_image.trace_by_image(r)
    assert math.isnan(t.loc["s0", "restored"]) and t.loc["s0", "images >= 50%"] == "0 of 0"


def test_a_band_the_trace_does_not_have_is_refused():
    r = _trace([90], [40], [[65]])
    with pytest.raises(LocoError, match="band 3"):
        per_image.trace_by_image(r, band=3)


def test_paired_differences_pair_images_by_prompt_and_seed():
    import pandas as pd

    from loco_lib.errors import LocoError
    from loco_lib.per_image import bootstrap_mean, paired_differences

    rows = []
    for i, (p, s) in enumerate([("a", 0), ("b", 0), ("c", 1), ("d", 1)]):
        rows.append({"column": "style", "model": "base", "prompt": p, "seed": s, "clip": 10.0 * i})
        rows.append({"column": "style", "model": "edit", "prompt": p, "seed": s, "clip": 10.0 * i + [1, 2, 3, 6][i]})
    out = paired_differences(pd.DataFrame(rows[::-1]), "base")  # order of the rows does not matter: images pair by key
    r = out.iloc[0]
    assert (r["model"], r["images"]) == ("edit", 4)
    assert r["mean difference"] == pytest.approx(3.0) and (r["smallest"], r["largest"]) == (1.0, 6.0)
    assert r["std of base over the images"] == pytest.approx(np.std([0, 10, 20, 30]))
    lo, hi = bootstrap_mean([1, 2, 3, 6])
    assert 1.0 <= lo <= 3.0 <= hi <= 6.0 and r["90% interval"] == f"[{lo:.2f}, {hi:.2f}]"
    assert bootstrap_mean([2.0] * 5) == (2.0, 2.0)
    with pytest.raises(LocoError, match="no column"):
        paired_differences(pd.DataFrame(rows).drop(columns="seed"), "base")
    with pytest.raises(LocoError, match="no images of 'other'"):
        paired_differences(pd.DataFrame(rows), "other")


class _Reader:
    """A scorer that reads an image's style as its single value: 1 is the prompt's style, 0 is not."""
    name = "reader"

    def accuracy(self, images, prompts):
        return {"style": float(np.mean([im == 1 for im in images]))}


def test_readout_by_seed_reads_each_image_and_each_seed():
    prompts, seeds = ["a", "a", "b", "b"], [0, 1, 0, 1]
    t = per_image.readout_by_seed({"k = 0": [1, 1, 1, 1], "k = 8": [1, 0, 1, 0]}, _Reader(), prompts, seeds)
    assert list(t.index) == ["k = 0", "k = 8"] and (t.loc["k = 0", "n"], t.loc["k = 0", "style"]) == (4, 1.0)
    assert (t.loc["k = 8", "style"], t.loc["k = 8", "seed 0"], t.loc["k = 8", "seed 1"]) == (0.5, 1.0, 0.0)
    lo, hi = per_image.bootstrap_mean([1, 0, 1, 0])
    assert t.loc["k = 8", "90% interval"] == f"[{lo:.2f}, {hi:.2f}]" and lo < 0.5 < hi
    assert t.loc["k = 0", "90% interval"] == "[1.00, 1.00]"
    with pytest.raises(LocoError, match="one seed per image"):
        per_image.readout_by_seed({"k = 0": [1, 1]}, _Reader(), prompts, [0, 1])
    with pytest.raises(LocoError, match="has 2 images but there are 4 prompts"):
        per_image.readout_by_seed({"k = 0": [1, 1]}, _Reader(), prompts, seeds)
    with pytest.raises(LocoError, match="reads no attributes"):
        per_image.readout_by_seed({"k = 0": [1] * 4}, object(), prompts, seeds)


def test_table_by_seed_sets_seeds_side_by_side_with_their_spread():
    import pandas as pd

    a = pd.DataFrame({"UA": [0.0, 1.0], "CLIP": [3.0, 4.0]}, index=["original", "edit"])
    b = pd.DataFrame({"UA": [0.0, 0.5], "CLIP": [9.0, 9.0]}, index=["original", "edit"])
    t = per_image.table_by_seed({"seed 0": a, "seed 1": b}, ["UA"])
    assert list(t.columns) == [("UA", "seed 0"), ("UA", "seed 1"), ("UA", "spread")]
    assert t.loc["edit", ("UA", "spread")] == 0.5 and t.loc["original", ("UA", "spread")] == 0.0
    assert t.loc["edit", ("UA", "seed 1")] == 0.5
    with pytest.raises(LocoError, match="other rows"):
        per_image.table_by_seed({"seed 0": a, "seed 1": b.iloc[::-1]}, ["UA"])
    with pytest.raises(LocoError, match="no column IRA"):
        per_image.table_by_seed({"seed 0": a}, ["IRA"])
    with pytest.raises(LocoError, match="no tables"):
        per_image.table_by_seed({}, ["UA"])



def test_the_trace_itself_leaves_out_an_image_that_does_not_corrupt_and_counts_it():
    # image 2 barely corrupts (a gap of 1 against 5% of its clean 70), and there s1 scores far above
    # its clean score: over every image s1 would rank first (110 against 70), over the two images
    # that corrupt s0 does (70 against 65)
    r = _trace([90, 80, 70], [40, 50, 69], [[90, 50, 70], [65, 65, 200]])
    assert r.corrupting == [(0, 0), (0, 1)] and not r.corrupts(0, 2)
    assert r.clean == pytest.approx(85) and r.corrupted == pytest.approx(45)
    assert r.restored(r._mean((0,))) == pytest.approx((70 - 45) / 40)
    assert r.ranking() == [0, 1] and r.strongest().name == "s0"
    s = r.summary()
    assert s["images"] == 3 and s["left out"] == 1 and s["strongest"] == "s0"
    assert s["clean"] == 85 and s["strongest restores"] == round(25 / 40, 2)
    assert r.to_json()["left_out"] == 1
    r.floor = 0.0  # the floor is a reading: every image counts now, and the outlier decides
    assert r.summary()["left out"] == 0 and r.ranking() == [1, 0]
    assert r.clean == pytest.approx(80)


def test_a_trace_where_no_image_corrupts_has_no_fraction_but_a_ranking():
    r = _trace([50, 50], [49, 51], [[50, 50], [60, 60]])
    assert r.corrupting == [] and math.isnan(r.clean) and math.isnan(r.restored(50.0))
    assert r.ranking() == [1, 0]  # over every image, said in the docstring
    s = r.summary()
    assert s["left out"] == 2 and math.isnan(s["strongest restores"])
