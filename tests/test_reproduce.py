"""`loco reproduce`: profiles, resuming a run, and a failing chapter named with its cell."""
from __future__ import annotations

import json

import pytest

from loco_lib import reproduce
from loco_lib.cli import main
from loco_lib.errors import LocoError

CHAPTER = '''# %% [markdown]
# # {title}

# %% tags=["parameters"]
MODEL = "toy"
FAIL = False
N = 2

# %%
print("model", MODEL, "n", N)

# %%
if FAIL:
    raise RuntimeError("asked to fail")
print("done")
'''


def test_plans_of_the_profiles():
    smoke = reproduce.plan("smoke")
    assert list(smoke) == reproduce.chapters() and all(p == {} for p in smoke.values())
    paper = reproduce.plan("paper")
    assert "01_model_organism" not in paper and "06_deepfloyd_t5" not in paper and "09_diffusion_transformers" not in paper
    assert all(p["MODEL"] == "sd15" for p in paper.values())
    assert all(p["STEPS"] == 50 for c, p in paper.items() if "STEPS" in reproduce.parameters_of(c))
    assert paper["02_causal_tracing"]["OTHER_MODEL"] is None
    assert paper["02_causal_tracing"]["UNET_STATES"] == "paper" and paper["02_causal_tracing"]["ENCODERS"] is None
    assert paper["02_causal_tracing"]["PANEL"] == ["A cat in a beach", "cat"]  # Fig. 11's prompt (App. A.1)
    assert (paper["02_causal_tracing"]["N_PROMPTS"], paper["02_causal_tracing"]["SEEDS"]) == (2, [0, 1])  # the real models: loco's 2 x 2
    assert paper["05_neuron_editing"]["KS"] == [0, 30, 50, 100] and paper["07_robustness_and_baselines"]["PROFILE"] == "paper"
    assert reproduce.plan("paper", model="sdxl")["03_locogen"]["MODEL"] == "sdxl"
    assert "MODEL" not in reproduce.plan("paper", model="deepfloyd-if")["06_deepfloyd_t5"]  # it has IF_MODEL instead
    only = reproduce.plan("smoke", only=["03"], extra={"SEEDS": [0, 1], "NOT_A_PARAMETER": 1})
    assert only == {"03_locogen": {"SEEDS": [0, 1]}}
    with pytest.raises(LocoError, match="unknown profile"):
        reproduce.plan("full")
    with pytest.raises(LocoError, match="unknown chapter '99'"):
        reproduce.plan("smoke", only=["99"])


# What `loco reproduce --profile paper --model M` must give the chapters, written out from the paper
# (Fig. 5, Sec. 5.2, App. G; the window size rule of loco_lib.paper) and the authors' code (50 steps,
# guidance 7.5 for SD), not from the code under test. Per model: steps, guidance, chapter 03's m for
# style, objects and facts, and what chapter 06 receives (None: not run).
PAPER_SETTINGS = {
    "sd14": (50, 7.5, (2, 2, 2), None),
    "sd15": (50, 7.5, (2, 2, 2), None),
    "openjourney": (50, 7.5, (2, 2, 2), None),
    "sd21": (50, 7.5, (3, 3, 3), None),  # Fig. 5(b): m = 3 (Sec. 5.2's style m = 2 is one --param away)
    "sdxl": (50, 5.0, (3, 5, 5), None),  # Fig. 5(c,d): style m = 3, facts m = 5; Sec. 5.2: objects m = 5
    "deepfloyd-if": (100, 7.0, (3, 3, 3), {"IF_MODEL": "deepfloyd-if", "CLIP_MODEL": "sd15", "IF_STEPS": 100, "IF_M": 3,
                                           "STEPS": None, "GUIDANCE": None}),  # App. G: m = 3
}


