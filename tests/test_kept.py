"""Chapter measurements kept with the repository (loco_lib.organism.kept): read while their content
key holds, measured again when the weights, the code or an argument changes, and equal to a fresh
measurement."""
import csv
import json
from pathlib import Path

import jupytext
import pandas as pd
import pytest
import torch
from chapter_outputs import json_close, kept_tolerance  # tests/chapter_outputs.py

import loco_lib
from loco_lib import organism
from loco_lib.clip_score import get_scorer
from loco_lib.errors import LocoError
from loco_lib.locogen import locogen
from loco_lib.organism import kept
from loco_lib.prompts import default_prompts, load_edit, load_pairs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def toy():
    return loco_lib.load("toy", progress=False)


def _args(toy):
    return [toy, load_pairs(default_prompts("style", "toy"))[:1], "style", 8, [0]]


def test_a_kept_measurement_is_read_back_until_an_argument_changes(toy, tmp_path, monkeypatch):
    scorer = get_scorer(None, "toy")
    first = kept.measure("w", "toy", locogen, *_args(toy), scorer=scorer, progress=False, kept_dir=tmp_path)
    files = list((tmp_path / "toy").glob("w-*.json"))
    assert len(files) == 1 and first["m"] == 8 and first["best"]["layers"]
    # the file is what is read: change it and the change comes back (nothing is measured)
    stored = json.loads(files[0].read_text())
    stored["value"]["best"]["mean"] = -1.0
    files[0].write_text(json.dumps(stored))
    assert len(stored["records"]) == len(first["windows"]) + 2  # one per image: every window, clean, all layers
    monkeypatch.setenv("LOCO_RECORDS", str(tmp_path / "run.csv"))
    assert kept.measure("w", "toy", locogen, *_args(toy), scorer=scorer, progress=False, kept_dir=tmp_path,
                        cache_dir=str(tmp_path / "images"))["best"]["mean"] == -1.0  # cache_dir is not part of the key
    with open(tmp_path / "run.csv", newline="") as fh:  # the rows it read were added to this run's record
        assert [r["image_sha256"] for r in csv.DictReader(fh)] == [r["image_sha256"] for r in stored["records"]]
    # another argument: another key, measured again, and the old file is replaced
    other = kept.measure("w", "toy", locogen, *_args(toy)[:3], 7, [0], scorer=scorer, progress=False, kept_dir=tmp_path)
    assert kept.measure("w", "toy", locogen, *_args(toy)[:3], 7, [0], scorer=scorer, kept_dir=tmp_path) == other  # read back
    assert other["m"] == 7 and [f.name for f in (tmp_path / "toy").glob("w-*.json")] != [files[0].name]
    assert len(list((tmp_path / "toy").glob("w-*.json"))) == 1


def test_the_key_follows_weights_code_and_arguments(toy, monkeypatch):
    args = _args(toy)
    base = kept.key("toy", locogen, args, {})
    assert base == kept.key("toy", locogen, args, {"cache_dir": "x", "progress": True})
    assert base != kept.key("toy", locogen, args[:4] + [[1]], {})
    assert base != kept.key("toy", locogen, args, {"steps": 3})
    monkeypatch.setattr(organism.protocol, "weights_fingerprint", lambda model: "other-weights")
    assert base != kept.key("toy", locogen, args, {})
    monkeypatch.undo()
    from loco_lib import fingerprint

    real = fingerprint.code_closure
    monkeypatch.setattr(fingerprint, "code_closure", lambda *m: real(*m)[:-1])  # one file less: other code
    assert base != kept.key("toy", locogen, args, {})


def test_models_that_are_not_organisms_are_measured_every_time(tmp_path):
    pipe = loco_lib.load("tiny-sd15", progress=False)
    assert kept.key("tiny-sd15", locogen, [pipe], {}) is None
    out = kept.measure("w", "tiny-sd15", lambda: pd.DataFrame({"a": [1.5]}, index=pd.Index(["x"], name="row")),
                       kept_dir=tmp_path)
    assert out.loc["x", "a"] == 1.5 and out.index.name == "row" and not any(tmp_path.iterdir())
    with pytest.raises(LocoError, match="cannot key"):
        kept.describe(object())


