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
* **Prompts.** :func:`augment` builds the authors' prompt variants (4 for style, keys from
  '<artist>', 'a painting in the style of <artist>', 'a photo ...', 'a picture ...', targets from
  'a painting'). ``preserve=[prompts]`` adds identity rows (the row maps to itself) for prompts
  that must not change; the paper uses none (the default). loco's choice: an early probe on a
  small model needed them when an edit with few rows also changed unrelated prompts.

An :class:`Edit` holds only the new K/V weights of the edited layers, a fingerprint of the weights
it was computed from, and its metadata; ``apply`` / ``revert`` (bit-for-bit) / ``applied`` (a
context manager) change a pipeline in place, ``save`` / ``Edit.load`` use a safetensors file.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .errors import LocoError
from .layers import cross_attention_layers, kv_inputs, parse_layers

LAMBDA = 0.01  # App. H: lambda_K = lambda_V = 0.01 for all models
FORMAT = "loco-edit"
FORMAT_VERSION = "1"

# Prompt variants (module docstring). Style: the authors' four key variants, all mapped to one
# target prompt ('a painting'). Objects and facts: the same templates with the target substituted,
# so each original row is mapped to the target's row in the same context.
STYLE_TEMPLATES = ("{}", "a painting in the style of {}", "a photo in the style of {}", "a picture in the style of {}")
OBJECT_TEMPLATES = ("{}", "a photo of {}", "a painting of {}", "a picture of {}")
FACT_TEMPLATES = ("{}", "a photo of {}", "a portrait of {}", "an image of {}")
# The paper's targets (App. C).
PAPER_TARGETS = {
    "style": "a painting",
    "r2d2": "robot",
    "snoopy": "dog",
    "nemo": "fish",
    "cat": "dog",
    "the president of the united states": "joe biden",
    "the british monarch": "prince charles",
}
_ATTRIBUTES = {"style": "style", "styles": "style", "object": "objects", "objects": "objects", "fact": "facts", "facts": "facts"}


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
# Prompts
# ---------------------------------------------------------------------------------------------

def augment(attribute: str, concept, target=None, templates=None):
    """Prompt variants for an edit: ``(originals, targets, subjects)`` lists of equal length.

    ``attribute``: 'style', 'objects' or 'facts'; ``concept``: the thing to edit ('van gogh',
    'r2d2', 'the president of the united states'), or a list of them; ``target``: what it should
    become (default: 'a painting' for style, the paper's App. C targets for its objects and facts).
    ``templates``: your own list of format strings with one ``{}`` (default: the module's
    ``STYLE_TEMPLATES`` / ``OBJECT_TEMPLATES`` / ``FACT_TEMPLATES``).

    Style follows the authors' code: every variant maps to the one target prompt (its last token).
    Objects and facts: the target is put into the same template. ``subjects`` is the concept for
    every original (its last token is the row); the targets' rows are their last tokens (pass
    ``target_subjects=None`` to :func:`compute_edit`).
    """
    kind = _ATTRIBUTES.get(str(attribute).strip().lower())
    if kind is None:
        raise LocoError(f"unknown attribute {attribute!r}: use 'style', 'objects' or 'facts'")
    concepts = [concept] if isinstance(concept, str) else list(concept)
    if not concepts or any(not isinstance(c, str) or not c.strip() for c in concepts):
        raise LocoError("augment needs a non-empty concept (e.g. 'van gogh')")
    if templates is None:
        templates = {"style": STYLE_TEMPLATES, "objects": OBJECT_TEMPLATES, "facts": FACT_TEMPLATES}[kind]
    templates = [templates] if isinstance(templates, str) else list(templates)
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise LocoError(f"a template needs exactly one '{{}}' for the concept, got {t!r}")
    originals, targets, subjects = [], [], []
    for c in concepts:
        c = c.strip()
        tgt = target
        if tgt is None:
            tgt = PAPER_TARGETS["style"] if kind == "style" else PAPER_TARGETS.get(c.lower())
            if tgt is None:
                raise LocoError(f"no default target for {c!r}: give target=... (e.g. 'robot' for 'r2d2')")
        if not isinstance(tgt, str) or not tgt.strip():
            raise LocoError("the target must be a non-empty prompt")
        for t in templates:
            originals.append(t.format(c))
            targets.append(tgt if kind == "style" else t.format(tgt))
            subjects.append(c)
    return originals, targets, subjects


