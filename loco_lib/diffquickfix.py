"""DiffQuickFix (paper App. I, Fig. 57, Table 1): the closed-form edit of the text encoder's causal state.

Basu et al. 2023 ("Localizing and Editing Knowledge in Text-to-Image Generative Models",
https://arxiv.org/abs/2310.13730) find by causal tracing (:mod:`loco_lib.trace`) one causal state in
SD's CLIP text encoder, the first self-attention layer at the last subject token, and edit that
layer's output projection in closed form so that the original prompts' state there becomes the
target prompts'. The paper compares LocoEdit with it (App. I, Table 1).

The objective and its solution are LocoEdit's (:func:`loco_lib.locoedit.closed_form`), on another
matrix: ``W`` is the output projection of self-attention layer ``layer`` (default 0) of the text
encoder, a row of ``X_orig`` is that projection's input (the attention's mixed values) at the last
subject token of an original prompt, a row of ``X_target`` the same at the last token of the
target subject::

    min_W ||X_orig W - X_target W_hat||^2 + lambda ||W - W_hat||^2

Choices the two papers leave open, and loco's answers (each loco's choice):

* the rows come from the same prompt variants as LocoEdit's (:func:`loco_lib.prompts.augment`, or a
  prompt file's ``edits`` block), so the two edits differ only in *where* they write;
* lambda is LocoEdit's 0.01 (App. H), and the solve runs in float64 as LocoEdit's;
* the projection's bias is left as it is (the linear parts match, so the outputs do);
* for SD-XL ``encoder`` picks one of its two encoders (Basu et al. edit SD's single encoder), and
  for DeepFloyd IF the T5 encoder's self-attention output matrix ``o`` (it has no bias).

The result is an :class:`~loco_lib.edit_file.Edit` with ``component`` set to the text encoder: it is
applied, reverted, saved and loaded exactly like a LocoEdit (``loco edit MODEL --method
diffquickfix``).
"""
from __future__ import annotations

import time

import torch

from .edit_file import Edit, _fingerprint, _model_name
from .errors import LocoError
from .hooks import Record, Site, hooks
from .locoedit import LAMBDA, _as_list, closed_form, edit_prompts


def projection(pipe, layer: int = 0, encoder: int = 1) -> tuple[str, str, str]:
    """``(component, self-attention module name, output-projection module name)`` of ``layer``."""
    from .trace import encoder_states

    states = [s for s in encoder_states(pipe, encoder, ("self-attention",))]
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(states):
        raise LocoError(f"the text encoder has self-attention layers 0..{len(states) - 1}, not {layer!r}")
    st = states[layer]
    attn = getattr(pipe, st.component).get_submodule(st.name)
    out = next(n for n in ("out_proj", "o_proj", "o") if hasattr(attn, n))  # CLIP, Gemma, T5
    return st.component, st.name, f"{st.name}.{out}"


@torch.no_grad()
def rows(pipe, prompts, subjects=None, layer: int = 0, encoder: int = 1) -> torch.Tensor:
    """``[N, d]``: the input of ``layer``'s self-attention output projection at the last subject
    token of each prompt (``subjects``: one per prompt, one for all, None = the last token)."""
    from .settings import as_prompt_list
    from .text import encode
    from .tokens import encoder_positions, subject_token_index

    component, _, proj = projection(pipe, layer, encoder)
    prompts = as_prompt_list(prompts)
    subjects = _as_list(subjects, len(prompts), "subjects")
    tok = pipe if component == "text_encoder" else pipe.tokenizer_2
    pos = torch.tensor(encoder_positions(tok, [subject_token_index(tok, p, s) for p, s in zip(prompts, subjects)]))
    site = Site(component, proj, "input")
    with hooks(pipe, records=[Record(site, steps=[0])]) as recorded:
        encode(pipe, prompts)
    x = recorded[site][0]
    return x[torch.arange(len(prompts)), pos]


def compute_edit(pipe, originals, targets, subjects=None, target_subjects=None, lam: float = LAMBDA, *,
                 layer: int = 0, encoder: int = 1, preserve=None) -> Edit:
    """The DiffQuickFix edit of ``pipe`` (arguments as :func:`loco_lib.locoedit.compute_edit`):
    ``originals`` mapped onto ``targets`` at the output projection of self-attention ``layer`` of
    text encoder ``encoder``. The pipeline is not changed: apply the returned :class:`Edit`."""
    from . import __version__, settings

    family = settings.pipeline_family(pipe)
    lam = settings.lam(lam)
    start = time.perf_counter()
    originals, targets, subjects, target_subjects, preserve = edit_prompts(
        pipe, originals, targets, subjects, target_subjects, preserve)
    component, attn_name, proj = projection(pipe, layer, encoder)
    xo = rows(pipe, originals, subjects, layer, encoder)
    xt = rows(pipe, targets, target_subjects, layer, encoder)
    if preserve:
        xp = rows(pipe, preserve, None, layer, encoder)
        xo, xt = torch.cat([xo, xp]), torch.cat([xt, xp])
    encode_seconds = time.perf_counter() - start
    W_hat = getattr(pipe, component).get_submodule(proj).weight
    t0 = time.perf_counter()
    new = closed_form(W_hat, xo, xt, lam)
    if new.device.type == "cuda":
        torch.cuda.synchronize(new.device)
    solve_seconds = time.perf_counter() - t0
    name = f"{proj}.weight"
    meta = {
        "method": "diffquickfix", "model": _model_name(pipe), "family": family, "component": component,
        "layers": [layer], "originals": originals, "targets": targets, "subjects": subjects,
        "target_subjects": target_subjects, "preserve": preserve, "lambda": float(lam),
        "n_rows": len(originals) + len(preserve), "dtype": str(new.dtype).replace("torch.", ""),
        "edit_seconds": solve_seconds, "encode_seconds": encode_seconds, "loco_lib_version": __version__,
    }
    return Edit(weights={name: new.detach().to("cpu")}, fingerprints={name: _fingerprint(W_hat)}, layers=[layer],
                layer_names={layer: attn_name}, meta=meta, component=component)
