"""One command that re-runs the book: every chapter executed with papermill into a run folder, then
the Jupyter Book built from those executions (``loco reproduce``; ``make book`` is its smoke profile).

Profiles:

* ``smoke``: every chapter with its own defaults (the model organisms, reduced steps), as the book
  is built in CI;
* ``paper``: the chapters on a real model (``--model``, default ``sd15``) with the settings the
  paper or the authors' code state, and loco's for the rest (:data:`PROFILES` lists each one).

Every scored image of a chapter is one row of ``<out>/records/<chapter>.csv`` (:mod:`loco_lib.runlog`:
model and revision, prompt, seed, window or edit, metric and revision, score, image sha256). A
chapter's execution is kept as ``<out>/src/notebooks/<chapter>.ipynb`` with a small record of what
produced it (``<chapter>.done.json``: a content key of the chapter, its parameters and the code and
data it reads, and how long it ran). A rerun skips every chapter whose key is unchanged, so an
interrupted run resumes where it stopped. A chapter that fails stops the run with one line naming
the chapter and the cell; its partial execution is kept as ``<chapter>.failed.ipynb``.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import LocoError
from .files import write_json

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

# Parameters per profile and chapter ("*": every chapter that has the parameter). `paper` sets the
# real model and the settings the paper or the authors' public code state; the rest stays loco's.
# PAPER marks a value that depends on the model (and the chapter's attribute): :func:`plan` takes it
# from :mod:`loco_lib.paper` after the ``--param`` values are in, so ``--param ATTRIBUTE=objects``
# also gives chapter 03 the objects window size.
PAPER = "<from loco_lib.paper>"
PROFILES = {
    "smoke": {},
    "paper": {
        "*": {"STEPS": PAPER, "GUIDANCE": PAPER},  # paper.sampling(model)
        "01_model_organism": None,  # the organisms only: not part of the paper profile
        # one real model per run, every encoder of it; the paper's UNet states (the poster's 70 / 227); App. A's prompt;
        # 2 prompts x 2 seeds (the paper states neither: loco's choice, a quarter of the organisms' 16 images per trace)
        "02_causal_tracing": {"OTHER_MODEL": None, "UNET_STATES": "paper", "ENCODERS": None,
                              "PANEL": ["A cat in a beach", "cat"], "N_PROMPTS": 2, "SEEDS": [0, 1]},
        "03_locogen": {"N_PROMPTS": 10_000, "M": PAPER, "OTHER_MODEL": None},  # every pair of the prompt file (App. C); m of Fig. 5
        "05_neuron_editing": {"KS": [0, 30, 50, 100]},  # Sec. 7, Fig. 10
        # the organisms' 2x2 design and the real IF beside SD-1.5 (Sec. 5.2, App. M): with --model deepfloyd-if only
        "06_deepfloyd_t5": {"IF_MODEL": "deepfloyd-if", "CLIP_MODEL": "sd15", "IF_STEPS": PAPER, "IF_M": PAPER,
                            "STEPS": None, "GUIDANCE": None},  # the organisms' and SD-1.5's own defaults
        # Table 1's 320 generic prompts; the side-by-side and multi-concept tables on their first seed only (further
        # seeds would double the chapter's GPU time on a real model; loco's choice, SPREAD_SEEDS is the organism's)
        "07_robustness_and_baselines": {"PROFILE": "paper", "SPREAD_SEEDS": []},
        "09_diffusion_transformers": None,  # the paper has no DiT: the organisms and the DiT twins only
    },
}
ONLY_WITH = {"paper": {"06_deepfloyd_t5": ("deepfloyd-if",)}}  # chapters a profile runs only for these models


def _from_paper(name: str, model: str, params: dict, chapter: str):
    """The value of a PAPER parameter for ``model`` (:mod:`loco_lib.paper`)."""
    from . import paper

    if name == "M":
        return paper.window_size(model, params.get("ATTRIBUTE", parameter_defaults(chapter).get("ATTRIBUTE", "style")))
    if name == "IF_M":
        return paper.window_size("deepfloyd-if", "style")
    if name in ("STEPS", "GUIDANCE"):
        return paper.sampling(model)[name.lower()]
    if name == "IF_STEPS":
        return paper.sampling("deepfloyd-if")["steps"]
    raise LocoError(f"no paper value for the parameter {name}")


# How a CPU that is not this one computes: the instruction set ATen, MKL and oneDNN may use. Other
# CPUs give other float bits (vector widths change the order of sums); `loco reproduce --foreign-cpu`
# runs every chapter's kernel under the set below, so the checked results (``make test``) meet bits
# they were not recorded with.
ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")
FOREIGN_ISAS = {  # this CPU's capability -> a lower one it can still run
    "AVX512": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
BASELINE_ISA = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def foreign_cpu(capability: str | None = None) -> dict:
    """Environment variables under which this machine computes like another CPU: an AVX-512 machine
    as an AVX2 one (as fast), any other as a machine without vector extensions past SSE4.1 (slower).
    ``capability``: ``torch.backends.cpu.get_cpu_capability()`` of this process by default."""
    if capability is None:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    return dict(FOREIGN_ISAS.get(str(capability).upper(), BASELINE_ISA))


def cpu_setting() -> dict:
    """The instruction-set and thread variables of this process's environment that change a
    chapter's float bits (part of its key: an execution under another setting is not reused)."""
    names = ISA_VARIABLES + ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    return {k: os.environ[k] for k in names if os.environ.get(k)}


