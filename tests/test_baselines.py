"""Baselines beside LocoEdit: UCE (closed form over every cross-attention layer), the multi-concept
LocoEdit, the UnlearnCanvas metrics, Table 1's layout, the human-study log, and their CLI."""
import numpy as np
import pytest
import torch

from loco_lib import locoedit, models, uce, unlearning
from loco_lib.cli import main
from loco_lib.errors import LocoError
from loco_lib.layers import cross_attention_layers, kv_inputs
from loco_lib.prompts import concept_keys, default_prompts, load_edit
from loco_lib.text import encode


@pytest.fixture(scope="module")
def sd15():
    return models.load("tiny-sd15", progress=False)


@pytest.fixture(scope="module")
def tiny_if():
    return models.load("tiny-if", progress=False)


# -- UCE's closed form ------------------------------------------------------------------------------

def _problem(seed=0, d=12, out=7, n=5, m=9):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    return r(out, d), r(n, d), r(n, d), r(m, d)


@pytest.mark.parametrize("scales", [(0.5, 1.0, 0.1), (0.01, 3.0, 2.0), (2.0, 1.0, 0.0)])
def test_uce_closed_form_is_the_minimiser(scales):
    lam, e, p = scales
    W_hat, E, G, P = _problem()
    W = uce.closed_form(W_hat, E, G, P, lam, e, p).clone().requires_grad_(True)
    f = uce.objective(W, W_hat, E, G, P, lam, e, p)
    (grad,) = torch.autograd.grad(f, W)
    assert grad.abs().max() < 1e-9 * max(1.0, float(f.detach()))  # stationary, and the objective is strictly convex
    for k in range(5):
        step = torch.randn(W.shape, generator=torch.Generator().manual_seed(k), dtype=torch.float64) * 1e-3
        assert uce.objective(W.detach() + step, W_hat, E, G, P, lam, e, p) > f.detach()


def test_uce_stacked_projections_equal_one_at_a_time():
    W_hat, E, G, P = _problem(1)
    V_hat = _problem(2)[0]
    both = uce.closed_form(torch.stack([W_hat, V_hat]), E, G, P)
    assert torch.allclose(both[0], uce.closed_form(W_hat, E, G, P), atol=1e-12)
    assert torch.allclose(both[1], uce.closed_form(V_hat, E, G, P), atol=1e-12)


def test_uce_without_rows_to_fit_keeps_the_weight_and_tiny_lambda_fits_them():
    W_hat, E, G, P = _problem(3, d=20, n=3, m=4)
    assert torch.allclose(uce.closed_form(W_hat, E, G, P, erase_scale=0.0, preserve_scale=0.0), W_hat, atol=1e-12)
    W = uce.closed_form(W_hat, E, G, P, lam=1e-8, erase_scale=1.0, preserve_scale=1.0)
    assert torch.allclose(E @ W.T, G @ W_hat.T, atol=1e-5)  # erase rows take the guide's outputs
    assert torch.allclose(P @ W.T, P @ W_hat.T, atol=1e-5)  # preserved rows keep theirs


@pytest.mark.parametrize("bad, needle", [
    (dict(lam=0), "lambda must be a positive"), (dict(erase_scale=-1), "erase_scale"),
    (dict(preserve_scale=float("nan")), "preserve_scale"),
])
def test_uce_closed_form_bad_numbers(bad, needle):
    W_hat, E, G, P = _problem()
    with pytest.raises(LocoError, match=needle):
        uce.closed_form(W_hat, E, G, P, **bad)


def test_uce_closed_form_bad_shapes():
    W_hat, E, G, P = _problem()
    with pytest.raises(LocoError, match="erase and guide"):
        uce.closed_form(W_hat, E, G[:2], P)
    with pytest.raises(LocoError, match="preserve rows"):
        uce.closed_form(W_hat, E, G, P[:, :3])


def _tokens(pipe, text):
    return pipe.tokenizer(text, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
                          return_tensors="pt")["input_ids"][0]


def _last_word(pipe, text) -> int:
    """Index of the last non-special token, read off the token ids (independently of loco_lib.tokens)."""
    ids = _tokens(pipe, text).tolist()
    special = set(pipe.tokenizer.all_special_ids)
    return max(i for i, t in enumerate(ids) if t not in special)


