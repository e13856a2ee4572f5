"""The organisms draw what they are asked (claim 1 of tests/test_organism.py, the chapter "The model
organism"): every shape x colour x style caption at the default steps and guidance, read by the
attribute scorer, for the four organisms of the 2x2 design. ``toy`` and ``toy-t5``: the sample part
of chapter 1's reports (read by content key, as tests/test_organism.py reads them); the two
DeepFloyd-topology organisms, which chapter 1 does not report, are measured here."""
import pytest

import loco_lib
from loco_lib import organism as O
from loco_lib.clip_score import get_scorer
from organism_threads import THREADS

ATTRS = ("shape", "colour", "style")


@pytest.fixture(scope="module")
def scorer():
    return get_scorer("toy-scorer")


def _accuracy(name, scorer) -> dict:
    """The organism's sample readouts over every caption, one seed, with THREADS torch threads."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return O.sample_accuracy(loco_lib.load(name, progress=False), scorer, seeds=(0,))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["toy", "toy-t5"])
def test_toy_and_toy_t5_draw_what_they_are_asked(name):
    """1. Sample quality at the default steps and guidance: >= 0.85 per attribute (all 64 shape x
    colour x style captions and the 4 alias captions), for the CLIP organism and the T5 organism
    (same data, UNet, seed and training budget)."""
    from test_organism import chapter_report

    acc = chapter_report(name).sample
    assert acc.n == 68
    assert all(getattr(acc, a) >= 0.85 for a in ATTRS), acc


@pytest.mark.parametrize("name", ["toy-if", "toy-if-clip"])
def test_if_topology_organisms_draw_what_they_are_asked(scorer, name):
    """1. The same bar for the DeepFloyd-topology organisms of the 2x2 design (same data, seed and
    training budget; added-K/V UNet with a T5 or a CLIP-style encoder)."""
    acc = _accuracy(name, scorer)
    assert all(acc[a] >= 0.85 for a in ATTRS), {a: acc[a] for a in ATTRS}
