"""The bundled prompt sets (App. C, J, K.1, L) load, hold what the paper says, and bad prompt files fail
with a one-line LocoError that names the file and the entry."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from loco_lib import prompts as P
from loco_lib.errors import LocoError

DATA = Path(__file__).resolve().parent.parent / "data" / "prompts"
ARTISTS = {"Van Gogh": 8, "Monet": 11, "Salvador Dali": 10, "Jeremy Mann": 10, "Greg Rutkowski": 10, "Pablo Picasso": 8}


def loco_error(fn, *args, **kw) -> str:
    """``fn`` must raise LocoError with a readable one-line message; returns the message."""
    with pytest.raises(LocoError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    return msg


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def is_subsequence(small: list[str], big: list[str]) -> bool:
    it = iter(big)
    return all(w in it for w in small)


# ------------------------------------------------------------------------------------------------
# The bundled files


def test_every_bundled_file_loads_and_validates():
    counts = P.validate_all()
    assert counts == {"style.yaml": 30 + 6 * 4, "objects.yaml": 20 + 4 * 4, "facts.yaml": 10 + 2 * 4,
                      "artists.yaml": 57, "human_study.yaml": 11, "robustness.yaml": 320,
                      "toy/style.yaml": 8 + 4 + 24, "toy/objects.yaml": 8 + 4 + 8, "toy/facts.yaml": 4 + 2 + 6}
    assert sorted(str(p.relative_to(DATA)) for p in DATA.glob("**/*.yaml")) == sorted(counts)


@pytest.mark.parametrize("attribute", P.ATTRIBUTES)
def test_organism_prompt_sets_change_only_their_attribute(attribute):
    """The toy sets speak the world's language, each pair changes exactly its attribute, the edit keys
    are other prompts than the pairs (so an edit is evaluated on held-out prompts), and no control
    prompt names the edited concept."""
    from loco_lib.organism.world import parse_caption, vocabulary

    src = P.default_prompts(attribute, "toy")
    assert src == P.default_prompts(attribute, "toy-t5") and P.default_prompts(attribute, "sd15") == attribute
    pairs, (concept,) = P.load_pairs(src), P.edit_concepts(src)
    keys, controls = P.load_edit(src, concept), P.load_controls(src)
    changed = {"style": {"style"}, "objects": {"shape"}, "facts": {"shape", "colour"}}[attribute]
    words = set(vocabulary())
    for p in [*pairs, *keys]:
        a, b = parse_caption(p.original), parse_caption(p.target)
        assert None not in (a["shape"], a["colour"], b["shape"], b["colour"])
        assert {k for k in a if a[k] != b[k]} == changed, p
        assert set(p.original.split()) <= words and set(p.target.split()) <= words
    if attribute == "facts":  # the alias occurs in only 4 captions: the keys are 2 of the 4 pairs
        assert set(keys.originals) < set(pairs.originals)
    else:
        assert not set(pairs.originals) & set(keys.originals)
    assert controls and all(not P._contains(c, pairs.subjects[0]) for group in controls.values() for c in group)


@pytest.mark.parametrize("attribute", P.ATTRIBUTES)
def test_pair_files(attribute):
    ps = P.load_pairs(attribute)
    assert ps.attribute == attribute and ps.path == DATA / f"{attribute}.yaml"
    assert len(ps) == len(ps.originals) == len(ps.targets) == len(ps.subjects) == len(ps.target_subjects) == len(ps.sources)
    assert len(set(ps.originals)) == len(ps)
    for p in ps:
        assert P._contains(p.original, p.subject) and not P._contains(p.target, p.subject)
        assert p.target_subject and P._contains(p.target, p.target_subject)
        assert p.concept in P.edit_concepts(attribute)
    # every entry of every file cites its own source (no silent file-wide default)
    raw = yaml.safe_load((DATA / f"{attribute}.yaml").read_text())
    entries = raw["pairs"] + [k for block in raw["edits"].values() for k in block["keys"]]
    assert all(isinstance(e.get("source"), str) and e["source"].strip() for e in entries)
    assert raw["description"].strip()
    for concept in P.edit_concepts(attribute):
        assert len(P.load_edit(attribute, concept)) == 4
        assert len(P.load_pairs(attribute, concept=concept)) >= 5


def test_style_pairs_follow_app_c_and_sec_6():
    ps = P.load_pairs("style")
    assert ps[0] == ("A house in the style of Van Gogh", "A house in the style of a painting", "Van Gogh", "a painting", "van gogh",
                     ps.sources[0])
    assert all(t.endswith("in the style of a painting") for t in ps.targets)
    assert sorted({s for s in ps.subjects}) == sorted(ARTISTS)
    for paper_prompt in ["Women working in a field in the style of Van Gogh", "A town in the style of Monet",
                         "Rocks in the ocean in the style of Monet", "A tree in the style of Van Gogh"]:
        assert paper_prompt in ps.originals
    assert P.edit_concepts("style") == [a.lower() for a in ARTISTS]


def test_style_edit_keys_are_the_authors_four_variants():
    edit = P.load_edit("style", "Van Gogh")  # concept names are case-insensitive
    assert edit.originals == ["Van Gogh", "a painting in the style of Van Gogh", "a photo in the style of Van Gogh",
                              "a picture in the style of Van Gogh"]
    assert edit.targets == ["a painting"] * 4 and edit.subjects == ["Van Gogh"] * 4
    assert P.load_edit("style", "pablo picasso").originals[1] == "a painting in the style of Pablo Picasso"


@pytest.mark.parametrize("original,target", [("r2d2", "robot"), ("snoopy", "dog"), ("nemo", "fish"), ("cat", "dog")])
def test_objects_targets_of_app_c(original, target):
    ps = P.load_pairs("objects", concept=original)
    assert (original, target) in zip(ps.originals, ps.targets)
    assert set(ps.target_subjects) == {target}
    assert all(P._contains(t, target) for t in ps.targets)
    assert all(P._contains(t, target) for t in P.load_edit("objects", original).targets)


@pytest.mark.parametrize("concept,original,target", [("president", "The President of the United States", "Joe Biden"),
                                                     ("british monarch", "The British Monarch", "Prince Charles")])
def test_facts_targets_of_app_c(concept, original, target):
    ps = P.load_pairs("facts", concept=concept)
    assert (original, target) in zip(ps.originals, ps.targets)
    assert original.replace("The ", "", 1) in ps.originals  # App. B figures write it without 'The'
    assert all(P._contains(t, target) for t in ps.targets)
    assert P.load_edit("facts", concept).originals[0] == original


def test_artists_of_app_k1():
    assert P.artist_names() == list(ARTISTS)
    everything = P.load_artists()
    assert len(everything) == sum(ARTISTS.values()) == 57
    for name, n in ARTISTS.items():
        ps = P.load_artists(name.upper())
        assert len(ps) == n and set(ps.subjects) == {name} and set(ps.concepts) == {name}
        for o, t in zip(ps.originals, ps.targets):
            assert P._contains(o, name) and not P._contains(t, name)
            assert not re.search(r"(style of|by)\s*$", t) and "style" not in t.lower(), t
            assert is_subsequence(words(t), words(o)) and len(words(t)) < len(words(o)), (o, t)
    # a few transcriptions, word for word
    vg = P.load_artists("van gogh")
    assert vg.originals[3] == "Two trees in a sunlit field, painted by Van Gogh" and vg.targets[3] == "Two trees in a sunlit field"
    assert P.load_artists("Monet").originals[-1] == "two trees in a field, painting in the style of Monet"
    assert "melting watch painting in the style of Salvador Dali" in P.load_artists("Salvador Dali").originals
    assert P.load_artists("Pablo Picasso").originals[0] == "Painting of nude figures by Pablo Picasso"


def test_human_study_of_app_j():
    study = P.load_human_study()
    assert len(study) == 11
    assert [s.attribute for s in study].count("style") == 6
    assert [s.attribute for s in study].count("object") == 3
    assert [s.attribute for s in study].count("fact") == 2
    assert study[0].prompt == "a house in the style of van gogh" and study[0].subject == "van gogh"
    assert study[1].prompt == study[2].prompt == "a town in the style of monet"  # listed twice in the paper
    assert study[7].prompt == "president of the united states" and study[7].note  # no parenthesis in the paper
    assert all(P._contains(s.prompt, s.subject) and s.source == "App. J" for s in study)


def test_robustness_of_app_l():
    grid = P.robustness_grid()
    assert len(grid.classes) == len(set(grid.classes)) == 80
    assert grid.locations == ("beach", "forest", "city", "house")
    assert {"person", "traffic light", "hair drier", "toothbrush", "tv", "cat"} <= set(grid.classes)
    prompts = P.load_robustness()
    assert len(prompts) == len(set(prompts)) == 320
    assert prompts[:4] == ["a person in a beach", "a person in a forest", "a person in a city", "a person in a house"]
    for expected in ["a cat in a beach", "an airplane in a city", "an umbrella in a forest", "a pair of skis in a house", "an orange in a house"]:
        assert expected in prompts
    assert not any(re.search(r"\ba [aeiou]|\s\s|\ban [^aeiou]", p) for p in prompts)
    for c in grid.classes:
        assert sum(c in p for p in prompts) >= 4


# ------------------------------------------------------------------------------------------------
# PromptSet


def test_prompt_set_selection_limit_and_concepts():
    ps = P.load_pairs("style")
    assert len(P.load_pairs("style", limit=3)) == 3 and P.load_pairs("style", limit=1000).originals == ps.originals
    sub = ps.select([4, 0])
    assert sub.originals == [ps.originals[4], ps.originals[0]] and sub.subjects == [ps.subjects[4], ps.subjects[0]]
    assert sub.path == ps.path and sub.attribute == "style"
    assert ps[1:3].originals == ps.originals[1:3] and ps.select(slice(None, None, 5)).targets == ps.targets[::5]
    assert ps[-1].original == ps.originals[-1]
    assert set(P.load_pairs("style", concept="MONET").subjects) == {"Monet"}
    assert "index 99" in loco_error(ps.select, [0, 99])
    assert "out of range" in loco_error(ps.__getitem__, 30)
    assert "positive integer" in loco_error(P.load_pairs, "style", limit=0)
    assert "concepts: van gogh" in loco_error(P.load_pairs, "style", concept="rembrandt")
    assert "no edit block" in loco_error(P.load_edit, "objects", "wall-e")
    assert "unknown artist" in loco_error(P.load_artists, "Rembrandt")


# ------------------------------------------------------------------------------------------------
# Other files and schemas


def write(tmp_path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def pair(o="a photo of r2d2", t="a photo of a robot", s="r2d2", **kw):
    return {"original": o, "target": t, "subject": s, "source": "test", **kw}


def pairs_file(tmp_path, entries, name="bad.yaml", **top):
    return write(tmp_path, name, {"attribute": "objects", "description": "test", **top, "pairs": entries})


def test_user_file_yaml_and_json_and_parallel_lists(tmp_path):
    good = pairs_file(tmp_path, [pair(), pair("Snoopy on a beach", "a dog on a beach", "snoopy", target_subject="dog")],
                      edits={"r2d2": {"keys": [pair("r2d2", "robot")]}})
    ps = P.load_pairs(good)
    assert ps.originals == ["a photo of r2d2", "Snoopy on a beach"] and ps.target_subjects == [None, "dog"]
    assert P.load_pairs(str(good)).path == good and P.edit_concepts(good) == ["r2d2"]
    assert P.load_edit(good, "R2D2").targets == ["robot"]
    js = write(tmp_path, "pairs.json", json.dumps({"attribute": "facts", "source": "file-wide", "pairs": [pair("The British Monarch", "Prince Charles", "british monarch")]}))
    assert P.load_pairs(js).sources == ["test"] and P.load_pairs(js).attribute == "facts"
    par = write(tmp_path, "par.yaml", {"attribute": "style", "source": "App. C", "originals": ["a house by Monet", "a tree by Monet"],
                                       "targets": ["a house", "a tree"], "subjects": "Monet"})
    ps = P.load_pairs(par)
    assert ps.subjects == ["Monet", "Monet"] and ps.sources == ["App. C", "App. C"] and len(ps) == 2


def test_prompts_dir_can_be_overridden(tmp_path, monkeypatch):
    copy = tmp_path / "mine"
    shutil.copytree(DATA, copy)
    text = (copy / "style.yaml").read_text().replace("A house in the style of Van Gogh", "A barn in the style of Van Gogh")
    (copy / "style.yaml").write_text(text)
    monkeypatch.setenv(P.ENV_VAR, str(copy))
    assert P.load_pairs("style").originals[0] == "A barn in the style of Van Gogh"
    assert len(P.load_robustness()) == 320
    monkeypatch.setenv(P.ENV_VAR, str(tmp_path / "nowhere"))
    msg = loco_error(P.load_pairs, "style")
    assert "nowhere" in msg and P.ENV_VAR in msg


# ------------------------------------------------------------------------------------------------
# Errors: each names the file and the entry


def test_missing_field_names_file_and_entry(tmp_path):
    path = pairs_file(tmp_path, [pair(), {"original": "a photo of nemo", "subject": "nemo", "source": "x"}])
    msg = loco_error(P.load_pairs, path)
    assert str(path) in msg and "pairs[1]" in msg and "'a photo of nemo'" in msg and "missing field 'target'" in msg
    path = pairs_file(tmp_path, [{"target": "a fish", "subject": "nemo", "source": "x"}], name="noorig.yaml")
    msg = loco_error(P.load_pairs, path)
    assert str(path) in msg and "pairs[0]" in msg and "missing field 'original'" in msg
    path = pairs_file(tmp_path, [{"original": "nemo", "target": "a fish", "subject": "nemo"}], name="nosource.yaml")
    assert "missing field 'source'" in loco_error(P.load_pairs, path)
    path = write(tmp_path, "noattr.yaml", {"pairs": [pair()]})
    assert str(path) in (msg := loco_error(P.load_pairs, path)) and "missing field 'attribute'" in msg


@pytest.mark.parametrize("field,value", [("original", ""), ("original", "   \t"), ("target", " "), ("subject", "")])
def test_empty_prompt_names_file_and_entry(tmp_path, field, value):
    entries = [pair(), pair("a photo of nemo", "a photo of a fish", "nemo")]
    entries[1][field] = value
    path = pairs_file(tmp_path, entries)
    msg = loco_error(P.load_pairs, path)
    assert str(path) in msg and "pairs[1]" in msg and f"empty '{field}'" in msg
    if field != "original":
        assert "'a photo of nemo'" in msg


def test_subject_must_occur_as_whole_words(tmp_path):
    path = pairs_file(tmp_path, [pair(), pair("a photo of a catapult", "a photo of a dog", "cat")])
    msg = loco_error(P.load_pairs, path)
    assert str(path) in msg and "pairs[1]" in msg and "'a photo of a catapult'" in msg and "'cat'" in msg and "does not occur" in msg
    path = pairs_file(tmp_path, [pair("A House In The Style Of VAN GOGH", "a house", "van gogh")], name="case.yaml")
    assert P.load_pairs(path).subjects == ["van gogh"]  # case-insensitive
    path = pairs_file(tmp_path, [pair("a photo of snoopy", "a photo of a dog", "snoopy", target_subject="cat")], name="ts.yaml")
    assert "target_subject 'cat'" in loco_error(P.load_pairs, path)
    path = pairs_file(tmp_path, [pair("a photo of snoopy", "a photo of snoopy the dog", "snoopy")], name="kept.yaml")
    assert "still contains the subject" in loco_error(P.load_pairs, path)


def test_parallel_lists_must_have_one_length(tmp_path):
    path = write(tmp_path, "par.yaml", {"attribute": "objects", "source": "x", "originals": ["r2d2", "nemo", "snoopy"],
                                        "targets": ["robot", "fish"], "subjects": ["r2d2", "nemo", "snoopy"]})
    msg = loco_error(P.load_pairs, path)
    assert str(path) in msg and "'targets' has 2 entries but 'originals' has 3" in msg
    path = write(tmp_path, "par2.yaml", {"attribute": "objects", "source": "x", "originals": ["r2d2", "nemo"],
                                         "targets": ["robot", "fish"], "subjects": ["r2d2"]})
    assert "'subjects' has 1 entries" in loco_error(P.load_pairs, path)
    path = write(tmp_path, "par3.yaml", {"attribute": "objects", "source": "x", "originals": ["r2d2", "nemo"],
                                         "targets": ["robot", "fish"], "subjects": ["r2d2", "dory"]})
    msg = loco_error(P.load_pairs, path)
    assert "originals[1] ('nemo')" in msg and "'dory' does not occur" in msg
    path = write(tmp_path, "par4.yaml", {"attribute": "objects", "source": "x", "originals": ["r2d2"], "subjects": ["r2d2"]})
    assert "missing field 'targets'" in loco_error(P.load_pairs, path)


def test_unknown_attribute(tmp_path):
    msg = loco_error(P.load_pairs, "colour")
    assert "unknown attribute 'colour'" in msg and "style, objects, facts" in msg
    path = pairs_file(tmp_path, [pair()], attribute="colour")
    msg = loco_error(P.load_pairs, path)
    assert str(path) in msg and "unknown attribute 'colour'" in msg


def test_missing_unreadable_and_invalid_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    msg = loco_error(P.load_pairs, missing)
    assert str(missing) in msg and "does not exist" in msg
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    assert str(folder) in loco_error(P.load_pairs, folder)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert str(binary) in loco_error(P.load_pairs, binary)
    bad = write(tmp_path, "broken.yaml", "attribute: style\npairs:\n  - original: \"unclosed\n    target: x\n")
    msg = loco_error(P.load_pairs, bad)
    assert str(bad) in msg and "invalid YAML" in msg and "line" in msg
    bad = write(tmp_path, "broken.json", '{"attribute": "style", "pairs": [}')
    msg = loco_error(P.load_pairs, bad)
    assert str(bad) in msg and "invalid JSON" in msg
    listed = write(tmp_path, "list.yaml", "- a\n- b\n")
    assert "mapping" in loco_error(P.load_pairs, listed)
    assert "is empty" in loco_error(P.load_pairs, pairs_file(tmp_path, [], name="empty.yaml"))


def test_bad_edit_block_names_concept_and_entry(tmp_path):
    path = pairs_file(tmp_path, [pair()], edits={"nemo": {"keys": [pair("nemo", "fish", "nemo"), pair("a photo of dory", "a fish", "nemo")]}})
    msg = loco_error(P.load_edit, path, "nemo")
    assert str(path) in msg and "edits['nemo'] keys[1]" in msg and "'a photo of dory'" in msg
    path = pairs_file(tmp_path, [pair()], name="e2.yaml", edits={"nemo": {"values": []}})
    assert "missing field 'keys'" in loco_error(P.edit_concepts, path)


def test_bad_artist_study_and_robustness_files(tmp_path):
    path = write(tmp_path, "artists.yaml", {"attribute": "style", "artists": {"Monet": [
        {"original": "a river in the style of Monet", "target": "a river", "subject": "Monet", "source": "x"},
        {"original": "a river in the style of Manet", "target": "a river", "subject": "Monet", "source": "x"}]}})
    msg = loco_error(P.load_artists, path=path)
    assert str(path) in msg and "artists['Monet'] pairs[1]" in msg and "Manet" in msg
    path = write(tmp_path, "study.yaml", {"source": "App. J", "prompts": [{"prompt": "cat", "attribute": "object", "subject": "cat"},
                                                                          {"prompt": "  ", "attribute": "object", "subject": "cat"}]})
    msg = loco_error(P.load_human_study, path)
    assert str(path) in msg and "prompts[1]" in msg and "empty 'prompt'" in msg
    path = write(tmp_path, "study2.yaml", {"source": "App. J", "prompts": [{"prompt": "cat", "attribute": "colour", "subject": "cat"}]})
    assert "prompts[0] ('cat'): unknown attribute 'colour'" in loco_error(P.load_human_study, path)
    grid = {"source": "App. L", "template": "{article} {object} in a {location}", "locations": ["beach"], "classes": ["cat", "dog"]}
    assert P.load_robustness(write(tmp_path, "r.yaml", grid)) == ["a cat in a beach", "a dog in a beach"]
    path = write(tmp_path, "r1.yaml", {**grid, "classes": ["cat", "Cat"]})
    assert "classes[1] ('Cat'): duplicate" in loco_error(P.load_robustness, path)
    path = write(tmp_path, "r2.yaml", {**grid, "template": "a photo of a {thing}"})
    assert str(path) in (msg := loco_error(P.load_robustness, path)) and "{object}" in msg
    path = write(tmp_path, "r3.yaml", {**grid, "classes": ["cat", " "]})
    assert "classes[1]" in loco_error(P.load_robustness, path)
