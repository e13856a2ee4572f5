"""Record and patch any state of a pipeline by name: the one mechanism behind every experiment.

Causal tracing (paper Sec. 4) restores recorded clean states into a corrupted run, LocoGen's
altered inputs (Sec. 5.1.1) give some cross-attention layers another prompt's text, neuron editing
(Sec. 7) overwrites K/V output units, and the App. M token swap replaces some text tokens. Each is a
set of :class:`Patch` es (and :class:`Record` s) on named :class:`Site` s, installed for the
duration of one ``with hooks(pipe, ...)`` block:

* a site is a module of a pipeline component by its dotted path (``Site("unet",
  "mid_block.attentions.0")``; ``"unet"`` and ``"denoiser"`` name the pipeline's denoiser, a UNet or
  a diffusion transformer), its ``"output"`` or one ``"input"`` argument, ``"text"``: the text
  states a cross-attention layer reads (the ``encoder_hidden_states`` its attention processor gets;
  for DeepFloyd IF after ``encoder_hid_proj``, before the layer's GroupNorm; for PixArt after
  ``caption_projection``), or ``"text_mask"``: the attention mask it gets with them (PixArt's
  padding mask, as an additive bias), or ``"attention"``: the whole call of a cross-attention
  layer's processor (its query input, text and mask), where a record keeps a function of them
  (``Record(..., reduce=fn)``: e.g. the layer's attention contribution, :mod:`loco_lib.ranking`);
* a patch replaces the value there by a tensor (one row per sample, or one row for all), by a
  function of the clean rows, or by the value another sample of the same call has there
  (:class:`FromSample`: causal tracing restores a clean run's state into the corrupted runs riding
  in the same batch), only in the rows it selects: samples, classifier-free-guidance branch
  (diffusers lays a guided denoiser batch out as ``[uncond, cond]``; only the denoiser has branches,
  and selecting one elsewhere is refused), denoising steps (denoiser calls counted from 0), and
  optionally token positions;
* a record keeps the value (after the patches at its site) of the rows it selects, per call.

Module outputs and inputs go through PyTorch forward hooks; the ``"text"`` site goes through a
wrapper around the layer's own attention processor (attention itself is never re-implemented, so
the same code serves SD's ``attn2``, IF's added-K/V attention and PixArt's ``attn2``). Leaving the
block removes every
hook and puts back the original processor objects, also after an exception: the pipeline is
bit-for-bit as it was.

Options for batched experiments: ``share_identical_rows`` evaluates bitwise-identical rows of a
UNet call once (identical inputs under identical patches give identical outputs), and ``counter``
counts what the UNet actually evaluated.
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .errors import LocoError

KINDS = ("output", "input", "text", "text_mask", "attention")
BRANCHES = ("cond", "uncond", "all")
DENOISER_NAMES = ("unet", "denoiser", "transformer")  # "unet" and "denoiser" name any pipeline's denoiser


# -- names ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Site:
    """A named place in a pipeline: ``component`` (``"unet"`` or ``"denoiser"``: the pipeline's denoiser,
    whatever its family calls it; ``"transformer"``, ``"text_encoder"``, ``"text_encoder_2"``),
    ``module`` (dotted path inside it; ``""`` is the component itself), ``kind`` (``"output"``,
    ``"input"`` or ``"text"``) and, for inputs, ``arg``: an argument name (dotted into dict arguments,
    e.g. ``"added_cond_kwargs.text_embeds"``) or position; ``None`` is the first argument. For an
    output, ``arg`` is an element of a tuple output (a joint-attention block returns (text stream,
    image stream)); ``None``: the output itself, or the first element of a tuple."""

    component: str = "unet"
    module: str = ""
    kind: str = "output"
    arg: str | int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise LocoError(f"unknown site kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if self.arg is not None and self.kind not in ("input", "output"):
            raise LocoError(f"only input sites name an argument (and output sites an element), not {self.kind} sites")
        if self.kind == "output" and self.arg is not None and (isinstance(self.arg, bool) or not isinstance(self.arg, int)
                                                               or self.arg < 0):
            raise LocoError(f"an output site names an element of a tuple output (an integer >= 0), got {self.arg!r}")
        if self.kind in ("text", "text_mask", "attention") and self.component not in DENOISER_NAMES:
            raise LocoError("text sites are cross-attention layers of the denoiser")

    def __str__(self) -> str:
        s = f"{self.component}:{self.module}:{self.kind}"
        return s if self.arg is None else f"{s}:{self.arg}"

    @classmethod
    def parse(cls, name) -> "Site":
        """``"unet:mid_block.attentions.0:output"``, ``"unet::input:encoder_hidden_states"``; a Site passes."""
        if isinstance(name, Site):
            return name
        if not isinstance(name, str):
            raise LocoError(f"a site is a Site or a 'component:module:kind' string, got {name!r}")
        parts = name.split(":")
        if not 1 <= len(parts) <= 4:
            raise LocoError(f"cannot read site {name!r}: write component:module:kind[:arg]")
        arg = parts[3] if len(parts) == 4 else None
        if arg is not None and arg.isdigit():
            arg = int(arg)
        return cls(parts[0] or "unet", parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "output", arg)


def text_site(layer) -> Site:
    """The text states cross-attention ``layer`` (a :class:`~loco_lib.layers.CrossAttentionLayer`) reads."""
    return Site("unet", layer.name, "text")


def text_mask_site(layer) -> Site:
    """The attention mask cross-attention ``layer``'s processor gets with its text (a diffusion
    transformer's padding mask, as the additive bias its processor receives; None in a UNet)."""
    return Site("unet", layer.name, "text_mask")


