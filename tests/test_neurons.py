"""Neuron-level editing (paper Sec. 7, App. K): statistic, activations, ranking, the edit, the sweep."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from loco_lib import models
from loco_lib.clip_score import ClipScorer
from loco_lib.errors import LocoError
from loco_lib.generate import generate
from loco_lib.hooks import Record, hooks, kv_site
from loco_lib.layers import cross_attention_layers
from loco_lib.neurons import (
    NeuronEdit,
    k_sweep,
    kv_activations,
    neurons_replaced,
    plot_k_sweep,
    rank_neurons,
    welch_statistic,
)
from loco_lib.tokens import subject_token_index

WITH = [
    "a house in the style of van gogh",
    "a river at sunset in the style of van gogh",
    "two trees in a field, painted by van gogh",
    "olive trees in the style of van gogh",
]
WITHOUT = [
    "a house in the style of a painting",
    "a river at sunset in the style of a painting",
    "two trees in a field, a painting",
]
LAYERS = {"tiny-sd15": [8, 9], "tiny-sd21": [8, 9, 10], "tiny-sdxl": [45, 46, 47], "tiny-if": [12, 13, 14]}
OTHER_LAYER = {"tiny-sd15": 3, "tiny-sd21": 3, "tiny-sdxl": 3, "tiny-if": 3}  # a layer left alone
K = 5
STEPS = 2
PROMPTS = ["a house in the style of van gogh", "olive trees in the style of van gogh"]
SEEDS = [0, 1]


def _run(pipe, prompts=PROMPTS, seeds=SEEDS, **kw) -> np.ndarray:
    kw.setdefault("steps", STEPS)
    out = generate(pipe, prompts, seeds=seeds, output_type="np", progress=False, **kw)
    return np.stack([np.asarray(im) for im in out.images])


_RANKINGS: dict = {}


def ranking_of(twin):
    name, pipe = twin
    if name not in _RANKINGS:
        _RANKINGS[name] = rank_neurons(pipe, LAYERS[name], WITH, WITHOUT, "van gogh", "a painting")
    return _RANKINGS[name]


def _modules(pipe, name, layer_indices):
    layers = cross_attention_layers(pipe.unet)
    mods = dict(pipe.unet.named_modules())
    out = {}
    for i in layer_indices:
        attn = mods[layers[i].name]
        out[(i, "key")] = getattr(attn, layers[i].key)
        out[(i, "value")] = getattr(attn, layers[i].value)
    return out


class Capture:
    """Records every output (all rows) of some K/V projections, per call, through loco_lib.hooks."""

    def __init__(self, pipe, name, layer_indices):
        layers = cross_attention_layers(pipe.unet)
        self.sites = {(i, p): kv_site(layers[i], p) for i in layer_indices for p in ("key", "value")}
        self.pipe = pipe

    def __enter__(self):
        self._ctx = hooks(self.pipe, records=[Record(s, branch="all") for s in self.sites.values()])
        self._trace = self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self.outputs = {key: self._trace[site] for key, site in self.sites.items()}
        return self._ctx.__exit__(*exc)


def _hook_count(unet) -> int:
    n = 0
    for m in unet.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
    return n


# 1. the statistic ----------------------------------------------------------------------------

@pytest.mark.parametrize("n1,n2,d", [(5, 7, 3), (2, 2, 4), (20, 3, 1), (10, 4, 50), (6, 6, 1280)])
def test_welch_matches_scipy(n1, n2, d):
    rng = np.random.default_rng(n1 * 100 + n2 + d)
    a = rng.normal(0.3, 1.0, size=(n1, d))
    b = rng.normal(0.0, 2.5, size=(n2, d))
    got = welch_statistic(a, b)
    want = stats.ttest_ind(a, b, equal_var=False).statistic
    assert got.shape == (d,) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # torch float32 input is promoted to float64 first
    got_t = welch_statistic(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
    want_t = stats.ttest_ind(a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64), equal_var=False).statistic
    np.testing.assert_allclose(got_t, want_t, rtol=1e-12, atol=1e-12)
    # the sign: group a has the larger mean on average
    assert welch_statistic(a + 100.0, b).min() > 0


def _ddof0_statistic(a, b):
    """The authors' get_z_score (np.std, ddof=0), written out per column."""
    return (a.mean(0) - b.mean(0)) / np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))


