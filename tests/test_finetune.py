"""ESD-x and Concept Ablation (loco_lib.finetune) on the tiny twins: what they train, the loss they
start from (written out from each paper's objective), the point of the sampling run they read,
resume from a checkpoint, save/apply/revert as every Edit, one-line errors."""
import pytest
import torch

from loco_lib import finetune, models
from loco_lib.edit_file import Edit, weights_checksum
from loco_lib.errors import LocoError
from loco_lib.hooks import Record, hooks, unet_input
from loco_lib.text import encode

PROMPT, ANCHOR = "a house in the style of van gogh", "a house in the style of a painting"
FAST = dict(lr=1e-3, sample_steps=4, progress=False)


@pytest.fixture(scope="module")
def sd15():
    return models.load("tiny-sd15", progress=False)


def test_the_sampling_point_is_the_pipelines_own_run_at_that_step(sd15):
    x, t, hidden, added = finetune.trajectory_point(sd15, PROMPT, 3, 2, steps=4)
    cond = encode(sd15, [PROMPT])
    assert added is None and torch.equal(hidden[0], cond.negative[0]) and torch.equal(hidden[1], cond.embeds[0])
    # the same run to the end, recorded at step 2: the same latent and timestep
    with hooks(sd15, records=[Record(unet_input(0), branch="all", steps=[2])], n_samples=1, guidance=True) as trace:
        sd15(**cond.pipeline_kwargs("sd"), num_inference_steps=4, guidance_scale=7.5,
             generator=[torch.Generator("cpu").manual_seed(3)], output_type="latent")
    assert torch.equal(trace[unet_input(0)][0], x) and t == sd15.scheduler.timesteps[2]


@pytest.mark.parametrize("name,esd_tensors,ca_tensors", [("tiny-sd15", 80, 32), ("tiny-sdxl", 350, 140), ("tiny-if", 352, 88)])
def test_what_each_method_trains_and_that_the_pipeline_is_left_alone(name, esd_tensors, ca_tensors):
    pipe = models.load(name, progress=False)
    before = weights_checksum(pipe.unet)
    esd = finetune.esd(pipe, "van gogh", steps=2, **FAST)
    ca = finetune.concept_ablation(pipe, PROMPT, ANCHOR, steps=2, **FAST)
    assert weights_checksum(pipe.unet) == before and all(p.requires_grad for p in pipe.unet.parameters())
    assert (len(esd.weights), len(ca.weights)) == (esd_tensors, ca_tensors)
    assert set(ca.weights) < set(finetune.trainable(pipe, "esd"))
    assert all(".attn2." in n for n in esd.weights) or name == "tiny-if"  # SD, SD-XL: the cross-attention modules
    for edit in (esd, ca):
        moved = [n for n, w in edit.weights.items() if not torch.equal(w, pipe.unet.get_parameter(n).detach())]
        assert moved  # the training changed weights
        edit.apply(pipe)
        assert weights_checksum(pipe.unet) != before
        edit.revert(pipe)
        assert weights_checksum(pipe.unet) == before


def test_the_first_losses_are_the_papers_objectives(sd15):
    """At step 0 the trained model is the frozen one, so ESD's loss is (1 + eta)^2 |eps(c) - eps("")|^2
    and Concept Ablation's |eps(target) - eps(anchor)|^2 at the same point."""
    k, gen_seed = finetune._step_draw(0, 0, 4)
    x, t, hidden, _ = finetune.trajectory_point(sd15, "van gogh", gen_seed, k, steps=4)
    with torch.no_grad():
        e = sd15.unet(x, t, encoder_hidden_states=hidden).sample
    esd = finetune.esd(sd15, "van gogh", steps=1, eta=0.5, **FAST)
    assert esd.meta["losses"][0] == pytest.approx(1.5 ** 2 * torch.mean((e[1] - e[0]) ** 2).item(), rel=1e-5)

    x, t, hidden, _ = finetune.trajectory_point(sd15, ANCHOR, gen_seed, k, steps=4)
    with torch.no_grad():
        goal = sd15.unet(x[1:], t, encoder_hidden_states=hidden[1:]).sample
        mine = sd15.unet(x[1:], t, encoder_hidden_states=encode(sd15, [PROMPT]).embeds).sample
    ca = finetune.concept_ablation(sd15, PROMPT, ANCHOR, steps=1, **FAST)
    assert ca.meta["losses"][0] == pytest.approx(torch.mean((mine - goal) ** 2).item(), rel=1e-5)


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(sd15, tmp_path):
    whole = finetune.esd(sd15, "van gogh", steps=4, **FAST)
    ckpt = tmp_path / "esd.pt"
    with pytest.raises(KeyboardInterrupt):
        finetune.esd(sd15, "van gogh", steps=4, checkpoint=ckpt, save_every=1, stop_after=2, **FAST)
    resumed = finetune.esd(sd15, "van gogh", steps=4, checkpoint=ckpt, **FAST)
    assert resumed.meta["resumed_from"] == 2 and resumed.meta["losses"] == whole.meta["losses"]
    assert all(torch.equal(resumed.weights[n], whole.weights[n]) for n in whole.weights)
    again = finetune.esd(sd15, "van gogh", steps=4, checkpoint=ckpt, **FAST)  # finished: nothing trained again
    assert again.meta["resumed_from"] == 4 and all(torch.equal(again.weights[n], whole.weights[n]) for n in whole.weights)
    with pytest.raises(LocoError, match="checkpoint of another run"):
        finetune.esd(sd15, "monet", steps=4, checkpoint=ckpt, **FAST)