def attention_site(layer) -> Site:
    """The call of cross-attention ``layer``'s processor as a whole (recorded with ``reduce``)."""
    return Site("unet", layer.name, "attention")


def kv_site(layer, proj: str) -> Site:
    """The output of ``layer``'s key (``proj="key"``) or value projection: its K/V neurons."""
    if proj not in ("key", "value"):
        raise LocoError(f"a projection is 'key' or 'value', got {proj!r}")
    return Site("unet", f"{layer.name}.{layer.key if proj == 'key' else layer.value}", "output")


def unet_input(arg: str | int = "encoder_hidden_states") -> Site:
    """An argument of the UNet call (default: the text embedding every layer receives)."""
    return Site("unet", "", "input", arg)


# -- what to do ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FromSample:
    """A patch value: what sample ``sample`` of the same call has at the site (same guidance branch,
    same step), read before any patch of this site changes it. That sample must be in the batch."""

    sample: int = 0

    def __post_init__(self):
        if isinstance(self.sample, bool) or not isinstance(self.sample, int) or self.sample < 0:
            raise LocoError(f"FromSample takes a sample index (a non-negative integer), got {self.sample!r}")


@dataclass
class Patch:
    """Replace the value at ``site`` in the selected rows.

    ``value``: a tensor with one row per sample of the pipeline call (or a single row for all), a
    function ``fn(clean_rows, call) -> new_rows`` (``call`` is the current :class:`Call`; its
    ``selected`` lists the sample of each row handed over), or :class:`FromSample`.
    ``samples``: sample indices (None: all). ``branch``: ``"cond"`` (default on the UNet),
    ``"uncond"`` or ``"all"``; text-encoder sites have no branches. ``steps``: UNet call indices
    (None: every call). ``tokens``: a boolean ``[n_samples, L]`` (or ``[L]``) mask; only these
    positions of dimension 1 change (a mask shorter than that dimension covers its first positions:
    the text part of a joint [text, image] sequence).
    """

    site: Site | str
    value: Any
    samples: Any = None
    branch: str | None = None
    steps: Any = None
    tokens: torch.Tensor | None = None

    def __post_init__(self):
        self.site = Site.parse(self.site)
        self.branch = _check_branch(self.site, self.branch)
        if not (torch.is_tensor(self.value) or callable(self.value) or isinstance(self.value, FromSample)):
            raise LocoError(f"a patch value is a tensor, a function of the clean value or FromSample, got {type(self.value).__name__}")
        if self.tokens is not None:
            self.tokens = torch.as_tensor(self.tokens, dtype=torch.bool)
            if self.tokens.dim() not in (1, 2):
                raise LocoError(f"a token mask is [L] or [n_samples, L], got shape {tuple(self.tokens.shape)}")


@dataclass
class Record:
    """Keep the value at ``site`` (after its patches) in the selected rows, one tensor per call.

    At an ``"attention"`` site the value kept is ``reduce(attn, hidden_states, text, mask, samples)``
    of the selected rows (the attention module, its query input, the text states and attention mask
    its processor gets after any patch, and the sample of each row), computed when the layer runs.
    At any other site ``reduce`` is optional: ``reduce(rows, samples)`` keeps a function of the
    selected rows (e.g. a few token positions of each) instead of the rows."""

    site: Site | str
    samples: Any = None
    branch: str | None = None
    steps: Any = None
    to_cpu: bool = True
    reduce: Callable | None = None

    def __post_init__(self):
        self.site = Site.parse(self.site)
        self.branch = _check_branch(self.site, self.branch)
        if self.site.kind == "attention" and self.reduce is None:
            raise LocoError("a record at an attention site needs reduce=fn(attn, hidden_states, text, mask, samples)")


