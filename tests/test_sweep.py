"""The LocoGen sweep engine and Algorithm 1: equal to the naive loop, counted, resumable, adaptive."""
import numpy as np
import pytest
import torch

import loco_lib.sweep as sweep_mod
from loco_lib import generate, load
from loco_lib.clip_score import ClipScorer
from loco_lib.errors import LocoError
from loco_lib.hooks import Record, Site, hooks
from loco_lib.locogen import LocoGenResult, locogen, select_m, windows
from loco_lib.sweep import Job, run_sweep
from floats import ULPS, close, ulps  # tests/floats.py

ORIG = ["a house in the style of van gogh", "a tree in the style of monet"]
TARG = ["a house in the style of a painting", "a tree in the style of a painting"]
STEPS = 3


@pytest.fixture(scope="module")
def sd15():
    return load("tiny-sd15", progress=False)


@pytest.fixture(scope="module")
def scorer():
    return ClipScorer.tiny()


def naive(pipe, layers, prompt_index, seed, steps=STEPS, guidance=7.5):
    """One plain pipeline call per window: the reference the engine must reproduce."""
    kw = dict(seeds=seed, steps=steps, guidance=guidance, output_type="np", progress=False)
    if not layers:
        return generate(pipe, ORIG[prompt_index], **kw).images[0]
    return generate(pipe, ORIG[prompt_index], alt_prompts=TARG[prompt_index], layers=list(layers), **kw).images[0]


@pytest.mark.parametrize("name", ["tiny-sd15", "tiny-sdxl", "tiny-if"])
def test_engine_equals_naive_loop(name):
    pipe = load(name, progress=False)
    n = 16 if name == "tiny-sd15" else (70 if name == "tiny-sdxl" else 22)
    sets = [[]] + ([w for w in windows(n, 2)] if name == "tiny-sd15" else windows(n, 2)[::9]) + [list(range(n))]
    res = run_sweep(pipe, ORIG, TARG, sets, [0, 3], steps=STEPS, guidance=7.5, keep_arrays=True, progress=False)
    worst = 0.0
    for job, arr in res.arrays.items():
        worst = max(worst, ulps(arr, naive(pipe, job.layers, job.prompt_index, job.seed)))
    assert len(res.arrays) == len(sets) * 2 * 2
    assert worst <= ULPS, worst


def test_evaluation_counts(sd15):
    """Identical rows (the first step's unconditional rows of one prompt and seed) are computed once."""
    sets = [[]] + windows(16, 2) + [list(range(16))]
    with hooks(sd15, records=[Record(Site("unet", "", "input", "sample"), branch="all")]) as outside:
        res = run_sweep(sd15, ORIG, TARG, sets, [0], steps=STEPS, batch_size=64, progress=False)
    calls = {"rows": sum(x.shape[0] for x in outside["unet::input:sample"])}
    n_jobs, n_seeds = len(sets) * 2, 1
    naive_rows = 2 * STEPS * n_jobs
    # step 1: one unconditional row per seed (same z_T, and the unconditional input does not depend
    # on the prompt); later steps: one per window and prompt (each has its own z_t)
    expected_uncond = n_seeds + n_jobs * (STEPS - 1)
    assert res.counter["uncond_rows"] == expected_uncond
    assert res.counter["rows"] == naive_rows - (n_jobs - n_seeds)
    # the record above was installed before the engine's hooks: it sees the full batch
    assert calls["rows"] == naive_rows
    assert res.counter["calls"] == STEPS


def test_unconditional_branch_depends_on_the_window_after_step_one(sd15):
    """Why the engine cannot reuse one unconditional prediction for all windows (Sec. 5.1.1)."""
    outs = {}
    for layers in ([0, 1], [14, 15]):
        with hooks(sd15, records=[Record(Site("unet", "conv_out", "output"), branch="uncond")], guidance=True) as trace:
            naive(sd15, layers, 0, 0)
        outs[tuple(layers)] = trace["unet:conv_out:output"]
    a, b = outs[(0, 1)], outs[(14, 15)]
    assert torch.equal(a[0], b[0]), "step 1: same z_T, same unconditional prediction"
    assert (a[1] - b[1]).abs().max() > 1e-6, "step 2: the latents differ, so does the unconditional prediction"


