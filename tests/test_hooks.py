"""Record and patch by name (loco_lib.hooks): the one mechanism behind every experiment."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from loco_lib import models
from loco_lib.errors import LocoError
from loco_lib.generate import sample_batch
from loco_lib.hooks import Patch, Record, Site, hooks, kv_site, text_site, unet_input
from loco_lib.layers import cross_attention_layers
from loco_lib.text import encode
from floats import ULPS, close, ulps  # tests/floats.py

A = "a photo of a cat"
B = "an oil painting of a red car"
STEPS = 2
GUIDANCE = 7.5


@pytest.fixture(scope="module", params=["tiny-sd15", "tiny-if"])
def pipe(request):
    return models.load(request.param, progress=False)


@pytest.fixture(scope="module")
def sd15():
    return models.load("tiny-sd15", progress=False)


def run(pipe, prompts, seeds=None, **kw) -> np.ndarray:
    prompts = [prompts] if isinstance(prompts, str) else prompts
    seeds = [0] * len(prompts) if seeds is None else seeds
    kw.setdefault("guidance", GUIDANCE)
    imgs = sample_batch(pipe, encode(pipe, prompts), seeds, steps=STEPS, output_type="np", **kw)
    return np.stack([np.asarray(i) for i in imgs])


def all_hooks(module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._forward_hooks_with_kwargs)
               + len(m._forward_pre_hooks_with_kwargs) for m in module.modules())


def replay(trace, site):
    """A patch function putting back, at each step, what ``site`` held in the recorded run."""
    recorded = trace[site]
    return lambda clean, call: recorded[call.step]


def test_record_then_patch_back_is_bit_identical(pipe):
    layers = cross_attention_layers(pipe.unet)
    sites = [text_site(layers[3]), Site("unet", "mid_block", "output"), kv_site(layers[1], "value")]
    with hooks(pipe, records=[Record(s) for s in sites], n_samples=1, guidance=True) as trace:
        plain = run(pipe, A)
    for s in sites:
        assert len(trace[s]) == STEPS and trace[s][0].shape[0] == 1  # one conditional row per step
    with hooks(pipe, patches=[Patch(s, replay(trace, s)) for s in sites], n_samples=1, guidance=True):
        back = run(pipe, A)
    assert np.array_equal(back, plain)


def test_recorded_text_states_restore_the_clean_run(sd15):
    """Every layer's text input recorded in a run of A, patched into a run of B, gives A's image
    (SD-1.5 reads text only through cross-attention), and one layer alone does not."""
    layers = cross_attention_layers(sd15.unet)
    sites = [text_site(l) for l in layers]
    with hooks(sd15, records=[Record(s) for s in sites], n_samples=1, guidance=True) as trace:
        clean = run(sd15, A)
    with hooks(sd15, patches=[Patch(s, replay(trace, s)) for s in sites], n_samples=1, guidance=True):
        restored = run(sd15, B)
    assert np.array_equal(restored, clean)
    with hooks(sd15, patches=[Patch(sites[5], replay(trace, sites[5]))], n_samples=1, guidance=True):
        partly = run(sd15, B)
    assert not np.array_equal(partly, clean)


def test_patching_states_the_text_never_reaches_changes_nothing(pipe):
    """The time embedding depends on the step alone, and the first step's conv_in on the noise
    alone: patching them with another prompt's values leaves the image bit-for-bit as it was."""
    blind = [Site("unet", "time_embedding", "output")]
    with hooks(pipe, records=[Record(s, branch="all") for s in blind] + [Record(Site("unet", "conv_in", "output"), branch="all", steps=[0])],
               n_samples=1, guidance=True) as trace:
        run(pipe, B)
    plain = run(pipe, A)
    patches = [Patch(s, replay(trace, s), branch="all") for s in blind]
    patches.append(Patch(Site("unet", "conv_in", "output"), trace["unet:conv_in:output"][0], branch="all", steps=[0]))
    with hooks(pipe, patches=patches, n_samples=1, guidance=True):
        assert np.array_equal(run(pipe, A), plain)
    # the same route to a state the text does reach changes the image, so the test can fail
    site = text_site(cross_attention_layers(pipe.unet)[2])
    with hooks(pipe, records=[Record(site)], n_samples=1, guidance=True) as other:
        run(pipe, B)
    with hooks(pipe, patches=[Patch(site, replay(other, site))], n_samples=1, guidance=True):
        assert not np.array_equal(run(pipe, A), plain)


def test_per_sample_patches_in_one_batch_equal_separate_runs(sd15):
    layers = cross_attention_layers(sd15.unet)
    other = encode(sd15, [B, "a blue bird"]).embeds
    patches = [Patch(text_site(layers[3]), other, samples=[0]), Patch(text_site(layers[9]), other, samples=[1])]
    batched = run(sd15, [A, A], seeds=[0, 1], patches=patches)
    one = run(sd15, A, seeds=[0], patches=[Patch(text_site(layers[3]), other[:1])])
    two = run(sd15, A, seeds=[1], patches=[Patch(text_site(layers[9]), other[1:])])
    assert close(batched, np.concatenate([one, two]))
    assert not np.array_equal(batched[0], batched[1])


