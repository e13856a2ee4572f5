"""Recorded measurements of the organisms (``data/organism/``): writing them with their provenance,
reading them back, and whether the current code would measure them again (:func:`record_status`).

Kept apart from :mod:`.protocol` on purpose: this module is not part of the code that measures
(:func:`~loco_lib.organism.protocol.measuring_code`), so editing it invalidates no cached or
recorded measurement.
"""
from __future__ import annotations


from ..errors import LocoError
from ..files import write_text
from .protocol import Report, measuring_code, weights_fingerprint


def recorded_dir():
    """``data/organism/``: reports measured once and kept (models whose weights are not shipped, such as
    a second training seed, and runs with more seeds than the book's build)."""
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "data" / "organism"


def two_by_two_dir():
    """``data/organism/two-by-two/``: the DeepFloyd chapter's records (the IF-topology organisms'
    reports, every organism's per-artist windows)."""
    return recorded_dir() / "two-by-two"


def recorded_report(name: str, seeds: int = 2) -> "Report":
    """The recorded report of organism ``name`` with ``seeds`` seeds per prompt (``<name>-<seeds>seeds.json``
    in :func:`recorded_dir` or :func:`two_by_two_dir`)."""
    for folder in (recorded_dir(), two_by_two_dir()):
        path = folder / f"{name}-{seeds}seeds.json"
        if path.is_file():
            return load_report(path)
    raise LocoError(f"no recorded {seeds}-seed report of {name!r}: record it with "
                    f"`loco report {name} --seeds {','.join(map(str, range(seeds)))} --out {two_by_two_dir()}/{name}-{seeds}seeds.json`")


def save_report(rep: "Report", path) -> None:
    """Write a :func:`report` as JSON, with the loco commit that measured it (for a model whose weights
    are not in the repository, e.g. a second training seed: the numbers stay, with their provenance)."""
    save_record({k: v for k, v in rep.to_json().items() if k not in ("computed", "sweeps")}, path)


def save_record(data: dict, path) -> None:
    """Write measured data as JSON with its provenance (``recorded``: loco commit, date, and the content
    key of the model's weights and the measuring code, :func:`weights_fingerprint`), atomically."""
    import datetime
    import subprocess
    from pathlib import Path

    from ..jsonout import dumps

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    keep = dict(data)
    keep["recorded"] = {"loco_commit": commit, "date": datetime.date.today().isoformat()}
    model = data.get("model")
    if model is not None:
        try:
            keep["recorded"]["key"] = weights_fingerprint(model)
        except (LocoError, OSError):
            pass
    write_text(path, dumps(keep, indent=1))


def record_status(path) -> dict:
    """Whether a recorded file in ``data/organism/`` is what the current code would measure again.

    Returns ``commit`` (the loco commit that measured it), ``state`` and ``changed``:

    * ``current``: none of the files the measurement runs (:func:`measuring_code`) nor the model's
      weights differ from that commit (git), or the record's content key equals today's;
    * ``stale``: ``changed`` lists those that differ (the record is stale against ``commit``);
    * ``unknown``: neither git history (a shallow clone) nor a stored key can tell.
    """
    import json
    from pathlib import Path

    from ..fingerprint import ROOT, changed_since
    from .model import organism_folder

    data = json.loads(Path(path).read_text())
    rec = data.get("recorded", {})
    commit, model = rec.get("loco_commit"), data.get("model")
    files = [str(f) for f in measuring_code()]
    try:
        folder = organism_folder(model)
        files += [str(f.relative_to(ROOT)) for f in sorted(folder.glob("*/*.safetensors"))]
        key_now = weights_fingerprint(model)
    except (LocoError, OSError, ValueError):
        key_now = None  # weights not shipped (e.g. a second training seed): the code alone decides
    changed = changed_since(commit, files) if commit else None
    if changed is None:
        if rec.get("key") is not None and key_now is not None:
            return {"commit": commit, "state": "current" if rec["key"] == key_now else "stale", "changed": None}
        return {"commit": commit, "state": "unknown", "changed": None}
    return {"commit": commit, "state": "stale" if changed else "current", "changed": changed}


def load_report(path) -> "Report":
    """A report written by :func:`save_report`; LocoError if the file is not one."""
    import json
    from pathlib import Path

    try:
        rep = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise LocoError(f"cannot read the organism report {str(path)!r}: {exc}") from None
    missing = [k for k in ("model", "seeds", "sample", "locogen", "app_g", "edit", "fact_edit", "neurons", "token_swap")
               if k not in rep]
    if missing:
        raise LocoError(f"{str(path)!r} is not an organism report: no {', '.join(missing)}")
    try:
        return Report.from_json(rep)
    except (KeyError, TypeError, AttributeError) as exc:
        raise LocoError(f"{str(path)!r} is a damaged organism report ({type(exc).__name__}: {exc})") from None


def status_table(paths):
    """:func:`record_status` of several recorded files, one row each: the commit that measured it, its
    date, ``current`` / ``stale`` / ``unknown``, and the measuring files changed since (git)."""
    import json
    from pathlib import Path

    import pandas as pd

    rows = []
    for path in paths:
        path = Path(path)
        st = record_status(path)
        rec = json.loads(path.read_text()).get("recorded", {})
        changed = st["changed"]
        rows.append({"record": path.name, "measured at commit": st["commit"], "date": rec.get("date"),
                     "state": st["state"],
                     "measuring code changed since": "-" if not changed else
                     f"{len(changed)} files: " + ", ".join(Path(c).name for c in changed[:4]) + (" ..." if len(changed) > 4 else "")})
    return pd.DataFrame(rows).set_index("record")