# ---------------------------------------------------------------------------------------------
# Rows: the K/V projections' inputs at the subject token
# ---------------------------------------------------------------------------------------------

def _unet(pipe_or_unet):
    return getattr(pipe_or_unet, "unet", pipe_or_unet)


def _as_list(x, n: int, what: str) -> list:
    if x is None or isinstance(x, str):
        return [x] * n
    x = list(x)
    if len(x) == 1 and n > 1:
        return x * n
    if len(x) != n:
        raise LocoError(f"{len(x)} {what} given for {n} prompts")
    return x


@torch.no_grad()
def kv_rows(pipe, layers, prompts, subjects=None) -> dict[int, torch.Tensor]:
    """{layer index: [N, kv_dim] rows}: the K/V projections' input at the last subject token of
    each prompt (``subjects``: one per prompt, one for all, or None = last token before EOS).
    SD / SD-XL: the text embedding itself; IF: after ``encoder_hid_proj`` and the layer's GroupNorm
    (:func:`loco_lib.layers.kv_inputs`)."""
    from .text import as_prompt_list, encode
    from .tokens import subject_token_index

    unet = pipe.unet
    all_layers = cross_attention_layers(unet)
    idx = parse_layers(layers, len(all_layers))
    if not idx:
        raise LocoError("no layers given to edit (e.g. layers=[8, 9])")
    prompts = as_prompt_list(prompts)
    subjects = _as_list(subjects, len(prompts), "subjects")
    pos = torch.tensor([subject_token_index(pipe, p, s) for p, s in zip(prompts, subjects)])
    return kv_inputs(unet, [all_layers[i] for i in idx], encode(pipe, prompts).embeds, pos)


# ---------------------------------------------------------------------------------------------
# The edit
# ---------------------------------------------------------------------------------------------

def _fingerprint(t: torch.Tensor) -> str:
    """sha256 of the weight rounded to float16 (so fp32 and fp16 copies of a checkpoint agree)."""
    data = t.detach().to("cpu", torch.float16).contiguous()
    h = hashlib.sha256(str(tuple(data.shape)).encode())
    h.update(data.view(torch.int16).numpy().tobytes())
    return h.hexdigest()[:32]


