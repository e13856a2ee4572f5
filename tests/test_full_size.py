"""Full-size SD-1.5, SD-XL, PixArt-alpha, SANA-1600M and SD3-Medium with random weights (their real
denoiser and text-encoder configs; the DiTs in bfloat16): every method runs on the real shapes at 64
px for 2 steps (`make test-slow`; about 16 GB of memory)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import full_size  # noqa: E402

pytestmark = pytest.mark.slow

# denoiser parameters of the real checkpoints (UNets), of the transformers built from the real configs (DiTs)
EXPECTED = {"sd15": 859520964, "sdxl": 2567463684, "pixart-alpha": 611349152, "sana": 1604462752, "sd3": 2028328000}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def pipe(request):
    from loco_lib.architectures import random_pipeline

    return request.param, random_pipeline(request.param)


def test_every_method_runs_at_full_size(pipe):
    from loco_lib.families.registry import denoiser

    model, p = pipe
    window = full_size.style_window(model, p)
    assert sum(x.numel() for x in denoiser(p).parameters()) == EXPECTED[model]
    assert full_size.run_method(model, "locogen", p)["image"] == [64, 64, 3]
    edit = full_size.run_method(model, "locoedit", p)
    assert edit["restored"] and edit["matrices"] == 2 * len(window)  # K and V of every layer of the window
    assert full_size.run_method(model, "trace", p)["runs"] == 3  # clean, corrupted, one restored state
    assert full_size.run_method(model, "neurons", p)["ranked"] == 2 * len(window)
