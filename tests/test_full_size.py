"""Full-size SD-1.5 and SD-XL with random weights (their real UNet and text-encoder configs): every
method runs on the real shapes at 64 px for 2 steps (`make test-slow`; about 15 GB of memory)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import full_size  # noqa: E402

pytestmark = pytest.mark.slow

EXPECTED = {"sd15": 859520964, "sdxl": 2567463684}  # UNet parameters of the real checkpoints


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def pipe(request):
    from loco_lib.architectures import random_pipeline

    return request.param, random_pipeline(request.param)


def test_every_method_runs_at_full_size(pipe):
    from loco_lib.paper import paper_window

    model, p = pipe
    window = paper_window(model, "style")
    assert sum(x.numel() for x in p.unet.parameters()) == EXPECTED[model]
    assert full_size.run_method(model, "locogen", p)["image"] == [64, 64, 3]
    edit = full_size.run_method(model, "locoedit", p)
    assert edit["restored"] and edit["matrices"] == 2 * len(window)  # K and V of every layer of the window
    assert full_size.run_method(model, "trace", p)["runs"] == 3  # clean, corrupted, one restored state
    assert full_size.run_method(model, "neurons", p)["ranked"] == 2 * len(window)