def test_frames_and_selections_come_back_as_they_went(tmp_path):
    frame = pd.DataFrame({"kept": [1.0, 0.25], "CRA": [1.0, float("nan")]}, index=pd.Index(["original", "edit"], name="model"))
    frame.attrs["n"] = 8
    back = kept._from_json(json.loads(json.dumps(kept._to_json(frame))))
    pd.testing.assert_frame_equal(back, frame)
    assert back.attrs == {"n": 8}
    multi = pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], index=pd.MultiIndex.from_tuples([("a", "p"), ("b", "q")], names=["group", "prompt"]),
                         columns=pd.MultiIndex.from_tuples([("CLIP vs T", "original"), ("CLIP vs T", "edit")]))
    pd.testing.assert_frame_equal(kept._from_json(json.loads(json.dumps(kept._to_json(multi)))), multi)


def _chapter_parameters(chapter: str) -> dict:
    cell = next(c for c in jupytext.read(ROOT / "notebooks" / f"{chapter}.py").cells
                if "parameters" in c.metadata.get("tags", []))
    values: dict = {}
    exec(cell.source, values)
    return values


def test_the_kept_pooled_text_readouts_equal_a_new_measurement():
    """The chapter "DeepFloyd IF and T5" reads these through kept.measure; measured again here with the
    chapter's own arguments, they must be the same numbers as the kept file."""
    p = _chapter_parameters("06_deepfloyd_t5")
    name = "toy-if-clip"
    pipe = loco_lib.load(name, progress=False)
    args = [pipe, get_scorer(None, name), load_pairs(default_prompts("style", name)), "style", 2]
    kwargs = dict(seeds=p["SEEDS"], steps=p["STEPS"], swap_text_paths=True)
    k = kept.key(name, organism.locogen_readouts, args, kwargs)
    path = kept.folder() / name / f"pooled_text-{k}.json"  # the file name of measure("pooled-text", ...)
    assert path.exists(), f"{path.name} is not kept: run `make book` and commit data/organism/cache/chapters"
    fresh = kept._to_json(organism.locogen_readouts(*args, **kwargs))
    stored = json.loads(path.read_text())["value"]
    tol = kept_tolerance(f"chapters/{name}/pooled_text")  # the spread measured across CPUs and thread counts
    assert not json_close(stored, json.loads(json.dumps(fresh)), tol)  # labels exactly, numbers within tol


def test_file_names_and_the_replacement_of_other_keys(tmp_path, monkeypatch):
    parts = {"weights": "w", "code": "c", "call": "{}", "key": "k1"}
    monkeypatch.setattr(kept, "key_parts", lambda model, fn, args, kwargs: parts)
    monkeypatch.setenv("LOCO_KEPT_LOG", str(tmp_path / "kept.jsonl"))
    with pytest.warns(Warning, match="kept measurement .*artist_window_van_gogh-k1.json measured: no kept file of it yet"):
        assert kept.measure("artist window van gogh", "toy", lambda: {"x": 1}, kept_dir=tmp_path) == {"x": 1}
    assert [p.name for p in (tmp_path / "toy").iterdir()] == ["artist_window_van_gogh-k1.json"]
    parts = {"weights": "w", "code": "c2", "call": "{}", "key": "k2"}  # the measuring code changed
    with pytest.warns(Warning, match="measured again, replacing artist_window_van_gogh-k1.json: the code .* runs changed"):
        assert kept.measure("artist window van gogh", "toy", lambda: {"x": 2}, kept_dir=tmp_path) == {"x": 2}
    assert [p.name for p in (tmp_path / "toy").iterdir()] == ["artist_window_van_gogh-k2.json"]  # k1 is obsolete
    assert kept.measure("artist window van gogh", "toy", lambda: {"x": 9}, kept_dir=tmp_path) == {"x": 2}  # read
    log = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert [e["measured"] for e in log] == [True, True, False] and log[1]["replaces"][0].endswith("-k1.json")
    (tmp_path / "toy" / "artist_window_van_gogh-k2.json").write_text("{not json")
    with pytest.warns(Warning, match="damaged kept measurement"):
        assert kept.measure("artist window van gogh", "toy", lambda: {"x": 3}, kept_dir=tmp_path) == {"x": 3}


def _small_trace(toy, where="text"):
    from loco_lib import trace

    pairs = load_pairs(default_prompts("style", "toy"), limit=1)
    return trace.trace, [toy, pairs], dict(where=where, seeds=[0], steps=4, scorer=get_scorer(None, "toy"), progress=False)


