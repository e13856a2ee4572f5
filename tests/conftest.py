"""Shared fixtures: one torch thread (tiny models gain nothing from more, and a shared CPU thrashes;
``LOCO_TEST_THREADS`` sets another count)
and each tiny twin built once per module."""
import os

import pytest
import torch

# Notebook kernels started by nbval inherit this: no progress widgets in re-executed notebooks
# (the book build sets the same for papermill).
os.environ.setdefault("LOCO_PROGRESS", "0")

from loco_lib import models

TWINS = ["tiny-sd15", "tiny-sd21", "tiny-sdxl", "tiny-if"]


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("LOCO_TEST_THREADS", "1")))  # another count: tests/floats.py's measurement
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module", params=TWINS)
def twin(request):
    """(name, pipeline) for every tiny twin."""
    return request.param, models.load(request.param, progress=False)
