"""LocoEdit: closed-form editing of the localized cross-attention K/V projections (paper Sec. 6).

For each key and value projection of the m cross-attention layers that LocoGen localized
(Sec. 5, :mod:`loco_lib.layers` indices), the paper solves (Sec. 6.1)::

    min_W ||X_orig W - X_target W_hat||^2 + lambda ||W - W_hat||^2
    W = (X_orig^T X_orig + lambda I)^-1 (X_orig^T X_target W_hat + lambda W_hat)

with ``W`` a d x d' matrix acting on row vectors, the rows of ``X_orig`` / ``X_target`` the text
embedding at the *last subject token* of each original prompt ('a house in the style of van gogh')
and of its attribute-free counterpart ('a painting'), and lambda_K = lambda_V = 0.01 for every
model (App. H). After the edit the projection maps each original key/value to its target key/value,
and changes nothing in directions orthogonal to the rows of ``X_orig`` (``W - W_hat`` has rank
<= N).

Conventions of this module:

* **Weight layout.** A torch ``Linear`` stores ``A = W^T`` ([out, in] = [d', d]) and computes
  ``y = x A^T + b``. :func:`closed_form` takes and returns that layout. The solve runs in float64
  with ``torch.linalg.solve`` (no explicit inverse) in the equivalent update form
  ``W = W_hat + (X^T X + lambda I_d)^-1 X^T (X_target - X_orig) W_hat``; when N < d the same matrix
  is computed through the N x N system ``W = W_hat + X^T (X X^T + lambda I_N)^-1 (X_target - X_orig)
  W_hat`` (push-through identity), which is faster and exactly low-rank. The result is cast back to
  the weight's dtype.
* **Bias.** DeepFloyd IF's ``add_k_proj`` / ``add_v_proj`` have a bias. The objective is applied
  to the linear part and the bias is left unchanged: ``x A^T + b`` maps the original rows to the
  targets' ``x_t A_hat^T + b`` exactly when the linear parts do.
* **Rows.** A row is the K/V projection's *actual input* at the last subject token
  (:func:`loco_lib.tokens.subject_token_index`; no subject = the last token before end-of-text):
  for SD-1.x/2.x the text encoder output (768 / 1024-d), for SD-XL the concatenated penultimate
  states of both encoders (2048-d), for IF what ``add_k_proj`` reads: ``encoder_hid_proj`` of the
  raw T5 output, then the layer's own GroupNorm (``attn.norm_cross``, normalised over the whole
  sequence, hence computed on the full padded sequence and *per layer*). App. M: the edit does not
  work for IF (T5 is bidirectional, so the attribute leaks into tokens after the subject); this
  module computes it correctly anyway, so that the failure can be reproduced.
* **Prompts.** :func:`loco_lib.prompts.augment` builds the authors' prompt variants (4 for style, keys from
  '<artist>', 'a painting in the style of <artist>', 'a photo ...', 'a picture ...', targets from
  'a painting'). ``preserve=[prompts]`` adds identity rows (the row maps to itself) for prompts
  that must not change; the paper uses none (the default). loco's choice: an early probe on a
  small model needed them when an edit with few rows also changed unrelated prompts.

The result is an :class:`~loco_lib.edit_file.Edit` (the saved-edit artefact: apply, revert, save,
load); the prompt variants live with the other prompt data (:func:`loco_lib.prompts.augment`); the
full-size timing is a benchmark (``benchmarks/locoedit_full_size.py``).
"""
from __future__ import annotations

import time

import torch

from .edit_file import Edit, _fingerprint, _model_name, weights_checksum  # noqa: F401 (Edit, weights_checksum: re-exported)
from .errors import LocoError
from .families.registry import denoiser
from .layers import cross_attention_layers, kv_inputs, parse_layers
from .prompts import FACT_TEMPLATES, OBJECT_TEMPLATES, PAPER_TARGETS, STYLE_TEMPLATES, augment  # noqa: F401 (re-exported)

LAMBDA = 0.01  # App. H: lambda_K = lambda_V = 0.01 for all models

# ---------------------------------------------------------------------------------------------
# The closed form
# ---------------------------------------------------------------------------------------------

def _work_device(device: torch.device) -> torch.device:
    return torch.device("cpu") if device.type == "mps" else device  # no float64 on MPS


