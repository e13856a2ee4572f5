"""What the organism's measuring code computes, as one hash per probe: the evidence behind a code
equivalence (``tests/code_equivalence.py``).

Each probe calls a public entry point of ``loco_lib`` the kept measurements run (sampling, altered
inputs with and without the side text paths, LocoGen windows, LocoEdit with its readouts, neuron
ranking and replacement, App. M's token swap, causal tracing of the denoiser and of the text encoder,
DiffQuickFix, UCE, ESD and Concept Ablation steps) on the trained organisms of every denoiser kind (SD-style UNet with CLIP-style and
T5-style text, IF-style UNet with added K/V and with cross-attention, the PixArt-style DiT) at 3 denoising steps, and the
pipeline families they lack (SD-XL, DeepFloyd IF) on their tiny twins, and hashes every tensor, array and number it returns bit for bit. Two trees whose probes hash the same
on one machine compute the same bits there.

    python tests/behaviour_probe.py OUT.json     # from the tree to probe (PYTHONPATH=that tree)

Only the API both sides of a refactor share is used, so the same file runs against an older commit.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile

import numpy as np
import torch

ORGANISMS = ("toy", "toy-t5", "toy-if", "toy-if-xattn", "toy-dit")
TWINS = ("tiny-sd15", "tiny-sdxl", "tiny-if", "tiny-pixart", "tiny-sana", "tiny-sd3")
JOINT = ("tiny-sd3",)  # joint attention: LocoGen by donor samples, LocoEdit rows along runs, tracing of both streams
STEPS = 3


def _feed(h, x) -> None:
    """Every number in ``x``, bit for bit, with its structure."""
    if torch.is_tensor(x):
        t = x.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(x, np.ndarray):
        a = np.ascontiguousarray(x)
        h.update(f"A{a.dtype}{a.shape}".encode())
        h.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode())
    elif hasattr(x, "to_numpy") and hasattr(x, "columns"):  # a DataFrame
        h.update(repr(list(x.columns)).encode())
        for c in x.columns:
            _feed(h, np.asarray(x[c].tolist(), dtype=object if x[c].dtype == object else None))
    elif isinstance(x, dict):
        for k in sorted(x, key=repr):
            h.update(repr(k).encode())
            _feed(h, x[k])
    elif isinstance(x, (list, tuple)):
        h.update(b"[")
        for v in x:
            _feed(h, v)
        h.update(b"]")
    elif isinstance(x, float):
        h.update(float(x).hex().encode())
    elif hasattr(x, "convert") and hasattr(x, "size"):  # a PIL image
        _feed(h, np.asarray(x))
    elif hasattr(x, "__dict__") and not isinstance(x, type):
        _feed(h, {k: v for k, v in vars(x).items() if not k.startswith("_") and not callable(v)})
    else:
        h.update(repr(x).encode())


def digest(x) -> str:
    h = hashlib.sha256()
    _feed(h, x)
    return h.hexdigest()[:16]


def probes(model: str, pipe, scorer) -> dict:
    from loco_lib import diffquickfix, uce
    from loco_lib.altered import altered_inputs
    from loco_lib.generate import generate
    from loco_lib.locoedit import compute_edit
    from loco_lib.neurons import neurons_replaced, rank_neurons
    from loco_lib.organism import protocol
    from loco_lib.text import encode
    from loco_lib.trace import trace

    prompts = ["a red circle in the style of van gogh", "a blue square in the style of monet"]
    targets = ["a red circle in the style of a painting", "a blue square in the style of a painting"]
    subjects = ["van gogh", "monet"]
    out = {}
    g = generate(pipe, prompts, seeds=0, steps=STEPS, output_type="np", progress=False)
    out["generate"] = g.images
    g = generate(pipe, prompts, alt_prompts=targets, layers=[[0, 1], "3"], seeds=1, steps=STEPS, output_type="np",
                 progress=False)
    out["altered"] = g.images
    g = generate(pipe, prompts, alt_prompts=targets, layers="all", seeds=1, steps=STEPS, output_type="np",
                 swap_text_paths=True, progress=False)
    out["altered_all_paths"] = g.images
    alt = encode(pipe, targets)
    with altered_inputs(pipe, alt, "1-2") as layers:
        out["layer_map"] = [l.as_dict() for l in layers]
    with tempfile.TemporaryDirectory() as tmp:
        res, table = protocol.locogen_readouts(pipe, scorer, list(zip(prompts, targets)), "style", 2, seeds=(0,),
                                               steps=STEPS, cache_dir=tmp)
    out["locogen"] = {"table": res.table, "best": res.best, "clean": res.clean, "altered_all": res.altered_all,
                      "readouts": table}
    edit = compute_edit(pipe, [0, 1], prompts, targets, subjects)
    out["locoedit"] = edit.weights
    from loco_lib.prompts import PromptPair, _to_set

    keys = _to_set("style", [PromptPair(p, t, s, "a painting", s, "probe") for p, t, s in zip(prompts, targets, subjects)],
                   None)
    r = protocol.edit_readouts(pipe, scorer, [0, 1], keys, {"styled": prompts}, seeds=(0,), steps=STEPS)
    out["edit_readouts"] = {"before": r["before"], "after": r["after"]}
    ranking = rank_neurons(pipe, [0, 1], prompts, targets, subjects_with=subjects)
    out["neuron_ranking"] = ranking
    with neurons_replaced(pipe, ranking, 5, guidance=True):
        out["neurons_replaced"] = generate(pipe, prompts, seeds=0, steps=STEPS, output_type="np", progress=False).images
    out["token_swap"] = protocol.token_swap(
        pipe, scorer, [prompts[0], "a blue square in the style of van gogh"],
        [targets[0], "a blue square in the style of a painting"], "van gogh", "subject", seeds=(0,), steps=STEPS) if model != "toy-if-xattn" else None
    with tempfile.TemporaryDirectory() as tmp:
        t = trace(pipe, prompts[:1], subjects[:1], where="unet", seeds=(0,), steps=STEPS, scorer=scorer,
                  cache_dir=tmp, progress=False, sets=[[0], [1, 2], [5]])
        out["trace_unet"] = [{k: v for k, v in t.to_json().items() if k != "seconds"}, t.table()]
        t = trace(pipe, prompts[:1], subjects[:1], where="text", seeds=(0,), steps=STEPS, scorer=scorer,
                  cache_dir=tmp, progress=False)
        out["trace_text"] = [{k: v for k, v in t.to_json().items() if k != "seconds"}, t.table()]
    out["diffquickfix"] = diffquickfix.compute_edit(pipe, prompts, targets, subjects).weights
    out["uce"] = uce.compute_edit(pipe, ["van gogh"], preserve=["monet"], layers=[0, 1]).weights
    from loco_lib import finetune

    out["esd"] = finetune.esd(pipe, "van gogh", steps=2, sample_steps=STEPS, progress=False).weights
    out["concept_ablation"] = finetune.concept_ablation(pipe, prompts[:1], targets[:1], steps=2, sample_steps=STEPS,
                                                        progress=False).weights
    from loco_lib.ranking import rank_layers

    out["layer_ranking"] = rank_layers(pipe, prompts, subjects, steps=STEPS, progress=False).scores
    return out


def twin_probes(name: str) -> dict:
    """The pipeline families the organisms do not have (SD-XL's two encoders and pooled path, IF's
    pipeline, PixArt's and SANA's, SD3's joint attention), on their tiny twins, with the layer ranking
    (and SD3's causal tracing of both streams)."""
    from loco_lib.generate import generate
    from loco_lib.locoedit import compute_edit
    from loco_lib.models import load
    from loco_lib.ranking import rank_layers
    from loco_lib.text import encode

    pipe = load(name, progress=False)
    prompts = ["a photo of a cat in the style of van gogh", "a dog"]
    targets = ["a photo of a cat", "a cat"]
    out = {"encode": {k: v for k, v in vars(encode(pipe, prompts)).items() if v is not None}}  # fields a family fills
    kw = dict(seeds=0, steps=2, output_type="np", progress=False, size=32 if name in ("tiny-sd15", "tiny-sdxl") else None)
    out["generate"] = generate(pipe, prompts, **kw).images
    out["altered_all_paths"] = generate(pipe, prompts, alt_prompts=targets, layers="all", swap_text_paths=True, **kw).images
    out["altered"] = generate(pipe, prompts, alt_prompts=targets, layers=[[0], [1, 2]], **kw).images
    out["locoedit"] = compute_edit(pipe, [0, 1], prompts[:1], targets[:1], ["van gogh"]).weights
    out["ranking"] = rank_layers(pipe, prompts[:1], "van gogh", steps=2, progress=False).scores
    if name in JOINT:
        from loco_lib.trace import Run, trace

        with tempfile.TemporaryDirectory() as tmp:
            r = trace(pipe, prompts[:1], "van gogh", steps=2, sets=[(0,), (1, 2), (47,)], keep_arrays=True, progress=False,
                      cache_dir=tmp)
        out["trace"] = [r.arrays[Run(0, 0, st)] for st in [None, (), (0,), (1, 2), (47,)]]
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python tests/behaviour_probe.py OUT.json", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    from loco_lib.organism import load_trained, scorer as scorer_mod

    found = {}
    sc = scorer_mod.load()
    for model in ORGANISMS:
        pipe = load_trained(model if model in ("toy", "toy-t5", "toy-if", "toy-dit") else f"models/{model}")
        for name, value in probes(model, pipe, sc).items():
            found[f"{model}/{name}"] = digest(value)
            print(f"{model}/{name}: {found[f'{model}/{name}']}", flush=True)
    for name in TWINS:
        for probe, value in twin_probes(name).items():
            found[f"{name}/{probe}"] = digest(value)
            print(f"{name}/{probe}: {found[f'{name}/{probe}']}", flush=True)
    with open(argv[0], "w") as fh:
        json.dump(found, fh, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