@pytest.mark.parametrize("name", ["sd15", "tiny_if"])
def test_uce_edit_is_the_closed_form_on_the_right_rows(request, name):
    """Every layer's key and value are replaced by the closed form on rows rebuilt here by hand: the
    concept's last token and every position after it, against the guide's from its last token on,
    and every position of the preserved text; the IF twin's rows pass through encoder_hid_proj and
    each layer's GroupNorm (what kv_inputs gives) and its biases stay."""
    pipe = request.getfixturevalue(name)
    edit = uce.compute_edit(pipe, ["van gogh"], "a painting", ["monet"])
    layers = cross_attention_layers(pipe.unet)
    assert edit.layers == list(range(len(layers))) and len(edit.weights) == 2 * len(layers)
    assert edit.method == "uce" and edit.meta["preserve"] == ["monet"]
    cond = encode(pipe, ["van gogh", "a painting", "monet"]).embeds
    states = kv_inputs(pipe.unet, layers, cond)
    a, b = _last_word(pipe, "van gogh"), _last_word(pipe, "a painting")
    n = cond.shape[1] - max(a, b)
    assert edit.meta["n_rows"] == n
    for layer in layers:
        attn = pipe.unet.get_submodule(layer.name)
        x = states[layer.index]
        E, G, P = x[0, a : a + n], x[1, b : b + n], x[2]
        for proj in (layer.key, layer.value):
            W_old = getattr(attn, proj).weight.detach()
            want = uce.closed_form(W_old, E, G, P)
            got = edit.weights[f"{layer.name}.{proj}.weight"]
            assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (layer.name, proj)
            before = (E @ W_old.T - G @ W_old.T).norm()
            assert (E @ got.T - G @ W_old.T).norm() < before  # the erased rows move towards the guide
    with edit.applied(pipe):
        for layer in layers:
            attn = pipe.unet.get_submodule(layer.name)
            for proj in (layer.key, layer.value):
                assert torch.equal(getattr(attn, proj).weight.detach().cpu(), edit.weights[f"{layer.name}.{proj}.weight"])
    assert not any(k.endswith("bias") for k in edit.weights)


def test_uce_empty_guide_uses_the_unconditional_text(sd15):
    edit = uce.compute_edit(sd15, "van gogh", "", layers=[0])
    e_rows, g_rows, _ = uce.rows(sd15, [0], ["van gogh"], [""])
    neg = encode(sd15, ["x"]).negative
    assert torch.equal(g_rows[0], neg[0, : g_rows[0].shape[0]])  # from position 0 on
    assert edit.layers == [0]


@pytest.mark.parametrize("kw, needle", [
    (dict(concepts=["van gogh"], guide="a painting", preserve=["Van Gogh"]), "both erased and preserved"),
    (dict(concepts=["van gogh", "monet"], guide=["a", "b", "c"]), "3 guides given for 2 concepts"),
    (dict(concepts=["van gogh"], guide="a painting", lam=-1), "lambda"),
    (dict(concepts=["van gogh"], guide="a painting", layers=[]), "no layers"),
    (dict(concepts=["van gogh"], guide="a painting", erase={"monet": ["monet"]}), "no erase texts"),
    (dict(concepts=[], guide="a painting"), "concept"),
])
def test_uce_bad_input(sd15, kw, needle):
    with pytest.raises(LocoError, match=needle):
        uce.compute_edit(sd15, **kw)


# -- multi-concept LocoEdit ------------------------------------------------------------------------

def test_multi_concept_with_one_concept_is_the_single_edit(sd15):
    keys = load_edit("style", "van gogh")
    single = locoedit.compute_edit(sd15, [8, 9], keys.originals, keys.targets, keys.subjects, keys.target_subjects)
    multi = locoedit.compute_multi_edit(sd15, [8, 9], [keys])
    assert multi.layers == single.layers and set(multi.weights) == set(single.weights)
    assert all(torch.equal(multi.weights[k], single.weights[k]) for k in single.weights)
    assert [c.lower() for c in multi.meta["concepts"]] == ["van gogh"]