def _check_branch(site: Site, branch):
    """The branch a patch or record selects: the conditional one by default on the denoiser, every
    row on a text encoder (whose calls have no guidance rows: selecting a branch there is refused).
    Another component's default is settled when the hooks are installed (:meth:`_Session.resolve`)."""
    if site.component.startswith("text_encoder"):
        if branch not in (None, "all"):
            raise LocoError(f"{site.component} sites have no guidance branches: leave branch unset")
        return "all"
    if branch is not None and branch not in BRANCHES:
        raise LocoError(f"unknown branch {branch!r}: use one of {', '.join(BRANCHES)}")
    if site.component in DENOISER_NAMES:
        return "cond" if branch is None else branch
    return branch


@dataclass
class Call:
    """One forward call of a component: its index (for the UNet, the denoising step), its batch
    rows and, after row sharing, which original row each evaluated row stands for."""

    component: str
    step: int
    n_rows: int
    rows: list[int]  # original row of each evaluated row
    cond: torch.Tensor  # bool per original row: conditional branch
    sample: list[int]  # sample index of each original row
    inverse: list[int] | None = None  # after row sharing: the evaluated row that stands for each original row
    selected: list[int] | None = None  # for a function patch: the sample of each row it is handed
    memo: dict = field(default_factory=dict, repr=False)  # per call: patch values laid out on the evaluated rows

    def __post_init__(self):
        self.is_cond = [bool(c) for c in self.cond.tolist()]  # the branch flags as Python values (read per row)

    def position_of(self, sample: int, like_row: int) -> int:
        """Where (in the evaluated batch) sample ``sample`` sits, in the branch of original row ``like_row``."""
        for r in range(self.n_rows):
            if self.sample[r] == sample and self.is_cond[r] == self.is_cond[like_row]:
                return r if self.inverse is None else self.inverse[r]
        raise LocoError(f"FromSample({sample}): this {self.component} call has no sample {sample}")


@dataclass
class Trace:
    """What the records kept: ``trace[site]`` is the list of per-call tensors, rows in sample order."""

    values: dict = field(default_factory=dict)
    calls: dict = field(default_factory=dict)  # component -> number of forward calls seen

    def __getitem__(self, site) -> list[torch.Tensor]:
        return self.values[str(Site.parse(site))]

    def stacked(self, site) -> torch.Tensor:
        """The recorded calls stacked on a new first dimension: ``[calls, rows, ...]``."""
        return torch.stack(self[site])


# -- the mechanism ------------------------------------------------------------------------------------

def conditional_rows(n_rows: int, n_samples: int, guidance: bool | None = None) -> slice:
    """The rows of a UNet batch that carry the conditional branch.

    diffusers' SD, SD-XL and IF pipelines lay out a classifier-free-guidance batch as
    ``[uncond, cond]``; without guidance the whole batch is conditional. ``guidance=None`` infers
    the layout from the batch size.
    """
    if n_rows == 2 * n_samples and guidance is not False:
        return slice(n_samples, 2 * n_samples)
    if n_rows == n_samples and not guidance:
        return slice(0, n_samples)
    layout = {True: " with guidance", False: " without guidance", None: ""}[guidance]
    raise LocoError(f"the UNet batch has {n_rows} rows{layout}, which does not fit {n_samples} sample(s): give one row per sample")


def _denoiser_name(pipe) -> str:
    """The pipeline's denoiser component: diffusers names it ``unet`` or ``transformer`` in every
    pipeline (the families of :mod:`loco_lib.families` say the same); a module handed over alone is
    the denoiser (named ``unet``, which like ``denoiser`` is an alias of whatever the denoiser is)."""
    if isinstance(pipe, torch.nn.Module):
        return "unet"
    for name in ("unet", "transformer"):
        if isinstance(getattr(pipe, name, None), torch.nn.Module):
            return name
    return "unet"


def _components(pipe, denoiser: str) -> dict:
    if isinstance(pipe, torch.nn.Module):
        return {denoiser: pipe}
    return {name: getattr(pipe, name) for name in ("unet", "text_encoder", "text_encoder_2", "text_encoder_3", "transformer")
            if isinstance(getattr(pipe, name, None), torch.nn.Module)}


def _selection(items, what: str):
    if items is None:
        return None
    if hasattr(items, "tolist"):
        items = items.tolist()
    items = [items] if isinstance(items, int) and not isinstance(items, bool) else list(items)
    for x in items:
        if isinstance(x, bool) or not isinstance(x, int) or x < 0:
            raise LocoError(f"{what} are non-negative integers, got {x!r}")
    return frozenset(items)