def closed_form(W_hat: torch.Tensor, X_orig: torch.Tensor, X_target: torch.Tensor, lam: float = LAMBDA) -> torch.Tensor:
    """The LocoEdit update of one projection, in torch ``Linear`` layout.

    ``W_hat``: the current weight, [out, in] (``Linear.weight``); ``X_orig`` / ``X_target``: [N, in]
    rows (original / target inputs of the projection). Returns the minimiser ``W`` (same shape,
    dtype and device as ``W_hat``) of ``||X_orig W^T - X_target W_hat^T||^2 + lam ||W - W_hat||^2``,
    which is the paper's objective with its row-vector matrices transposed. Any bias is not part
    of the objective (keep it as it is).
    """
    if W_hat.ndim != 2:
        raise LocoError(f"the weight must be a matrix [out, in], got shape {tuple(W_hat.shape)}")
    d = W_hat.shape[1]
    for what, X in (("X_orig", X_orig), ("X_target", X_target)):
        if X.ndim != 2 or X.shape[1] != d:
            raise LocoError(f"{what} must have shape [N, {d}] for a weight of shape {tuple(W_hat.shape)}, got {tuple(X.shape)}")
    if X_orig.shape[0] != X_target.shape[0]:
        raise LocoError(f"X_orig has {X_orig.shape[0]} rows but X_target has {X_target.shape[0]}: give one target row per original row")
    if X_orig.shape[0] == 0:
        raise LocoError("no rows to edit with")
    lam = float(lam)
    if not lam > 0 or lam != lam or lam == float("inf"):
        raise LocoError(f"lambda must be a positive number, got {lam}")
    dev = _work_device(W_hat.device)
    A = W_hat.detach().to(dev, torch.float64)  # [d', d] = W_hat^T in the paper's layout
    Xo = X_orig.detach().to(dev, torch.float64)
    Xt = X_target.detach().to(dev, torch.float64)
    n = Xo.shape[0]
    D = (Xt - Xo) @ A.T  # [N, d']: target minus original outputs of the current weight
    if n < d:  # W = W_hat + X^T (X X^T + lam I_N)^-1 D
        G = Xo @ Xo.T + lam * torch.eye(n, dtype=torch.float64, device=dev)
        delta = Xo.T @ torch.linalg.solve(G, D)  # [d, d']
    else:  # W = W_hat + (X^T X + lam I_d)^-1 X^T D
        M = Xo.T @ Xo + lam * torch.eye(d, dtype=torch.float64, device=dev)
        delta = torch.linalg.solve(M, Xo.T @ D)
    return (A + delta.T).to(device=W_hat.device, dtype=W_hat.dtype)


def objective(W: torch.Tensor, W_hat: torch.Tensor, X_orig: torch.Tensor, X_target: torch.Tensor, lam: float = LAMBDA) -> torch.Tensor:
    """The LocoEdit objective at ``W`` (``Linear`` layout), as a scalar tensor (differentiable in W)."""
    return ((X_orig @ W.T - X_target @ W_hat.T) ** 2).sum() + lam * ((W - W_hat) ** 2).sum()


# ---------------------------------------------------------------------------------------------
# Rows: the K/V projections' inputs at the subject token
# ---------------------------------------------------------------------------------------------

def _as_list(x, n: int, what: str) -> list:
    if x is None or isinstance(x, str):
        return [x] * n
    x = list(x)
    if len(x) == 1 and n > 1:
        return x * n
    if len(x) != n:
        raise LocoError(f"{len(x)} {what} given for {n} prompts")
    return x


def edit_prompts(pipe, originals, targets, subjects=None, target_subjects=None, preserve=None) -> tuple:
    """The prompt rows of a closed-form edit (LocoEdit, DiffQuickFix), checked and expanded:
    ``(originals, targets, subjects, target_subjects, preserve)`` as lists of equal length (one
    target, subject or target subject may stand for all; ``preserve`` may be empty)."""
    from . import settings

    originals = settings.prompts(pipe, originals, "original prompt")
    targets = _as_list(settings.prompts(pipe, targets, "target prompt"), len(originals), "target prompts")
    subjects = _as_list(subjects, len(originals), "subjects")
    target_subjects = _as_list(target_subjects, len(originals), "target subjects")
    preserve = [] if preserve is None else settings.as_prompt_list(preserve, "preserve prompt")
    return originals, targets, subjects, target_subjects, preserve


