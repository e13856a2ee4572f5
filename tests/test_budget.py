"""The dry run's counts (loco_lib.budget) against what the library really runs on the tiny twins, the
FLOPs counted on the meta device against the same count on a real run, and the chapter totals
against an independent count."""
import importlib
import subprocess
import sys

import pytest

from loco_lib import budget, models, reproduce, sweep, trace
from loco_lib.errors import LocoError

generate = importlib.import_module("loco_lib.generate")  # the module (loco_lib.generate is also its function)


class Calls:
    """Counts the pipeline calls of loco_lib.generate.sample_batch (the one place the denoiser runs)
    and the samples in each."""

    def __init__(self, monkeypatch):
        self.samples = []
        real = generate.sample_batch

        def counted(pipe, cond, seeds, **kwargs):
            self.samples.append(len(seeds))
            return real(pipe, cond, seeds, **kwargs)

        monkeypatch.setattr(generate, "sample_batch", counted)
        monkeypatch.setattr(sweep, "sample_batch", counted)

    @property
    def work(self):
        return sum(self.samples), len(self.samples)


@pytest.fixture(scope="module")
def sd15():
    return models.load("tiny-sd15", progress=False)


PROMPTS = ["a house in the style of van gogh", "a tree in the style of monet", "a cat in the style of picasso"]
TARGETS = ["a house in the style of a painting", "a tree in the style of a painting", "a cat in the style of a painting"]


def test_a_trace_runs_the_images_and_calls_the_plan_counts(sd15, monkeypatch):
    calls = Calls(monkeypatch)
    r = trace.trace(sd15, PROMPTS[:2], ["van gogh", "monet"], where="unet", kinds="cross-attention", seeds=[0, 1], steps=2,
                    batch_size=6, cache_dir=None, progress=False)
    n_states = len(r.sets)
    assert calls.work == budget.trace_work(2 * 2, n_states + 1, batch=6)  # corrupted + every state, clean rides along
    assert r.counter["calls"] == 2 * calls.work[1]  # a UNet call per step
    assert r.counter["rows"] <= 2 * 2 * calls.work[0]  # two rows per image and step, fewer where rows are shared


def test_states_needed_restores_as_many_sizes_as_counted(sd15, monkeypatch, tmp_path):
    from loco_lib.clip_score import ClipScorer

    scorer = ClipScorer.tiny()
    first = trace.trace(sd15, PROMPTS[:1], ["van gogh"], where="unet", seeds=[0], steps=2, scorer=scorer,
                        cache_dir=tmp_path, progress=False)
    calls = Calls(monkeypatch)
    needed = trace.states_needed(sd15, first, cache_dir=tmp_path, scorer=scorer, progress=False)
    assert len(needed.curve) == budget._sizes_needed(len(first.sets))
    assert calls.work == budget.trace_work(1, budget._sizes_needed(len(first.sets)) - 1)  # k = 1 is in the cache


def test_a_locogen_sweep_and_a_comparison_run_what_the_plan_counts(sd15, monkeypatch):
    from loco_lib.clip_score import ClipScorer
    from loco_lib.evaluate import compare
    from loco_lib.locogen import locogen

    calls = Calls(monkeypatch)
    L, m = 16, 3
    locogen(sd15, (PROMPTS, TARGETS), "style", m, [0, 1], scorer=ClipScorer.tiny(), steps=2, batch_size=16, progress=False)
    assert calls.work == budget.sweep_work(3 * 2 * (L - m + 3))  # clean, every window, all layers
    calls.samples.clear()
    compare(sd15, PROMPTS * 3, None, {"original": None, "again": None}, seeds=[0], scorer=ClipScorer.tiny(), steps=2,
            progress=False)
    assert calls.work == budget.generate_work(9, 2)


def test_chapter_03s_searches_run_what_the_plan_counts(sd15, monkeypatch, tmp_path):
    """The chapter's LocoGen search, Sec. 5.1.2's rule, App. G's growth and local search and the bare
    target, run on tiny-sd15 (SD-1.5's 16 layers) with the chapter's calls, counted against the
    plan of the same parameters."""
    lg = importlib.import_module("loco_lib.locogen")
    from loco_lib import window_size
    from loco_lib.clip_score import ClipScorer
    from loco_lib.prompts import load_pairs

    scorer, M = ClipScorer.tiny(), 2
    prompts = load_pairs("style", limit=3)
    kw = dict(scorer=scorer, steps=2, batch_size=16, progress=False, cache_dir=tmp_path / "c")
    calls = Calls(monkeypatch)
    lg.locogen(sd15, prompts, "style", M, [0], **kw)
    lg.select_m(sd15, prompts, "style", ms=[1, 2, 3], stop_at_first=False, seeds=[0], **kw)
    grown = window_size.from_located(sd15, prompts, "style", M, [0], **kw)
    window_size.local_search(sd15, prompts, "style", seeds=[0], **kw)
    lg.locogen(sd15, (list(prompts.originals), ["a painting"] * 3), "style", M, [0], **{**kw, "cache_dir": tmp_path / "b"})
    params = {**reproduce.parameter_defaults("03_locogen"), "N_PROMPTS": 3, "SEEDS": [0], "M": M}
    planned = budget._chapter_03(params, "sd15", start=grown.start)
    assert calls.work[0] == sum(images for _, images, _ in planned)
    # one sweep per line: each line's calls are its own chunks
    assert len(calls.samples) == sum(c for _, _, c in planned)


