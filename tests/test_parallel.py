"""Sweeps, traces and evaluations split over processes (loco_lib.parallel), with two CPU processes.

``torchrun --nproc_per_node 2`` is the launcher that ``accelerate launch --multi_gpu`` runs; here the
processes talk over Gloo instead of NCCL. The two-process run must give the one-process run's images
bit for bit and the same scores, each process must compute a disjoint share of the jobs, both must
leave the same cache, and a rerun must compute nothing."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loco_lib.parallel import World, batches

ROOT = Path(__file__).resolve().parent.parent
WORKER = str(ROOT / "tests" / "parallel_worker.py")


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "LOCO_PROGRESS": "0", "PYTHONPATH": str(ROOT)}


def _torchrun(*args, check=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("parallel")
    one = subprocess.run([sys.executable, WORKER, str(d / "one.json"), str(d / "c1")], capture_output=True, text=True,
                         env=_env(), timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    _torchrun(WORKER, str(d / "two.json"), str(d / "c2"))
    return d


def _read(path):
    return json.loads(Path(path).read_text())


def test_world_shares_every_item_once():
    items = list(range(11))
    parts = [World(i, 3).share(items) for i in range(3)]
    assert sorted(x for p in parts for x in p) == items
    assert parts[1] == [1, 4, 7, 10]
    assert World().share(items) == items and World().main and not World(1, 2).main
    assert batches(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]


def test_two_processes_give_the_one_process_images_and_scores(runs):
    one, two = _read(runs / "one.json"), _read(runs / "two.json")
    assert (one["processes"], two["processes"]) == (1, 2)
    for part in ("sweep", "trace", "evaluate"):
        assert two[part] == one[part], part
    assert len(one["sweep"]) == 20 and len(one["trace"]) >= 4 and len(one["evaluate"]["images"]) == 6


def test_each_process_computes_a_disjoint_share(runs):
    alone = _read(runs / "one.json.rank0.json")
    r0, r1 = _read(runs / "two.json.rank0.json"), _read(runs / "two.json.rank1.json")
    for part in ("sweep", "trace"):
        assert r0[part] and r1[part], part  # both worked
        assert not set(r0[part]) & set(r1[part])
        assert sorted(r0[part] + r1[part]) == sorted(alone[part])


def test_both_leave_the_same_cache_and_a_rerun_computes_nothing(runs):
    for part in ("sweep", "trace"):
        a, b = runs / "c1" / part, runs / "c2" / part
        names = sorted(p.name for p in a.iterdir())
        assert names == sorted(p.name for p in b.iterdir()) and names
        for name in names:  # images bit for bit; every score was written back by the process that scored it
            if name.endswith(".json"):
                assert _read(a / name) == _read(b / name), name
            else:
                assert (a / name).read_bytes() == (b / name).read_bytes(), name
    _torchrun(WORKER, str(runs / "again.json"), str(runs / "c2"))
    for rank in (0, 1):
        assert _read(runs / f"again.json.rank{rank}.json") == {"sweep": [], "trace": []}
    assert _read(runs / "again.json")["sweep"] == _read(runs / "one.json")["sweep"]


def test_the_cli_prints_once_and_refuses_commands_that_split_nothing(tmp_path):
    proc = _torchrun("-m", "loco_lib", "locogen", "toy", "--attribute", "style", "--window", "2", "--limit", "1", "--steps", "4",
                     "--cache", str(tmp_path / "cache"), "--json", "--quiet")
    result = json.loads(proc.stdout)  # one JSON document: the second process printed nothing
    assert result["best"]["layers"]
    bad = _torchrun("-m", "loco_lib", "layers", "toy", check=False)
    assert bad.returncode != 0
    assert bad.stderr.count("loco: error: `loco layers` runs in one process") == 2


SWEEP_CHAPTER = '''# %% [markdown]
# # A sweep

# %% tags=["parameters"]
CACHE_DIR = "cache"
FAIL = False

# %%
import loco_lib
from loco_lib.sweep import run_sweep

pipe = loco_lib.load("toy", progress=False)
r = run_sweep(pipe, ["a red circle"], ["a green circle"], [[], [0, 1], [2, 3], [4, 5]], seeds=[0, 1],
              cache_dir=CACHE_DIR, batch_size=2, steps=4, progress=False)
print("computed now:", len(r.computed), "of", len(r.images))

# %%
if FAIL:
    raise RuntimeError("asked to fail")
'''


def test_reproduce_splits_a_chapter_over_processes_then_reads_its_cache(tmp_path, monkeypatch):
    from loco_lib import reproduce
    from loco_lib.errors import LocoError

    nb = tmp_path / "notebooks"
    nb.mkdir()
    (nb / "01_sweep.py").write_text(SWEEP_CHAPTER)
    monkeypatch.setattr(reproduce, "NOTEBOOKS", nb)
    out, lines = tmp_path / "run", []
    cache = tmp_path / "cache"
    assert reproduce.run("smoke", out=out, book=False, extra={"CACHE_DIR": str(cache)}, processes=2,
                         log=lines.append) == {"01_sweep": "ran"}
    assert "01_sweep: sweeps split over 2 processes" in lines
    assert len(list(cache.glob("*.png"))) == 8  # the two processes made every image
    executed = (out / "src" / "notebooks" / "01_sweep.ipynb").read_text()
    assert "computed now: 0 of 8" in executed  # the chapter itself generated nothing
    record = json.loads((out / "src" / "notebooks" / "01_sweep.done.json").read_text())
    assert record["processes"] == 2 and record["split_seconds"] > 0
    with pytest.raises(LocoError) as err:
        reproduce.run("smoke", out=out, book=False, extra={"CACHE_DIR": str(cache), "FAIL": True}, processes=2,
                      log=lines.append)
    msg = str(err.value)
    assert "chapter 01_sweep failed in its 2-process run: loco: error: code cell 4 (RuntimeError: asked to fail)" in msg  # 4: with papermill's parameters cell
    assert "\n" not in msg
    with pytest.raises(LocoError, match="processes must be a whole number"):
        reproduce.run("smoke", out=out, book=False, processes=0)


def test_the_paper_profile_says_which_gpu_each_chapter_needs(tmp_path, monkeypatch):
    from loco_lib import architectures, reproduce

    record = json.loads(reproduce.FULL_SIZE_RECORD.read_text())
    need = reproduce.gpu_need(record, "03_locogen", "sdxl")
    params = sum(record["results"]["sdxl"]["locogen"]["parameters"].values())
    assert need["fp16 weights (GB)"] == round(params * 2 / 2**30, 1) and need["smallest GPU for the weights"] == "T4 (16 GB)"
    tight = {**reproduce.GPUS, "T4 (16 GB)": need["fp16 weights (GB)"] - 1}
    monkeypatch.setattr(reproduce, "GPUS", tight)
    assert reproduce.gpu_need(record, "03_locogen", "sdxl")["smallest GPU for the weights"] == "A100 (40 GB)"
    monkeypatch.undo()
    # SD-1.4 and OpenJourney are read off SD-1.5's record because they have its architecture
    for name in reproduce.SAME_ARCHITECTURE:
        assert architectures.architectures()[name]["unet"] == architectures.architectures()["sd15"]["unet"]
        assert architectures.architectures()[name]["text_encoder"] == architectures.architectures()["sd15"]["text_encoder"]
        assert reproduce.gpu_need(record, "02_causal_tracing", name) == reproduce.gpu_need(record, "02_causal_tracing", "sd15")
    assert reproduce.gpu_need(record, "03_locogen", "sd21") == {} and reproduce.gpu_need(record, "01_model_organism", "sd15") == {}
    table = reproduce.gpu_table(record)
    assert set(table.index.get_level_values("chapter")) == set(reproduce.CHAPTER_METHODS)
    # the paper profile prints the need of every chapter before it runs any (here: none exists)
    lines = []
    monkeypatch.setattr(reproduce, "NOTEBOOKS", tmp_path)
    monkeypatch.setattr(reproduce, "plan", lambda *a, **k: {"03_locogen": {"MODEL": "sdxl"}, "02_causal_tracing": {"MODEL": "sd21"}})
    monkeypatch.setattr(reproduce, "parameters_of", lambda chapter: {"MODEL"})
    monkeypatch.setattr(reproduce, "_inputs_key", lambda *a: "k")
    with pytest.raises(FileNotFoundError):  # the chapter files do not exist here; the lines come first
        reproduce.run("paper", out=tmp_path / "run", book=False, log=lines.append)
    assert lines[0].startswith("03_locogen: sdxl (locogen) needs a GPU that holds 6.5 GB of half-precision weights")
    assert lines[0].endswith("at least a T4 (16 GB)")
    assert lines[1] == "02_causal_tracing: no full-size memory record for 'sd21'; its GPU need is not measured"