@torch.no_grad()
def kv_rows(pipe, layers, prompts, subjects=None, runs: dict | None = None) -> dict[int, torch.Tensor]:
    """{layer index: [N, kv_dim] rows}: the K/V projections' input at the last subject token of
    each prompt (``subjects``: one per prompt, one for all, or None = last token before EOS).
    SD / SD-XL: the text embedding itself; IF: after ``encoder_hid_proj`` and the layer's GroupNorm
    (:func:`loco_lib.layers.kv_inputs`).

    A joint-attention transformer (SD3: its family's ``text_from_run``) reads there what the run has
    made of the text, so its rows are recorded along runs (:func:`rows_along_runs`; ``runs``: its
    ``seeds``, ``steps``, ``guidance``, ``size``): one row per prompt, seed, step and subject
    position, in that order."""
    from .families.registry import denoiser_family
    from .text import as_prompt_list, encode
    from .tokens import edit_positions, subject_token_index

    unet = denoiser(pipe)
    all_layers = cross_attention_layers(unet)
    idx = parse_layers(layers, len(all_layers))
    if not idx:
        raise LocoError("no layers given to edit (e.g. layers=[8, 9])")
    prompts = as_prompt_list(prompts)
    subjects = _as_list(subjects, len(prompts), "subjects")
    if denoiser_family(pipe).text_from_run:
        positions = [edit_positions(pipe, p, s) for p, s in zip(prompts, subjects)]
        return rows_along_runs(pipe, idx, prompts, positions, **(runs or {}))
    pos = torch.tensor([subject_token_index(pipe, p, s) for p, s in zip(prompts, subjects)])
    return kv_inputs(unet, [all_layers[i] for i in idx], encode(pipe, prompts).embeds, pos)


RUN_SEEDS = (0,)  # loco's choice: the seeds whose trajectories give a joint-attention edit its rows