def test_resume_recomputes_nothing_finished(sd15, scorer, tmp_path, monkeypatch):
    sets = [[]] + windows(16, 2) + [list(range(16))]
    full = run_sweep(sd15, ORIG, TARG, sets, [0], steps=STEPS, batch_size=8, scorer=scorer, progress=False)

    real = sweep_mod.sample_batch
    count = {"n": 0}

    def interrupted(*args, **kwargs):
        if count["n"] == 2:
            raise KeyboardInterrupt  # a Colab disconnect after two batches
        count["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_mod, "sample_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sd15, ORIG, TARG, sets, [0], steps=STEPS, batch_size=8, scorer=scorer, cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(sweep_mod, "sample_batch", real)
    assert len(list(tmp_path.glob("*.png"))) == 16
    assert not list(tmp_path.glob(".*tmp")), "no half-written entries"

    resumed = run_sweep(sd15, ORIG, TARG, sets, [0], steps=STEPS, batch_size=8, scorer=scorer, cache_dir=tmp_path, progress=False)
    n_jobs = len(sets) * 2
    assert len(resumed.computed) == n_jobs - 16
    assert set(resumed.computed).isdisjoint(set(list(full.images)[:16]))
    for job in full.images:
        assert np.array_equal(np.asarray(resumed.images[job]), np.asarray(full.images[job]))
        assert resumed.scores[job] == pytest.approx(full.scores[job], abs=1e-4)

    again = run_sweep(sd15, ORIG, TARG, sets, [0], steps=STEPS, batch_size=8, scorer=scorer, cache_dir=tmp_path, progress=False)
    assert again.computed == [] and again.counter == {}
    other = run_sweep(sd15, ORIG, TARG, [[3, 4]], [0], steps=STEPS + 1, cache_dir=tmp_path, progress=False)
    assert len(other.computed) == 2, "another step count is another cache entry"


def test_batch_size_adapts_to_memory(sd15, monkeypatch):
    sets = [[]] + windows(16, 4)
    ref = run_sweep(sd15, ORIG, TARG, sets, [0], steps=2, batch_size=32, keep_arrays=True, progress=False)
    real = sweep_mod.sample_batch
    sizes = []

    def small_gpu(pipe, cond, seeds, **kw):
        sizes.append(len(seeds))
        if len(seeds) > 5:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(pipe, cond, seeds, **kw)

    monkeypatch.setattr(sweep_mod, "sample_batch", small_gpu)
    res = run_sweep(sd15, ORIG, TARG, sets, [0], steps=2, batch_size=32, keep_arrays=True, progress=False)
    assert sizes[:4] == [28, 14, 7, 3]  # all 28 jobs, then halved until it fits
    assert set(sizes[3:]) <= {3, 1}  # stays at the size that fitted
    for job in ref.arrays:
        assert close(ref.arrays[job], res.arrays[job])

    def broken(*a, **k):
        raise RuntimeError("something else went wrong")

    monkeypatch.setattr(sweep_mod, "sample_batch", broken)
    with pytest.raises(RuntimeError, match="something else"):
        run_sweep(sd15, ORIG, TARG, sets, [0], steps=2, progress=False)


def test_locogen_table_best_and_references(sd15, scorer):
    res = locogen(sd15, (ORIG, TARG), "style", 2, seeds=[0], scorer=scorer, steps=STEPS, progress=False)
    t = res.table
    assert list(t["start"]) == list(range(15)) and (t["m"] == 2).all()
    assert res.best["start"] == int(t.loc[t["mean"].idxmin(), "start"])
    sc = res.sweep.scores
    assert res.clean == pytest.approx(np.mean([sc[Job(i, (), 0)] for i in range(2)]))
    assert res.altered_all == pytest.approx(np.mean([sc[Job(i, tuple(range(16)), 0)] for i in range(2)]))
    row = t.iloc[8]
    assert row["mean"] == pytest.approx(np.mean([sc[Job(i, (8, 9), 0)] for i in range(2)]))
    assert len(row["per_prompt"]) == 2
    facts = locogen(sd15, (ORIG, TARG), "facts", 3, seeds=[0], scorer=scorer, steps=STEPS, progress=False)
    assert facts.best["start"] == int(facts.table.loc[facts.table["mean"].idxmax(), "start"])
    js = facts.to_json()
    assert set(js) >= {"windows", "best", "clean", "altered_all"} and len(js["windows"]) == 14


def _fake(m, best, clean=30.0, altered=20.0):
    r = LocoGenResult("style", m, None, {"layers": [0] * m, "mean": best}, clean, altered, [], [], [0])
    r.best["fraction"] = r.fraction(best)
    return r


def test_select_m_picks_the_smallest_m_that_meets_the_threshold(sd15, monkeypatch):
    import importlib

    lg = importlib.import_module("loco_lib.locogen")  # the module (loco_lib.locogen is also the function)

    bests = {1: 28.0, 2: 21.5, 3: 20.5, 4: 20.0}  # fractions 0.2, 0.85, 0.95, 1.0
    monkeypatch.setattr(lg, "locogen", lambda pipe, prompts, attribute, m, **kw: _fake(m, bests[m]))
    sel = select_m(sd15, (ORIG, TARG), "style", threshold=0.8, ms=[1, 2, 3, 4])
    assert sel.m == 2 and list(sel.table["m"]) == [1, 2]
    assert select_m(sd15, (ORIG, TARG), "style", threshold=0.9, ms=[1, 2, 3, 4]).m == 3
    assert select_m(sd15, (ORIG, TARG), "style", threshold=1.0, ms=[1, 2, 3]).m is None
    with pytest.raises(LocoError):
        select_m(sd15, (ORIG, TARG), "style", threshold=0)


def test_bad_input(sd15, scorer):
    with pytest.raises(LocoError, match="window size m"):
        locogen(sd15, (ORIG, TARG), "style", 0, scorer=scorer)
    with pytest.raises(LocoError, match="window size m"):
        locogen(sd15, (ORIG, TARG), "style", 17, scorer=scorer)
    with pytest.raises(LocoError, match="unknown attribute"):
        locogen(sd15, (ORIG, TARG), "colour", 2, scorer=scorer)
    with pytest.raises(LocoError, match="2 original prompts but 1 targets"):
        run_sweep(sd15, ORIG, TARG[:1], [[1]], progress=False)
    with pytest.raises(LocoError, match="out of range"):
        run_sweep(sd15, ORIG, TARG, [[16]], progress=False)