def test_a_kept_trace_keeps_every_score_and_reads_like_the_trace(toy, tmp_path):
    """A causal trace is kept with its states, sets, settings and every run's score (no images): read
    back, it gives the same table, summary, ranking and strongest state, and says it computed nothing."""
    fn, args, kwargs = _small_trace(toy)
    fresh = fn(*args, **kwargs)
    first = kept.measure("t", "toy", fn, *args, kept_dir=tmp_path, **kwargs)
    back = kept.measure("t", "toy", fn, *args, kept_dir=tmp_path, **kwargs)  # read from the file
    assert len(list((tmp_path / "toy").glob("t-*.json"))) == 1
    for r in (first, back):
        assert type(r) is type(fresh) and r.scores == fresh.scores and r.states == fresh.states and r.sets == fresh.sets
        pd.testing.assert_frame_equal(r.table(), fresh.table())
        assert r.summary() == fresh.summary() and r.ranking() == fresh.ranking()
        assert r.strongest("mlp") == fresh.strongest("mlp") and r.tokens == fresh.tokens
        assert r.images == {} and r.computed == []
    # a measurement that takes a trace is keyed by the key the trace was kept under, never by its scores
    other = kept.measure("t", "toy", fn, *args, kept_dir=tmp_path, **{**kwargs, "tokens": "subject"})
    assert kept.describe(back) == kept.describe(first) == {"trace": kept.key("toy", fn, args, kwargs)}
    assert kept.describe(other) != kept.describe(back)
    fresh.scores = {r: v + 1e-3 for r, v in fresh.scores.items()}  # a trace measured here: its recipe, not its scores
    assert kept.describe(fresh) == kept.describe(fn(*args, **kwargs)) != kept.describe(back)


def test_states_needed_and_comparison_tables_come_back_as_they_went(toy, tmp_path):
    from loco_lib import trace
    from loco_lib.evaluate import compare
    from loco_lib.locoedit import compute_edit

    fn, args, kwargs = _small_trace(toy)
    result = fn(*args, **kwargs)
    needed = trace.states_needed(toy, result, ks=[1, 2], scorer=kwargs["scorer"], progress=False)
    back = kept.measure("n", "toy", trace.states_needed, toy, result, kept_dir=tmp_path, ks=[1, 2], scorer=kwargs["scorer"],
                        progress=False)
    assert back.needed == needed.needed and back.n_states == needed.n_states
    pd.testing.assert_frame_equal(back.curve, needed.curve)

    src = default_prompts("style", "toy")
    block = load_edit(src, "van gogh")
    edit = compute_edit(toy, [0, 1], block.originals, block.targets, block.subjects, block.target_subjects)
    prompts, groups = ["a red circle in the style of van gogh", "a blue square"], ["z edited", "a control"]
    settings = dict(seeds=[0], groups=groups, scorer=kwargs["scorer"], steps=4, progress=False)
    c = compare(toy, prompts, None, {"original": None, "LocoEdit": edit}, **settings)
    tables = kept.measure("c", "toy", kept.comparison_tables, toy, prompts, None, {"original": None, "LocoEdit": edit},
                          kept_dir=tmp_path, **settings)
    again = kept.measure("c", "toy", kept.comparison_tables, toy, prompts, None, {"original": None, "LocoEdit": edit},
                         kept_dir=tmp_path, **settings)
    for t in (tables, again):
        pd.testing.assert_frame_equal(t["mean"], c.mean("group"))
        assert list(t["readouts"].index.get_level_values("prompts").unique()) == groups  # the groups' order, not sorted
        for g in groups:
            pd.testing.assert_frame_equal(t["readouts"].loc[g], c.readouts(g).rename_axis("edit"))


def test_a_kept_trace_of_another_layout_is_measured_again(toy, tmp_path):
    fn, args, kwargs = _small_trace(toy)
    kept.measure("t", "toy", fn, *args, kept_dir=tmp_path, **kwargs)
    path = next((tmp_path / "toy").glob("t-*.json"))
    stored = json.loads(path.read_text())
    stored["value"]["__trace__"]["format"] = 0
    path.write_text(json.dumps(stored))
    with pytest.warns(Warning, match="damaged kept measurement"):
        r = kept.measure("t", "toy", fn, *args, kept_dir=tmp_path, **kwargs)
    assert r.computed == [] and json.loads(path.read_text())["value"]["__trace__"]["format"] == kept.TRACE_FORMAT


