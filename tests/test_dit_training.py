"""ESD-x and Concept Ablation (loco_lib/finetune.py) on the diffusion-transformer twins: the family's
``predict`` calls the transformer exactly as the pipeline did at the recorded point, and the
baselines train the blocks' cross-attention only."""
from __future__ import annotations

import pytest
import torch

from loco_lib import finetune
from loco_lib.families import registry
from loco_lib.models import load


@pytest.fixture(scope="module", params=["tiny-pixart", "tiny-sana"])
def twin(request):
    return load(request.param, progress=False)


def test_predict_is_the_pipelines_own_call(twin, monkeypatch):
    model = registry.denoiser(twin)
    seen = []
    forward = type(model).forward

    def spy(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        seen.append((out[0] if isinstance(out, tuple) else out.sample).detach().clone())
        return out

    monkeypatch.setattr(type(model), "forward", spy)
    x, t, hidden, added = finetune.trajectory_point(twin, "a cat in the style of van gogh", 0, 1, steps=3)
    monkeypatch.setattr(type(model), "forward", forward)
    assert len(seen) == 2  # steps 0 and 1; the run stops before step 2's call
    with torch.no_grad():
        mine = finetune._predict(model, x, t, hidden, added)
    assert torch.equal(mine, seen[1][:, : x.shape[1]])
    assert added["encoder_attention_mask"].shape == (2, hidden.shape[1])  # [uncond, cond] rows with their masks


def test_esd_and_concept_ablation_train_the_cross_attention_only(twin):
    n = len(registry.denoiser_family(twin).text_layers(registry.denoiser(twin)))
    esd = finetune.esd(twin, "van gogh", steps=2, sample_steps=3, progress=False)
    assert {k.split(".attn2.")[0] for k in esd.weights} == {f"transformer_blocks.{i}" for i in range(n)}
    assert all(".attn2." in k for k in esd.weights) and len(esd.meta["losses"]) == 2
    ca = finetune.concept_ablation(twin, "a cat in the style of van gogh", "a cat", steps=2, sample_steps=3, progress=False)
    assert {k.rsplit(".", 2)[-2] for k in ca.weights} == {"to_k", "to_v"} and len(ca.weights) == 4 * n  # weights, biases
    model = registry.denoiser(twin)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with ca.applied(twin):
        assert any(not torch.equal(model.state_dict()[k], before[k]) for k in ca.weights)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