def test_multi_concept_stacks_rows_only_where_windows_meet(sd15):
    a, b = load_edit("style", "van gogh"), load_edit("style", "monet")
    multi = locoedit.compute_multi_edit(sd15, [[8, 9], [9, 10]], [a, b])
    assert multi.layers == [8, 9, 10] and multi.meta["windows"] == [[8, 9], [9, 10]]
    only_a = locoedit.compute_edit(sd15, [8], a.originals, a.targets, a.subjects, a.target_subjects)
    only_b = locoedit.compute_edit(sd15, [10], b.originals, b.targets, b.subjects, b.target_subjects)
    both = locoedit.compute_edit(sd15, [9], a.originals + b.originals, a.targets + b.targets, a.subjects + b.subjects,
                                 a.target_subjects + b.target_subjects)
    for part in (only_a, only_b, both):
        for k, w in part.weights.items():
            assert torch.equal(multi.weights[k], w), k
    # one shared window: every matrix fits both concepts' rows
    shared = locoedit.compute_multi_edit(sd15, "8,9", [a, b])
    rows = locoedit.kv_rows(sd15, [8], a.originals + b.originals, a.subjects + b.subjects)[8]
    targets = locoedit.kv_rows(sd15, [8], a.targets + b.targets, a.target_subjects + b.target_subjects)[8]
    name = cross_attention_layers(sd15.unet)[8].name + ".to_v.weight"
    W_old = sd15.unet.get_parameter(name).detach()
    fit = locoedit.objective(shared.weights[name], W_old, rows, targets, 0.0)
    assert fit < 1e-2 * locoedit.objective(W_old, W_old, rows, targets, 0.0)


def test_multi_concept_bad_input(sd15):
    a = load_edit("style", "van gogh")
    with pytest.raises(LocoError, match="3 windows given for 1 concepts"):
        locoedit.compute_multi_edit(sd15, [[1], [2], [3]], [a])
    with pytest.raises(LocoError, match="no concepts"):
        locoedit.compute_multi_edit(sd15, [8], [])
    with pytest.raises(LocoError, match="non-empty key set"):
        locoedit.compute_multi_edit(sd15, [8], [a, "monet"])


def test_concept_keys_own_block_or_derived():
    assert concept_keys("style", "Monet").originals == load_edit("style", "monet").originals
    src = default_prompts("style", "toy")
    vg, monet = load_edit(src, "van gogh"), concept_keys(src, "monet")
    assert monet.originals == [o.replace("van gogh", "monet") for o in vg.originals]
    assert monet.targets == vg.targets and set(monet.subjects) == {"monet"}
    with pytest.raises(LocoError, match="empty concept"):
        concept_keys(src, " ")


# -- UnlearnCanvas metrics and Table 1 -------------------------------------------------------------

def test_prompt_groups_of_the_organism_and_of_a_real_model():
    g = unlearning.prompt_groups("toy", "van gogh")
    assert (len(g.erased), len(g.in_domain), len(g.cross_domain)) == (8, 16, 8)
    assert all("van gogh" in p for p in g.erased) and not any("van gogh" in p for p in g.in_domain + g.cross_domain)
    assert set(g.in_labels) == {"monet", "picasso"} and all(" style " not in p for p in g.cross_domain)
    r = unlearning.prompt_groups("sd15", "van gogh", n_per_concept=2, profile="smoke")
    assert r.concept == "Van Gogh" and len(r.erased) == 2 and len(r.cross_domain) == 8
    assert all(lab is not None and lab in p for lab, p in zip(r.cross_labels, r.cross_domain))
    assert len(unlearning.prompt_groups("sd15", "monet", profile="paper").cross_domain) == 320
    with pytest.raises(LocoError, match="unknown artist"):
        unlearning.prompt_groups("toy", "rembrandt")
    with pytest.raises(LocoError, match="not another artist"):
        unlearning.prompt_groups("toy", "monet", others=["monet"])


def test_generic_prompts_profiles():
    assert len(unlearning.generic_prompts("smoke")) == 8 and len(unlearning.generic_prompts("paper")) == 320
    assert unlearning.generic_prompts("smoke") == unlearning.generic_prompts("smoke")  # seeded
    toy = unlearning.generic_prompts("paper", "toy", exclude=["van gogh"])
    assert len(toy) == 48 and not any("van gogh" in p for p in toy)  # 4 shapes x 4 colours x 3 other styles
    assert len(unlearning.generic_prompts("paper", "toy", exclude=["circle"])) == 48
    with pytest.raises(LocoError, match="unknown profile"):
        unlearning.generic_prompts("full")