class _Action:
    """A patch or record, bound to its component, with its selections normalised."""

    def __init__(self, spec, index: int, denoiser: str):
        self.spec = spec
        self.index = index
        self.site = spec.site
        self.component = denoiser if spec.site.component in ("unet", "denoiser") else spec.site.component
        guided = self.component == denoiser
        self.branch = spec.branch if spec.branch is not None else ("cond" if guided else "all")
        if not guided and self.branch != "all":
            raise LocoError(f"{spec.site.component} calls have no guidance rows, so a patch or record at {spec.site} "
                            f"cannot select the {self.branch!r} branch: leave branch unset")
        self.samples = _selection(spec.samples, "samples")
        self.steps = _selection(spec.steps, "steps")
        self.is_patch = isinstance(spec, Patch)

    def rows(self, call: Call) -> list[int]:
        """Positions (in the evaluated batch) of the rows this action touches in ``call``."""
        if self.steps is not None and call.step not in self.steps:
            return []
        out = []
        branch, samples, sample, is_cond = self.branch, self.samples, call.sample, call.is_cond
        for pos, r in enumerate(call.rows):
            if samples is not None and sample[r] not in samples:
                continue
            if branch == "cond" and not is_cond[r]:
                continue
            if branch == "uncond" and is_cond[r]:
                continue
            out.append(pos)
        return out