def test_concept_ablation_takes_its_pairs_in_turn(sd15):
    """Two pairs: step 0 trains on the first, step 1 on the second (its loss at step 1 differs from a
    run on the first pair alone)."""
    two = finetune.concept_ablation(sd15, [PROMPT, "a tree in the style of van gogh"], ANCHOR, steps=2, **FAST)
    one = finetune.concept_ablation(sd15, PROMPT, ANCHOR, steps=2, **FAST)
    assert two.meta["losses"][0] == one.meta["losses"][0] and two.meta["losses"][1] != one.meta["losses"][1]
    assert two.meta["anchors"] == [ANCHOR, ANCHOR]


def test_an_edit_saves_and_loads_with_its_training_record(sd15, tmp_path):
    ca = finetune.concept_ablation(sd15, PROMPT, ANCHOR, steps=2, **FAST)
    ca.save(tmp_path / "ca.safetensors")
    back = Edit.load(tmp_path / "ca.safetensors")
    assert back.method == "concept-ablation" and back.meta["anchors"] == [ANCHOR] and len(back.meta["losses"]) == 2
    assert all(torch.equal(back.weights[n], ca.weights[n]) for n in ca.weights)


@pytest.mark.parametrize("call,match", [
    (lambda p: finetune.esd(p, "van gogh", steps=0, **FAST), "steps must be at least 1"),
    (lambda p: finetune.esd(p, "van gogh", steps=2, lr=-1, sample_steps=4, progress=False), "learning rate must be a positive"),
    (lambda p: finetune.esd(p, "van gogh", steps=2, guidance=1.0, **FAST), "guidance must be > 1"),
    (lambda p: finetune.concept_ablation(p, ANCHOR, ANCHOR.upper(), steps=2, **FAST), "the same text"),
    (lambda p: finetune.concept_ablation(p, [PROMPT, ANCHOR], ["a", "b", "c"], steps=2, **FAST), "3 anchors for 2 targets"),
    (lambda p: finetune.trainable(p, "sgd"), "unknown fine-tuning method"),
    (lambda p: finetune.esd(p, "", steps=2, **FAST), "empty"),
])
def test_bad_input_is_one_line(sd15, call, match):
    with pytest.raises(LocoError, match=match) as err:
        call(sd15)
    assert "\n" not in str(err.value)


def test_the_command_line_trains_saves_and_resumes(tmp_path):
    import subprocess
    import sys

    out, ckpt = tmp_path / "esd.safetensors", tmp_path / "esd.pt"
    cmd = [sys.executable, "-m", "loco_lib", "edit", "tiny-sd15", "--method", "esd", "--attribute", "style",
           "--train-steps", "1", "--sample-steps", "4", "--checkpoint", str(ckpt), "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert first.returncode == 0, first.stderr[-2000:]
    assert "wrote" in first.stdout and "esd" in first.stdout and out.exists() and ckpt.exists()
    saved = Edit.load(out)
    again = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert again.returncode == 0 and all(torch.equal(Edit.load(out).weights[n], saved.weights[n]) for n in saved.weights)
    assert Edit.load(out).meta["resumed_from"] == 1  # read from the checkpoint, nothing trained again
    bad = subprocess.run(cmd[:-2] + ["--lam", "0.1", "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("loco: error: esd trains every cross-attention layer")


def test_the_learning_rate_is_the_papers_scaled_by_the_models_own_training_rate():
    assert finetune.learning_rate("esd") == finetune.ESD_LR == 1e-5 and finetune.learning_rate("concept-ablation") == 2e-6
    assert finetune.learning_rate("esd", trained_at=finetune.SD_TRAINING_LR) == finetune.ESD_LR  # SD itself: unchanged
    assert finetune.learning_rate("esd", trained_at=1e-3) == 1e-4  # the organisms: 10 x SD's rate, as written
    assert finetune.learning_rate("concept-ablation", trained_at=1e-3) == 2e-5
    for bad, match in (("sgd", "unknown fine-tuning method"),):
        with pytest.raises(LocoError, match=match):
            finetune.learning_rate(bad)
    with pytest.raises(LocoError, match="positive number"):
        finetune.learning_rate("esd", trained_at=0)


def test_a_training_shows_one_bar_not_the_pipelines(sd15, capsys):
    saved = dict(getattr(sd15, "_progress_bar_config", {}))
    sd15.set_progress_bar_config(disable=False)  # a pipeline loaded with its bars on, as in a notebook
    try:
        finetune.esd(sd15, "van gogh", steps=2, lr=1e-3, sample_steps=4, progress=False)
        assert "it/s" not in capsys.readouterr().err  # the sampling runs' step bars are hidden
        assert sd15._progress_bar_config.get("disable") is False  # and the pipeline's own setting is back
    finally:
        sd15._progress_bar_config = saved