def test_readout_judge_on_rendered_scenes():
    """The organism's judge reads rendered ground truth: a scene shows its style; a style-free scene
    shows what its caption asks; another style is not the concept."""
    from loco_lib.clip_score import get_scorer
    from loco_lib.organism.world import Scene, render

    judge = get_scorer("toy-scorer").unlearning_judge()
    scenes = [Scene("circle", "red", "van gogh", 16, 16, 9), Scene("square", "blue", "monet", 16, 16, 9),
              Scene("cross", "green", None, 16, 16, 9)]
    rng = np.random.default_rng(0)
    images = [render(s, rng) for s in scenes]
    assert judge.shows_concept(images[:2], ["", ""], ["van gogh", "monet"]).tolist() == [True, True]
    assert judge.shows_concept(images[:2], ["", ""], ["monet", "van gogh"]).tolist() == [False, False]
    assert judge.shows_prompt(images[2:], ["a green cross"]).tolist() == [True]
    assert judge.shows_prompt(images[2:], ["a red cross"]).tolist() == [False]


def test_baselines_table_on_a_twin(sd15):
    """Layout and bookkeeping (the tiny CLIP's judgements mean nothing): one row per model, the
    image counts per group, and the unedited model's CLIP-score equal to a plain evaluation."""
    from loco_lib.clip_score import ClipScorer
    from loco_lib.evaluate import evaluate

    scorer = ClipScorer.tiny()
    g = unlearning.prompt_groups("tiny-sd15", "van gogh", n_per_concept=1, others=["Monet"])
    g.cross_domain, g.cross_labels = g.cross_domain[:2], g.cross_labels[:2]
    keys = load_edit("style", "van gogh")
    edits = {"original": None, "LocoEdit": locoedit.compute_edit(sd15, [8, 9], keys.originals, keys.targets, keys.subjects,
                                                                  keys.target_subjects),
             "UCE": uce.compute_edit(sd15, "van gogh", "a painting", ["monet"])}
    res = unlearning.baselines(sd15, edits, g, scorer=scorer, seeds=[0, 1], steps=2, progress=False)
    assert list(res.table.index) == list(edits) and list(res.table.columns) == ["UA", "IRA", "CRA", "CLIP vs T", "CLIP vs T'"]
    assert res.table.attrs["n"] == {"erased": 2, "in-domain": 2, "cross-domain": 4}
    assert ((res.table[["UA", "IRA", "CRA"]] >= 0) & (res.table[["UA", "IRA", "CRA"]] <= 1)).all().all()
    plain = evaluate(sd15, g.erased, g.targets, seeds=[0, 1], scorer=scorer, steps=2, progress=False)
    # the same images up to rounding: generated in another batch, a pixel may land one level away (measured on
    # an AVX-512 CPU: 2 pixels, moving this tiny CLIP's score by 1.3e-3); a mix-up of T and T' moves it by 12
    for got, alone in zip(res.images("original", "erased"), plain.images):
        assert np.abs(np.asarray(got, dtype=int) - np.asarray(alone, dtype=int)).max() <= 1
    assert abs(plain.clip_score - plain.clip_score_target) > 1
    assert res.table.loc["original", "CLIP vs T"] == pytest.approx(plain.clip_score, abs=1e-2)
    assert res.table.loc["original", "CLIP vs T'"] == pytest.approx(plain.clip_score_target, abs=1e-2)
    assert len(res.images("UCE", "erased")) == 1 and res.to_json()[0]["model"] == "original"
    assert not any(e is not None and e.is_applied(sd15) for e in edits.values())


def test_robustness_table_layout_and_one_original_run(sd15, monkeypatch):
    import importlib

    from loco_lib.clip_score import ClipScorer

    gen_module = importlib.import_module("loco_lib.generate")

    calls = []
    real = gen_module.generate

    def counting(pipe, prompts, **kw):
        calls.append(len(prompts))
        return real(pipe, prompts, **kw)

    monkeypatch.setattr(gen_module, "generate", counting)
    keys = load_edit("style", "van gogh")
    loc = locoedit.compute_edit(sd15, [8, 9], keys.originals, keys.targets, keys.subjects, keys.target_subjects)
    other = locoedit.compute_edit(sd15, [4, 5], keys.originals, keys.targets, keys.subjects, keys.target_subjects)
    prompts = unlearning.generic_prompts("smoke")[:3]
    table, per_image = unlearning.robustness_table(
        sd15, {"style": {"LocoEdit": loc, "DiffQuickFix": other}, "objects": {"LocoEdit": other}}, prompts,
        scorer=ClipScorer.tiny(), seeds=[0], steps=2, progress=False, original="Original")
    assert list(table.index) == ["Original", "LocoEdit", "DiffQuickFix"] and list(table.columns) == ["style", "objects"]
    assert np.isnan(table.loc["DiffQuickFix", "objects"]) and not table.loc["Original"].isna().any()
    assert table.loc["Original", "style"] == table.loc["Original", "objects"]  # the same prompts: run once
    assert calls == [3, 3, 3, 3]  # original once, then one run per edit
    assert len(per_image) == 3 * 5