# unet -> {"edits": {edit uid: {param name: saved original}}, "owner": {param name: edit uid}}
_APPLIED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclass(eq=False)
class Edit:
    """New K/V weights for some cross-attention layers (by parameter name, e.g.
    ``up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight``) plus metadata."""

    weights: dict[str, torch.Tensor]  # parameter name -> new weight (CPU)
    fingerprints: dict[str, str]  # parameter name -> fingerprint of the weight it replaces
    layers: list[int]  # the edited cross-attention layers (execution-order indices)
    layer_names: dict[int, str]  # layer index -> attention module name
    meta: dict = field(default_factory=dict)  # model, prompts, lambda, version, timings, ...
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)

    # -- information ----------------------------------------------------------------------------
    @property
    def lam(self) -> float:
        return float(self.meta.get("lambda", LAMBDA))

    @property
    def model(self):
        return self.meta.get("model")

    @property
    def edit_seconds(self) -> float:
        """Wall time of the closed-form updates (all K and V projections), without text encoding."""
        return float(self.meta.get("edit_seconds", float("nan")))

    @property
    def fingerprint(self) -> str:
        """One fingerprint of all the original weights the edit replaces."""
        h = hashlib.sha256()
        for name in sorted(self.fingerprints):
            h.update(f"{name}={self.fingerprints[name]};".encode())
        return h.hexdigest()[:32]

    def __repr__(self) -> str:
        return (f"Edit(model={self.model!r}, layers={self.layers}, lambda={self.lam}, "
                f"rows={self.meta.get('n_rows')}, params={len(self.weights)}, edit_seconds={self.edit_seconds:.4f})")

    def _layer_of(self, name: str) -> str:
        for i, lname in self.layer_names.items():
            if name.startswith(lname + "."):
                return f"layer {i} ({name.rsplit('.', 1)[0]})"
        return name

    # -- apply / revert -----------------------------------------------------------------------
    def _params(self, pipe, force: bool) -> dict[str, torch.nn.Parameter]:
        unet = _unet(pipe)
        params = {}
        for name, new in self.weights.items():
            try:
                p = unet.get_parameter(name)
            except AttributeError:
                raise LocoError(f"{self._layer_of(name)}: this model has no such weight; the edit was made for {self.model!r}") from None
            if tuple(p.shape) != tuple(new.shape):
                raise LocoError(
                    f"{self._layer_of(name)}: the edit's weight has shape {tuple(new.shape)} but this model's has "
                    f"{tuple(p.shape)}; the edit was made for {self.model!r}"
                )
            params[name] = p
        if not force:
            for name, p in params.items():
                if _fingerprint(p) != self.fingerprints[name]:
                    raise LocoError(
                        f"{self._layer_of(name)}: this model's weights are not the ones the edit was computed from "
                        f"(made for {self.model!r}); pass force=True to apply it anyway"
                    )
        return params

    @torch.no_grad()
    def apply(self, pipe, force: bool = False):
        """Copy the new weights into ``pipe`` (a pipeline or its UNet), keeping the originals for
        :meth:`revert`. Applying an edit that is already applied is an error; so is applying onto
        weights that differ from the ones it was computed from (``force=True`` skips that check)."""
        unet = _unet(pipe)
        state = _APPLIED.setdefault(unet, {"edits": {}, "owner": {}})
        if self.uid in state["edits"]:
            raise LocoError("this edit is already applied to this pipeline; revert it first")
        for name in self.weights:
            if name in state["owner"]:
                raise LocoError(f"{self._layer_of(name)} is already changed by another applied edit; revert that edit first")
        params = self._params(pipe, force)
        saved = {name: p.detach().clone() for name, p in params.items()}
        for name, p in params.items():
            p.copy_(self.weights[name].to(device=p.device, dtype=p.dtype))
        state["edits"][self.uid] = saved
        for name in params:
            state["owner"][name] = self.uid
        return pipe

    @torch.no_grad()
    def revert(self, pipe):
        """Restore the weights this edit replaced in ``pipe``, bit for bit."""
        unet = _unet(pipe)
        state = _APPLIED.get(unet)
        if state is None or self.uid not in state["edits"]:
            raise LocoError("this edit is not applied to this pipeline: nothing to revert")
        saved = state["edits"].pop(self.uid)
        for name, orig in saved.items():
            unet.get_parameter(name).copy_(orig)
            state["owner"].pop(name, None)
        return pipe

    def is_applied(self, pipe) -> bool:
        state = _APPLIED.get(_unet(pipe))
        return state is not None and self.uid in state["edits"]

    @contextmanager
    def applied(self, pipe, force: bool = False):
        """``with edit.applied(pipe): ...`` runs the block with the edit in place, then reverts."""
        self.apply(pipe, force=force)
        try:
            yield pipe
        finally:
            self.revert(pipe)

    # -- files ----------------------------------------------------------------------------------
    def save(self, path) -> str:
        """Write the changed weights and the metadata to a safetensors file; returns the path.

        The same edit always gives the same bytes: the timings (``edit_seconds``, ...) stay on the
        object and out of the file, and the header is written in a fixed order. The file is written
        next to its destination and renamed into place, with the permissions of any new file."""
        from safetensors.torch import save

        path = _edit_path(path, "save the edit to")
        kept = {k: v for k, v in self.meta.items() if k not in TIMING_KEYS}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "layers": json.dumps(self.layers),
            "layer_names": json.dumps({str(k): v for k, v in self.layer_names.items()}),
            "fingerprints": json.dumps(self.fingerprints, sort_keys=True),
            "fingerprint": self.fingerprint,
            "meta": json.dumps(kept, sort_keys=True),
        }
        for key in ("model", "lambda", "loco_lib_version"):
            meta[key] = str(self.meta.get(key))
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.weights.items()}
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise LocoError(f"cannot save the edit to {path!r}: folder {folder!r} does not exist")
        try:
            _write_new_file(path, _canonical_safetensors(save(tensors, metadata=meta)))
        except OSError as exc:
            raise LocoError(f"cannot save the edit to {path!r}: {exc.strerror or exc}") from None
        return path

    @classmethod
    def load(cls, path) -> "Edit":
        """Read an edit written by :meth:`save`. Missing or unreadable files are a LocoError."""
        from safetensors import safe_open

        path = _edit_path(path, "load an edit from")
        if not os.path.isfile(path):
            raise LocoError(f"no edit file at {path!r}")
        try:
            with safe_open(path, framework="pt", device="cpu") as fh:
                meta = fh.metadata() or {}
                weights = {k: fh.get_tensor(k) for k in fh.keys()}
        except Exception as exc:  # safetensors raises its own error types for corrupt headers/data
            raise LocoError(f"{path!r} is not a readable LocoEdit file ({type(exc).__name__})") from None
        if meta.get("format") != FORMAT:
            raise LocoError(f"{path!r} is a safetensors file but not a LocoEdit file (no '{FORMAT}' metadata)")
        try:
            layers = [int(i) for i in json.loads(meta["layers"])]
            layer_names = {int(k): str(v) for k, v in json.loads(meta["layer_names"]).items()}
            fingerprints = {str(k): str(v) for k, v in json.loads(meta["fingerprints"]).items()}
            extra = json.loads(meta["meta"])
        except (KeyError, ValueError, TypeError, AttributeError):
            raise LocoError(f"{path!r} has damaged LocoEdit metadata") from None
        if set(fingerprints) != set(weights) or not weights:
            raise LocoError(f"{path!r} has damaged LocoEdit metadata (weights and fingerprints do not match)")
        return cls(weights=weights, fingerprints=fingerprints, layers=layers, layer_names=layer_names, meta=extra)