@pytest.mark.parametrize("model", list(PAPER_SETTINGS))
def test_the_paper_profile_gives_each_model_the_papers_settings(model):
    steps, guidance, ms, chapter_06 = PAPER_SETTINGS[model]
    todo = reproduce.plan("paper", model)
    for chapter, params in todo.items():
        allowed = reproduce.parameters_of(chapter)
        if chapter == "06_deepfloyd_t5":
            continue
        assert params.get("MODEL") == model
        if "STEPS" in allowed:
            assert (params["STEPS"], params["GUIDANCE"]) == (steps, guidance), chapter
    assert todo["03_locogen"]["M"] == ms[0]  # the chapter's own ATTRIBUTE is style
    for attr, m in zip(("style", "objects", "facts"), ms):
        assert reproduce.plan("paper", model, ["03"], {"ATTRIBUTE": attr})["03_locogen"]["M"] == m
    assert todo.get("06_deepfloyd_t5") == chapter_06
    assert todo["05_neuron_editing"]["KS"] == [0, 30, 50, 100] and todo["07_robustness_and_baselines"]["PROFILE"] == "paper"
    # a --param wins over the paper's value
    assert reproduce.plan("paper", model, ["03"], {"M": 7})["03_locogen"]["M"] == 7
    table = reproduce.paper_settings_table()
    assert tuple(table.loc[model, ["m style", "m objects", "m facts"]]) == ms


def test_every_conflicting_window_has_its_other_value_one_param_away():
    from loco_lib import paper

    conflicting = {(m, a) for m, attrs in paper.SOURCES.items() for a, src in attrs.items() if src.kind == "conflicting"}
    assert conflicting == set(paper.OTHER_M) == {("sd21", "style"), ("sdxl", "style"), ("sdxl", "facts")}
    for (model, attr), (m, where) in paper.OTHER_M.items():
        assert m != paper.window_size(model, attr) and f"m = {m}" in paper.SOURCES[model][attr].note
        assert f"--param M={m}" in reproduce.paper_settings_table().loc[model, "the paper's other m"]
    assert paper.window_size("tiny-sdxl", "objects") == 5 and paper.other_window_size("sd15") is None
    with pytest.raises(LocoError, match="no location"):
        reproduce.plan("paper", "some/hub-model", ["03"])


@pytest.fixture
def two_chapters(tmp_path, monkeypatch):
    nb = tmp_path / "notebooks"
    nb.mkdir()
    for name in ("01_first", "02_second"):
        (nb / f"{name}.py").write_text(CHAPTER.format(title=name))
    monkeypatch.setattr(reproduce, "NOTEBOOKS", nb)
    return nb


def test_a_run_resumes_and_names_the_failing_chapter(two_chapters, tmp_path):
    out = tmp_path / "run"
    lines = []
    assert reproduce.run("smoke", out=out, book=False, log=lines.append) == {"01_first": "ran", "02_second": "ran"}
    executed = out / "src" / "notebooks" / "02_second.ipynb"
    assert "done" in executed.read_text()
    record = json.loads((out / "src" / "notebooks" / "02_second.done.json").read_text())
    assert record["profile"] == "smoke" and record["seconds"] >= 0
    # nothing changed: both kept, nothing executed
    assert reproduce.run("smoke", out=out, book=False, log=lines.append) == {"01_first": "kept", "02_second": "kept"}
    # another parameter is another input: executed again
    assert reproduce.run("smoke", out=out, book=False, extra={"N": 3}, log=lines.append)["01_first"] == "ran"
    # a failing chapter stops the run with its name and cell; the finished one is kept
    src = two_chapters / "02_second.py"
    src.write_text(src.read_text().replace("FAIL = False", "FAIL = True"))
    with pytest.raises(LocoError) as err:
        reproduce.run("smoke", out=out, book=False, extra={"N": 3}, log=lines.append)
    msg = str(err.value)
    assert "chapter 02_second failed at cell" in msg and "RuntimeError: asked to fail" in msg and "\n" not in msg
    assert (out / "src" / "notebooks" / "02_second.failed.ipynb").exists()
    # fixed (with a changed source): the rerun keeps the first chapter and runs only the second
    src.write_text(src.read_text().replace("FAIL = True", "FAIL = False  # fixed"))
    assert reproduce.run("smoke", out=out, book=False, extra={"N": 3}, log=lines.append) == {
        "01_first": "kept", "02_second": "ran"}
    assert not (out / "src" / "notebooks" / "02_second.failed.ipynb").exists()