# -- the human study (App. J) -----------------------------------------------------------------------

def _pairs(n=4):
    from loco_lib import study

    im = np.zeros((8, 8, 3), np.uint8)
    return study.make_pairs([f"p{i}" for i in range(n)], ["style", "object", "fact", "style"][:n], ["s"] * n,
                            list(range(n)), [im] * n, [im + 50] * n)


def test_rating_log_resumes_and_summary_counts(tmp_path):
    from loco_lib import study

    pairs = _pairs()
    log = study.RatingLog(tmp_path / "r.csv")
    for p, r in zip(pairs, [1, 3, 5, 2]):
        log.rate(p, r, "ann")
    log.rate(pairs[0], 4, "ann")  # a new rating replaces the old one
    log.rate(pairs[0], 1, "bob")
    again = study.RatingLog(tmp_path / "r.csv")
    assert again.rated("ann") == {p.id for p in pairs} and again.rated("bob") == {pairs[0].id}
    s = study.summary(tmp_path / "r.csv")
    assert s.loc["all", "ratings"] == 5 and s.loc["all", "above 1"] == pytest.approx(4 / 5)
    assert s.loc["style", "above 1"] == pytest.approx(2 / 3) and s.loc["style", "= 5"] == 0
    assert s.loc["fact", "= 5"] == 1 and s.loc["object", ">= 3"] == 1
    with pytest.raises(LocoError, match="1 to 5"):
        log.rate(pairs[0], 6)
    with pytest.raises(LocoError, match="no ratings"):
        study.summary(study.RatingLog(tmp_path / "empty.csv"))
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(LocoError, match="not a rating log"):
        study.RatingLog(tmp_path / "other.csv")


def test_viewer_records_a_click_and_moves_on(tmp_path):
    from loco_lib import study

    pairs = _pairs(2)
    box = study.viewer(pairs, tmp_path / "v.csv", rater="ann")
    buttons = box.children[3].children
    buttons[3].click()  # rates the first pair 4
    log = study.RatingLog(tmp_path / "v.csv")
    assert [(r["pair"], r["rating"]) for r in log.rows] == [(pairs[0].id, "4")]
    assert pairs[1].prompt in box.children[0].value
    buttons[0].click()
    assert "All pairs rated" in box.children[2].value
    fig = study.static_grid(pairs)
    assert len(fig.axes) >= 4
    with pytest.raises(LocoError, match="unknown attribute"):
        study.make_pairs(["p"], ["colour"], ["s"], [0], [None], [None])


def test_app_j_items_are_the_papers_eleven_prompts_with_targets_from_the_prompt_files():
    from loco_lib import study
    from loco_lib.prompts import load_human_study

    items = study.app_j_items("sd15")
    assert [it.prompt for it in items] == [e.prompt for e in load_human_study()] and len(items) == 11
    by = {it.prompt: it.target for it in items}
    assert by["a house in the style of van gogh"] == "a house in the style of a painting"
    assert by["cat"] == "dog" and by["nemo"] == "fish" and by["british monarch"] == "Prince Charles"
    assert by["president of the united states"] == "Joe Biden"
    # an organism: the same design (6 style, 3 object, 2 fact, App. J's order) in its own prompt world
    toy = study.app_j_items("toy")
    assert [it.attribute for it in toy] == [it.attribute for it in items]
    assert all(it.prompt != it.target for it in toy) and toy[0].prompt == "a red circle in the style of van gogh"


