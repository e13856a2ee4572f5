"""loco_lib.organism.token_swaps: App. M's token swap with every image's readout kept."""
import numpy as np
import pytest

from loco_lib import models, per_image
from loco_lib.clip_score import get_scorer
from loco_lib.organism.protocol import token_swap
from loco_lib.organism.token_swaps import swap_images
from loco_lib.prompts import default_prompts, load_pairs
from loco_lib.tokens import TOKEN_SETS


def test_the_images_read_one_by_one_give_the_reports_fractions():
    """The per-image swap averages to what the organism's report measures with the same prompts,
    seeds and steps (the same images: one code path for the swap)."""
    pipe = models.load("toy", progress=False)
    scorer = get_scorer(None, "toy")
    pairs = load_pairs(default_prompts("style", "toy"))
    res = swap_images("toy", scorer, seeds=[0, 3], steps=4)
    assert list(res["sets"]) == list(TOKEN_SETS) and res["prompts"] == list(pairs.originals)
    n = len(pairs.originals)
    assert res["images"] == [[i, 0] for i in range(n)] + [[i, 3] for i in range(n)]
    for which in ("subject", "after"):
        report = token_swap(pipe, scorer, pairs.originals, pairs.targets, "van gogh", which, seeds=[0, 3], steps=4)
        for readout in ("shape", "colour", "style"):
            assert np.mean(res["sets"][which][readout]) == pytest.approx(report[readout])


def test_swap_seeds_gives_each_seed_and_an_interval():
    res = {"images": [[0, 0], [1, 0], [0, 1], [1, 1]],
           "sets": {"subject": {"style": [1, 1, 0, 0]}, "after": {"style": [1, 1, 1, 1]}}}
    t = per_image.swap_seeds({"m": res})
    assert t.loc[("m", "subject"), "style kept"] == 0.5
    assert t.loc[("m", "subject"), "seed 0"] == 1.0 and t.loc[("m", "subject"), "seed 1"] == 0.0
    assert t.loc[("m", "after"), "90% interval"] == "[1.00, 1.00]" and t.loc[("m", "after"), "images"] == 4


def test_an_organism_beside_the_2x2_is_named_not_pathed():
    from loco_lib.errors import LocoError
    from loco_lib.organism import kept, variants

    k = kept.key_parts(str(variants.folder("toy-t5-long")), swap_images, ["toy-t5-long", None], {"seeds": [0]})
    assert k is not None and "toy-t5-long" in k["call"] and str(variants.folder("toy-t5-long").parent) not in k["call"]
    with pytest.raises(LocoError):
        swap_images("toy-nowhere", None, seeds=[0])