def test_branch_steps_and_tokens_select_rows(sd15):
    site = text_site(cross_attention_layers(sd15.unet)[4])
    zeros = torch.zeros(1, 77, sd15.unet.config.cross_attention_dim)

    def seen(**kw):
        with hooks(sd15, records=[Record(site, branch="all")], patches=[Patch(site, zeros, **kw)], n_samples=1, guidance=True) as t:
            run(sd15, A)
        return t[site]

    plain = seen(steps=[])  # a patch at no step changes nothing
    cond_only = seen()
    assert torch.equal(cond_only[0][0], plain[0][0]) and torch.equal(cond_only[0][1], zeros[0])  # [uncond, cond]
    uncond_only = seen(branch="uncond")
    assert torch.equal(uncond_only[0][0], zeros[0]) and torch.equal(uncond_only[0][1], plain[0][1])
    late = seen(steps=[1])
    assert torch.equal(late[0], plain[0]) and torch.equal(late[1][1], zeros[0])
    tokens = torch.zeros(77, dtype=torch.bool)
    tokens[5:] = True
    some = seen(tokens=tokens)
    assert torch.equal(some[0][1, :5], plain[0][1, :5]) and torch.equal(some[0][1, 5:], zeros[0, 5:])


def test_text_encoder_sites_record_what_encode_returns(sd15):
    site = Site("text_encoder", "final_layer_norm", "output")
    with hooks(sd15, records=[Record(site)]) as trace:
        cond = encode(sd15, [A, B])
    assert len(trace[site]) == 2  # the prompts, then the negative prompt
    assert torch.equal(trace[site][0], cond.embeds)
    with pytest.raises(LocoError, match="branches"):
        Record(site, branch="cond")


def test_unet_inputs_by_name_and_dict_entries():
    sdxl = models.load("tiny-sdxl", progress=False)
    pooled = encode(sdxl, [B]).pooled
    site = unet_input("added_cond_kwargs.text_embeds")
    with hooks(sdxl, records=[Record(site, branch="all")], patches=[Patch(site, pooled)], n_samples=1, guidance=True) as t:
        run(sdxl, A, guidance=5.0)
    assert torch.equal(t[site][0][1], pooled[0])
    assert not torch.equal(t[site][0][0], pooled[0])


def test_hooks_are_gone_after_an_exception(pipe):
    layers = cross_attention_layers(pipe.unet)
    procs = {n: m.processor for n, m in pipe.unet.named_modules() if hasattr(m, "set_processor")}
    before = (all_hooks(pipe.unet), all_hooks(pipe.text_encoder))
    plain = run(pipe, A)
    sites = [text_site(layers[0]), kv_site(layers[1], "key"), Site("unet", "conv_in", "input"), Site("text_encoder", "", "output")]
    with pytest.raises(RuntimeError, match="boom"):
        with hooks(pipe, records=[Record(s, branch="all") for s in sites],
                   patches=[Patch(sites[0], torch.zeros(1))], n_samples=1, guidance=True):
            assert all_hooks(pipe.unet) > before[0]
            raise RuntimeError("boom")
    assert (all_hooks(pipe.unet), all_hooks(pipe.text_encoder)) == before
    after = {n: m.processor for n, m in pipe.unet.named_modules() if hasattr(m, "set_processor")}
    assert all(after[n] is procs[n] for n in procs)
    assert np.array_equal(run(pipe, A), plain)


def test_bad_sites_and_patches_are_one_line_errors(sd15):
    with pytest.raises(LocoError, match="site kind"):
        Site("unet", "conv_in", "outputs")
    with pytest.raises(LocoError, match="no module"):
        with hooks(sd15, records=[Record("unet:no_such.block:output")]):
            pass
    with pytest.raises(LocoError, match="no 'vae_2'"):
        with hooks(sd15, records=[Record(Site("vae_2", "x"))]):
            pass
    with pytest.raises(LocoError, match="a tensor, a function"):
        Patch(Site("unet", "conv_in"), [1, 2, 3])
    with pytest.raises(LocoError, match="shape"):
        with hooks(sd15, patches=[Patch(Site("unet", "conv_in"), torch.zeros(1, 3))], n_samples=1, guidance=True):
            run(sd15, A)
    with pytest.raises(LocoError, match="lists"):
        with hooks(sd15, records=Record(Site("unet", "conv_in"))):
            pass
    assert Site.parse("unet:mid_block:output") == Site("unet", "mid_block", "output")
    assert Site.parse(str(unet_input("added_cond_kwargs.text_embeds"))) == unet_input("added_cond_kwargs.text_embeds")
    assert all_hooks(sd15.unet) == 0