def _kept_files() -> dict:
    """``{path relative to the repository: bytes' sha1}`` of every file in ``data/organism/cache``."""
    import hashlib

    folder = ROOT / "data" / "organism" / "cache"
    return {str(p.relative_to(ROOT)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.json"))} if folder.exists() else {}


def kept_changes(before: dict, after: dict, log_path=None) -> list[str]:
    """One line per kept file a chapter wrote, replaced or removed (the committed measurements of
    ``data/organism/cache``), with the reason :func:`loco_lib.organism.kept.measure` gave in its log
    (``log_path``, JSON lines) where it gave one, else the measuring code that changed since the
    last commit (by git)."""
    said = {}
    if log_path is not None and Path(log_path).exists():
        for line in Path(log_path).read_text().splitlines():
            entry = json.loads(line)
            if entry.get("measured"):
                olds = entry.get("replaces", [])
                said[entry["file"]] = (f"replaces {', '.join(Path(o).name for o in olds)}; " if olds else "") + entry.get("why", "")
                for old in olds:
                    said[old] = None  # told with the file that replaces it
    lines = []
    new = [f for f in after if f not in before or after[f] != before[f]]
    gone = [f for f in before if f not in after]
    for f in new:
        if f in said:
            lines.append(f"kept measurement {f} {'rewritten' if f in before else 'written'}: {said[f]}; commit it")
        else:
            lines.append(f"kept measurement {f} {'rewritten' if f in before else 'written'}: {_organism_why()}; commit it")
    for f in gone:
        if said.get(f, "") is None:
            continue
        lines.append(f"kept measurement {f} removed (a file of the same measurement with another key replaces it); commit it")
    return lines


def _organism_why() -> str:
    """Why a kept file was written without :func:`loco_lib.organism.kept.measure` saying why (an
    organism report part, keyed by the organism's weights and measuring code): what changed under
    ``loco_lib`` and ``models`` since the last commit, by git."""
    from .fingerprint import changed_since

    changed = changed_since("HEAD", ["loco_lib", "models"])
    if changed:
        return "its content key is new; changed since the last commit: " + ", ".join(changed[:4])
    if changed is None:
        return "its content key is new (git cannot say what changed)"
    return "its content key is new although no code or weight file changed since the last commit"


def chapters() -> list[str]:
    return sorted(p.stem for p in NOTEBOOKS.glob("[0-9]*.py"))


def parameters_of(chapter: str) -> set[str]:
    """The names assigned in a chapter's ``parameters`` cell."""
    import ast

    import jupytext

    for cell in jupytext.read(NOTEBOOKS / f"{chapter}.py").cells:
        if "parameters" in cell.metadata.get("tags", []):
            tree = ast.parse(cell.source)
            return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    raise LocoError(f"notebooks/{chapter}.py has no parameters cell")


def parameter_defaults(chapter: str) -> dict:
    """The values a chapter's ``parameters`` cell assigns (those Python can read as literals)."""
    import ast

    import jupytext

    for cell in jupytext.read(NOTEBOOKS / f"{chapter}.py").cells:
        if "parameters" in cell.metadata.get("tags", []):
            out = {}
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    try:
                        out[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        pass
            return out
    raise LocoError(f"notebooks/{chapter}.py has no parameters cell")


def plan(profile: str = "smoke", model: str | None = None, only=None, extra: dict | None = None) -> dict:
    """``{chapter: parameters}`` for a profile (chapters the profile leaves out are absent). A
    ``PAPER`` value is resolved for the run's model after ``extra`` (the ``--param`` values) is in."""
    if profile not in PROFILES:
        raise LocoError(f"unknown profile {profile!r}: use {' or '.join(PROFILES)}")
    names = chapters()
    if only:
        unknown = [c for c in only if not any(n == c or n.startswith(f"{c}_") for n in names)]
        if unknown:
            raise LocoError(f"unknown chapter {unknown[0]!r}: chapters are {', '.join(names)}")
        names = [n for n in names if any(n == c or n.startswith(f"{c}_") for c in only)]
    rules = PROFILES[profile]
    run_model = model or ("sd15" if profile == "paper" else None)
    out = {}
    for name in names:
        if name in rules and rules[name] is None:
            continue
        if name in ONLY_WITH.get(profile, {}) and run_model not in ONLY_WITH[profile][name]:
            continue
        allowed = parameters_of(name)
        params = {k: v for k, v in {**rules.get("*", {}), **(rules.get(name) or {})}.items() if k in allowed}
        if run_model is not None and "MODEL" in allowed:
            params["MODEL"] = run_model
        for k, v in (extra or {}).items():
            if k not in allowed:
                continue
            params[k] = v
        for k, v in params.items():
            if v == PAPER:
                params[k] = _from_paper(k, run_model, params, name)
        out[name] = params
    return out


# The paper's figures and tables, the chapter that makes each, and what it needs (the page
# "Reproduce the paper" prints this table).
FIGURES = [
    ("Fig. 2, 11-13: causal tracing in the UNet, the paper's states, App. A's panel", "02_causal_tracing",
     "MODEL, UNET_STATES='paper', PANEL"),
    ("Fig. 3: causal tracing in the text encoders (SD-XL's alone and together)", "02_causal_tracing", "MODEL, ENCODERS"),
    ("Fig. 4, 5, 14-40: LocoGen windows per model and attribute", "03_locogen", "MODEL, ATTRIBUTE, M"),
    ("App. G, Fig. 55, 56: choosing m (Sec. 5.1.2's rule and App. G's growth and local search)", "03_locogen",
     "MODEL, M, THRESHOLD"),
    ("Fig. 6, 8, 46-53: LocoEdit of style, objects, facts", "04_locoedit", "MODEL, ATTRIBUTE, CONCEPT"),
    ("App. F, Fig. 54: all layers vs the window", "04_locoedit", "LAYERS='all'"),
    ("App. L, Table 1: generic prompts", "07_robustness_and_baselines", "PROFILE='paper'"),
    ("App. I, Fig. 57: baselines (DiffQuickFix, ESD-x, Concept Ablation; UCE as loco's addition)",
     "07_robustness_and_baselines", "MODEL, FINETUNE"),
    ("Sec. 7, Fig. 9, 10, 59, 60: neuron editing", "05_neuron_editing", "MODEL, ARTIST, KS"),
    ("Sec. 5.2, Fig. 7, 40: DeepFloyd's prompt-dependent windows", "06_deepfloyd_t5", "IF_MODEL, IF_M"),
    ("App. M, Fig. 61, 62: DeepFloyd's edit and T5's attention", "06_deepfloyd_t5", "IF_MODEL, CLIP_MODEL"),
    ("Sec. 5.2, App. J, Fig. 58: the human study's pairs (clean vs LocoGen-altered) and rating viewer",
     "07_robustness_and_baselines", "STUDY_SEEDS, RATE=True"),
]


def figures_table():
    """:data:`FIGURES` as a table: figure or table, chapter, the parameters to set, and the command."""
    import pandas as pd

    rows = []
    for what, chapter, params in FIGURES:
        models = ONLY_WITH["paper"].get(chapter)
        command = f"loco reproduce --profile paper --model {models[0] if models else 'MODEL'} --chapters {chapter[:2]}"
        rows.append({"figure / table": what, "chapter": chapter, "set": params, "command": command})
    return pd.DataFrame(rows)


def paper_settings_table():
    """What ``loco reproduce --profile paper --model M`` gives each real model of the paper (the
    chapters' plans, :func:`plan`): sampler, steps, guidance and size, chapter 03's window size m per
    attribute and, where the paper states a second m, the ``--param`` that runs it."""
    import pandas as pd

    from . import paper

    rows = []
    for model in paper.LOCATIONS:
        todo = plan("paper", model)
        s = paper.sampling(model)
        row = {"model": model, "sampler": s["sampler"], "steps": todo["03_locogen"]["STEPS"],
               "guidance": todo["03_locogen"]["GUIDANCE"], "size (px)": s["size"]}
        others = []
        for attr in ("style", "objects", "facts"):
            row[f"m {attr}"] = plan("paper", model, ["03"], {"ATTRIBUTE": attr})["03_locogen"]["M"]
            other = paper.other_window_size(model, attr)
            if other:
                others.append(f"{attr}: --param ATTRIBUTE={attr} --param M={other[0]} ({other[1]})")
        row["the paper's other m"] = "; ".join(others) or "-"
        row["chapter 06"] = (f"IF_M={todo['06_deepfloyd_t5']['IF_M']}, IF_STEPS={todo['06_deepfloyd_t5']['IF_STEPS']}"
                             if "06_deepfloyd_t5" in todo else "not run")
        row["where"] = s["where"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def run_records(out) -> "object":
    """The records of a run folder (``<out>/src/notebooks/*.done.json``): chapter, profile, parameters,
    seconds. An empty table when the folder holds none."""
    import pandas as pd

    rows = []
    for path in sorted((Path(out) / "src" / "notebooks").glob("*.done.json")):
        rec = json.loads(path.read_text())
        rows.append({"chapter": path.name[: -len(".done.json")], "profile": rec.get("profile"),
                     "parameters": json.dumps(rec.get("parameters", {})), "seconds": rec.get("seconds"),
                     "CPU instruction set": (rec.get("cpu") or {}).get("ATEN_CPU_CAPABILITY", "native"),
                     "kept read": rec.get("kept_read"), "kept measured": len(rec.get("kept_measured", []))})
    return pd.DataFrame(rows, columns=["chapter", "profile", "parameters", "seconds", "CPU instruction set", "kept read",
                                       "kept measured"])


SPREAD = ROOT / "tests" / "spread.json"


def spread_table(path=None):
    """The measured spread of the chapters' checked numbers (``tests/spread.json``, written by
    ``tests/spread.py``), one row per chapter: checked cells, the numbers they print, how many moved
    between the configurations, the largest move; ``attrs["configurations"]`` names them. A cell of a
    random-weight twin (numbers not compared) is counted apart."""
    import pandas as pd

    data = json.loads(Path(path or SPREAD).read_text())
    rows = []
    for chapter, cells in data["cells"].items():
        compared = [c for c in cells.values() if not c["meaning only"]]
        spreads = [x for c in compared for x in c["spread"]]
        rows.append({"chapter": chapter, "checked cells": len(cells), "twin cells (numbers free)": len(cells) - len(compared),
                     "numbers compared": len(spreads), "numbers that moved": sum(x > 0 for x in spreads),
                     "largest move": max(spreads, default=0.0)})
    table = pd.DataFrame(rows).set_index("chapter")
    table.attrs["configurations"] = data["configs"]
    table.attrs["factor"] = data["factor"]
    return table


def _inputs_key(chapter: str, params: dict, out=None) -> str:
    """What a chapter's execution depends on: its source, its parameters, the library's code (by
    syntax tree) and the data and model records it reads; for a chapter with a ``RUN_DIR``
    parameter (it reads the run's records) also the records of the other chapters of ``out``."""
    import hashlib

    from .fingerprint import content_key

    source = hashlib.sha1((NOTEBOOKS / f"{chapter}.py").read_bytes()).hexdigest()
    files = sorted((ROOT / "loco_lib").rglob("*.py"))
    files += sorted(p for p in (ROOT / "data").rglob("*") if p.is_file() and "cache" not in p.relative_to(ROOT / "data").parts)
    files += sorted((ROOT / "models").glob("*/training.json")) + sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    if SPREAD.exists() and "spread_table" in (NOTEBOOKS / f"{chapter}.py").read_text():  # the page that shows it
        files.append(SPREAD)
    if out is not None and "RUN_DIR" in parameters_of(chapter):
        for p in sorted((Path(out) / "src" / "notebooks").glob("*.done.json")):
            if not p.name.startswith(chapter):
                source += hashlib.sha1(p.read_bytes()).hexdigest()
    return content_key(files, extra=source + json.dumps(params, sort_keys=True) + json.dumps(cpu_setting(), sort_keys=True), n=16)


def launcher(processes: int) -> list[str]:
    """The command that starts ``processes`` copies of a Python module on this machine: ``accelerate
    launch --multi_gpu`` with CUDA, else ``torchrun --standalone`` (the launcher accelerate itself
    runs), whose processes share the work over Gloo on the CPU."""
    import sys

    import torch

    if torch.cuda.is_available():
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]


def prefill(chapter: str, prepared, processes: int, log=print) -> float:
    """Run a chapter's code (``prepared``: its notebook with the parameters already injected) in
    ``processes`` processes, so that its LocoGen sweeps and traces split their jobs over the GPUs
    (:mod:`loco_lib.parallel`) and land in their caches; the papermill run that follows reads them.
    Returns the seconds it took; a failure is a one-line LocoError naming the chapter."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("LOCO_RECORDS", "LOCO_CHAPTER")}  # the papermill run records
    env.update(LOCO_PROGRESS="0", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    t0 = time.perf_counter()
    log(f"{chapter}: sweeps split over {processes} processes")
    proc = subprocess.run([*launcher(processes), "-m", "loco_lib.reproduce", str(prepared)], cwd=NOTEBOOKS, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("loco: error:")]
        first = [line for line in errors if " in process " not in line]  # the first process's, when it has one
        last = (first or errors)[-1] if errors else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise LocoError(f"chapter {chapter} failed in its {processes}-process run: {last[:300]}")
    return time.perf_counter() - t0


def run_cells(path) -> None:
    """Execute the code cells of a notebook in this process, in order, in one IPython namespace (the
    body of :func:`prefill`'s processes); only the first process prints."""
    import contextlib

    import matplotlib
    import nbformat

    matplotlib.use("Agg")
    from IPython.core.interactiveshell import InteractiveShell

    from . import parallel

    shell = InteractiveShell.instance()
    cells = [c for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code"]
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        for i, cell in enumerate(cells, start=1):
            result = shell.run_cell(cell.source, store_history=False, silent=True)
            if not result.success:
                exc = result.error_in_exec or result.error_before_exec
                raise LocoError(f"code cell {i} ({type(exc).__name__}: {str(exc).strip()[:200]})"
                                + ("" if parallel.world().main else f" in process {parallel.world().index}"))


def run(profile: str = "smoke", out=None, model: str | None = None, only=None, extra: dict | None = None,
        book: bool = True, log=print, processes: int = 1, foreign_cpu_isa: bool = False) -> dict:
    """Execute the chapters of ``profile`` into ``out`` (default ``runs/<profile>``) and build the book
    there (``<out>/html``). Returns ``{chapter: "ran" | "kept"}``. Raises a one-line LocoError naming
    the chapter and cell when a chapter fails. ``processes`` > 1 (one per GPU): each chapter first
    runs in that many processes (:func:`prefill`), which share its sweeps and traces and fill their
    caches, then once with papermill, which reads them. ``foreign_cpu_isa``: every chapter runs under
    :func:`foreign_cpu`'s instruction set (its kernels and split processes inherit it), as on another
    machine.

    A chapter that measures a kept organism measurement again (a file of ``data/organism/cache``
    written, replaced or removed) says so in one line per file, with the reason; its record
    (``<chapter>.done.json``) counts the kept measurements read and lists those measured."""
    if foreign_cpu_isa:
        with _environment(**foreign_cpu()):
            return run(profile, out, model, only, extra, book, log, processes)
    if not isinstance(processes, int) or processes < 1:
        raise LocoError(f"processes must be a whole number from 1, not {processes!r}")
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = Path(out) if out is not None else ROOT / "runs" / profile
    todo = plan(profile, model, only, extra)
    if profile == "paper":  # say what each chapter needs of a GPU before any runs
        record = json.loads(FULL_SIZE_RECORD.read_text()) if FULL_SIZE_RECORD.exists() else None
        for chapter, params in todo.items():
            need = gpu_need(record, chapter, params.get("MODEL", ""))
            if need:
                log(f"{chapter}: {params['MODEL']} ({need['methods']}) needs a GPU that holds {need['fp16 weights (GB)']} GB "
                    f"of half-precision weights, plus the activations and the CLIP scorer: at least a {need['smallest GPU for the weights']}")
            elif chapter in CHAPTER_METHODS:
                log(f"{chapter}: no full-size memory record for {params.get('MODEL')!r}; its GPU need is not measured")
    target = out / "src" / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    status = {}
    for chapter, params in todo.items():
        done_file, executed = target / f"{chapter}.done.json", target / f"{chapter}.ipynb"
        if "RUN_DIR" in parameters_of(chapter):
            params = {**params, "RUN_DIR": os.path.relpath(out.resolve(), NOTEBOOKS)}  # the chapters run in notebooks/
        key = _inputs_key(chapter, params, out)
        if executed.exists() and done_file.exists() and json.loads(done_file.read_text()).get("key") == key:
            status[chapter] = "kept"
            log(f"{chapter}: finished before, kept")
            continue
        source = target / f".{chapter}.source.ipynb"
        nb = jupytext.read(NOTEBOOKS / f"{chapter}.py")
        nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
        nb.metadata.setdefault("language_info", {"name": "python"})
        jupytext.write(nb, str(source))
        partial = target / f".{chapter}.partial.ipynb"
        t0 = time.perf_counter()
        log(f"{chapter}: running" + (f" with {params}" if params else ""))
        split = None
        if processes > 1:
            prepared = target / f".{chapter}.prepared.ipynb"
            papermill.execute_notebook(str(source), str(prepared), parameters=params, prepare_only=True,
                                       kernel_name="python3", progress_bar=False, log_output=False)
            try:
                split = round(prefill(chapter, prepared, processes, log), 1)
            finally:
                prepared.unlink(missing_ok=True)
                if split is None:
                    source.unlink(missing_ok=True)
        records = out / "records" / f"{chapter}.csv"
        records.unlink(missing_ok=True)
        kept_log = target / f".{chapter}.kept.jsonl"
        kept_log.unlink(missing_ok=True)
        kept_before = _kept_files()
        try:
            with _environment(LOCO_PROGRESS="0", LOCO_RECORDS=str(records.resolve()), LOCO_CHAPTER=chapter,
                              LOCO_KEPT_LOG=str(kept_log.resolve())):
                papermill.execute_notebook(str(source), str(partial), parameters=params, kernel_name="python3",
                                           cwd=str(NOTEBOOKS), progress_bar=False, log_output=False)
        except PapermillExecutionError as exc:
            failed = target / f"{chapter}.failed.ipynb"
            os.replace(partial, failed)
            raise LocoError(f"chapter {chapter} failed at cell {exc.exec_count} ({exc.ename}: {str(exc.evalue).strip()[:200]}); "
                            f"its partial run is {failed}; finished chapters are kept in {out}, and the same command "
                            "resumes after the fix") from None
        finally:
            source.unlink(missing_ok=True)
        if set(params) == {"RUN_DIR"}:  # the run folder is plumbing, not a setting a reader chose: not shown
            _hide_injected_cell(partial)
        os.replace(partial, executed)
        (target / f"{chapter}.failed.ipynb").unlink(missing_ok=True)
        seconds = time.perf_counter() - t0
        changes = kept_changes(kept_before, _kept_files(), kept_log)
        for line in changes:
            log(f"{chapter}: {line}")
        entries = [json.loads(x) for x in kept_log.read_text().splitlines()] if kept_log.exists() else []
        kept_log.unlink(missing_ok=True)
        record = {"key": key, "profile": profile, "parameters": params, "seconds": round(seconds, 1),
                  "cpu": cpu_setting(), "kept_read": sum(not e["measured"] for e in entries),
                  "kept_measured": [e["file"] for e in entries if e["measured"]], "kept_changes": changes}
        if split is not None:
            record.update(processes=processes, split_seconds=split)
        write_json(done_file, record)
        status[chapter] = "ran"
        log(f"{chapter}: done in {seconds:.0f} s")
    if book:
        from .fingerprint import content_key

        keys = "".join(json.loads((target / f"{c}.done.json").read_text())["key"] for c in todo)
        book_key = content_key(sorted((ROOT / "book").rglob("*.*")) + [ROOT / "_config.yml", ROOT / "_toc.yml"], extra=keys)
        stamp = out / "html" / ".loco-book-key"
        if stamp.exists() and stamp.read_text() == book_key:
            log("book: unchanged, kept")
        else:
            build_book(out, list(todo))
            stamp.write_text(book_key)
            log(f"book: {out / 'html' / 'index.html'}")
    return status


@contextmanager
def _environment(**values):
    """``os.environ`` with ``values`` set for the block, as it was after it (the kernels papermill starts inherit it)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _hide_injected_cell(path) -> None:
    """Tag papermill's injected parameters cell ``remove-cell`` (Jupyter Book leaves it out)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, str(path))


def build_book(out, chapters_run=None) -> Path:
    """Build the Jupyter Book from the executions in ``<out>/src/notebooks`` into ``<out>/html``."""
    import subprocess
    import sys

    import yaml

    out = Path(out)
    src = out / "src"
    shutil.rmtree(src / "book", ignore_errors=True)
    shutil.copytree(ROOT / "book", src / "book")
    shutil.copy(ROOT / "_config.yml", src / "_config.yml")
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    if chapters_run is not None:  # a partial profile: only the chapters it ran, and the book's own pages
        toc["chapters"] = [c for c in toc["chapters"]
                           if not c["file"].startswith("notebooks/") or Path(c["file"]).name in set(chapters_run)]
    (src / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    jb = Path(sys.executable).with_name("jupyter-book")
    build = out / ".jupyter-book"
    run = subprocess.run([str(jb), "build", str(src), "--path-output", str(build), "-W", "-n", "--keep-going"],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise LocoError(f"the book build failed (jupyter-book): {(run.stdout + run.stderr).strip().splitlines()[-1]}")
    html = out / "html"
    shutil.rmtree(html, ignore_errors=True)
    os.replace(build / "_build" / "html", html)
    return html


GPUS = {"T4 (16 GB)": 16, "A100 (40 GB)": 40}


def memory_table(record: dict):
    """The full-size record of ``benchmarks/full_size.py`` as one row per model and method: parameters
    (all components), the half-precision weights (2 bytes per parameter: exact), the peak resident
    memory measured on the CPU (in the record's dtype, size and steps), and whether the half-precision
    weights alone fit each GPU of :data:`GPUS` (activations at 512 or 1024 px are not in the record)."""
    import pandas as pd

    dtype = {"float32": "fp32", "bfloat16": "bf16"}.get(record.get("dtype", "float32"), record.get("dtype"))
    rows = []
    for model, methods in record["results"].items():
        for method, r in methods.items():
            params = sum(r["parameters"].values())
            fp16 = params * 2 / 2**30
            rows.append({"model": model, "method": method, "parameters (M)": round(params / 1e6),
                         "fp16 weights (GB)": round(fp16, 1), f"CPU peak, {dtype} (GB)": round(r["peak_rss_gb"], 1),
                         **{f"weights fit {g}": "yes" if fp16 < gb else "no" for g, gb in GPUS.items()}})
    return pd.DataFrame(rows).set_index(["model", "method"])


if __name__ == "__main__":  # one process of prefill(): python -m loco_lib.reproduce NOTEBOOK
    import sys

    try:
        run_cells(sys.argv[1])
    except LocoError as exc:
        print(f"loco: error: {exc}", file=sys.stderr)
        sys.exit(2)


# What each chapter of the paper profile runs on the real model, by the method names of the full-size
# record (benchmarks/full_size.py); SD-1.4 and OpenJourney have SD-1.5's architecture (tested).
CHAPTER_METHODS = {"02_causal_tracing": ("trace",), "03_locogen": ("locogen",), "04_locoedit": ("locoedit",),
                   "05_neuron_editing": ("neurons",), "07_robustness_and_baselines": ("locogen", "trace", "locoedit")}
SAME_ARCHITECTURE = {"sd14": "sd15", "openjourney": "sd15"}
FULL_SIZE_RECORD = ROOT / "benchmarks" / "results" / "full_size-cpu.json"


def gpu_need(record: dict | None, chapter: str, model: str) -> dict:
    """What a chapter of the paper profile needs of a GPU for ``model``, from the full-size record:
    the methods it runs, their half-precision weights (exact, from the parameter counts), their
    largest measured CPU peak (float32, the record's size) and the smallest GPU of :data:`GPUS` that
    holds those weights. Activations at 512 or 1024 px and the CLIP scorer come on top and are not in
    the record, so this is a lower bound. ``{}`` for a chapter that runs no real model or a model the record lacks."""
    methods = CHAPTER_METHODS.get(chapter)
    measured = (record or {}).get("results", {}).get(SAME_ARCHITECTURE.get(model, model))
    if not methods or not measured or any(m not in measured for m in methods):
        return {}
    params = max(sum(measured[m]["parameters"].values()) for m in methods)
    fp16 = params * 2 / 2**30
    fits = [g for g, gb in sorted(GPUS.items(), key=lambda kv: kv[1]) if fp16 < gb]
    return {"methods": ", ".join(methods), "fp16 weights (GB)": round(fp16, 1),
            "CPU peak, fp32 (GB)": round(max(measured[m]["peak_rss_gb"] for m in methods), 1),
            "smallest GPU for the weights": fits[0] if fits else f"none of {', '.join(GPUS)}"}


def gpu_table(record: dict, models=("sd15", "sdxl")):
    """:func:`gpu_need` for every chapter of the paper profile and each of ``models``."""
    import pandas as pd

    rows = [{"chapter": c, "model": m, **gpu_need(record, c, m)} for c in plan("paper") for m in models]
    rows = [r for r in rows if len(r) > 2]
    return pd.DataFrame(rows).set_index(["chapter", "model"])
