"""How far the chapters' checked numbers move between machines: the measured spread behind every
tolerance of ``tests/test_chapter_outputs.py`` and of the tests that compare with a kept value.

Each configuration is one execution of the book (``loco reproduce --profile smoke``) under one
instruction set and thread count, with every kept organism measurement measured again (a clone
without ``data/organism/cache``), so that the kept numbers vary as they would if measured on that
machine. The committed expectations (``tests/notebooks``) and kept files (``data/organism/cache``)
are the configuration they were recorded with. For every number of every checked cell the spread
is the largest minus the smallest value over the configurations; for every kept file, the largest
difference of any number in it from the committed file's.

    python tests/spread.py --recorded "native AVX-512, 2 threads" \\
        --run "native AVX-512, 1 thread=/tmp/sp-n1" --run "SSE4.1 (ATen default), 1 thread=/tmp/sp-f1" ...

A run is a repository folder that executed the book into ``_build/src/notebooks`` and measured its
kept files into ``data/organism/cache``. A run in a clone that keeps the committed kept files
(to measure only some again, after deleting them there) counts for a kept file only where its
chapters' records (``*.done.json``, ``kept_measured``) say it measured that file. The kept *trained* edits (``*.safetensors``: ESD-x and
Concept Ablation, :func:`loco_lib.organism.kept.trained`) are copied into a run's clone, not trained
again: every machine reads the committed ones, so the spread the tests need is that of the tables
measured with them; training them again under each configuration would take most of an hour. ``--only CHAPTER`` (repeatable) measures those chapters'
cells and the kept files the runs measured, from runs of the configurations already in
``tests/spread.json`` that executed only them; every other entry stays, and a spread measured
before stays where it was wider. Writes ``tests/spread.json`` (read by the tests) and
``tests/spread.md`` (the table, one row per checked cell and per kept file).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from chapter_outputs import MEANING, SPREAD, SPREAD_FACTOR, cell_id, checked_outputs, split_numbers, tolerance  # noqa: E402


def _kept(folder: Path) -> dict:
    """``{"model/name": path}`` of the kept files under ``folder``, the content key left out of the
    name (``chapters/toy/unet_trace-<key>``, ``toy/locogen-<key>-s0-tNone``)."""
    out = {}
    for p in sorted(folder.rglob("*.json")):
        parts = p.stem.split("-")
        stem = "-".join([parts[0]] + parts[2:])
        out[str(p.relative_to(folder).parent / stem)] = p
    return out


HOW_IT_RAN = ("counter", "seconds")  # a kept trace's record of its run (calls, time): not a result


def _leaves(x, path=""):
    """Every number of a JSON value, by its path (dict keys, list positions)."""
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return {}
    if isinstance(x, (int, float)):
        return {path: float(x)}
    items = ((k, v) for k, v in x.items() if k not in HOW_IT_RAN) if isinstance(x, dict) else enumerate(x)
    out = {}
    for k, v in items:
        out.update(_leaves(v, f"{path}/{k}"))
    return out


def _value(stored):
    """A kept file's measured value: a chapter measurement's ``value`` (not its per-image records,
    whose image hashes differ with every bit), a report part whole."""
    return stored["value"] if isinstance(stored, dict) and "value" in stored and "records" in stored else stored


def _measured(folder: Path) -> set | None:
    """The kept files a run measured itself (its chapters' ``kept_measured``, ``*.done.json``), by
    the name :func:`_kept` gives them; None for a run that left no such record (every file then
    counts as its own)."""
    done = sorted((folder / "_build" / "src" / "notebooks").glob("*.done.json"))
    if not done:
        return None
    names = set()
    for d in done:
        for f in json.loads(d.read_text()).get("kept_measured", []):
            p = Path(f).relative_to("data/organism/cache")
            parts = p.stem.split("-")
            names.add(str(p.parent / "-".join([parts[0]] + parts[2:])))
    return names


def kept_spread(recorded: Path, runs: dict) -> dict:
    """``{"model/name": {"spread": largest |difference| of a number, "numbers": n, "configs": [...]}}``.
    A run counts for a file only if it measured that file (a clone that read the committed file, as
    a run of some chapters in a clone with the kept files does, measured nothing about it)."""
    base = _kept(recorded)
    others = {name: _kept(Path(folder) / "data" / "organism" / "cache") for name, folder in runs.items()}
    measured = {name: _measured(Path(folder)) for name, folder in runs.items()}
    table = {}
    for name, path in base.items():
        ref = _leaves(_value(json.loads(path.read_text())))
        worst, seen, differs = 0.0, [], []
        for config, files in others.items():
            if name not in files or (measured[config] is not None and name not in measured[config]):
                continue
            got = _leaves(_value(json.loads(files[name].read_text())))
            if set(got) != set(ref):
                differs.append(config)
                continue
            seen.append(config)
            worst = max([worst] + [abs(got[k] - ref[k]) for k in ref if ref[k] == ref[k] and got[k] == got[k]])
        table[name] = {"spread": worst, "numbers": len(ref), "configs": seen, "layout differs": differs}
    return table


def cell_spread(expectations: Path, runs: dict, only=()) -> tuple[dict, list]:
    """Per chapter and checked cell: the spread of each printed number over the expectation and the runs
    (``only``: these chapters)."""
    cells, notes = {}, []
    for nb in sorted(expectations.glob("*.ipynb")):
        chapter = nb.stem
        if only and chapter not in only:
            continue
        outputs = {"recorded": dict(checked_outputs(nb))}
        for config, folder in runs.items():
            executed = Path(folder) / "_build" / "src" / "notebooks" / nb.name
            if executed.exists():
                outputs[config] = dict(checked_outputs(executed))
        for src, text in outputs["recorded"].items():
            skeleton, numbers = split_numbers(text)
            values = [[float(x)] for x in numbers]
            seen, differs = ["recorded"], []
            for config, out in outputs.items():
                if config == "recorded" or src not in out:
                    continue
                sk, nums = split_numbers(out[src])
                if sk != skeleton or len(nums) != len(numbers):
                    differs.append(config)
                    continue
                seen.append(config)
                for v, x in zip(values, nums):
                    v.append(float(x))
            spread = [max(v) - min(v) for v in values]
            head = src.splitlines()[1] if len(src.splitlines()) > 1 else src
            cells.setdefault(chapter, {})[cell_id(src)] = {
                "head": head[:80], "spread": spread, "configs": seen, "text differs": differs,
                "meaning only": MEANING in src, "numbers": numbers}
            if differs:
                notes.append(f"{chapter}: `{head[:60]}`: text differs in {', '.join(differs)}")
    return cells, notes


def markdown(cells: dict, kept: dict, configs: list, notes: list, ulps: dict | None = None) -> str:
    lines = ["# Measured spread of the checked results", "",
             "Written by `python tests/spread.py` (its docstring says how). Configurations:", ""]
    lines += [f"- {c}" for c in configs]
    lines += ["", f"A number's tolerance is {SPREAD_FACTOR} x its spread, plus one unit of its last printed digit "
              "when it is printed with decimals or its spread is not 0 (`tests/chapter_outputs.py`, `tolerance`). "
              "Cells marked `# LOCO_CHECK: meaning` (random-weight twins) are compared as text with their numbers "
              "free.", "",
              "## Checked cells", "",
              "| chapter | cell | numbers | numbers that moved | largest spread | its values' tolerance | configurations |",
              "|---|---|---|---|---|---|---|"]
    for chapter, entries in cells.items():
        for entry in entries.values():
            spread, numbers = entry["spread"], entry["numbers"]
            moved = sum(s > 0 for s in spread)
            i = max(range(len(spread)), key=lambda j: spread[j]) if spread else None
            worst = f"{spread[i]:.3g} (at {numbers[i]})" if i is not None else "-"
            tol = f"{tolerance(numbers[i], spread[i]):.3g}" if i is not None else "-"
            if entry["meaning only"]:
                tol = "numbers free (twin)"
            head = entry["head"].replace("|", "\\|").replace("`", "'")
            configs = str(len(entry["configs"])) + (f", text differs in {len(entry['text differs'])}" if entry["text differs"] else "")
            lines.append(f"| {chapter} | `{head[:60]}` | {len(numbers)} | {moved} | {worst} | {tol} | {configs} |")
    lines += ["", "## Kept measurements (`data/organism/cache`), measured again in each configuration", "",
              "| file | numbers | largest difference from the committed file | configurations |", "|---|---|---|---|"]
    for name, entry in kept.items():
        extra = f", layout differs in {len(entry['layout differs'])}" if entry["layout differs"] else ""
        lines.append(f"| {name} | {entry['numbers']} | {entry['spread']:.3g} | {len(entry['configs'])}{extra} |")
    if ulps:
        from floats import ULPS

        lines += ["", "## Batched against split (`tests/floats.py`)", "",
                  f"Every comparison of results that differ only in the order of their sums (a batch against single "
                  f"runs, a split against one batch, a batched trace against its loop), as float32 ulps of the largest "
                  f"magnitude; the tests allow {ULPS}.", "",
                  "| configuration | comparisons | largest (ulps) |", "|---|---|---|"]
        lines += [f"| {c} | {e['comparisons']} | {e['largest']:.1f} |" for c, e in ulps.items()]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recorded", required=True, help="what the committed expectations were recorded under")
    ap.add_argument("--run", action="append", default=[], metavar="DESCRIPTION=FOLDER")
    ap.add_argument("--ulps", action="append", default=[], metavar="DESCRIPTION=LOG",
                    help="a LOCO_ULPS_LOG written by the batched-vs-split tests (tests/floats.py) under one configuration")
    ap.add_argument("--out", default=str(SPREAD))
    ap.add_argument("--only", action="append", default=[], metavar="CHAPTER",
                    help="measure these chapters' cells (e.g. 03_locogen) and the kept files their runs measured; keep "
                         "every other entry of the existing --out (the runs then need to have executed only these)")
    args = ap.parse_args(argv)
    runs = dict(r.rsplit("=", 1) for r in args.run)  # the folder follows the last "="
    cells, notes = cell_spread(HERE / "notebooks", runs, only=args.only)
    kept = kept_spread(ROOT / "data" / "organism" / "cache", runs)
    configs = [f"recorded: {args.recorded} (`tests/notebooks`, `data/organism/cache`)"] + [f"{c}" for c in runs]
    ulps = {}
    for item in args.ulps:
        description, log = item.rsplit("=", 1)
        ratios = [float(x) for x in Path(log).read_text().split()]
        ulps[description] = {"comparisons": len(ratios), "largest": max(ratios, default=0.0)}
    if args.only:  # merge: the other chapters, kept files and measurements stay as they were measured
        old = json.loads(Path(args.out).read_text())

        def wider(new, before):  # a spread measured before stays unless this one is wider
            if before is None:
                return new
            if isinstance(new["spread"], list):
                if len(before["spread"]) == len(new["spread"]):
                    new["spread"] = [max(a, b) for a, b in zip(new["spread"], before["spread"])]
            else:
                new["spread"] = max(new["spread"], before["spread"])
            return new

        measured_kept = {k: wider(v, old["kept"].get(k)) for k, v in kept.items() if v["configs"]}
        for c in cells:
            cells[c] = {cid: wider(e, old["cells"].get(c, {}).get(cid)) for cid, e in cells[c].items()}
        cells = {c: (cells[c] if c in cells else old["cells"].get(c, {})) for c in dict.fromkeys([*old["cells"], *cells])}
        kept = {**old["kept"], **measured_kept}
        missing = [c for c in runs if c not in " ".join(old["configs"])]
        if missing:
            raise SystemExit(f"--only merges runs of the configurations already measured; new: {', '.join(missing)}")
        configs, ulps = old["configs"], old.get("ulps", {})
    out = Path(args.out)
    out.write_text(json.dumps({"configs": configs, "factor": SPREAD_FACTOR, "cells": cells, "kept": kept, "ulps": ulps},
                              indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(cells, kept, configs, notes, ulps))
    print(f"wrote {out} and {out.with_suffix('.md')}: {sum(len(c) for c in cells.values())} checked cells, {len(kept)} kept files")
    for n in notes:
        print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
