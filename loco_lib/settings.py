"""Run settings, checked and normalised in one place, with the pipeline family and its defaults.

Every entry point that generates (``generate``, the sweep engine, LocoGen, ``evaluate``, neuron
sweeps, the organism's ``report``, the command line) resolves its steps, guidance, seeds, batch
size, image size, device and prompts here, so a bad value gives the same one-line
:class:`~loco_lib.errors.LocoError` everywhere and a valid value means the same thing everywhere.
``name`` is how the setting is called in the message (``"steps"`` in Python, ``"--steps"`` on the
command line).
"""
from __future__ import annotations

import math
import numbers

from .families import registry as families
from .errors import LocoError

MAX_SEED = 2**63 - 1
SIZE_UNIT = 8  # the VAE's downsampling factor for SD / SD-XL; IF samples pixels and needs the same grid
DEVICE_TYPES = ("cpu", "cuda", "mps")


def pipeline_family(pipe) -> str:
    """The name of a loaded pipeline's family (``'sd'``, ``'sdxl'``, ``'if'``:
    :func:`loco_lib.families.pipeline_family`); LocoError for anything else."""
    return families.pipeline_family(pipe).name


# Each family's sampling defaults, and where they come from, are in its module of loco_lib.families.
DEFAULTS = families.defaults()


def defaults(pipe) -> dict:
    """The pipeline's default ``steps`` and ``guidance``: its own ``loco_defaults`` (the model organisms
    carry theirs) or the settings of :data:`DEFAULTS` for its family."""
    own = getattr(pipe, "loco_defaults", None)
    return dict(own) if own else families.pipeline_family(pipe).defaults_for(pipe)


def as_prompt_list(prompts, what: str = "prompt") -> list[str]:
    """One prompt or a list of them, as a non-empty list of non-empty strings (else a LocoError)."""
    if prompts is None:
        raise LocoError(f"no {what} given: pass a text such as 'a photo of a cat' or a list of them")
    if isinstance(prompts, str):
        prompts = [prompts]
    if not hasattr(prompts, "__iter__") or isinstance(prompts, (bytes, dict)):
        raise LocoError(f"a {what} must be text or a list of texts, got {prompts!r}")
    prompts = list(prompts.tolist() if hasattr(prompts, "tolist") else prompts)
    if not prompts:
        raise LocoError(f"no {what} given")
    for p in prompts:
        if not isinstance(p, str):
            raise LocoError(f"a {what} must be text, got {p!r}")
        if not p.strip():
            raise LocoError(f"empty {what}: every {what} needs some text")
    return prompts