class _Session:
    """The live state of one ``hooks`` block."""

    def __init__(self, pipe, records, patches, n_samples, guidance, share_identical_rows, counter):
        self.denoiser = _denoiser_name(pipe)  # the one component whose calls carry guidance rows
        self.components = _components(pipe, self.denoiser)
        self.n_samples = n_samples
        self.guidance = guidance
        self.share = share_identical_rows
        self.counter = counter
        self.trace = Trace()
        self.actions = [_Action(s, i, self.denoiser) for i, s in enumerate([*patches, *records])]
        for a in self.actions:
            if a.component not in self.components:
                raise LocoError(f"this pipeline has no {a.site.component!r} for site {a.site}")
            if not a.is_patch:
                self.trace.values.setdefault(str(a.site), [])
        self.calls: dict[str, Call | None] = {}
        self.handles: list = []
        self.processors: list = []

    # -- calls ---------------------------------------------------------------------------------
    def layout(self, component: str, n_rows: int) -> tuple[torch.Tensor, list[int]]:
        """Branch and sample index of each row of a call."""
        if component != self.denoiser:
            return torch.ones(n_rows, dtype=torch.bool), list(range(n_rows))
        n = self.n_samples
        if n is None and self.guidance is None and all(
                a.branch == "all" and a.samples is None for a in self.actions if a.component == component):
            return torch.ones(n_rows, dtype=torch.bool), list(range(n_rows))  # every row alike: no layout needed
        if n is None:
            if self.guidance is None:
                raise LocoError("patching the UNet needs the batch layout: pass n_samples (images per call) or guidance (True/False)")
            n = max(1, n_rows // 2 if self.guidance else n_rows)
        rows = conditional_rows(n_rows, n, self.guidance)
        cond = torch.zeros(n_rows, dtype=torch.bool)
        cond[rows] = True
        return cond, [r % n for r in range(n_rows)]

    def begin(self, component: str, module, args, kwargs):
        step = self.trace.calls.get(component, 0)
        self.trace.calls[component] = step + 1
        x = _first_arg(module, args, kwargs)
        n_rows = x.shape[0]
        cond, sample = self.layout(component, n_rows)
        call = Call(component, step, n_rows, list(range(n_rows)), cond, sample)
        self.calls[component] = call
        result = None
        if component == self.denoiser and self.share:
            keep = self.shared_rows(call, args, kwargs)
            if keep is not None:
                args, kwargs = _take_rows(list(args), dict(kwargs), keep[0], n_rows)
                call.rows = keep[0]
                call.inverse = keep[1]
                call.memo.clear()
                result = (tuple(args), kwargs)
        if component == self.denoiser and self.counter is not None:
            self.counter["calls"] = self.counter.get("calls", 0) + 1
            self.counter["rows"] = self.counter.get("rows", 0) + len(call.rows)
            self.counter["uncond_rows"] = self.counter.get("uncond_rows", 0) + int((~call.cond[call.rows]).sum())
        return result

    def end(self, component: str, output):
        call = self.calls.pop(component, None)
        inverse = None if call is None else call.inverse
        if inverse is None:
            return None
        inv = torch.tensor(inverse)
        if isinstance(output, tuple):
            return (output[0][inv.to(output[0].device)],) + tuple(output[1:])
        output.sample = output.sample[inv.to(output.sample.device)]
        return output

    def shared_rows(self, call: Call, args, kwargs):
        """``(keep, inverse)`` when some rows of this UNet call are bitwise identical, else None.

        Two rows are identical when every batch-sized input and, for each patch active in this
        call, the value it writes there are bitwise equal (function patches count as distinct)."""
        n = call.n_rows
        keys = _batch_tensors(args, kwargs, n)
        touching: list[list] = [[] for _ in range(n)]  # per row: the patches that write it
        by_value: dict[int, tuple] = {}  # patches sharing one value tensor write the same row content
        for a in self.actions:
            if not a.is_patch:
                continue
            pos = a.rows(call)
            if callable(a.spec.value) or isinstance(a.spec.value, FromSample) or a.spec.tokens is not None:
                for p in pos:  # a row such a patch writes is like no other row
                    touching[p].append((a.index, p))
                continue
            for p in pos:
                touching[p].append(a.index)
            if a.spec.value.shape[0] > 1 and pos:
                v = a.spec.value
                by_value.setdefault(id(v), (v, set()))[1].update(pos)
        for v, pos in by_value.values():
            def written(v=v, pos=sorted(pos)):  # the value's rows where the patches write them, zeros elsewhere
                rows = torch.zeros((n, *v.shape[1:]), dtype=v.dtype, device=v.device)
                rows[pos] = v[[call.sample[p] for p in pos]]
                return rows
            keys.append(written)
        keep, inverse = _unique_rows(n, keys, [tuple(t) for t in touching])
        return None if len(keep) == n else (keep, inverse)

    # -- values ---------------------------------------------------------------------------------
    def at_site(self, site: str, value: torch.Tensor) -> torch.Tensor:
        """Apply the patches at ``site`` to ``value`` and feed its records; returns the value to use."""
        component = self.site_component[site]
        call = self.calls.get(component)
        if call is None:  # a component called outside a forward we track (e.g. a sub-module alone)
            return value
        if value.shape[0] != len(call.rows):
            raise LocoError(f"site {site} has {value.shape[0]} rows, its {component} call {len(call.rows)}")
        original = value
        for a in self.by_site.get(site, ()):
            pos = a.rows(call)
            if not pos:
                continue
            if a.is_patch:
                value = self.patch(a, call, pos, value, original)
            else:
                kept = value[torch.tensor(pos, device=value.device)].detach()
                if a.spec.reduce is not None:
                    kept = a.spec.reduce(kept, [call.sample[call.rows[p]] for p in pos]).detach()
                kept = kept.clone()
                self.trace.values[site].append(kept.cpu() if a.spec.to_cpu else kept)
        return value

    def observe(self, site: str, attn, hidden, text, mask):
        """Feed the records of an ``"attention"`` site with one call of its layer's processor."""
        call = self.calls.get(self.site_component[site])
        if call is None:
            return
        for a in self.by_site.get(site, ()):
            pos = a.rows(call)
            if not pos:
                continue
            idx = torch.tensor(pos, device=hidden.device)
            rows = None if mask is None or mask.shape[0] != hidden.shape[0] else mask[idx]
            kept = a.spec.reduce(attn, hidden[idx], text[idx], rows, [call.sample[call.rows[p]] for p in pos])
            kept = kept.detach()
            self.trace.values[site].append(kept.cpu() if a.spec.to_cpu else kept)

    def patch(self, a: _Action, call: Call, pos: list[int], value: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        if torch.is_tensor(a.spec.value) and a.spec.tokens is None:
            return self.patch_rows(a, call, pos, value)
        idx = torch.tensor(pos, device=value.device)
        clean = value[idx]
        spec = a.spec
        if isinstance(spec.value, FromSample):
            src = [call.position_of(spec.value.sample, call.rows[p]) for p in pos]
            new = original[torch.tensor(src, device=value.device)]
        elif callable(spec.value):
            call.selected = [call.sample[call.rows[p]] for p in pos]
            new = spec.value(clean, call)
        else:
            v = spec.value
            samples = [call.sample[call.rows[p]] for p in pos]
            if v.shape[0] == 1:
                new = v.expand(len(pos), *v.shape[1:])
            elif max(samples) < v.shape[0]:
                new = v[torch.tensor(samples, device=v.device)]
            else:
                raise LocoError(f"the patch at {a.site} has {v.shape[0]} rows, the batch has sample {max(samples)}")
        new = new.to(device=value.device, dtype=value.dtype)
        if new.shape != clean.shape:
            raise LocoError(f"the patch at {a.site} has shape {tuple(new.shape)}, the state {tuple(clean.shape)}")
        if spec.tokens is not None:
            tok = spec.tokens if spec.tokens.dim() == 2 else spec.tokens[None].expand(max(call.sample) + 1, -1)
            tok = tok[[call.sample[call.rows[p]] for p in pos]].to(value.device)
            if clean.dim() >= 2 and tok.shape[1] < clean.shape[1]:  # a shorter mask covers the first positions
                tok = torch.cat([tok, tok.new_zeros(tok.shape[0], clean.shape[1] - tok.shape[1])], 1)
            if clean.dim() < 2 or tok.shape[1] != clean.shape[1]:
                raise LocoError(f"the token mask has {tok.shape[1]} positions, the state at {a.site} {tuple(clean.shape)}")
            new = torch.where(tok.view(*tok.shape, *([1] * (clean.dim() - 2))), new, clean)
        out = value.clone()
        out[idx] = new
        return out

    def patch_rows(self, a: _Action, call: Call, pos: list[int], value: torch.Tensor) -> torch.Tensor:
        """A tensor patch on whole rows: the value's row of each selected sample replaces the row
        (one selection over the batch; the value laid out on the call's rows is made once per call)."""
        v = a.spec.value
        samples = [call.sample[call.rows[p]] for p in pos]
        if v.shape[0] != 1 and max(samples) >= v.shape[0]:
            raise LocoError(f"the patch at {a.site} has {v.shape[0]} rows, the batch has sample {max(samples)}")
        if tuple(v.shape[1:]) != tuple(value.shape[1:]):
            raise LocoError(f"the patch at {a.site} has shape {(len(pos), *v.shape[1:])}, the state "
                            f"{(len(pos), *value.shape[1:])}")
        key = (id(v), value.dtype, value.device)
        laid = call.memo.get(key)
        if laid is None:
            if v.shape[0] == 1:
                laid = v.to(device=value.device, dtype=value.dtype)
            else:  # rows of samples the value has no row for are never selected: any row stands there
                rows = [min(call.sample[r], v.shape[0] - 1) for r in call.rows]
                laid = v[torch.tensor(rows, device=v.device)].to(device=value.device, dtype=value.dtype)
            call.memo[key] = laid
        if len(pos) == value.shape[0]:
            return laid.expand_as(value).clone()
        key = (tuple(pos), value.dim(), value.device)  # a layer's text and mask patches select the same rows
        chosen = call.memo.get(key)
        if chosen is None:
            picked = set(pos)
            chosen = torch.tensor([r in picked for r in range(value.shape[0])], device=value.device)
            chosen = call.memo[key] = chosen.view(-1, *([1] * (value.dim() - 1)))
        return torch.where(chosen, laid, value)

    # -- installation -----------------------------------------------------------------------------
    def install(self):
        self.by_site: dict[str, list[_Action]] = {}
        self.site_component: dict[str, str] = {}
        for a in self.actions:
            self.by_site.setdefault(str(a.site), []).append(a)
            self.site_component[str(a.site)] = a.component
        active = [c for c in self.components if c == self.denoiser or any(a.component == c for a in self.actions)]
        for component in active:  # start of call first: it lays out the rows the site hooks use
            self.handles.append(self.components[component].register_forward_pre_hook(self._pre(component), with_kwargs=True))
        for name, actions in self.by_site.items():
            site = actions[0].site
            root = self.components[actions[0].component]
            try:
                module = root.get_submodule(site.module) if site.module else root
            except AttributeError:
                raise LocoError(f"{site.component} has no module {site.module!r} (site {site})") from None
            if site.kind == "attention" and any(a.is_patch for a in actions):
                raise LocoError(f"an attention site ({name}) is only recorded (with reduce=...), never patched")
            if site.kind in ("text", "text_mask", "attention"):
                self._wrap_processor(module, site, name)
            elif site.kind == "output":
                self.handles.append(_output_hook_before_others(module, self._output_hook(name, site.arg)))
            else:
                self.handles.append(module.register_forward_pre_hook(self._input_hook(name, site.arg, module), with_kwargs=True))
        for component in active:  # end of call last: a patch of the component's own output runs before it
            self.handles.append(_output_hook_before_others(self.components[component], self._post(component)))

    def _pre(self, component):
        def hook(module, args, kwargs):
            return self.begin(component, module, args, kwargs)
        return hook

    def _post(self, component):
        def hook(module, args, output):
            return self.end(component, output)
        return hook

    def _output_hook(self, name, element=None):
        def hook(module, args, output):
            if element is None and torch.is_tensor(output):
                return self.at_site(name, output)
            k = element or 0
            if isinstance(output, tuple) and k < len(output) and torch.is_tensor(output[k]):
                return output[:k] + (self.at_site(name, output[k]),) + output[k + 1:]
            what = f"element {k} of the output" if isinstance(output, tuple) else "the output"
            raise LocoError(f"cannot reach {what} of {name}: it is a "
                            f"{type(output[k] if isinstance(output, tuple) and k < len(output) else output).__name__}, "
                            "not a tensor")
        return hook

    def _input_hook(self, name, arg, module):
        def hook(mod, args, kwargs):
            args, kwargs = list(args), dict(kwargs)
            where = _locate(module, args, kwargs, arg, name)
            new = self.at_site(name, where.get())
            where.set(new)
            return tuple(args), kwargs
        return hook

    def _wrap_processor(self, attn, site: Site, name: str):
        if not hasattr(attn, "set_processor"):
            raise LocoError(f"{site.module} is not an attention module: text sites are cross-attention layers")
        edit = lambda states: self.at_site(name, states)  # noqa: E731
        wrapper = attn.processor
        if not (isinstance(wrapper, TextInputProcessor) and any(a is attn for a, _ in self.processors)):
            self.processors.append((attn, wrapper))
            wrapper = TextInputProcessor(wrapper, None)
            attn.set_processor(wrapper)
        if site.kind == "text":  # one wrapper per layer edits its text and its mask, and is observed
            wrapper.edit = edit
        elif site.kind == "text_mask":
            wrapper.edit_mask = edit
        else:
            wrapper.observe = lambda *call: self.observe(name, *call)

    def remove(self):
        for attn, proc in reversed(self.processors):
            attn.set_processor(proc)
        for h in self.handles:
            _OURS.discard(h.id)
            h.remove()
        self.processors, self.handles = [], []


_OURS: set[int] = set()  # ids of the forward hooks loco has installed


def _output_hook_before_others(module, hook):
    """Register a forward hook that runs after loco's earlier hooks on ``module`` (sessions nest: an
    inner session sees what an outer one patched) but before every other hook, so that hooks of
    other libraries (the output-capturing hooks transformers 5 installs once, on first use, for
    ``hidden_states``) see the patched value."""
    handle = module.register_forward_hook(hook)
    _OURS.add(handle.id)
    for key in [k for k in module._forward_hooks if k not in _OURS]:
        module._forward_hooks.move_to_end(key)
    return handle


class TextInputProcessor:
    """Wraps a layer's attention processor: the text states pass through ``edit`` first.

    The wrapper shows the inner processor's signature, so diffusers' ``Attention.forward`` (which
    filters ``cross_attention_kwargs`` by that signature) hands it every keyword it accepts (a LoRA
    ``scale``, an IP-adapter's inputs) exactly as without the wrapper.
    """

    def __init__(self, inner, edit: Callable | None, edit_mask: Callable | None = None):
        self.inner = inner
        self.edit = edit
        self.edit_mask = edit_mask
        self.observe = None  # fn(attn, hidden_states, text, mask): sees each call after the edits
        call = self._call

        def signature_view(*args, **kwargs):
            return call(*args, **kwargs)

        signature_view.__signature__ = inspect.signature(inner.__call__)
        self.__call__ = signature_view  # what ``inspect.signature(processor.__call__)`` sees

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def _call(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if encoder_hidden_states is not None and self.edit is not None:
            encoder_hidden_states = self.edit(encoder_hidden_states)
        if self.edit_mask is not None:
            if args or kwargs.get("attention_mask") is None:
                raise LocoError("this cross-attention layer gets no attention mask to patch")
            kwargs["attention_mask"] = self.edit_mask(kwargs["attention_mask"])
        if self.observe is not None and encoder_hidden_states is not None:
            self.observe(attn, hidden_states, encoder_hidden_states, args[0] if args else kwargs.get("attention_mask"))
        if args:
            return self.inner(attn, hidden_states, encoder_hidden_states, *args, **kwargs)
        return self.inner(attn, hidden_states, encoder_hidden_states=encoder_hidden_states, **kwargs)


class _Where:
    def __init__(self, get, set_):
        self.get, self.set = get, set_


def _locate(module, args: list, kwargs: dict, arg, name: str) -> _Where:
    """Getter and setter of one argument of a forward call (name, dotted name, or position)."""
    if arg is None or isinstance(arg, int):
        i = arg or 0
        if i < len(args):
            return _Where(lambda: args[i], lambda v: args.__setitem__(i, v))
        params = [p for p in inspect.signature(module.forward).parameters if p != "self"]
        if i < len(params) and params[i] in kwargs:
            key = params[i]
            return _Where(lambda: kwargs[key], lambda v: kwargs.__setitem__(key, v))
        raise LocoError(f"the call has no argument {i} for site {name}")
    head, *rest = arg.split(".")
    if head in kwargs:
        holder, key = kwargs, head
    else:
        params = [p for p in inspect.signature(module.forward).parameters if p != "self"]
        if head not in params or params.index(head) >= len(args):
            raise LocoError(f"the call has no argument {head!r} for site {name}")
        holder, key = args, params.index(head)
    for part in rest:  # dicts are copied before they change: the caller's stays as it was
        inner = dict(holder[key] or {})
        holder[key] = inner
        holder, key = inner, part
        if key not in holder:
            raise LocoError(f"the call's {arg!r} is missing for site {name}")
    return _Where(lambda: holder[key], lambda v: holder.__setitem__(key, v))


def _first_arg(module, args, kwargs) -> torch.Tensor:
    for x in (*args, *kwargs.values()):
        if torch.is_tensor(x) and x.dim() > 0:
            return x
    raise LocoError(f"cannot find the batch of a {type(module).__name__} call")


def _batch_tensors(args, kwargs, n: int) -> list[torch.Tensor]:
    out = []

    def walk(x):
        if torch.is_tensor(x) and x.dim() > 0 and x.shape[0] == n:
            out.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(list(args))
    walk(kwargs)
    return out


def _unique_rows(n: int, tensors: list, labels: list | None = None) -> tuple[list[int], list[int]]:
    """Indices of the first occurrence of each distinct row, and each row's group number.

    Rows are candidates when their ``labels`` (hashable values, one per row, when given) and a cheap
    per-row fingerprint of each tensor match, and identical only when every tensor's rows are
    bitwise equal (``torch.equal``), so sharing never changes a result. A tensor may be given as a
    function that makes it: it is made, and any tensor fingerprinted, only while some rows still
    match on everything before it (after the first denoising step no two rows of a sweep do).
    """
    keys = [(labels[r],) if labels is not None else () for r in range(n)]
    made = []
    for t in tensors:
        counts: dict = {}
        for k in keys:
            counts[k] = counts.get(k, 0) + 1
        open_rows = [r for r in range(n) if counts[keys[r]] > 1]
        if not open_rows:
            return list(range(n)), list(range(n))  # every row differs from every other already
        t = t() if callable(t) else t
        made.append(t)
        prints = t[torch.tensor(open_rows, device=t.device)].reshape(len(open_rows), -1).double().sum(dim=1).cpu().tolist()
        for r, p in zip(open_rows, prints):
            keys[r] = (*keys[r], p)
    keep: list[int] = []
    inverse: list[int] = []
    by_print: dict = {}
    for r in range(n):
        group = None
        for g in by_print.get(keys[r], []):
            if all(torch.equal(t[r], t[keep[g]]) for t in made):
                group = g
                break
        if group is None:
            group = len(keep)
            keep.append(r)
            by_print.setdefault(keys[r], []).append(group)
        inverse.append(group)
    return keep, inverse


def _take_rows(args: list, kwargs: dict, keep: list[int], n: int):
    """The call's arguments restricted to rows ``keep`` (batch-sized tensors only)."""

    def take(x):
        if torch.is_tensor(x) and x.dim() > 0 and x.shape[0] == n:
            return x[torch.tensor(keep, device=x.device)]
        if isinstance(x, dict):
            return {k: take(v) for k, v in x.items()}
        return x

    return [take(a) for a in args], {k: take(v) for k, v in kwargs.items()}


@contextmanager
def hooks(pipe, records=(), patches=(), *, n_samples: int | None = None, guidance: bool | None = None,
          share_identical_rows: bool = False, counter: dict | None = None):
    """Install ``patches`` and ``records`` on ``pipe`` (a pipeline or a UNet) for the block; yields the :class:`Trace`.

    ``n_samples`` (images per pipeline call) and ``guidance`` (classifier-free guidance on or off)
    lay out the UNet batch; give at least one when a UNet site selects a branch or samples.
    """
    if isinstance(records, (Patch, Record)) or isinstance(patches, (Patch, Record)):
        raise LocoError("pass records and patches as lists")
    for p in patches:
        if not isinstance(p, Patch):
            raise LocoError(f"patches must be Patch objects, got {type(p).__name__}")
    for r in records:
        if not isinstance(r, Record):
            raise LocoError(f"records must be Record objects, got {type(r).__name__}")
    if n_samples is not None and (isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1):
        raise LocoError(f"n_samples must be a positive integer, got {n_samples!r}")
    session = _Session(pipe, list(records), list(patches), n_samples, guidance, share_identical_rows, counter)
    try:
        session.install()
        yield session.trace
    finally:
        session.remove()