TIMING_KEYS = ("edit_seconds", "encode_seconds")  # in memory only: files of the same edit are identical


def _edit_path(path, doing: str) -> str:
    """``path`` as a string; a LocoError for anything that is not a path."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise LocoError(f"cannot {doing} {path!r}: give the path of a .safetensors file")
    return os.fspath(path)


def _canonical_safetensors(blob: bytes) -> bytes:
    """safetensors bytes with the JSON header's keys sorted (safetensors writes the metadata in hash
    order, which differs from run to run); the tensor data is unchanged."""
    n = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the data stays 8-byte aligned
    return len(header).to_bytes(8, "little") + header + blob[8 + n :]


def _write_new_file(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` (created like any new file: 0666 minus the
    umask), then rename it into place, so an interruption never leaves half a file."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _model_name(pipe) -> str:
    name = getattr(pipe, "loco_name", None)
    if name:
        return str(name)
    unet = _unet(pipe)
    return str(getattr(getattr(unet, "config", None), "_class_name", None) or type(unet).__name__)


def compute_edit(
    pipe,
    layers,
    originals,
    targets,
    subjects=None,
    target_subjects=None,
    lam: float = LAMBDA,
    preserve=None,
) -> Edit:
    """LocoEdit (Sec. 6.1): new key and value weights for ``layers`` of ``pipe``'s UNet.

    ``layers``: indices (``[8, 9]``, ``"8,9"``, ``"45-47"``, ``"all"`` for App. F's edit-everything
    baseline). ``originals``: prompts with the attribute; ``targets``: one attribute-free prompt per
    original (or one for all). ``subjects`` / ``target_subjects``: the subject whose last token
    gives the row (one per prompt, one for all, or None = the last token before end-of-text).
    ``lam``: lambda_K = lambda_V (App. H: 0.01). ``preserve``: optional prompts whose last-token
    rows must keep their keys and values (identity rows); the paper uses none.

    The pipeline is not changed: call :meth:`Edit.apply` (or ``with edit.applied(pipe):``).
    """
    from . import __version__, settings
    from .models import pipeline_family
    from .text import as_prompt_list

    family = pipeline_family(pipe)
    lam = settings.lam(lam)
    start = time.perf_counter()
    originals = settings.prompts(pipe, originals, "original prompt")
    targets = _as_list(settings.prompts(pipe, targets, "target prompt"), len(originals), "target prompts")
    subjects = _as_list(subjects, len(originals), "subjects")
    target_subjects = _as_list(target_subjects, len(originals), "target subjects")
    preserve = [] if preserve is None else as_prompt_list(preserve, "preserve prompt")
    unet = pipe.unet
    all_layers = cross_attention_layers(unet)
    idx = parse_layers(layers, len(all_layers))
    if not idx:
        raise LocoError("no layers given to edit (e.g. layers=[8, 9])")

    X_o = kv_rows(pipe, idx, originals, subjects)
    X_t = kv_rows(pipe, idx, targets, target_subjects)
    X_p = kv_rows(pipe, idx, preserve, None) if preserve else None
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
        "n_rows": len(originals) + len(preserve),
        "dtype": str(next(iter(weights.values())).dtype).replace("torch.", ""),
        "edit_seconds": solve_seconds,
        "encode_seconds": encode_seconds,
        "loco_lib_version": __version__,
    }
    return Edit(
        weights=weights,
        fingerprints=fingerprints,
        layers=idx,
        layer_names={i: all_layers[i].name for i in idx},
        meta=meta,
    )


def fit_table(pipe, edit: "Edit", originals, targets, subjects=None, target_subjects=None):
    """How well ``edit`` meets its objective, one row per matrix: the fit term
    ``||X_orig W - X_target W_hat||^2`` at the model's current weight W_hat ("fit before") and at the
    edit's weight ("fit after"), and the relative weight change ``||W - W_hat|| / ||W_hat||``.
    The pipeline must not carry the edit (W_hat is read from it)."""
    import pandas as pd

    if edit.is_applied(pipe):
        raise LocoError("the edit is applied: measure its fit on the unedited model (revert it first)")
    rows_o = kv_rows(pipe, edit.layers, originals, subjects)
    rows_t = kv_rows(pipe, edit.layers, targets, target_subjects)
    out = []
    for name, new in edit.weights.items():
        layer = next(i for i, lname in edit.layer_names.items() if name.startswith(lname + "."))
        old = pipe.unet.get_parameter(name).detach().cpu().double()
        new = new.double()
        xo, xt = rows_o[layer].cpu().double(), rows_t[layer].cpu().double()
        out.append({"layer": layer, "matrix": name.split(".")[-2], "fit before": float(objective(old, old, xo, xt, 0.0)),
                    "fit after": float(objective(new, old, xo, xt, 0.0)),
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


def weights_checksum(module) -> str:
    """sha256 over every tensor of ``module``'s state (names and raw bytes): equal only if bit-identical."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Timing on full-size shapes