def _whole(value, name: str, what: str) -> int:
    """``value`` as an int: integers (numpy ones too) and whole floats; bools, strings, 2.7, NaN refused."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise LocoError(f"{name} must be {what}, got {value!r}")


def _takes(scheduler, n: int) -> bool:
    """Whether ``scheduler`` can lay out ``n`` steps (DDIM's "leading" spacing with an offset runs
    past its last timestep at n = num_train_timesteps)."""
    trial = type(scheduler).from_config(scheduler.config)
    try:
        trial.set_timesteps(n)
    except (ValueError, IndexError):
        return False
    return int(max(trial.timesteps)) < scheduler.config.num_train_timesteps


def steps(pipe, value, name: str = "steps", scheduler=None) -> int | None:
    """Denoising steps: None -> the pipeline's default; an integer from 1 to what the scheduler
    (``pipe.scheduler``, or ``scheduler``) can lay out, at most its ``num_train_timesteps``. With
    neither a pipeline nor a scheduler only the value is checked."""
    if value is None:
        return None if pipe is None else defaults(pipe)["steps"]
    n = _whole(value, name, "a whole number of denoising steps, e.g. 50")
    if n < 1:
        raise LocoError(f"{name} must be at least 1 (got {n})")
    family = next((f for f in families.PIPELINES if f.matches(pipe)), None) if pipe is not None and scheduler is None else None
    if family is not None and n == 1:
        fewest, why = family.fewest_steps(pipe)
        if n < fewest:
            raise LocoError(f"{name} must be at least {fewest} here: {why} (got {n})")
    scheduler = scheduler if scheduler is not None else getattr(pipe, "scheduler", None)
    if scheduler is None:
        return n
    limit = scheduler.config.num_train_timesteps
    if n >= limit and not (n == limit and _takes(scheduler, n)):
        most = limit if _takes(scheduler, limit) else limit - 1
        raise LocoError(f"{name} must be at most {most} for this model's scheduler, which knows {limit} timesteps (got {n})")
    return n


def guidance(pipe, value, name: str = "guidance") -> float | None:
    """Classifier-free guidance scale: None -> the pipeline's default; a finite number >= 1 (1 = no
    guidance). With ``pipe=None`` only the value is checked."""
    if value is None:
        return None if pipe is None else defaults(pipe)["guidance"]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise LocoError(f"{name} must be a number such as 7.5, got {value!r}")
    g = float(value)
    if not math.isfinite(g) or g < 1:
        raise LocoError(f"{name} must be a finite number of at least 1 (1 means no guidance), got {g}")
    return g


def seed(value, name: str = "a seed") -> int:
    """One seed: an integer from 0 to 2**63 - 1 (numpy integers accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= MAX_SEED:
        raise LocoError(f"{name} must be an integer from 0 to 2**63 - 1, got {value!r}")
    return int(value)


def _seed_text(text: str, name: str) -> list[int]:
    """``"0,1"`` -> [0, 1] (the command line's ``--seeds``)."""
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise LocoError(f"cannot read {name.lstrip('-')} {text!r}: use integers like 0,1") from None
    if not values or any(s < 0 for s in values):
        raise LocoError(f"cannot read {name.lstrip('-')} {text!r}: use non-negative integers like 0,1")
    return values


def seeds(value, name: str = "seeds") -> list[int]:
    """A set of seeds: one integer, a list / tuple / range / array of distinct integers, or text
    ``"0,1"``; returned as a non-empty list of ints."""
    if isinstance(value, str):
        value = _seed_text(value, name)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        value = value.tolist()
    if isinstance(value, numbers.Integral):
        value = [value]
    if not isinstance(value, (list, tuple, range)):
        raise LocoError(f"{name} must be an integer or a list of integers such as [0, 1], got {value!r}")
    out = [seed(s) for s in value]
    if not out:
        raise LocoError(f"no {name} given: give at least one, e.g. [0]")
    twice = sorted({s for s in out if out.count(s) > 1})
    if twice:
        raise LocoError(f"seed {twice[0]} appears more than once in {name} {out}: give each seed once")
    return out


def seeds_per_prompt(value, n: int) -> list[int]:
    """One seed for each of ``n`` prompts: one integer for all, or a list of ``n`` (repeats allowed)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [seed(value)] * n
    if not isinstance(value, (list, tuple, range)):
        raise LocoError(f"seeds must be an integer or a list of one integer per prompt, got {value!r}")
    if len(value) != n:
        raise LocoError(f"{len(value)} seeds given for {n} prompts")
    return [seed(s) for s in value]


def batch_size(value, default: int | None = None, name: str = "batch_size") -> int | None:
    """Samples per pipeline call: None -> ``default``; else an integer >= 1."""
    if value is None:
        return default
    n = _whole(value, name, "a whole number of samples per pipeline call, e.g. 8")
    if n < 1:
        raise LocoError(f"{name} must be at least 1 (got {n})")
    return n


def size(value, name: str = "image size") -> int | None:
    """Image side in pixels: None -> the model's own; else a positive multiple of 8."""
    if value is None:
        return None
    px = _whole(value, name, f"a whole number of pixels, a multiple of {SIZE_UNIT}")
    if px < SIZE_UNIT or px % SIZE_UNIT:
        raise LocoError(f"{name} {px} is not usable with this model: use a multiple of {SIZE_UNIT}")
    return px


def device(value, name: str = "device") -> str:
    """Where to run: None -> CUDA when available, else CPU; else ``cpu``, ``cuda``, ``cuda:N`` or
    ``mps``, which must be present on this machine."""
    import torch

    if value is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise LocoError(f"unknown {name} {value!r}: use cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LocoError(f"{name} {value!r} is not available: torch sees no CUDA GPU here, use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise LocoError(f"{name} {value!r} is not available: torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise LocoError(f"{name} {value!r} is not available: this machine has no Apple GPU, use cpu")
    return str(value) if isinstance(value, str) else str(dev)


DTYPES = {"float32": "float32", "fp32": "float32", "float": "float32", "float16": "float16", "fp16": "float16",
          "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def dtype(value, device_name: str | None = None, name: str = "dtype"):
    """The weights' dtype: None -> float16 on CUDA (``device_name``, or the default device) and float32
    elsewhere; else a torch dtype or one of
    ``float32`` / ``float16`` / ``bfloat16`` (also ``fp32``, ``fp16``, ``half``, ``bf16``).

    The rules every method follows in half precision: the UNet, the text encoders and the VAE run in
    this dtype; LocoEdit, UCE and DiffQuickFix solve their normal equations in float64 from the
    float64-promoted rows and weights and cast the result back to the weight's dtype exactly once;
    neuron statistics (Welch) are computed in float64; CLIP-scores and readouts are computed by the
    scorer in its own dtype from the decoded images."""
    import torch

    if value is None:
        where = device_name if device_name is not None else device(None)
        return torch.float16 if str(where).startswith("cuda") else torch.float32
    if isinstance(value, torch.dtype):
        if value not in (torch.float32, torch.float16, torch.bfloat16):
            raise LocoError(f"unsupported {name} {value}: use float32, float16 or bfloat16")
        return value
    key = DTYPES.get(str(value).strip().lower().replace("torch.", ""))
    if key is None:
        raise LocoError(f"unknown {name} {value!r}: use float32, float16 or bfloat16")
    return getattr(torch, key)


def lam(value, name: str = "lam") -> float:
    """LocoEdit's regulariser lambda: a finite number > 0 (App. H: 0.01)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not value > 0:
        raise LocoError(f"{name} must be a positive number such as 0.01, got {value!r}")
    return float(value)


def unknown_words(tokenizer, prompt: str) -> list[str]:
    """The words of ``prompt`` a word-level tokenizer (the model organism's) maps to ``<unk>``;
    always empty for subword tokenizers, which spell any word."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    unk = getattr(tokenizer, "unk_token_id", None)
    if backend is None or unk is None or type(backend.model).__name__ != "WordLevel":
        return []
    enc = backend.encode(prompt, add_special_tokens=False)
    return [prompt[a:b] for (a, b), i in zip(enc.offsets, enc.ids) if i == unk]


def prompts(pipe, value, what: str = "prompt") -> list[str]:
    """A non-empty list of non-empty prompts, every word of which ``pipe``'s tokenizer knows."""
    items = as_prompt_list(value, what)
    tokenizer = getattr(pipe, "tokenizer", None) if pipe is not None else None
    for p in items:
        bad = unknown_words(tokenizer, p) if tokenizer is not None else []
        if bad:
            words = ", ".join(repr(w) for w in dict.fromkeys(bad))
            vocab = tokenizer.get_vocab()
            known = " ".join(w for w in sorted(vocab, key=vocab.get) if w not in tokenizer.all_special_tokens)
            raise LocoError(f"{what} {p!r} has words this model does not know ({words}); it knows only: {known}")
    return items