def test_the_kept_text_trace_of_the_tracing_chapter_equals_a_new_measurement():
    """The chapter "Causal tracing" reads its traces through kept.measure; the T5 organism's text
    trace, measured again here with the chapter's own arguments, must give the kept file's scores."""
    from loco_lib import trace

    p = _chapter_parameters("02_causal_tracing")
    name = p["OTHER_MODEL"]
    pipe = loco_lib.load(name, progress=False)
    pairs = load_pairs(default_prompts(p["ATTRIBUTE"], name), limit=p["N_PROMPTS"])
    kwargs = dict(where="text", encoder=1, tokens="last", seeds=p["SEEDS"], steps=p["STEPS"], guidance=p["GUIDANCE"],
                  factor=p["NOISE"], scorer=get_scorer(p["SCORER"], name))
    k = kept.key(name, trace.trace, [pipe, pairs], kwargs)
    path = kept.folder() / name / f"text_trace_last-{k}.json"  # the file name of measure("text-trace-last", ...)
    assert path.exists(), f"{path.name} is not kept: run `make book` and commit data/organism/cache/chapters"
    stored = kept._from_json(json.loads(path.read_text())["value"])
    fresh = trace.trace(pipe, pairs, progress=False, **kwargs)
    assert set(stored.scores) == set(fresh.scores)
    # scores of 0-100: within the spread measured for this file across CPUs and thread counts
    tol = kept_tolerance(f"chapters/{name}/text_trace_last")
    assert [stored.scores[r] for r in fresh.scores] == pytest.approx(list(fresh.scores.values()), abs=tol + 1e-12)


def test_an_edit_is_keyed_by_its_recipe_not_by_the_weights_it_writes(toy):
    from loco_lib.locoedit import compute_edit

    block = load_edit(default_prompts("style", "toy"), "van gogh")
    edit = compute_edit(toy, [0, 1], block.originals, block.targets, block.subjects, block.target_subjects)
    k = kept.edit_key(edit)
    for name in edit.weights:  # float noise in what it computed: the same edit
        edit.weights[name] = edit.weights[name] * (1 + 1e-6)
    edit.meta["edit_seconds"] = 123.0
    assert kept.edit_key(edit) == k
    other = compute_edit(toy, [0, 1], block.originals, block.targets, block.subjects, block.target_subjects, lam=0.5)
    assert kept.edit_key(other) != k  # another lambda: another edit
    assert kept.edit_key(compute_edit(toy, [0], block.originals, block.targets, block.subjects, block.target_subjects)) != k



def test_a_trained_edit_is_kept_by_its_recipe_resumes_and_is_read_back(toy, tmp_path, monkeypatch):
    from loco_lib import finetune
    from loco_lib.edit_file import Edit

    log = tmp_path / "kept.log"
    monkeypatch.setenv("LOCO_KEPT_LOG", str(log))
    opts = dict(steps=3, lr=1e-3, sample_steps=2, progress=False, kept_dir=tmp_path / "kept", checkpoint_dir=tmp_path / "ck")
    # an interrupted training leaves its checkpoint; the next call resumes from it
    with pytest.raises(KeyboardInterrupt):
        kept.trained("esd", "toy", finetune.esd, toy, "van gogh", stop_after=2, **opts)
    assert len(list((tmp_path / "ck").glob("toy-esd-*.pt"))) == 1 and not (tmp_path / "kept").exists()
    first = kept.trained("esd", "toy", finetune.esd, toy, "van gogh", **opts)
    assert first.meta["resumed_from"] == 2 and len(first.meta["losses"]) == 3 and first.edit_seconds > 0
    files = list((tmp_path / "kept" / "toy").glob("esd-*.safetensors"))
    assert len(files) == 1 and not list((tmp_path / "ck").glob("*.pt"))  # kept, the checkpoint removed
    # what comes back is the file's edit, and the file is what is read: nothing is trained again
    again = kept.trained("esd", "toy", finetune.esd, toy, "van gogh", **opts)
    assert all(torch.equal(again.weights[n], first.weights[n]) for n in first.weights)
    assert again.edit_seconds == first.edit_seconds and kept.edit_key(again) == kept.edit_key(first)
    assert [json.loads(line)["measured"] for line in log.read_text().splitlines()] == [True, False]
    # the key holds the recipe, not what the run computed (its losses, how it resumed, its time)
    noisy = Edit.load(files[0])
    noisy.meta["losses"] = [x + 1e-3 for x in noisy.meta["losses"]]
    noisy.meta["resumed_from"] = 0
    assert kept.edit_key(noisy) == kept.edit_key(first)
    # another setting: another key, trained again, and the old file replaced
    other = kept.trained("esd", "toy", finetune.esd, toy, "van gogh", **{**opts, "lr": 2e-3})
    assert kept.edit_key(other) != kept.edit_key(first)
    assert [f.name for f in (tmp_path / "kept" / "toy").glob("esd-*.safetensors")] != [files[0].name]
    assert len(list((tmp_path / "kept" / "toy").glob("esd-*.safetensors"))) == 1
    # a twin is not an organism: trained every time, nothing kept
    assert kept.key("tiny-sd15", finetune.esd, [toy, "van gogh"], {}) is None


