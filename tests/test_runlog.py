"""The per-image CSV record of a run (loco_lib.runlog): one row per scored image of a LocoGen sweep or
an edit comparison, with revisions and the image's sha256; nothing without LOCO_RECORDS."""
from __future__ import annotations

import csv

import pytest

import loco_lib
from loco_lib import runlog
from loco_lib.clip_score import ClipScorer
from loco_lib.prompts import PromptSet, default_prompts, load_pairs


@pytest.fixture(scope="module")
def sd15():
    return loco_lib.load("tiny-sd15", progress=False)


def _prompts():
    p = load_pairs(default_prompts("style", "tiny-sd15"))
    return PromptSet(p.attribute, p.originals[:2], p.targets[:2], p.subjects[:2], p.target_subjects[:2], p.sources[:2])


def test_sweep_and_comparison_rows(sd15, tmp_path, monkeypatch):
    from loco_lib.evaluate import compare
    from loco_lib.locoedit import compute_edit

    out = tmp_path / "records.csv"
    monkeypatch.setenv("LOCO_RECORDS", str(out))
    monkeypatch.setenv("LOCO_CHAPTER", "03_locogen")
    scorer = ClipScorer.tiny()
    res = loco_lib.locogen(sd15, _prompts(), "style", 8, [0, 1], scorer=scorer, steps=2, progress=False)
    rows = list(csv.DictReader(out.open()))
    assert tuple(rows[0]) == runlog.COLUMNS
    jobs = list(res.sweep.images)
    assert len(rows) == len(jobs) == 2 * 2 * (9 + 2)  # prompts x seeds x (windows + clean + all)
    by_job = {(r["prompt"], int(r["seed"]), r["layers_or_edit"]): r for r in rows}
    job = next(j for j in jobs if len(j.layers) == 8 and j.layers[0] == 0)
    r = by_job[(_prompts().originals[job.prompt_index], job.seed, "layers 0-7")]
    assert r["image_sha256"] == runlog.image_sha256(res.sweep.images[job])
    assert float(r["score"]) == pytest.approx(res.sweep.scores[job])
    assert r["chapter"] == "03_locogen" and r["metric"] == scorer.name
    assert r["model_revision"].startswith("weights-sha1:") and r["model_revision"] == runlog.model_revision(sd15)
    assert r["metric_revision"] == runlog.metric_revision(scorer) != "-"

    out.unlink()
    edit = compute_edit(sd15, [8, 9], ["a house in the style of van gogh"] * 2, ["a painting"] * 2, subjects="van gogh")
    comp = compare(sd15, ["a house in the style of van gogh"], ["a house in the style of a painting"],
                   {"original": None, "edited": edit}, seeds=[0, 1], scorer=scorer, steps=2)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 * 2 * 2  # labels x seeds x (CLIP vs T, CLIP vs T')
    assert {r["layers_or_edit"] for r in rows} == {"original", "edited: layers [8, 9]"}
    edited = [r for r in rows if r["layers_or_edit"].startswith("edited") and r["source"] == "compare (CLIP vs T)"]
    assert [r["image_sha256"] for r in edited] == [runlog.image_sha256(im) for im in comp.generations["edited"].images]
    assert all(r["model_revision"] == runlog.model_revision(sd15) for r in rows)  # the unedited weights' revision


def test_nothing_is_written_without_the_variable(sd15, tmp_path, monkeypatch):
    monkeypatch.delenv("LOCO_RECORDS", raising=False)
    monkeypatch.chdir(tmp_path)
    loco_lib.locogen(sd15, _prompts(), "style", 8, [0], scorer=ClipScorer.tiny(), steps=2, progress=False)
    assert list(tmp_path.iterdir()) == []