@pytest.mark.parametrize("model,expected", [
    # cross-attention layers (App. D), UNet states (the recorded toy trace prints 54 for SD-1.5's layout;
    # SD-XL and IF from diffusers' blocks), ResNet and cross-attention states, text-encoder layers
    ("sd15", (16, 54, 22, 16, 12)), ("sd21", (16, 54, 22, 16, 23)), ("sdxl", (70, 157, 17, 70, 12)),
    ("deepfloyd-if", (22, 52, 30, 0, 24))])
def test_the_shape_of_each_full_size_model(model, expected):
    s = budget.shape(model)
    assert (s.layers, s.states, s.resnet, s.cross, s.text_layers) == expected


def test_flops_on_the_meta_device_equal_the_count_on_a_real_run(sd15):
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    real = budget.count_flops(sd15.unet, 64)
    with init_empty_weights():
        meta = UNet2DConditionModel(**sd15.unet.config)
    assert budget.count_flops(meta, 64) == real > 0
    assert budget.count_flops(meta, 64, rows=3) == 3 * real  # every operation is per row
    # the full-size ones: SD-XL's UNet at 1024 px costs more than SD-1.5's at 512, and size counts
    assert budget.denoiser_flops("sdxl") > budget.denoiser_flops("sd21") > budget.denoiser_flops("sd15")
    assert 4 < budget.denoiser_flops("sd15") / budget.denoiser_flops("sd15", size=256) < 16
    assert budget.decoder_flops("deepfloyd-if") == 0 < budget.decoder_flops("sd15")
    assert budget.parameters("sd15") == 859_520_964 + 123_060_480 + 83_653_863  # the full-size record's parts


# UNet calls per chapter of `--profile paper`, counted independently of loco_lib.budget by reading
# the chapters and the library (a separate calculator, 2026-12-04), GPU batches, empty caches.
# Chapter 03 gained App. G's searches since; test_chapter_03s_searches_run_what_the_plan_counts counts it.
# Chapter 02 gained (2026-12-06, counted by hand: 4 prompt-seed groups, 15 restored runs per call of 16):
# the paper's states (SD: 70 + 1 runs = 5 calls a group, not 4: +200 UNet calls at 50 steps;
# SD-XL 228 runs = 16 calls, not 11: +1000, and 16 states-needed runs = 2 calls: +200), the loco-granularity
# trace's own 16 / 70 transformer blocks (+400 / +1000; IF none), App. A's panel (one group of 71 / 228 / 53
# runs: +250 / +800 / +400 at IF's 100 steps) and SD-XL's encoder 2 and "both" (65 runs = 5 calls a group,
# two token modes: +2000 each): sd15 and sd21 +850, SD-XL +7000, IF +400.
# chapter 05: (4 k x 2 replacements + the altered input) x ceil(6 prompts x 4 seeds / 8) = 27 calls of 50 steps (IF: 100);
# chapter 07 counted without its SPREAD_SEEDS tables (test_the_spread_seeds_repeat_the_first_seeds_tables)
INDEPENDENT = {
    "sd15": {"02_causal_tracing": 3300 + 850, "04_locoedit": 350, "05_neuron_editing": 27 * 50,
             "07_robustness_and_baselines": 24750},
    "sd21": {"02_causal_tracing": 4100 + 850, "07_robustness_and_baselines": 24800},
    "sdxl": {"02_causal_tracing": 7500 + 7000, "04_locoedit": 350, "05_neuron_editing": 27 * 50,
             "07_robustness_and_baselines": 29550},
    "deepfloyd-if": {"02_causal_tracing": 6600 + 400, "04_locoedit": 700, "05_neuron_editing": 27 * 100,
                     "06_deepfloyd_t5": 1400, "07_robustness_and_baselines": 50800},
}


@pytest.mark.parametrize("model", list(INDEPENDENT))
def test_the_dry_run_counts_each_chapter_like_an_independent_count(model):
    table = budget.dry_run("paper", model, extra={"FINETUNE": False, "SPREAD_SEEDS": []})  # the count was made before chapter 07 trained
    # ... and before it generated App. J's pairs: 11 prompts x 3 seeds, clean and altered, in batches of 8
    app_j = [w for w in table.attrs["work"] if w.what.startswith("App. J")]
    assert [(w.images, w.calls) for w in app_j] == [(2 * 33, 2 * 5)]
    for chapter, unet_calls in INDEPENDENT[model].items():
        if chapter == "07_robustness_and_baselines":
            unet_calls += app_j[0].unet_calls
        assert table.loc[(chapter, model if chapter != "06_deepfloyd_t5" else "deepfloyd-if"), "UNet calls"] == unet_calls
    body = table.drop(index="total", level=0)
    assert table.loc["total"].iloc[0]["UNet rows"] == body["UNet rows"].sum()
    assert sum(w.unet_rows for w in table.attrs["work"]) == body["UNet rows"].sum()