def test_welch_ddof_note():
    """The ddof note of loco_lib.neurons / the neuron chapter: equal group sizes -> a constant factor
    sqrt(n / (n - 1)) and the same ranking; unequal sizes -> the rankings can differ."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.2, 1.0, size=(6, 400)), rng.normal(0.0, 1.0, size=(6, 400)) * rng.uniform(0.2, 3, 400)
    ours, theirs = welch_statistic(a, b), _ddof0_statistic(a, b)
    np.testing.assert_allclose(theirs / ours, np.sqrt(6 / 5), rtol=1e-12)
    assert np.array_equal(np.argsort(-np.abs(ours)), np.argsort(-np.abs(theirs)))
    a2 = rng.normal(0.2, 1.0, size=(3, 400)) * rng.uniform(0.2, 3, 400)
    b2 = rng.normal(0.0, 1.0, size=(12, 400)) * rng.uniform(0.2, 3, 400)
    assert not np.array_equal(np.argsort(-np.abs(welch_statistic(a2, b2))), np.argsort(-np.abs(_ddof0_statistic(a2, b2))))


def test_welch_edge_cases():
    a = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]])
    b = np.array([[1.0, 0.0], [1.0, 1.0]])
    got = welch_statistic(a, b)
    want = stats.ttest_ind(a, b, equal_var=False).statistic
    assert np.isnan(got[0]) and np.isnan(want[0])  # constant and equal in both groups: 0/0
    assert got[1] == pytest.approx(want[1], rel=1e-12)
    with pytest.raises(LocoError):
        welch_statistic(a[:1], b)
    with pytest.raises(LocoError):
        welch_statistic(a, np.ones((3, 3)))


# 2. activations equal what the projections output inside a real UNet call --------------------

def test_kv_activations_match_unet_call(twin):
    name, pipe = twin
    layers = LAYERS[name]
    # the subject is not always the last token, and sits at different positions
    prompts = ["a house in the style of van gogh", "van gogh painted olive trees at noon", "a river, painted by van gogh, at sunset"]
    acts = kv_activations(pipe, layers, prompts, "van gogh")
    pos = [subject_token_index(pipe, p, "van gogh") for p in prompts]
    assert len(set(pos)) > 1  # the prompts put the subject at different positions
    with Capture(pipe, name, layers) as cap:
        _run(pipe, prompts, seeds=0, steps=1)
    n = len(prompts)
    for (i, proj), outs in cap.outputs.items():
        first = outs[0]  # [uncond..., cond...] x 77 x d'
        assert first.shape[0] == 2 * n
        ref = first[n:][torch.arange(n), torch.tensor(pos)]
        got = acts[i][proj]
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref.float(), rtol=1e-5, atol=1e-6)
    # the projection really sees the pipeline's input: IF has a bias, so a hand-rolled c W^T would differ
    if name == "tiny-if":
        assert _modules(pipe, name, layers)[(layers[0], "key")].bias is not None


def test_kv_activations_fixed_position():
    pipe = models.load("tiny-sd15", progress=False)
    a76 = kv_activations(pipe, [8], WITH[:2], position=76)
    last = kv_activations(pipe, [8], WITH[:2])
    assert not torch.equal(a76[8]["key"], last[8]["key"])
    # padding tokens past the prompt: both prompts give the same state only if the encoder ignored the prompt
    with pytest.raises(LocoError):
        kv_activations(pipe, [8], WITH[:2], position=77)
    with pytest.raises(LocoError):
        kv_activations(pipe, [8], WITH[:2], "van gogh", position=5)


# 3. the ranking -----------------------------------------------------------------------------

def test_ranking_order_and_top_sizes(twin):
    name, pipe = twin
    r = ranking_of(twin)
    assert [l.index for l in r.layers] == LAYERS[name]
    assert r.n_with == len(WITH) and r.n_without == len(WITHOUT)
    acts_w = kv_activations(pipe, LAYERS[name], WITH, "van gogh")
    acts_o = kv_activations(pipe, LAYERS[name], WITHOUT, "a painting")
    for key in r.keys:
        i, proj = key
        np.testing.assert_array_equal(r.z[key], welch_statistic(acts_w[i][proj], acts_o[i][proj]))
        np.testing.assert_allclose(r.neutral_mean[key], acts_o[i][proj].double().mean(0).numpy(), rtol=1e-12)
        az = np.abs(r.z[key])[r.order[key]]
        assert np.all(np.diff(az) <= 0)  # |z| descending
        assert sorted(r.order[key].tolist()) == list(range(r.width(key)))
    sel = r.top(K)
    assert set(sel) == set(r.keys)
    for key, idx in sel.items():
        assert len(idx) == K
        assert np.abs(r.z[key])[idx].min() >= np.delete(np.abs(r.z[key]), idx).max()
    assert all(len(v) == 0 for v in r.top(0).values())
    glob = r.top(K, scope="global")
    assert sum(len(v) for v in glob.values()) == K
    chosen = np.concatenate([np.abs(r.z[key])[idx] for key, idx in glob.items()])
    rest = np.concatenate([np.delete(np.abs(r.z[key]), idx) for key, idx in glob.items()])
    assert chosen.min() >= rest.max()
    with pytest.raises(LocoError):
        r.top(r.width(r.keys[0]) + 1)
    with pytest.raises(LocoError):
        r.top(-1)
    table = r.table()
    assert len(table) == sum(r.width(key) for key in r.keys)
    assert table["abs_z"].is_monotonic_decreasing


# 4. the edit ----------------------------------------------------------------------------------

def test_k0_is_plain_and_k_changes_image(twin):
    name, pipe = twin
    r = ranking_of(twin)
    unet = pipe.unet
    before_hooks = _hook_count(unet)
    procs = {n: m.processor for n, m in unet.named_modules() if hasattr(m, "set_processor")}
    plain = _run(pipe)
    with neurons_replaced(pipe, r, 0, guidance=True, n_samples=len(PROMPTS)) as edit:
        assert _hook_count(unet) > before_hooks  # the hooks are there, and do nothing
        same = _run(pipe)
    assert edit.n_neurons == 0
    assert np.array_equal(same, plain)
    with neurons_replaced(pipe, r, K, guidance=True, n_samples=len(PROMPTS)):
        edited = _run(pipe)
    assert not np.array_equal(edited, plain)
    assert _hook_count(unet) == before_hooks == 0
    after = {n: m.processor for n, m in unet.named_modules() if hasattr(m, "set_processor")}
    assert after.keys() == procs.keys() and all(after[n] is procs[n] for n in procs)
    assert np.array_equal(_run(pipe), plain)  # nothing left behind


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_only_chosen_neurons_of_conditional_rows_change(twin, mode):
    name, pipe = twin
    r = ranking_of(twin)
    n = len(PROMPTS)
    watched = LAYERS[name] + [OTHER_LAYER[name]]
    with Capture(pipe, name, watched) as cap:
        _run(pipe)
    plain = cap.outputs
    with neurons_replaced(pipe, r, K, mode, guidance=True, n_samples=n) as edit:
        with Capture(pipe, name, watched) as cap:  # installed after the edit's hooks: sees the edited outputs
            _run(pipe)
    edited = cap.outputs
    assert _hook_count(pipe.unet) == 0
    for key in plain:
        assert len(edited[key]) == len(plain[key]) > 0
        for p, e in zip(plain[key], edited[key]):
            assert torch.equal(e[:n], p[:n])  # unconditional rows never change
            if key[0] not in LAYERS[name]:
                assert torch.equal(e, p)
                continue
            idx = torch.as_tensor(edit.selection[key])
            keep = torch.ones(p.shape[-1], dtype=torch.bool)
            keep[idx] = False
            assert torch.equal(e[n:][..., keep], p[n:][..., keep])
            got = e[n:][..., idx]
            if mode == "zero":
                want = torch.zeros_like(got)
            else:
                want = torch.as_tensor(r.neutral_mean[key][idx.numpy()], dtype=got.dtype).expand_as(got)
            assert torch.equal(got, want)
            assert not torch.equal(p[n:][..., idx], got)


def test_without_guidance_every_row_is_conditional():
    pipe = models.load("tiny-sd15", progress=False)
    twin = ("tiny-sd15", pipe)
    r = ranking_of(twin)
    with neurons_replaced(pipe, r, K, "zero", guidance=False) as edit:
        with Capture(pipe, "tiny-sd15", [8]) as cap:
            _run(pipe, guidance=1.0)
    out = cap.outputs[(8, "key")][0]
    assert out.shape[0] == len(PROMPTS)
    assert torch.equal(out[..., torch.as_tensor(edit.selection[(8, "key")])], torch.zeros(out.shape[:-1] + (K,)))


def test_layout_and_model_mismatch_are_errors():
    pipe = models.load("tiny-sd15", progress=False)
    r = ranking_of(("tiny-sd15", pipe))
    with pytest.raises(LocoError, match="n_samples"):
        with neurons_replaced(pipe, r, K):
            _run(pipe)
    with pytest.raises(LocoError):
        with neurons_replaced(pipe, r, K, guidance=True, n_samples=3):
            _run(pipe)
    with pytest.raises(LocoError):
        NeuronEdit(r, K, "dropout")
    other = models.load("tiny-if", progress=False)
    with pytest.raises(LocoError, match="same model"):
        with neurons_replaced(other, r, K, guidance=True):
            pass
    assert _hook_count(pipe.unet) == 0 and _hook_count(other.unet) == 0


# 5. the sweep -------------------------------------------------------------------------------

def test_k_sweep_and_plot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pipe = models.load("tiny-sd15", progress=False)
    r = ranking_of(("tiny-sd15", pipe))
    scorer = ClipScorer.tiny()
    ks = (0, 2, K)
    df = k_sweep(pipe, r, PROMPTS, ks=ks, scorer=scorer, seeds=SEEDS, steps=STEPS, score_texts="style of van gogh",
                 label="van gogh")
    assert list(df["k"]) == list(ks) and len(df) == len(ks)
    assert {"k", "clip_score", "std", "scores", "n_neurons"} <= set(df.columns)
    assert list(df["n_neurons"]) == [k * 2 * len(LAYERS["tiny-sd15"]) for k in ks]
    for _, row in df.iterrows():
        assert len(row["scores"]) == len(PROMPTS)
        assert row["clip_score"] == pytest.approx(np.mean(row["scores"]))
        assert row["std"] == pytest.approx(np.std(row["scores"]))
    plain = scorer.score(list(_run(pipe)), "style of van gogh").double().numpy()
    np.testing.assert_allclose(df["scores"][0], plain, rtol=1e-6)  # k = 0 is the plain run
    fig = plot_k_sweep(df)
    assert fig.axes[0].get_ylabel() == "CLIP-score"
    plt.close(fig)
