"""Chapter measurements kept with the repository (loco_lib.organism.kept): read while their content
key holds, measured again when the weights, the code or an argument changes, and equal to a fresh
measurement."""
import csv
import json
from pathlib import Path

import jupytext
import pandas as pd
import pytest

import loco_lib
from loco_lib import organism
from loco_lib.clip_score import get_scorer
from loco_lib.errors import LocoError
from loco_lib.locogen import locogen
from loco_lib.organism import kept
from loco_lib.prompts import default_prompts, load_pairs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def toy():
    return loco_lib.load("toy", progress=False)


def _args(toy):
    return [toy, load_pairs(default_prompts("style", "toy"))[:1], "style", 8, [0]]


def test_a_kept_measurement_is_read_back_until_an_argument_changes(toy, tmp_path, monkeypatch):
    scorer = get_scorer(None, "toy")
    first = kept.measure("w", "toy", locogen, *_args(toy), scorer=scorer, progress=False, where=tmp_path)
    files = list((tmp_path / "toy").glob("w-*.json"))
    assert len(files) == 1 and first["m"] == 8 and first["best"]["layers"]
    # the file is what is read: change it and the change comes back (nothing is measured)
    stored = json.loads(files[0].read_text())
    stored["value"]["best"]["mean"] = -1.0
    files[0].write_text(json.dumps(stored))
    assert len(stored["records"]) == len(first["windows"]) + 2  # one per image: every window, clean, all layers
    monkeypatch.setenv("LOCO_RECORDS", str(tmp_path / "run.csv"))
    assert kept.measure("w", "toy", locogen, *_args(toy), scorer=scorer, progress=False, where=tmp_path,
                        cache_dir=str(tmp_path / "images"))["best"]["mean"] == -1.0  # cache_dir is not part of the key
    with open(tmp_path / "run.csv", newline="") as fh:  # the rows it read were added to this run's record
        assert [r["image_sha256"] for r in csv.DictReader(fh)] == [r["image_sha256"] for r in stored["records"]]
    # another argument: another key, measured again, and the old file is replaced
    other = kept.measure("w", "toy", locogen, *_args(toy)[:3], 7, [0], scorer=scorer, progress=False, where=tmp_path)
    assert kept.measure("w", "toy", locogen, *_args(toy)[:3], 7, [0], scorer=scorer, where=tmp_path) == other  # read back
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
                       where=tmp_path)
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
    assert kept._from_json(stored)[1].round(4).equals(kept._from_json(fresh)[1].round(4))
    assert [w["mean"] for w in stored[0]["windows"]] == pytest.approx([w["mean"] for w in fresh[0]["windows"]], abs=1e-4)


def test_file_names_and_the_replacement_of_other_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(kept, "key", lambda model, fn, args, kwargs: "k1")
    assert kept.measure("artist window van gogh", "toy", lambda: {"x": 1}, where=tmp_path) == {"x": 1}
    assert [p.name for p in (tmp_path / "toy").iterdir()] == ["artist_window_van_gogh-k1.json"]
    monkeypatch.setattr(kept, "key", lambda model, fn, args, kwargs: "k2")
    assert kept.measure("artist window van gogh", "toy", lambda: {"x": 2}, where=tmp_path) == {"x": 2}
    assert [p.name for p in (tmp_path / "toy").iterdir()] == ["artist_window_van_gogh-k2.json"]  # k1 is obsolete
    (tmp_path / "toy" / "artist_window_van_gogh-k2.json").write_text("{not json")
    with pytest.warns(Warning, match="damaged kept measurement"):
        assert kept.measure("artist window van gogh", "toy", lambda: {"x": 3}, where=tmp_path) == {"x": 3}