def test_app_j_pairs_are_the_clean_model_and_its_window_reading_the_target(sd15):
    from loco_lib import study
    from loco_lib.generate import generate
    from loco_lib.paper import default_window

    items = study.app_j_items("sd15")[3:5]  # a fact and an object: two windows in one call
    pairs = study.app_j_pairs(sd15, "sd15", seeds=[0, 1], items=items, steps=2, progress=False)
    assert [(p.prompt, p.seed, p.attribute) for p in pairs] == [
        ("british monarch", 0, "fact"), ("british monarch", 1, "fact"), ("cat", 0, "object"), ("cat", 1, "object")]
    clean = generate(sd15, "cat", seeds=1, steps=2, progress=False).images[0]
    alone = generate(sd15, "cat", alt_prompts="dog", layers=default_window("sd15", "objects"), seeds=1, steps=2,
                     progress=False).images[0]
    px = lambda a, b: np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int))
    # batched with other prompts and windows as alone: the same images up to a rounding of the last pixel level
    assert px(pairs[3].before, clean).max() <= 1 and px(pairs[3].after, alone).max() <= 1
    # the window reading "dog" changes the image, by far more than batching does
    assert px(pairs[3].before, pairs[3].after).mean() > 10 * px(pairs[3].before, clean).mean() + 0.05
    assert "'cat'" in pairs[3].question
    with pytest.raises(LocoError, match="at least one prompt"):
        study.app_j_pairs(sd15, "sd15", seeds=[], items=items)


# -- the command line ------------------------------------------------------------------------------

def test_cli_uce_and_multi_concept_edits(capsys, tmp_path):
    from loco_lib.edit_file import Edit

    out = tmp_path / "u.safetensors"
    assert main(["edit", "tiny-sd15", "--attribute", "style", "--method", "uce", "--concept", "van gogh",
                 "--out", str(out)]) == 0
    e = Edit.load(out)
    assert e.method == "uce" and len(e.layers) == 16 and "Van Gogh" not in e.meta["preserve"] and "Monet" in e.meta["preserve"]
    out2 = tmp_path / "m.safetensors"
    assert main(["edit", "tiny-sd15", "--attribute", "style", "--concept", "van gogh,monet", "--layers", "8,9;9,10",
                 "--out", str(out2)]) == 0
    m = Edit.load(out2)
    assert m.layers == [8, 9, 10] and [c.lower() for c in m.meta["concepts"]] == ["van gogh", "monet"]
    capsys.readouterr()


BAD = {
    "guide without uce": (["edit", "tiny-sd15", "--attribute", "style", "--layers", "8", "--guide", "x", "--out", "{tmp}/a.safetensors"], "--guide is UCE's"),
    "windows vs concepts": (["edit", "tiny-sd15", "--attribute", "style", "--concept", "van gogh,monet", "--layers", "1;2;3", "--out", "{tmp}/a.safetensors"], "3 windows in --layers for 2 concepts"),
    "diffquickfix two concepts": (["edit", "tiny-sd15", "--attribute", "style", "--method", "diffquickfix", "--concept", "van gogh,monet", "--out", "{tmp}/a.safetensors"], "one concept at a time"),
    "empty concept": (["edit", "tiny-sd15", "--attribute", "style", "--concept", " , ", "--layers", "8", "--out", "{tmp}/a.safetensors"], "--concept is empty"),
    "concept without unlearning": (["evaluate", "tiny-sd15", "--attribute", "style", "--concept", "monet"], "go with --unlearning"),
    "unlearning of objects": (["evaluate", "tiny-sd15", "--attribute", "objects", "--unlearning"], "use --attribute style"),
    "bad profile": (["evaluate", "tiny-sd15", "--attribute", "style", "--unlearning", "--profile", "full"], "invalid choice"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line(capsys, tmp_path, case):
    argv, needle = BAD[case]
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[-1] and "Traceback" not in err, err


def test_cli_evaluate_unlearning_json(capsys, tmp_path):
    import json

    path = tmp_path / "e.safetensors"
    assert main(["edit", "tiny-sd15", "--attribute", "style", "--method", "uce", "--out", str(path)]) == 0
    capsys.readouterr()
    code = main(["evaluate", "tiny-sd15", "--attribute", "style", "--edit", str(path), "--unlearning", "--limit", "1",
                 "--steps", "2", "--quiet", "--json", "--scorer", "tiny"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["unlearning"]["concept"] == "Van Gogh"
    assert [m["model"] for m in out["unlearning"]["models"]] == ["original", "edited"]
    assert set(out["unlearning"]["models"][1]) >= {"UA", "IRA", "CRA", "CLIP vs T", "CLIP vs T'"}