def test_the_spread_seeds_repeat_the_first_seeds_tables():
    """Chapter 07's SPREAD_SEEDS run the side-by-side and retention tables once per further seed: on the
    paper profile (one seed for the first tables) each adds exactly the first tables' images and calls."""
    params = reproduce.plan("paper", "sd15")["07_robustness_and_baselines"]
    defaults = reproduce.parameter_defaults("07_robustness_and_baselines")
    assert len(defaults["SEEDS"]) == len(defaults["TABLE_SEEDS"]) == 1 and defaults["SPREAD_SEEDS"] == [1, 2, 3]
    work = lambda spread: budget.chapter_work("07_robustness_and_baselines", {**params, "FINETUNE": False, "SPREAD_SEEDS": spread})
    without, with_ = work([]), work([1, 2, 3])
    first = [w for w in without if w.what.startswith(("5 models", "retention"))]
    added = [w for w in with_ if "SPREAD_SEEDS" in w.what]
    assert len(first) == len(added) == 2 and [w.what for w in with_ if w not in added] == [w.what for w in without]
    for f, a in zip(first, added):
        assert (a.images, a.calls, a.unet_calls) == (3 * f.images, 3 * f.calls, 3 * f.unet_calls)


@pytest.mark.parametrize("method", ["esd", "concept-ablation"])
def test_a_fine_tuning_runs_the_calls_and_rows_the_plan_counts(sd15, method):
    from loco_lib import finetune

    rows = []
    hook = sd15.unet.register_forward_hook(lambda module, args, kwargs, out: rows.append(args[0].shape[0]), with_kwargs=True)
    try:
        if method == "esd":
            finetune.esd(sd15, "van gogh", steps=3, lr=1e-3, sample_steps=4, seed=5, progress=False)
        else:
            finetune.concept_ablation(sd15, PROMPTS[0], TARGETS[0], steps=3, lr=1e-3, sample_steps=4, seed=5, progress=False)
    finally:
        hook.remove()
    calls, unet_calls, unet_rows = budget.finetune_work(method, 3, 4, seed=5)
    assert calls == 3 and len(rows) == unet_calls  # every forward that ran to its end: sampling, frozen, trained
    assert sum(rows) + 3 * budget.BACKWARD_ROWS == unet_rows


def test_the_fine_tunings_add_their_training_and_their_models_to_chapter_07():
    plan = lambda finetune: budget.chapter_work("07_robustness_and_baselines", {
        **reproduce.plan("paper", "sd15")["07_robustness_and_baselines"], "FINETUNE": finetune, "SPREAD_SEEDS": []})
    without, with_ = plan(False), plan(True)
    trainings = [w for w in with_ if w.trained_calls is not None]
    assert [w.what for w in trainings] == ["ESD-x of the artist: 1000 training steps", "ESD-x of the object: 1000 training steps",
                                           "Concept Ablation of the artist: 400 training steps",
                                           "Concept Ablation of the object: 400 training steps"]
    assert all(w.images == 0 for w in trainings) and not any(w.trained_calls is not None for w in without)
    esd = budget.finetune_work("esd", 1000, 50)
    assert (trainings[0].calls, trainings[0].unet_calls, trainings[0].unet_rows) == esd
    assert 1000 * 2 < esd[1] < 1000 * 52  # between no sampling and the whole run at every step
    images = lambda ws: sum(w.images for w in ws)
    side = next(w for w in without if w.what.startswith("5 models")).images // 5
    generic = next(w for w in without if w.what.startswith("Table 1")).images // 9
    assert images(with_) - images(without) == 2 * side + 2 * 8 + 4 * generic  # two more models side by side, 4 more in Table 1


def test_the_robustness_prompt_counts_equal_the_chapters_groups():
    from loco_lib import unlearning

    g = unlearning.prompt_groups("sd15", None, profile="paper")
    work = {w.what: w for w in budget.chapter_work("07_robustness_and_baselines", reproduce.plan("paper", "sd15")[
        "07_robustness_and_baselines"])}
    assert work["7 models on erased, in-domain and cross-domain prompts"].images == 7 * (
        len(g.erased) + len(g.in_domain) + len(g.cross_domain))


def test_the_estimate_and_its_errors():
    assert budget.seconds(budget.GPU_PEAKS["A100"] * budget.EFFICIENCY) == pytest.approx(1.0)
    with pytest.raises(LocoError, match="unknown GPU"):
        budget.dry_run("paper", "sd15", gpu="V100")
    assert len(budget.dry_run("smoke")) == 0  # the organisms: nothing on a real model
    out = subprocess.run([sys.executable, "-m", "loco_lib", "reproduce", "--profile", "paper", "--model", "sd21",
                          "--chapters", "03", "--param", "ATTRIBUTE=facts", "--dry-run"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "03_locogen" in out.stdout and "total" in out.stdout and "TFLOP/s" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "loco_lib", "reproduce", "--profile", "paper", "--dry-run", "--gpu", "V100"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["loco: error: unknown GPU 'V100': use A100 or H100 SXM"]