def test_a_chapter_reading_the_run_records_reruns_when_they_change(two_chapters, tmp_path):
    (two_chapters / "03_report.py").write_text(CHAPTER.format(title="report").replace('N = 2', 'N = 2\nRUN_DIR = None'))
    out = tmp_path / "run"
    reproduce.run("smoke", out=out, book=False, log=lambda line: None)
    assert reproduce.run("smoke", out=out, book=False, log=lambda line: None)["03_report"] == "kept"
    table = reproduce.run_records(out)
    assert list(table["chapter"]) == ["01_first", "02_second", "03_report"] and (table["seconds"] >= 0).all()
    run_dir = json.loads(table["parameters"].iloc[2])["RUN_DIR"]
    assert (two_chapters / run_dir).resolve() == out.resolve()  # relative to where the chapters run
    import nbformat  # the injected RUN_DIR cell is plumbing: the book leaves it out; chosen parameters stay shown

    cells = nbformat.read(str(out / "src" / "notebooks" / "03_report.ipynb"), as_version=4).cells
    injected = [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0].metadata["tags"]
    other = tmp_path / "other"
    reproduce.run("smoke", out=other, book=False, extra={"N": 3}, log=lambda line: None)
    cells = nbformat.read(str(other / "src" / "notebooks" / "03_report.ipynb"), as_version=4).cells
    assert [c.metadata["tags"] for c in cells if "injected-parameters" in c.metadata.get("tags", [])] == [["injected-parameters"]]
    first = two_chapters / "01_first.py"
    first.write_text(first.read_text() + "\n# %%\nprint('one more cell')\n")
    status = reproduce.run("smoke", out=out, book=False, log=lambda line: None)
    assert status == {"01_first": "ran", "02_second": "kept", "03_report": "ran"}  # its records changed