# ---------------------------------------------------------------------------------------------

@dataclass
class EditTiming:
    model: str
    layers: list[int]
    n_prompts: int
    seconds: float  # all closed-form K and V updates (written into the weights), wall time
    per_projection: dict[str, float]  # parameter name -> seconds
    shapes: dict[str, tuple]  # parameter name -> weight shape
    device: str
    dtype: str
    build_seconds: float  # building the random full-size UNet (not part of the edit)


def time_edit_full_size(model: str = "sdxl", layers=None, n_prompts: int = 8, device="cpu", dtype=torch.float32,
                        lam: float = LAMBDA, seed: int = 0) -> EditTiming:
    """Time LocoEdit's weight update on the full-size UNet of ``model`` (real shapes, random
    weights, :func:`loco_lib.architectures.random_unet`).

    ``layers``: default the paper's style window (SD-XL 45, 46, 47). The rows are random
    [n_prompts, kv_dim] matrices (2048-d for SD-XL), so the time is the closed form alone (no text
    encoder): the K and V update of every layer, including writing the new weight into the UNet.
    """
    from .architectures import random_unet

    from .models import quiet_libraries
    from .paper import LOCATIONS, paper_window

    if model not in LOCATIONS and layers is None:
        raise LocoError(f"no default layers for {model!r}: give layers=[...]")

    t0 = time.perf_counter()
    with quiet_libraries():
        unet = random_unet(model, dtype=dtype, device=device)
    build = time.perf_counter() - t0
    all_layers = cross_attention_layers(unet)
    idx = parse_layers(paper_window(model, 'style') if layers is None else layers, len(all_layers))
    gen = torch.Generator("cpu").manual_seed(seed)
    per: dict[str, float] = {}
    shapes: dict[str, tuple] = {}
    total = 0.0
    with torch.no_grad():
        for i in idx:
            layer = all_layers[i]
            xo = torch.randn(n_prompts, layer.kv_dim, generator=gen).to(device, dtype)
            xt = torch.randn(n_prompts, layer.kv_dim, generator=gen).to(device, dtype)
            attn = unet.get_submodule(layer.name)
            for proj in (layer.key, layer.value):
                p = getattr(attn, proj).weight
                sync = torch.cuda.synchronize if p.device.type == "cuda" else (lambda: None)
                sync()
                t = time.perf_counter()
                p.copy_(closed_form(p, xo, xt, lam))
                sync()
                dt = time.perf_counter() - t
                name = f"{layer.name}.{proj}.weight"
                per[name] = dt
                shapes[name] = tuple(p.shape)
                total += dt
    del unet
    return EditTiming(model=model, layers=idx, n_prompts=n_prompts, seconds=total, per_projection=per, shapes=shapes,
                      device=str(device), dtype=str(dtype).replace("torch.", ""), build_seconds=build)
