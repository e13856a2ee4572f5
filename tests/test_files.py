"""Files written whole or not at all (loco_lib.files), the one write path of every cache, record and
saved edit."""
import json

import pytest

from loco_lib import files


def test_a_finished_block_puts_the_file_in_place_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "part.json"
    target.write_text("old")
    with files.replaced(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".tmp") and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # nothing is in place before the block ends
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["part.json"]
    files.write_json(target, {"b": 1, "a": 2})
    assert list(json.loads(target.read_text())) == ["b", "a"]  # the order it went in
    files.write_bytes(tmp_path / "x.bin", b"\x00\x01")
    assert (tmp_path / "x.bin").read_bytes() == b"\x00\x01"


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "part.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with files.replaced(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["part.json"]
    with pytest.raises(TypeError):  # a value json cannot write: nothing is left behind either
        files.write_json(tmp_path / "new.json", {"x": object()})
    assert [p.name for p in tmp_path.iterdir()] == ["part.json"]


def test_two_blocks_put_the_inner_file_in_place_first(tmp_path, monkeypatch):
    """The sweep cache puts an entry's image in place before its record (an entry counts once both are
    there): the inner block is renamed first."""
    import os

    order, real = [], os.replace
    monkeypatch.setattr(files.os, "replace", lambda src, dst: order.append(os.path.basename(dst)) or real(src, dst))
    with files.replaced(tmp_path / "meta.json") as meta, files.replaced(tmp_path / "image.png") as image:
        meta.write_text("{}")
        image.write_bytes(b"png")
    assert order == ["image.png", "meta.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.png", "meta.json"]


def test_temporary_names_differ_between_calls(tmp_path):
    with files.replaced(tmp_path / "a") as one, files.replaced(tmp_path / "a") as two:
        assert one != two
        one.write_text("1")
        two.write_text("2")
    assert (tmp_path / "a").read_text() == "1"  # the outer block ends last