def test_cli_errors_are_one_line(capsys):
    assert main(["reproduce", "--profile", "full"]) == 2
    assert "unknown profile 'full'" in capsys.readouterr().err
    assert main(["reproduce", "--param", "SEEDS"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NAME=VALUE" in err[0]


def test_figures_and_memory_tables():
    figs = reproduce.figures_table()
    assert set(figs["chapter"]) <= set(reproduce.chapters())
    for chapter, command in zip(figs["chapter"], figs["command"]):  # every command really runs its chapter
        words = command.split()
        profile, only = words[words.index("--profile") + 1], words[words.index("--chapters") + 1]
        model = words[words.index("--model") + 1] if "--model" in words else None
        extra = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        assert chapter in reproduce.plan(profile, None if model == "MODEL" else model, [only], extra)
    record = {"results": {"sdxl": {"locogen": {"parameters": {"unet": 2_567_463_684, "text_encoder": 123_060_480,
                                                                "text_encoder_2": 694_659_840, "vae": 83_653_863},
                                               "peak_rss_gb": 14.2, "seconds": 30.0}}}}
    row = reproduce.memory_table(record).loc[("sdxl", "locogen")]
    assert row["fp16 weights (GB)"] == round(3_468_837_867 * 2 / 2**30, 1) == 6.5
    assert row["weights fit T4 (16 GB)"] == "yes" and row["CPU peak, fp32 (GB)"] == 14.2
    dit = reproduce.memory_table({**record, "dtype": "bfloat16"})  # the DiTs' record: its peak in its dtype
    assert list(dit.columns)[2] == "CPU peak, bf16 (GB)"


FOREIGN_CHAPTER = '''# %% tags=["parameters"]
KEPT_DIR = "."

# %%
import torch
from loco_lib.organism import kept
print("capability", torch.backends.cpu.get_cpu_capability())
print(kept.measure("a-number", "toy", abs, -3, kept_dir=KEPT_DIR))
'''


def test_a_run_under_a_foreign_instruction_set_is_its_own_execution_and_tells_its_kept_measurements(two_chapters, tmp_path,
                                                                                                   monkeypatch):
    import subprocess
    import sys

    for k in reproduce.ISA_VARIABLES:  # this machine as it is (the suite may itself run under a foreign set)
        monkeypatch.delenv(k, raising=False)
    native = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                            capture_output=True, text=True).stdout.strip()
    monkeypatch.setattr(reproduce, "foreign_cpu", lambda capability=None, f=reproduce.foreign_cpu: f(native))
    for p in two_chapters.glob("*.py"):
        p.unlink()
    (two_chapters / "01_cpu.py").write_text(FOREIGN_CHAPTER)
    out, kept_dir = tmp_path / "run", tmp_path / "kept"
    lines = []
    assert reproduce.run("smoke", out=out, book=False, extra={"KEPT_DIR": str(kept_dir)}, log=lines.append) == {"01_cpu": "ran"}
    executed = out / "src" / "notebooks" / "01_cpu.ipynb"
    record = json.loads((out / "src" / "notebooks" / "01_cpu.done.json").read_text())
    assert f"capability {native}" in executed.read_text() and record["cpu"] == reproduce.cpu_setting()
    assert len(record["kept_measured"]) == 1 and record["kept_read"] == 0  # measured: no file of it yet
    # under the foreign set: not the native execution (another key), the kernel runs there, the kept file is read
    assert reproduce.run("smoke", out=out, book=False, extra={"KEPT_DIR": str(kept_dir)}, log=lines.append,
                         foreign_cpu_isa=True) == {"01_cpu": "ran"}
    foreign = reproduce.foreign_cpu()
    record = json.loads((out / "src" / "notebooks" / "01_cpu.done.json").read_text())
    assert {k: record["cpu"][k] for k in foreign} == foreign and record["kept_read"] == 1 and record["kept_measured"] == []
    assert f"capability {foreign['ATEN_CPU_CAPABILITY'].upper()}" in executed.read_text()
    assert all(k not in __import__("os").environ for k in foreign)  # this process is as it was
    assert reproduce.FOREIGN_ISAS["AVX512"]["ATEN_CPU_CAPABILITY"] == "avx2"
    assert reproduce.BASELINE_ISA["ATEN_CPU_CAPABILITY"] == "default"


def test_kept_changes_say_which_file_and_why(tmp_path):
    log = tmp_path / "kept.jsonl"
    log.write_text(json.dumps({"file": "data/organism/cache/chapters/toy/t-k2.json", "measured": True,
                               "replaces": ["data/organism/cache/chapters/toy/t-k1.json"],
                               "why": "its arguments changed"}) + "\n")
    before = {"data/organism/cache/chapters/toy/t-k1.json": "a", "data/organism/cache/toy/sample-w-s0.json": "b"}
    after = {"data/organism/cache/chapters/toy/t-k2.json": "c", "data/organism/cache/toy/sample-w-s0.json": "b"}
    lines = reproduce.kept_changes(before, after, log)
    assert lines == ["kept measurement data/organism/cache/chapters/toy/t-k2.json written: replaces t-k1.json; "
                     "its arguments changed; commit it"]
    assert reproduce.kept_changes(before, before, log) == []
    gone = reproduce.kept_changes(before, {"data/organism/cache/chapters/toy/t-k1.json": "a"})
    assert len(gone) == 1 and "sample-w-s0.json removed" in gone[0]