@torch.no_grad()
def rows_along_runs(pipe, layers: list[int], prompts: list[str], positions: list[list[int]], seeds=RUN_SEEDS,
                    steps: int | None = None, guidance: float | None = None, size: int | None = None,
                    batch_size: int = 8) -> dict[int, torch.Tensor]:
    """{layer: [rows, d]}: the text input of each of ``layers`` (what its K/V projections read) at the
    token ``positions`` of each prompt (the same number for every prompt), recorded in the
    conditional branch at every step of each prompt's own guided run with each seed. Rows in the
    order prompt, seed, step, position, so that two prompt lists give paired rows."""
    from . import settings
    from .families.registry import denoiser_family, pipeline_family
    from .generate import sample_batch
    from .hooks import Record, hooks, text_site
    from .text import encode

    if len({len(p) for p in positions}) != 1:
        raise LocoError("every prompt needs as many edit positions (one per encoder part holding the subject); "
                        f"got {[len(p) for p in positions]}")
    all_layers = cross_attention_layers(pipe)
    family = pipeline_family(pipe)
    for i in layers:
        reason = denoiser_family(pipe).edit_refusal(all_layers[i])
        if reason:
            raise LocoError(reason)
    steps, guidance = settings.steps(pipe, steps), settings.guidance(pipe, guidance)
    size, seeds = settings.size(size), settings.seeds(seeds)
    pos = torch.tensor(positions)  # [N, P]
    take = lambda rows, samples: rows[torch.arange(len(samples))[:, None], pos[samples]]  # noqa: E731  [n, P, d]
    out: dict[int, list] = {i: [] for i in layers}
    for start in range(0, len(prompts), batch_size):
        chunk = list(range(start, min(start + batch_size, len(prompts))))
        cond = encode(pipe, [prompts[j] for j in chunk])
        for s in seeds:
            sites = {i: text_site(all_layers[i]) for i in layers}
            records = [Record(site, branch="cond", reduce=lambda r, smp, c=chunk: take(r, [c[k] for k in smp]))
                       for site in sites.values()]
            with hooks(pipe, records=records, n_samples=len(chunk), guidance=family.guided_rows(pipe, guidance)) as seen:
                sample_batch(pipe, cond, [s] * len(chunk), steps=steps, guidance=guidance, size=size,
                             output_type=family.raw_output)
            for i, site in sites.items():
                out[i].append(torch.stack(seen[site], 1))  # [n, steps, P, d] for this chunk and seed
    # order: prompt, seed, step, position
    n_seeds = len(seeds)
    result = {}
    for i in layers:
        per_chunk = [torch.stack(out[i][c * n_seeds:(c + 1) * n_seeds], 1) for c in range(len(out[i]) // n_seeds)]
        result[i] = torch.cat(per_chunk).flatten(0, 3)  # [N * seeds * steps * P, d]
    return result


def compute_edit(
    pipe,
    layers,
    originals,
    targets,
    subjects=None,
    target_subjects=None,
    lam: float = LAMBDA,
    preserve=None,
    runs: dict | None = None,
) -> Edit:
    """LocoEdit (Sec. 6.1): new key and value weights for ``layers`` of ``pipe``'s UNet.

    ``layers``: indices (``[8, 9]``, ``"8,9"``, ``"45-47"``, ``"all"`` for App. F's edit-everything
    baseline). ``originals``: prompts with the attribute; ``targets``: one attribute-free prompt per
    original (or one for all). ``subjects`` / ``target_subjects``: the subject whose last token
    gives the row (one per prompt, one for all, or None = the last token before end-of-text).
    ``lam``: lambda_K = lambda_V (App. H: 0.01). ``preserve``: optional prompts whose last-token
    rows must keep their keys and values (identity rows); the paper uses none. ``runs``: for a
    joint-attention transformer, the ``seeds`` / ``steps`` / ``guidance`` / ``size`` of the runs its
    rows are recorded along (:func:`rows_along_runs`; default seed 0 and the model's defaults).

    The pipeline is not changed: call :meth:`Edit.apply` (or ``with edit.applied(pipe):``).
    """
    from . import __version__, settings
    from .models import pipeline_family

    family = pipeline_family(pipe)
    lam = settings.lam(lam)
    start = time.perf_counter()
    originals, targets, subjects, target_subjects, preserve = edit_prompts(
        pipe, originals, targets, subjects, target_subjects, preserve)
    unet = denoiser(pipe)
    all_layers = cross_attention_layers(unet)
    idx = parse_layers(layers, len(all_layers))
    if not idx:
        raise LocoError("no layers given to edit (e.g. layers=[8, 9])")

    X_o = kv_rows(pipe, idx, originals, subjects, runs=runs)
    X_t = kv_rows(pipe, idx, targets, target_subjects, runs=runs)
    X_p = kv_rows(pipe, idx, preserve, None, runs=runs) if preserve else None
    encode_seconds = time.perf_counter() - start

    weights: dict[str, torch.Tensor] = {}
    fingerprints: dict[str, str] = {}
    solve_seconds = 0.0
    for i in idx:
        layer = all_layers[i]
        xo, xt = X_o[i], X_t[i]
        if X_p is not None:  # identity rows: keep these inputs' keys and values
            xo = torch.cat([xo, X_p[i]])
            xt = torch.cat([xt, X_p[i]])
        attn = unet.get_submodule(layer.name)
        for proj in (layer.key, layer.value):
            W_hat = getattr(attn, proj).weight
            name = f"{layer.name}.{proj}.weight"
            t0 = time.perf_counter()
            new = closed_form(W_hat, xo, xt, lam)
            if new.device.type == "cuda":
                torch.cuda.synchronize(new.device)
            solve_seconds += time.perf_counter() - t0
            weights[name] = new.detach().to("cpu")
            fingerprints[name] = _fingerprint(W_hat)

    meta = {
        "model": _model_name(pipe),
        "family": family,
        "layers": idx,
        "originals": originals,
        "targets": targets,
        "subjects": subjects,
        "target_subjects": target_subjects,
        "preserve": preserve,
        "lambda": float(lam),
        "n_rows": int(X_o[idx[0]].shape[0]) + (int(X_p[idx[0]].shape[0]) if X_p is not None else 0),
        "dtype": str(next(iter(weights.values())).dtype).replace("torch.", ""),
        "edit_seconds": solve_seconds,
        "encode_seconds": encode_seconds,
        "loco_lib_version": __version__,
    }
    if runs:
        meta["runs"] = dict(runs)
    return Edit(
        weights=weights,
        fingerprints=fingerprints,
        layers=idx,
        layer_names={i: all_layers[i].name for i in idx},
        meta=meta,
    )


def compute_multi_edit(pipe, layers, key_sets, lam: float = LAMBDA, preserve=None) -> Edit:
    """One LocoEdit that removes several concepts at once.

    ``key_sets``: one :class:`~loco_lib.prompts.PromptSet` per concept (e.g.
    :func:`loco_lib.prompts.concept_keys`). ``layers``: one window for every concept, or a list with
    one window per concept (each concept's own LocoGen window). Every edited matrix is solved once,
    with the rows of every concept whose window contains its layer stacked (loco's choice for the
    question the paper leaves open). With one key set this is :func:`compute_edit` of that set.
    """
    key_sets = [key_sets] if hasattr(key_sets, "originals") else list(key_sets)
    if not key_sets:
        raise LocoError("no concepts to edit: give one key set (PromptSet) per concept")
    for k in key_sets:
        if not hasattr(k, "originals") or not len(k):
            raise LocoError("each concept needs a non-empty key set (a PromptSet, e.g. prompts.concept_keys(...))")
    n_layers = len(cross_attention_layers(pipe))
    per_set = isinstance(layers, (list, tuple)) and len(layers) > 0 and all(
        isinstance(w, (list, tuple, str)) for w in layers)
    windows = [parse_layers(w, n_layers) for w in layers] if per_set else [parse_layers(layers, n_layers)] * len(key_sets)
    if len(windows) != len(key_sets):
        raise LocoError(f"{len(windows)} windows given for {len(key_sets)} concepts: give one window, or one per concept")
    if any(not w for w in windows):
        raise LocoError("no layers given to edit for a concept (e.g. layers=[8, 9])")
    groups: dict[tuple, list[int]] = {}  # which concepts' rows each layer gets
    for layer in sorted({i for w in windows for i in w}):
        groups.setdefault(tuple(j for j, w in enumerate(windows) if layer in w), []).append(layer)
    edit = None
    for members, group_layers in groups.items():
        cat = lambda attr: [x for j in members for x in getattr(key_sets[j], attr)]
        part = compute_edit(pipe, group_layers, cat("originals"), cat("targets"), cat("subjects"),
                            cat("target_subjects"), lam=lam, preserve=preserve)
        if edit is None:
            edit = part
        else:
            edit.weights.update(part.weights)
            edit.fingerprints.update(part.fingerprints)
            edit.layer_names.update(part.layer_names)
            edit.layers = sorted(set(edit.layers) | set(part.layers))
            edit.meta["edit_seconds"] += part.meta["edit_seconds"]
            edit.meta["encode_seconds"] += part.meta["encode_seconds"]
    edit.meta["layers"] = edit.layers
    if len(groups) > 1:
        for key in ("originals", "targets", "subjects", "target_subjects"):
            edit.meta[key] = [x for k in key_sets for x in getattr(k, key)]
    edit.meta["n_rows"] = sum(len(k) for k in key_sets) + (len(edit.meta["preserve"]) if edit.meta.get("preserve") else 0)
    edit.meta["concepts"] = [next((c for c in k.concepts if c), k.subjects[0]) for k in key_sets]
    edit.meta["windows"] = windows
    return edit


def fit_table(pipe, edit: "Edit", originals, targets, subjects=None, target_subjects=None):
    """How well ``edit`` meets its objective, one row per matrix: the fit term
    ``||X_orig W - X_target W_hat||^2`` at the model's current weight W_hat ("fit before") and at the
    edit's weight ("fit after"), and the relative weight change ``||W - W_hat|| / ||W_hat||``.
    The pipeline must not carry the edit (W_hat is read from it)."""
    import pandas as pd

    if edit.is_applied(pipe):
        raise LocoError("the edit is applied: measure its fit on the unedited model (revert it first)")
    runs = edit.meta.get("runs")  # a joint-attention edit: the runs its rows were recorded along
    rows_o = kv_rows(pipe, edit.layers, originals, subjects, runs=runs)
    rows_t = kv_rows(pipe, edit.layers, targets, target_subjects, runs=runs)
    out = []
    for name, new in edit.weights.items():
        layer = next(i for i, lname in edit.layer_names.items() if name.startswith(lname + "."))
        old = denoiser(pipe).get_parameter(name).detach().cpu().double()
        new = new.double()
        xo, xt = rows_o[layer].cpu().double(), rows_t[layer].cpu().double()
        before, after = float(objective(old, old, xo, xt, 0.0)), float(objective(new, old, xo, xt, 0.0))
        out.append({"layer": layer, "matrix": name.split(".")[-2], "fit before": before, "fit after": after,
                    "fit left": after / before if before > 0 else float("nan"),
                    "weight change": float((new - old).norm() / old.norm())})
    return pd.DataFrame(out)


def lambda_table(pipe, layers, originals, targets, subjects=None, target_subjects=None, lams=(LAMBDA, 1.0, 100.0)):
    """The role of lambda (App. H): for each value, the mean fraction of the fit term left after the
    edit and the mean relative weight change (:func:`fit_table` of an edit computed with it)."""
    import pandas as pd

    rows = []
    for lam in sorted(set(lams)):
        t = fit_table(pipe, compute_edit(pipe, layers, originals, targets, subjects, target_subjects, lam=lam),
                      originals, targets, subjects, target_subjects)
        rows.append({"lambda": lam, "fit left": float((t["fit after"] / t["fit before"]).mean()),
                     "weight change": float(t["weight change"].mean())})
    return pd.DataFrame(rows)
