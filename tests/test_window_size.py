"""App. G's procedure (loco_lib.window_size): the saturation reading, the grown window against
LocoGen's own windows, the local search's scaling, and one-line errors."""
import pytest

from loco_lib import models, window_size
from loco_lib.clip_score import ClipScorer
from loco_lib.errors import LocoError
from loco_lib.locogen import locogen
from loco_lib.prompts import load_pairs


@pytest.mark.parametrize("curve,m", [
    ([0, 0.01, 0.91, 0.91, 0.92, 0.93, 1.0], 2),  # one layer does nothing, two do it, then a plateau and the tail
    ([0, 0.85, 0.86, 0.85, 0.98], 1),  # the first layer does it
    ([0, 0.3, 0.6, 0.9], 3),  # never flat: the largest m
    ([0, -0.5, -0.52], 1),  # a score that falls counts the same
])
def test_the_saturation_point(curve, m):
    assert window_size.saturation(curve, 0.1) == m


def test_saturation_errors():
    with pytest.raises(LocoError, match="at least one window size"):
        window_size.saturation([0.0])
    with pytest.raises(LocoError, match="tolerance must be in"):
        window_size.saturation([0, 1, 1], tolerance=0)


def test_app_g_scales_m_by_the_share_of_layers():
    # App. G: SD-1.5's m = 2 of 16 layers; SD-XL has 70, DeepFloyd IF 22
    assert [window_size.scaled_m(2, 16, n) for n in (16, 70, 22, 4)] == [2, 9, 3, 1]


@pytest.fixture(scope="module")
def sd15():
    return models.load("tiny-sd15", progress=False)


def test_the_grown_window_scores_what_locogen_scores_for_the_same_layers(sd15, tmp_path):
    prompts, scorer = load_pairs("style", limit=2), ClipScorer.tiny()
    kw = dict(scorer=scorer, steps=2, progress=False, cache_dir=tmp_path)
    g = window_size.from_located(sd15, prompts, "style", 2, [0], **kw)
    assert g.start == g.located[0] and len(g.located) == 2
    assert list(g.table["m"]) == list(range(0, 16 - g.start + 1)) and g.table["fraction"].iloc[0] == 0
    assert 1 <= g.m <= 16 - g.start and g.m == window_size.saturation(g.table["fraction"])
    windows = locogen(sd15, prompts, "style", 2, [0], **kw).table.set_index("start")
    assert g.table.set_index("m").loc[2, "mean"] == windows.loc[g.start, "mean"]  # the same images, from the cache
    assert g.to_json()["table"] is g.table
    m, table = window_size.local_search(sd15, prompts, "style", seeds=[0], **kw)
    assert list(table["m"]) == [1, 2, 3] and m in (1, 2, 3) and table.attrs["centre"] == 2


def test_grow_refuses_a_window_that_does_not_fit(sd15):
    prompts = load_pairs("style", limit=1)
    with pytest.raises(LocoError, match="start must be a layer of this model, 0 to 15"):
        window_size.grow(sd15, prompts, "style", 16, scorer=ClipScorer.tiny())
    with pytest.raises(LocoError, match="window size 3 does not fit from layer 14: use 1 to 2"):
        window_size.grow(sd15, prompts, "style", 14, ms=[1, 3], scorer=ClipScorer.tiny())