class ScaledProcessor:
    """A custom processor with an extra keyword (``scale`` would also reach the text encoder's LoRA
    path): what diffusers hands it is recorded."""

    def __init__(self, inner):
        self.inner = inner
        self.seen = []

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temperature: float = 1.0):
        self.seen.append(temperature)
        return self.inner(attn, hidden_states, encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask)


def test_the_processor_wrapper_forwards_every_keyword_its_processor_accepts(sd15):
    layer = cross_attention_layers(sd15.unet)[2]
    attn = sd15.unet.get_submodule(layer.name)
    original = attn.processor
    custom = ScaledProcessor(original)
    attn.set_processor(custom)
    try:
        cond = encode(sd15, [A])
        call = dict(prompt_embeds=cond.embeds, negative_prompt_embeds=cond.negative, num_inference_steps=1,
                    guidance_scale=GUIDANCE, output_type="np", cross_attention_kwargs={"temperature": 0.25},
                    generator=torch.Generator().manual_seed(0))
        sd15(**call)
        assert custom.seen == [0.25]
        with hooks(sd15, records=[Record(text_site(layer))], n_samples=1, guidance=True) as trace:
            call["generator"] = torch.Generator().manual_seed(0)
            sd15(**call)
        assert custom.seen == [0.25, 0.25] and len(trace[text_site(layer)]) == 1
        assert attn.processor is custom
    finally:
        attn.set_processor(original)


def test_output_patches_reach_hidden_states_captured_by_transformers():
    """transformers 5 records hidden_states through forward hooks it installs once, on first use;
    a loco patch on an encoder layer must be what they record also when they were there first
    (SD-XL reads the penultimate hidden state). The UNet's own output is a site too."""
    pipe = models.load("tiny-sdxl", progress=False)
    enc, tok = pipe.text_encoder_2, pipe.tokenizer_2
    ids = tok(["a cat"], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        enc(ids, output_hidden_states=True)  # installs transformers' capture hooks before ours
        site = Site("text_encoder_2", "text_model.encoder.layers.0", "output")
        with hooks(pipe, patches=[Patch(site, lambda clean, call: clean * 0 + 7.0)]):
            out = enc(ids, output_hidden_states=True)
    assert torch.all(out.hidden_states[1] == 7.0)
    cond = encode(pipe, ["a cat"])
    root = Site("unet", "", "output")
    with hooks(pipe, patches=[Patch(root, lambda clean, call: clean * 0, branch="all")], records=[Record(root, branch="all")],
               n_samples=1, guidance=True) as tr:
        sample_batch(pipe, cond, [0], steps=1, guidance=5.0, output_type="np")
    assert tr.calls["unet"] == 1 and torch.all(tr[root][0] == 0)


def test_identical_rows_are_found_exactly_and_lazily():
    """Row sharing groups rows that are bitwise equal in every tensor and label (a fingerprint
    collision is not enough), and makes a lazily given tensor only while some rows still match."""
    from loco_lib.hooks import _unique_rows

    a = torch.tensor([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [1.0, 2.0], [3.0, 0.0]])  # rows 2 and 4: same sum as row 0
    b = torch.tensor([5.0, 5.0, 5.0, 6.0, 5.0])
    keep, inverse = _unique_rows(5, [a, b])
    assert keep == [0, 2, 3, 4] and inverse == [0, 0, 1, 2, 3]
    keep, inverse = _unique_rows(5, [a, b], labels=["x", "y", "x", "x", "x"])
    assert keep == [0, 1, 2, 3, 4] and inverse == [0, 1, 2, 3, 4]
    made = []

    def costly():
        made.append(1)
        return torch.zeros(5, 3)

    assert _unique_rows(5, [torch.arange(5.0), costly]) == ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4]) and made == []
    assert _unique_rows(5, [torch.zeros(5), costly]) == ([0], [0] * 5) and made == [1]


def test_a_record_keeps_a_function_of_its_rows_where_it_is_given_one():
    """``Record(site, reduce=fn)`` at a module input keeps ``fn(rows, samples)`` (here two positions of
    each selected row), after the site's patches; at an attention site ``reduce`` stays required."""
    model = torch.nn.Sequential(torch.nn.Identity())
    x = torch.arange(3 * 4 * 2, dtype=torch.float32).view(3, 4, 2)
    take = lambda rows, samples: rows[:, [1, 3]] * (1 + torch.tensor(samples, dtype=rows.dtype))[:, None, None]  # noqa: E731
    patch = Patch(Site("unet", "0", "input"), torch.zeros(1, 4, 2), samples=[2], branch="all")
    with hooks(model, patches=[patch], records=[Record(Site("unet", "0", "input"), samples=[0, 2], branch="all",
                                                       reduce=take)], n_samples=3, guidance=False) as seen:
        model(x)
    (kept,) = seen[Site("unet", "0", "input")]
    assert torch.equal(kept, torch.stack([x[0, [1, 3]], torch.zeros(2, 2)]))  # sample 2 was patched to zeros
    with pytest.raises(LocoError, match="attention site needs reduce"):
        Record(Site("unet", "mid_block.attentions.0.transformer_blocks.0.attn2", "attention"))