KEYS_SCRIPT = """
import json, sys, torch
import loco_lib
from loco_lib import organism
from loco_lib.clip_score import get_scorer
from loco_lib.locoedit import compute_edit
from loco_lib.organism import kept
from loco_lib.prompts import default_prompts, load_edit, load_pairs
from loco_lib import trace
toy = loco_lib.load("toy", progress=False)
block = load_edit(default_prompts("style", "toy"), "van gogh")
edit = compute_edit(toy, [0, 1], block.originals, block.targets, block.subjects, block.target_subjects)
pairs = load_pairs(default_prompts("style", "toy"), limit=1)
scorer = get_scorer(None, "toy")
tr = trace.trace(toy, pairs, where="text", seeds=[0], steps=2, scorer=scorer, progress=False)
enc = toy.text_encoder(toy.tokenizer(["a red circle"], return_tensors="pt").input_ids)[0]
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(),
                  "edit": kept.key("toy", kept.comparison_tables, [toy, ["p"], None, {"LocoEdit": edit}], {}),
                  "states_needed": kept.key("toy", trace.states_needed, [toy, tr], {"scorer": scorer}),
                  "weights": organism.weights_fingerprint("toy"),
                  "computed": [float(v) for v in tr.scores.values()] + [float(enc.double().sum())]}))
"""


def test_kept_keys_are_the_same_under_another_instruction_set_and_thread_count():
    """What the book keys its kept measurements by, computed natively and under a foreign instruction
    set with one thread in subprocesses: the computed floats differ, the keys do not."""
    import os
    import subprocess
    import sys

    from loco_lib.reproduce import BASELINE_ISA

    from loco_lib.reproduce import ISA_VARIABLES

    clean = {k: v for k, v in os.environ.items() if k not in ISA_VARIABLES + ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}

    def keys(env):  # in a process of its own: the instruction set is chosen when torch starts
        run = subprocess.run([sys.executable, "-c", KEYS_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                             env={**clean, "LOCO_PROGRESS": "0", **env})
        assert run.returncode == 0, run.stderr[-2000:]
        return json.loads(run.stdout.strip().splitlines()[-1])

    native = keys({})
    foreign = keys({**BASELINE_ISA, "OMP_NUM_THREADS": "1"})
    assert native["capability"] != foreign["capability"] == "DEFAULT"
    assert native["computed"] != foreign["computed"]  # other bits: the test is not vacuous
    for name in ("edit", "states_needed", "weights"):
        assert native[name] == foreign[name], name


def test_the_spread_tool_counts_a_run_only_for_the_kept_files_it_measured(tmp_path):
    """tests/spread.py: a run in a clone that read a committed kept file has measured nothing about
    it, so it gives that file no spread (it once counted as a configuration with spread 0)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import spread

    def kept(root, name, value):
        p = root / "data" / "organism" / "cache" / "chapters" / "toy" / f"{name}-abc123abc123.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"value": value, "records": []}))

    for root in (tmp_path / "rec", tmp_path / "run"):
        kept(root, "read_only", {"x": 1.0})
        kept(root, "measured", {"x": 1.0})
    kept(tmp_path / "run", "measured", {"x": 1.5})
    kept(tmp_path / "run", "read_only", {"x": 9.0})  # not measured by the run: not a spread, whatever it holds
    done = tmp_path / "run" / "_build" / "src" / "notebooks" / "06_x.done.json"
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps({"kept_measured": ["data/organism/cache/chapters/toy/measured-abc123abc123.json"]}))
    table = spread.kept_spread(tmp_path / "rec" / "data" / "organism" / "cache", {"cfg": str(tmp_path / "run")})
    assert table["chapters/toy/measured"]["configs"] == ["cfg"] and table["chapters/toy/measured"]["spread"] == 0.5
    assert table["chapters/toy/read_only"]["configs"] == []
    done.unlink()  # a run without records (a clone without kept files measures them all): every file counts
    assert spread.kept_spread(tmp_path / "rec" / "data" / "organism" / "cache", {"cfg": str(tmp_path / "run")})[
        "chapters/toy/read_only"]["spread"] == 8.0
