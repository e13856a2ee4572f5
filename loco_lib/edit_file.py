"""The saved edit (paper Sec. 6): an :class:`Edit` is the artefact a LocoEdit produces.

The same artefact carries a DiffQuickFix edit (App. I; :mod:`loco_lib.diffquickfix`), whose weights
live in a text encoder: ``component`` names the pipeline component the weights belong to
(``"unet"``, ``"text_encoder"``, ``"text_encoder_2"``). It holds only the new weights of the edited layers, a fingerprint of the weights it was computed
from (so it refuses another model, or an edit already in place), and its metadata. ``apply`` /
``revert`` (bit-for-bit, also after exceptions and in fp16) / ``applied`` (a context manager)
change a pipeline in place; ``save`` / ``Edit.load`` use a safetensors file whose bytes depend only
on the edit (no timings, sorted header). :func:`loco_lib.locoedit.compute_edit` makes one.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .errors import LocoError
from .files import write_bytes

FORMAT = "loco-edit"
FORMAT_VERSION = "1"


def _unet(pipe_or_unet):
    from .families.registry import denoiser

    return denoiser(pipe_or_unet)


def _component(pipe, component: str):
    """The module of ``pipe`` an edit changes (a bare UNet stands for itself)."""
    if component == "unet":
        return _unet(pipe)
    module = getattr(pipe, component, None)
    if not isinstance(module, torch.nn.Module):
        raise LocoError(f"the edit changes the {component} of a pipeline; this model has none (give the whole pipeline)")
    return module


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
    component: str = "unet"  # the pipeline component holding the weights

    @property
    def method(self) -> str:
        """``"locoedit"`` or ``"diffquickfix"``."""
        return str(self.meta.get("method", "locoedit"))

    # -- information ----------------------------------------------------------------------------
    @property
    def lam(self) -> float | None:
        """The lambda the edit was computed with (None for an edit made without one recorded)."""
        lam = self.meta.get("lambda")
        return None if lam is None else float(lam)

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
        return (f"Edit(method={self.method!r}, model={self.model!r}, {self.component} layers={self.layers}, lambda={self.lam}, "
                f"rows={self.meta.get('n_rows')}, params={len(self.weights)}, edit_seconds={self.edit_seconds:.4f})")

    def _layer_of(self, name: str) -> str:
        for i, lname in self.layer_names.items():
            if name.startswith(lname + "."):
                return f"layer {i} ({name.rsplit('.', 1)[0]})"
        return name

    # -- apply / revert -----------------------------------------------------------------------
    def _params(self, pipe, force: bool) -> dict[str, torch.nn.Parameter]:
        unet = _component(pipe, self.component)
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
        unet = _component(pipe, self.component)
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
        unet = _component(pipe, self.component)
        state = _APPLIED.get(unet)
        if state is None or self.uid not in state["edits"]:
            raise LocoError("this edit is not applied to this pipeline: nothing to revert")
        saved = state["edits"].pop(self.uid)
        for name, orig in saved.items():
            unet.get_parameter(name).copy_(orig)
            state["owner"].pop(name, None)
        return pipe

    def is_applied(self, pipe) -> bool:
        state = _APPLIED.get(_component(pipe, self.component))
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
        if self.component != "unet":  # files of UNet edits stay as they were
            meta["component"] = self.component
        for key in ("model", "lambda", "loco_lib_version"):
            meta[key] = str(self.meta.get(key))
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.weights.items()}
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise LocoError(f"cannot save the edit to {path!r}: folder {folder!r} does not exist")
        try:
            write_bytes(path, _canonical_safetensors(save(tensors, metadata=meta)))  # whole or not at all
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
        component = meta.get("component", "unet")
        if component not in ("unet", "text_encoder", "text_encoder_2"):
            raise LocoError(f"{path!r} has damaged LocoEdit metadata (unknown component {component!r})")
        return cls(weights=weights, fingerprints=fingerprints, layers=layers, layer_names=layer_names, meta=extra,
                   component=component)


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




def _model_name(pipe) -> str:
    name = getattr(pipe, "loco_name", None)
    if name:
        return str(name)
    unet = _unet(pipe)
    return str(getattr(getattr(unet, "config", None), "_class_name", None) or type(unet).__name__)


def weights_checksum(module) -> str:
    """sha256 over every tensor of ``module``'s state (names and raw bytes): equal only if bit-identical."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
