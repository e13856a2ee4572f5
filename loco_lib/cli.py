"""Command line: ``python -m loco_lib`` or ``loco``.

    loco layers MODEL [--meta] [--json]
    loco generate MODEL --prompt P [--alt-prompt P2 --layers 8,9] [--seed S] [--steps N]
                  [--guidance G] [--size PX] [--swap-text-paths] [--joint-text attention|stream] --out FILE.png
    loco locogen MODEL --attribute style|objects|facts --m M [--prompts FILE] [--limit N]
                  [--seeds 0,1] [--steps N] [--guidance G] [--size PX] [--joint-text attention|stream] [--cache DIR] --json
    loco rank MODEL --attribute style|objects|facts [--top K] [--prompts FILE] [--limit N] [--seeds 0,1] [--steps N] --json
    loco edit MODEL --attribute A --layers 8,9 [--prompts FILE] [--concept C] [--lam 0.01] --out EDIT.safetensors
    loco generate MODEL ... --edit EDIT.safetensors
    loco evaluate MODEL --attribute A [--edit EDIT.safetensors] [--prompts FILE] [--seeds 0,1] [--steps N]
                  [--controls] --json
    loco report MODEL [--seeds 0,1] [--steps N] [--cache DIR] [--out REPORT.json] [--json]
    loco trace MODEL --where denoiser|text [--encoder 1|2|both] [--states loco|paper] [--prompt P --subject S | --attribute A [--limit N]]
                  [--tokens last|subject] [--window W] [--bands B] [--seeds 0,1] [--steps N] [--noise X]
                  [--cache DIR] --json
    loco edit MODEL --method diffquickfix --attribute A [--layer 0] [--encoder 1|2] --out EDIT.safetensors
    loco edit MODEL --method esd|concept-ablation --attribute A [--concept C] [--train-steps N] [--lr X] [--checkpoint F] --out EDIT.safetensors

Bad input ends with exit status 2 and one line on stderr (``loco: error: ...``), never a traceback;
settings are checked (:mod:`loco_lib.settings`) before a model is loaded. A problem loco recovers
from is one line too (``loco: warning: ...``). ``--json`` output is valid JSON (no NaN).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings

from . import settings
from .errors import LocoError, LocoWarning
from .jsonout import dumps

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        raise LocoError(f"{message} (see `loco {self.prog.split()[-1]} --help`)" if " " in self.prog else message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="loco", description="Knowledge localization in text-to-image diffusion models (LocoGen / LocoEdit).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    lay = sub.add_parser("layers", help="the cross-attention layer map in execution order")
    lay.add_argument("model")
    lay.add_argument("--meta", action="store_true", help="build the full-size architecture on the meta device (no weights, no download)")
    lay.add_argument("--json", action="store_true", help="print a JSON list of layer records")

    gen = sub.add_parser("generate", help="generate one image, optionally with altered layers")
    gen.add_argument("model")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--alt-prompt", default=None, help="prompt fed to the --layers instead of --prompt")
    gen.add_argument("--layers", default=None, help="layer indices to alter: 8,9 or 4-6 or all")
    gen.add_argument("--swap-text-paths", action="store_true", help="also give --alt-prompt to SD-XL's pooled / IF's add_embedding text path")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--steps", type=int, default=None)
    gen.add_argument("--guidance", type=float, default=None)
    gen.add_argument("--size", type=int, default=None, help="image side in pixels")
    gen.add_argument("--joint-text", choices=("attention", "stream"), default="attention",
                     help="joint-attention transformers (SD3): an altered block takes the text input of its attention (default) or the text stream entering it from the alt prompt's run")
    gen.add_argument("--edit", default=None, help="a saved LocoEdit (.safetensors) to apply before generating")
    gen.add_argument("--out", required=True, help="output image file (.png, .jpg)")
    gen.add_argument("--device", default=None)
    gen.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: float16 on CUDA, float32 on CPU)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    loc = sub.add_parser("locogen", help="LocoGen: score every window of m adjacent layers (Algorithm 1)")
    loc.add_argument("model")
    loc.add_argument("--attribute", required=True, help="style, objects or facts")
    loc.add_argument("--m", "--window", dest="m", type=int, required=True,
                     help="window size m (number of adjacent layers); write --window under accelerate launch or torchrun, whose own options make --m ambiguous")
    loc.add_argument("--prompts", default=None, help="a prompt-pair YAML/JSON file (default: the bundled set of the attribute)")
    loc.add_argument("--limit", type=int, default=None, help="use only the first N prompt pairs")
    loc.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1")
    loc.add_argument("--steps", type=int, default=None)
    loc.add_argument("--guidance", type=float, default=None)
    loc.add_argument("--size", type=int, default=None)
    loc.add_argument("--joint-text", choices=("attention", "stream"), default="attention",
                     help="joint-attention transformers (SD3): an altered block takes the text input of its attention (default) or the text stream entering it from the alt prompt's run")
    loc.add_argument("--cache", default=None, help="folder for resumable results (images and scores)")
    loc.add_argument("--scorer", default=None, help="CLIP model id, 'toy-scorer' or 'tiny' (default: the model's own: tiny for twins, toy-scorer for the organisms, else CLIP ViT-L/14)")
    loc.add_argument("--batch-size", type=int, default=None)
    loc.add_argument("--device", default=None)
    loc.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: float16 on CUDA, float32 on CPU)")
    loc.add_argument("--json", action="store_true", help="print the result as JSON")
    loc.add_argument("--quiet", action="store_true", help="no progress bar")
    rk = sub.add_parser("rank", help="rank the text layers by the attention contribution of the prompts' subject tokens "
                                     "(Zarei et al. 2025; loco_lib.ranking)")
    rk.add_argument("model")
    rk.add_argument("--attribute", required=True, help="style, objects or facts: its bundled prompts and their subjects")
    rk.add_argument("--top", type=int, default=2, help="how many top-ranked layers to name (default 2)")
    rk.add_argument("--prompts", default=None, help="a prompt-pair YAML/JSON file (default: the bundled set of the attribute)")
    rk.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    rk.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1")
    rk.add_argument("--steps", type=int, default=None)
    rk.add_argument("--guidance", type=float, default=None)
    rk.add_argument("--size", type=int, default=None)
    rk.add_argument("--batch-size", type=int, default=None)
    rk.add_argument("--device", default=None)
    rk.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: float16 on CUDA, float32 on CPU)")
    rk.add_argument("--json", action="store_true", help="print the ranking as JSON")
    rk.add_argument("--quiet", action="store_true", help="no progress bar")
    ed = sub.add_parser("edit", help="LocoEdit (K/V projections of chosen UNet layers), DiffQuickFix (the text encoder's causal state) or UCE (every cross-attention K/V)")
    ed.add_argument("model")
    ed.add_argument("--method", default="locoedit", choices=("locoedit", "diffquickfix", "uce", "esd", "concept-ablation"),
                    help="locoedit (Sec. 6, needs --layers), diffquickfix (App. I: a self-attention of the text encoder), "
                         "uce (Gandikota et al. 2024: every cross-attention layer, erase and preserve sets), or App. I's "
                         "fine-tuning baselines: esd (ESD-x, the cross-attention modules) and concept-ablation (their K/V)")
    ed.add_argument("--attribute", required=True, help="style, objects or facts")
    ed.add_argument("--layers", default=None, help="LocoEdit: the localized layers, e.g. 8,9; with several concepts one "
                    "window for all or one per concept separated by ';' (0-1;11-12). UCE: default all")
    ed.add_argument("--layer", type=int, default=0, help="DiffQuickFix: the text encoder's self-attention layer (default 0)")
    ed.add_argument("--encoder", type=int, default=1, help="DiffQuickFix on SD-XL: which text encoder (1 or 2)")
    ed.add_argument("--prompts", default=None, help="a prompt-pair YAML/JSON file with an `edits` block (default: the bundled set)")
    ed.add_argument("--concept", default=None, help="which edit block of the file (default: its first); LocoEdit and UCE "
                    "take several, comma-separated, and remove them with one edit")
    ed.add_argument("--guide", default=None, help="UCE: the text the erased concepts become (default: the edit block's "
                    "target subject, e.g. 'a painting'; '' = the empty prompt)")
    ed.add_argument("--preserve", default=None, help="UCE: comma-separated concepts to keep (default: the file's other "
                    "edit concepts); LocoEdit/DiffQuickFix: prompts whose rows keep their keys and values")
    ed.add_argument("--lam", type=float, default=None, help="lambda (LocoEdit/DiffQuickFix: App. H's 0.01; UCE: 0.5, as its authors' script)")
    ed.add_argument("--train-steps", type=int, default=None, help="esd / concept-ablation: training steps (default: "
                    "ESD's 1000; Concept Ablation 400, loco's choice)")
    ed.add_argument("--lr", type=float, default=None, help="esd / concept-ablation: learning rate (default: 1e-5, ESD's / 2e-6, loco's choice)")
    ed.add_argument("--sample-steps", type=int, default=None, help="esd / concept-ablation: denoising steps of the sampling "
                    "runs the training points come from (default: the model's, 50 for SD)")
    ed.add_argument("--checkpoint", default=None, help="esd / concept-ablation: a file that keeps the training every 50 "
                    "steps; rerunning the command resumes from it (in Colab: a Google Drive path)")
    ed.add_argument("--out", required=True, help="output .safetensors file")
    ed.add_argument("--device", default=None)
    ed.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: float16 on CUDA, float32 on CPU)")
    ev = sub.add_parser("evaluate", help="CLIP-score (and the organism's readouts) of an attribute's prompts, optionally edited")
    ev.add_argument("model")
    ev.add_argument("--attribute", required=True, help="style, objects or facts")
    ev.add_argument("--edit", default=None, help="a saved LocoEdit (.safetensors) to apply first")
    ev.add_argument("--prompts", default=None, help="a prompt-pair YAML/JSON file (default: the model's bundled set of the attribute)")
    ev.add_argument("--limit", type=int, default=None, help="use only the first N prompt pairs")
    ev.add_argument("--controls", action="store_true", help="also measure the file's control prompts (what an edit should leave alone)")
    ev.add_argument("--unlearning", action="store_true", help="also UnlearnCanvas' UA / IRA / CRA of a style edit, for the "
                    "original and (with --edit) the edited model")
    ev.add_argument("--concept", default=None, help="with --unlearning: the erased artist (default: the edit's concept, "
                    "else the first artist)")
    ev.add_argument("--profile", default="smoke", choices=("smoke", "paper"), help="with --unlearning on a real model: "
                    "8 (smoke) or all 320 (paper) generic prompts for CRA")
    ev.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1")
    ev.add_argument("--steps", type=int, default=None)
    ev.add_argument("--guidance", type=float, default=None)
    ev.add_argument("--scorer", default=None, help="CLIP model id, 'toy-scorer' or 'tiny' (default: the model's own)")
    ev.add_argument("--device", default=None)
    ev.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: float16 on CUDA, float32 on CPU)")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    rep = sub.add_parser("report", help="the model organism's whole measured protocol (chapter 'The model organism')")
    rep.add_argument("model", help="toy, toy-t5 or an organism folder written by `python -m loco_lib.organism.training`")
    rep.add_argument("--seeds", default="0", help="comma-separated seeds per prompt, e.g. 0,1")
    rep.add_argument("--steps", type=int, default=None)
    rep.add_argument("--cache", default=None, help="folder keeping finished parts, so an interrupted run resumes "
                                                   "(default: _build/organism-cache or $LOCO_CACHE_DIR)")
    rep.add_argument("--out", default=None, help="also write the whole report to this .json file")
    rep.add_argument("--artists", action="store_true", help="instead: LocoGen for each of the world's styles on its own, "
                     "with every prompt's own window (the DeepFloyd chapter's per-prompt question)")
    rep.add_argument("--json", action="store_true", help="print the whole report as JSON")
    rep.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: float32 on the CPU)")
    rep.add_argument("--quiet", action="store_true", help="no progress bar")
    rp = sub.add_parser("reproduce", help="run every chapter with papermill into a run folder and build the book from it")
    rp.add_argument("--profile", default="smoke", help="smoke (the chapters' defaults: the model organisms) or paper "
                                                       "(a real model with the paper's settings)")
    rp.add_argument("--model", default=None, help="the model every chapter runs on (paper profile default: sd15)")
    rp.add_argument("--out", default=None, help="run folder (default: runs/<profile>); rerunning resumes")
    rp.add_argument("--chapters", default=None, help="comma-separated chapters, e.g. 01,03 (default: all)")
    rp.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a papermill parameter for every chapter that has it (VALUE as JSON, else a string)")
    rp.add_argument("--no-book", action="store_true", help="execute the chapters only")
    rp.add_argument("--processes", type=int, default=1,
                    help="one per GPU: each chapter's sweeps and traces are first split over this many processes "
                         "(accelerate launch), then the chapter runs once and reads them from its caches")
    rp.add_argument("--foreign-cpu", action="store_true",
                    help="run the chapters under a lower CPU instruction set than this machine's (AVX-512 -> AVX2, "
                         "else no vector extensions past SSE4.1), so their results meet other float bits, as on another machine")
    rp.add_argument("--dry-run", action="store_true",
                    help="run nothing: print per chapter the denoiser work, its FLOPs, an estimated GPU time and the weights' memory")
    rp.add_argument("--gpu", default="A100", help="with --dry-run: the GPU class of the estimate (A100 or 'H100 SXM')")
    tr = sub.add_parser("trace", help="causal tracing (Sec. 4): restore one clean state at a time into a corrupted run")
    tr.add_argument("model")
    tr.add_argument("--where", required=True, choices=("denoiser", "unet", "text"),
                    help="trace the denoiser's states (a UNet's or a diffusion transformer's; 'unet' is its alias) or a text encoder's")
    tr.add_argument("--encoder", default="1", choices=("1", "2", "3", "both"),
                    help="with --where text: which text encoder (2: SD-XL's second, FLUX's T5; 3: SD3's T5; both: the "
                         "same state in the two CLIPs together)")
    tr.add_argument("--states", default="loco", choices=("loco", "paper"),
                    help="with --where unet: loco's states (transformer blocks and their cross-attention; a joint-attention "
                         "model's: the pooled text's path and each block's image and text streams) or the paper's "
                         "(self-attention, cross-attention and feed-forward of every transformer block: 70 for SD-2.1, 227 for SD-XL)")
    tr.add_argument("--prompt", default=None, help="the prompt to trace (default: the attribute's bundled prompts)")
    tr.add_argument("--subject", default=None, help="the words of --prompt whose token embeddings are corrupted")
    tr.add_argument("--attribute", default="style", help="without --prompt: style, objects or facts (bundled prompts and subjects)")
    tr.add_argument("--prompts", default=None, help="without --prompt: a prompt-pair YAML/JSON file (its originals and subjects)")
    tr.add_argument("--limit", type=int, default=None, help="without --prompt: use only the first N prompts")
    tr.add_argument("--tokens", default="last", choices=("last", "subject"), help="with --where text: restore at the subject's last token or all its tokens")
    tr.add_argument("--window", type=int, default=1, help="restore this many adjacent states together")
    tr.add_argument("--bands", type=int, default=1, help="with --where unet: restore in each of this many bands of denoising steps")
    tr.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1")
    tr.add_argument("--steps", type=int, default=None)
    tr.add_argument("--guidance", type=float, default=None)
    tr.add_argument("--size", type=int, default=None)
    tr.add_argument("--noise", type=float, default=3.0, help="noise = this many standard deviations of the token embeddings (default 3)")
    tr.add_argument("--floor", type=float, default=None,
                    help="leave out an image whose corruption lowers its score by less than this fraction of its clean score (default 0.05)")
    tr.add_argument("--cache", default=None, help="folder for resumable results (images and scores)")
    tr.add_argument("--scorer", default=None, help="CLIP model id, 'toy-scorer' or 'tiny' (default: the model's own)")
    tr.add_argument("--batch-size", type=int, default=None)
    tr.add_argument("--device", default=None)
    tr.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: float16 on CUDA, float32 on CPU)")
    tr.add_argument("--json", action="store_true", help="print the result as JSON")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _check_output_path(path: str, suffixes=IMAGE_SUFFIXES) -> None:
    ext = os.path.splitext(path)[1].lower()
    if ext not in suffixes:
        raise LocoError(f"cannot write {path!r}: the output must end in {' or '.join(suffixes)}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise LocoError(f"cannot write {path!r}: folder {parent!r} does not exist")
    if os.path.isdir(path):
        raise LocoError(f"cannot write {path!r}: it is a folder")
    existed = os.path.exists(path)
    try:  # really try: permission bits do not tell the whole story (root, read-only mounts, /proc)
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise LocoError(f"cannot write {path!r}: {exc.strerror or exc}") from None
    if not existed:
        os.remove(path)


def _known_layer_count(model: str) -> int | None:
    from .architectures import expected_layer_count
    from .models import MODELS

    spec = MODELS.get(model)
    if spec is None:
        return None
    try:
        return expected_layer_count(spec.twin_of or spec.name)
    except LocoError:  # no architecture entry (the model organisms): checked after loading
        return None


def cmd_layers(args) -> int:
    from .layers import cross_attention_layers, layer_table
    from .models import MODELS, REAL, check_model_name, load

    check_model_name(args.model)
    if args.meta:
        if args.model not in REAL:
            raise LocoError(f"--meta builds a full-size architecture: use one of {', '.join(REAL)}")
        from .architectures import meta_denoiser

        unet = meta_denoiser(args.model)
    else:
        from .families.registry import denoiser

        unet = denoiser(load(args.model, device="cpu", progress=False) if args.model in MODELS else load(args.model, progress=False))
    layers = cross_attention_layers(unet)
    if args.json:
        print(dumps([l.as_dict() for l in layers], indent=1))
    else:
        print(layer_table(layers).to_string())
        print(f"{len(layers)} cross-attention layers")
    return 0


def cmd_generate(args) -> int:
    from .generate import generate
    from .layers import parse_layers
    from .models import check_model_name, load
    from .text import as_prompt_list

    check_model_name(args.model)
    as_prompt_list(args.prompt)
    _check_values(args)
    if args.layers is not None and args.alt_prompt is None:
        raise LocoError("--layers needs --alt-prompt (the prompt those layers should read)")
    if args.alt_prompt is not None:
        as_prompt_list(args.alt_prompt, "alt prompt")
        if args.layers is None and not args.swap_text_paths:
            raise LocoError("--alt-prompt needs --layers (which layers read it), e.g. --layers 8,9 or --layers all")
    n_known = _known_layer_count(args.model)
    if args.layers is not None and n_known is not None:
        parse_layers(args.layers, n_known)
    _check_output_path(args.out)
    edit = None
    if args.edit is not None:
        from .locoedit import Edit

        edit = Edit.load(args.edit)

    pipe = _load(args, progress=not args.quiet)
    if edit is not None:
        _apply_edit(edit, pipe, args)
    result = generate(
        pipe, args.prompt, alt_prompts=args.alt_prompt, layers=args.layers, seeds=args.seed, steps=args.steps,
        guidance=args.guidance, size=args.size, swap_text_paths=args.swap_text_paths, progress=not args.quiet,
        joint_text=args.joint_text,
    )
    try:
        result.images[0].save(args.out)
    except OSError as exc:
        raise LocoError(f"cannot write {args.out!r}: {exc.strerror or exc}") from None
    print(f"wrote {args.out} ({result.seconds_per_image:.2f} s per image)")
    return 0


def _check_values(args) -> None:
    """The run settings a command has (--seed, --steps, --guidance, --size, --batch-size, --device,
    --cache), checked before any model is loaded (:mod:`loco_lib.settings`)."""
    if getattr(args, "seed", None) is not None:
        settings.seed(args.seed, "--seed")
    settings.steps(None, getattr(args, "steps", None), "--steps")
    settings.guidance(None, getattr(args, "guidance", None), "--guidance")
    settings.size(getattr(args, "size", None), "--size")
    settings.batch_size(getattr(args, "batch_size", None), None, "--batch-size")
    if getattr(args, "device", None) is not None:
        settings.device(args.device, "--device")
    cache = getattr(args, "cache", None)
    if cache is not None and os.path.exists(cache) and not os.path.isdir(cache):
        raise LocoError(f"--cache {cache!r} is a file: give a folder (it is created if missing)")


def _load(args, progress: bool = False):
    """The command's model, with ``--steps`` checked against its scheduler before any work."""
    from .models import load

    pipe = load(args.model, device=args.device, dtype=settings.dtype(args.dtype, args.device, "--dtype"), progress=progress)
    settings.steps(pipe, args.steps, "--steps")
    return pipe


def _apply_edit(edit, pipe, args) -> None:
    """Apply ``--edit``; an edit computed from other weights is refused with what a command-line user can do."""
    from .edit_file import _component, _fingerprint

    try:
        edit.apply(pipe)
    except LocoError:
        params = dict(_component(pipe, edit.component).named_parameters())
        if all(n in params and params[n].shape == w.shape for n, w in edit.weights.items()) and any(
                _fingerprint(params[n]) != fp for n, fp in edit.fingerprints.items()):
            raise LocoError(f"{args.edit!r} was computed from other weights than those of {args.model!r} (it was made "
                            f"for {edit.model!r}): use that model, or compute the edit for this one with "
                            f"`loco edit {args.model} ...`") from None
        raise


def _check_run_args(args) -> list[int]:
    """Checks shared by the commands that generate (model, --seeds, --steps, ...); returns the seeds."""
    from .models import check_model_name

    check_model_name(args.model)
    seeds = settings.seeds(args.seeds, "--seeds")
    _check_values(args)
    return seeds


def _check_set_args(args) -> list[int]:
    """Checks shared by the commands that run a prompt set; returns the seeds."""
    from .locogen import check_attribute

    seeds = _check_run_args(args)
    check_attribute(args.attribute)
    if args.limit is not None and args.limit < 1:
        raise LocoError(f"--limit must be at least 1 (got {args.limit})")
    return seeds


def _pair_set(args):
    """The prompt file (``--prompts`` or the model's bundled set of the attribute) and its pairs."""
    from .prompts import default_prompts, load_pairs

    source = args.prompts or default_prompts(args.attribute, args.model)
    prompts = load_pairs(source, limit=args.limit)
    if prompts.attribute != args.attribute:
        raise LocoError(f"{args.prompts} holds {prompts.attribute} prompts, not {args.attribute}")
    return source, prompts


def cmd_locogen(args) -> int:
    from .clip_score import get_scorer
    from .layers import format_layers
    from .locogen import locogen

    seeds = _check_set_args(args)
    n_known = _known_layer_count(args.model)
    if n_known is not None and not 1 <= args.m <= n_known:
        raise LocoError(f"--m must be from 1 to {n_known} for {args.model} ({n_known} cross-attention layers)")
    source, prompts = _pair_set(args)
    pipe = _load(args)
    _check_prompts(pipe, prompts)
    result = locogen(pipe, prompts, args.attribute, args.m, seeds, scorer=get_scorer(args.scorer, args.model),
                     steps=args.steps, guidance=args.guidance, size=args.size, cache_dir=args.cache,
                     batch_size=args.batch_size, progress=not args.quiet, joint_text=args.joint_text)
    if args.json:
        print(dumps(result.to_json(), indent=1))
    else:
        frac = result.best["fraction"]
        way = "no way to go: clean and all layers score the same" if frac != frac else f"{100 * frac:.0f}% of the way"
        print(result.table[["start", "layers", "mean", "std"]].to_string(index=False))
        print(f"clean {result.clean:.3f}, all layers altered {result.altered_all:.3f}, best window "
              f"{format_layers(result.best['layers'])} (mean {result.best['mean']:.3f}, {way})")
    return 0


def cmd_rank(args) -> int:
    from .layers import format_layers
    from .ranking import rank_layers

    seeds = _check_set_args(args)
    n_known = _known_layer_count(args.model)
    if args.top < 1 or (n_known is not None and args.top > n_known):
        raise LocoError(f"--top must be from 1 to {n_known or 'the number of text layers'} for {args.model}")
    _, prompts = _pair_set(args)
    if any(s is None for s in prompts.subjects):
        raise LocoError("ranking needs each prompt's subject (its knowledge tokens): give a prompt file with subjects")
    pipe = _load(args)
    _check_prompts(pipe, prompts)
    r = rank_layers(pipe, prompts.originals, prompts.subjects, seeds=seeds, steps=args.steps, guidance=args.guidance,
                    size=args.size, batch_size=args.batch_size or 8, progress=not args.quiet)
    top = r.top(min(args.top, len(r.layers)))
    if args.json:
        print(dumps({"model": args.model, "attribute": args.attribute, "top": top, "order": r.order(),
                     "contribution": [float(x) for x in r.mean], "layers": [la.name for la in r.layers],
                     "prompts": r.prompts, "subjects": r.subjects, "seeds": r.seeds, **r.settings}, indent=1))
    else:
        print(r.table().to_string(index=False))
        print(f"top {len(top)}: {format_layers(top)} ({len(r.prompts)} prompts x {len(r.seeds)} seeds, {r.settings['steps']} steps)")
    return 0


def _check_prompts(pipe, prompts, controls=None) -> None:
    """Every prompt of the set (and of its controls) in words the model knows, before any work."""
    for what, group in (("original prompt", prompts.originals), ("target prompt", prompts.targets),
                        *(("control prompt", g) for g in (controls or {}).values())):
        settings.prompts(pipe, group, what)


def _split(text, sep: str = ",") -> list[str]:
    return [x.strip() for x in str(text).split(sep) if x.strip()]


def cmd_edit(args) -> int:
    from .layers import parse_layers
    from .locogen import check_attribute
    from .models import check_model_name, load
    from .prompts import concept_keys, default_prompts, edit_concepts

    check_model_name(args.model)
    check_attribute(args.attribute)
    if args.lam is not None:
        settings.lam(args.lam, "--lam")
    if args.device is not None:
        settings.device(args.device, "--device")
    concepts = _split(args.concept) if args.concept is not None else None
    if args.concept is not None and not concepts:
        raise LocoError("--concept is empty: name an edit block of the prompt file")
    windows = _split(args.layers, ";") if args.layers is not None else None
    if args.method == "locoedit":
        if args.layers is None:
            raise LocoError("LocoEdit needs the localized layers: --layers 8,9 (or --method diffquickfix / uce)")
        if len(windows) > 1 and len(windows) != len(concepts or [None]):
            raise LocoError(f"{len(windows)} windows in --layers for {len(concepts or [None])} concepts: give one, or one per concept")
        n_known = _known_layer_count(args.model)
        if n_known is not None:
            for w in windows or [args.layers]:
                parse_layers(w, n_known)
    elif args.method == "diffquickfix":
        if args.layers is not None:
            raise LocoError("--layers chooses UNet layers for LocoEdit; DiffQuickFix edits the text encoder (--layer, default 0)")
        if concepts and len(concepts) > 1:
            raise LocoError("DiffQuickFix edits one concept at a time: give one --concept")
    if args.method != "uce" and args.guide is not None:
        raise LocoError("--guide is UCE's: use it with --method uce")
    trains = args.method in ("esd", "concept-ablation")
    if not trains and any(v is not None for v in (args.train_steps, args.lr, args.checkpoint, args.sample_steps)):
        raise LocoError("--train-steps, --lr, --sample-steps and --checkpoint are for the fine-tuning methods: "
                        "--method esd or concept-ablation")
    if trains and (args.layers is not None or args.preserve is not None or args.lam is not None):
        raise LocoError(f"{args.method} trains every cross-attention layer with no lambda or preserve set: leave out "
                        "--layers, --lam and --preserve")
    if trains and concepts and len(concepts) > 1:
        raise LocoError(f"{args.method} erases one concept at a time: give one --concept")
    if args.encoder not in (1, 2):
        raise LocoError(f"--encoder is 1 or 2, got {args.encoder}")
    _check_output_path(args.out, suffixes=(".safetensors",))
    source = args.prompts or default_prompts(args.attribute, args.model)
    known = edit_concepts(source)
    if not known:
        raise LocoError(f"{source} has no `edits` block to build an edit from")
    concepts = concepts or [known[0]]
    from .unlearning import artists

    derivable = {c.lower() for c in known} | ({a.lower() for a in artists(args.model)} if args.attribute == "style" else set())
    unknown = [c for c in concepts if c.lower() not in derivable]
    if unknown:
        raise LocoError(f"{source}: no edit block for concept {unknown[0]!r} (concepts: {', '.join(known)})")
    key_sets = [concept_keys(source, c) for c in concepts]
    if any(k.attribute != args.attribute for k in key_sets):
        raise LocoError(f"{args.prompts} holds {key_sets[0].attribute} prompts, not {args.attribute}")
    pipe = load(args.model, device=args.device, dtype=settings.dtype(args.dtype, args.device, "--dtype"), progress=False)
    for k in key_sets:
        _check_prompts(pipe, k)
    n_rows = sum(len(k) for k in key_sets)
    if args.method == "locoedit":
        from .locoedit import LAMBDA, compute_multi_edit

        edit = compute_multi_edit(pipe, windows if len(windows) > 1 else args.layers, key_sets,
                                  lam=LAMBDA if args.lam is None else args.lam,
                                  preserve=_split(args.preserve) if args.preserve else None)
        where = f"layers {edit.layers}"
    elif args.method == "diffquickfix":
        from .diffquickfix import compute_edit
        from .locoedit import LAMBDA

        prompts = key_sets[0]
        edit = compute_edit(pipe, prompts.originals, prompts.targets, prompts.subjects, prompts.target_subjects,
                            lam=LAMBDA if args.lam is None else args.lam, layer=args.layer, encoder=args.encoder,
                            preserve=_split(args.preserve) if args.preserve else None)
        where = f"{edit.component} self-attention layer {args.layer}"
    elif trains:
        from . import finetune

        k = key_sets[0]
        common = dict(checkpoint=args.checkpoint, sample_steps=args.sample_steps, progress=True)
        if args.method == "esd":
            edit = finetune.esd(pipe, k.subjects[0], steps=args.train_steps or finetune.ESD_STEPS,
                                lr=args.lr or finetune.ESD_LR, **common)
            where = f"the cross-attention modules, erasing {k.subjects[0]!r}"
        else:
            edit = finetune.concept_ablation(pipe, list(k.originals), list(k.targets), steps=args.train_steps or finetune.CA_STEPS,
                                             lr=args.lr or finetune.CA_LR, **common)
            where = f"every cross-attention K/V, {len(k)} prompts ablated towards their anchors"
        where += f", {edit.meta['steps']} steps (final loss {edit.meta['losses'][-1]:.4g})"
    else:
        from . import uce

        guide = args.guide if args.guide is not None else (key_sets[0].target_subjects[0] or "")
        if args.preserve is not None:
            preserve = _split(args.preserve)
        else:  # as UCE's script: every other artist (style), else the file's other edit concepts
            pool = artists(args.model) if key_sets[0].attribute == "style" else known
            erased = {k.subjects[0].lower() for k in key_sets} | {c.lower() for c in concepts}
            preserve = [c for c in pool if c.lower() not in erased]
        texts = [g for g in [guide, *preserve] if g.strip()]
        if texts:
            settings.prompts(pipe, texts, "UCE text")
        edit = uce.compute_edit(pipe, [k.subjects[0] for k in key_sets], guide, preserve or None,
                                layers=args.layers or "all", lam=uce.LAMBDA if args.lam is None else args.lam)
        edited = edit.meta.get("module") or f"{len(edit.layers)} layers"  # a joint-attention model: its text embedder
        where = f"{edited}, erased {edit.meta['concepts']} towards {guide!r}, preserving {len(preserve)}"
        n_rows = edit.meta["n_rows"]
    edit.save(args.out)
    print(f"wrote {args.out}: {args.method}, {where}, {n_rows} prompt rows, {edit.edit_seconds:.3f} s")
    return 0


def cmd_trace(args) -> int:
    if args.floor is not None and not 0 <= args.floor < 1:
        raise LocoError(f"--floor is a fraction of the clean score in [0, 1), got {args.floor}")
    from .clip_score import get_scorer
    from .trace import UNET_GRANULARITY, trace

    seeds = _check_run_args(args)
    if args.window < 1:
        raise LocoError(f"--window must be at least 1 (got {args.window})")
    if args.bands < 1:
        raise LocoError(f"--bands must be at least 1 (got {args.bands})")
    encoder = args.encoder if args.encoder == "both" else int(args.encoder)
    args.where = "unet" if args.where == "denoiser" else args.where
    if args.where == "unet" and encoder != 1:
        raise LocoError("--encoder chooses a text encoder: it goes with --where text")
    if args.where == "text" and args.states != "loco":
        raise LocoError("--states chooses the UNet's states: it goes with --where unet")
    if args.where == "text" and args.bands != 1:
        raise LocoError("--bands splits the denoising steps: it goes with --where unet")
    if not (args.noise >= 0 and args.noise != float("inf")):
        raise LocoError(f"--noise must be a finite number >= 0, got {args.noise}")
    if args.prompt is not None:
        if args.subject is None:
            raise LocoError("--prompt needs --subject: the words whose token embeddings are corrupted")
        prompts, subjects = [args.prompt], [args.subject]
    else:
        if args.subject is not None:
            raise LocoError("--subject goes with --prompt (the bundled prompts carry their own subjects)")
        _check_set_args(args)
        _, pairs = _pair_set(args)
        prompts, subjects = list(pairs.originals), list(pairs.subjects)
    pipe = _load(args)
    kinds = UNET_GRANULARITY[args.states] if args.where == "unet" and args.states != "loco" else None  # loco's: the family's
    result = trace(pipe, prompts, subjects, where=args.where, encoder=encoder, kinds=kinds, tokens=args.tokens,
                   window=args.window, bands=args.bands, seeds=seeds, factor=args.noise, steps=args.steps,
                   guidance=args.guidance, size=args.size, scorer=get_scorer(args.scorer, args.model),
                   cache_dir=args.cache, batch_size=args.batch_size, progress=not args.quiet)
    if args.floor is not None:
        result.floor = args.floor
    if args.json:
        print(dumps(result.to_json(), indent=1))
    else:
        t = result.table()
        print(t[["index", "label", "kind", "band", "score", "restored"]].to_string(index=False))
        images, used = len(result.image_keys()), len(result.corrupting)
        left = "" if used == images else (f"; {images - used} of {images} images left out: their corruption lowers the score "
                                           f"by less than {result.floor:.0%} of the clean one (--floor)")
        if not used:
            print(f"no image's corruption corrupts{left[left.index(':'):]}: no fraction of a gap to read")
        else:
            best = t.loc[t["score"].idxmax()]
            print(f"clean {result.clean:.3f}, corrupted {result.corrupted:.3f}; strongest: {best['name']} "
                  f"(restores {100 * best['restored']:.0f}% of the gap){left}; {len(result.computed)} images in {result.seconds:.1f} s")
    return 0


def cmd_evaluate(args) -> int:
    from .clip_score import get_scorer
    from .evaluate import evaluate
    from .prompts import load_controls

    seeds = _check_set_args(args)
    source, prompts = _pair_set(args)
    controls = load_controls(source) if args.controls else {}
    if args.controls and not controls:
        raise LocoError(f"{source} has no `controls` block")
    if (args.concept is not None or args.profile != "smoke") and not args.unlearning:
        raise LocoError("--concept and --profile go with --unlearning")
    if args.unlearning and args.attribute not in ("style", "styles"):
        raise LocoError("--unlearning measures style edits (UA/IRA/CRA over artists): use --attribute style")
    edit = None
    if args.edit is not None:
        from .locoedit import Edit

        edit = Edit.load(args.edit)
    pipe = _load(args)
    _check_prompts(pipe, prompts, controls)
    if edit is not None:
        _apply_edit(edit, pipe, args)
    scorer = get_scorer(args.scorer, args.model)
    kw = dict(seeds=seeds, scorer=scorer, steps=args.steps, guidance=args.guidance, progress=not args.quiet)
    out = evaluate(pipe, prompts, **kw).to_json()
    if controls:
        out["controls"] = {name: evaluate(pipe, group, **kw).to_json() for name, group in controls.items()}
    if args.unlearning:
        from .unlearning import baselines, prompt_groups

        concept = args.concept or (edit.meta.get("concepts") or edit.meta.get("subjects") or [None])[0] if edit else args.concept
        groups = prompt_groups(args.model, concept, profile=args.profile)
        if edit is not None:
            edit.revert(pipe)
        models = {"original": None, **({"edited": edit} if edit is not None else {})}
        res = baselines(pipe, models, groups, seeds=seeds, scorer=scorer, steps=args.steps, guidance=args.guidance,
                        progress=not args.quiet)
        out["unlearning"] = {"concept": groups.concept, "n": res.table.attrs["n"], "models": res.to_json()}
    if args.json:
        print(dumps(out, indent=1))
    else:
        for name, res in [("prompts", out), *out.get("controls", {}).items()]:
            line = f"{name}: n={res['n']}, CLIP-score {res['clip_score']:.2f}"
            if res.get("clip_score_target") is not None:
                line += f", vs targets {res['clip_score_target']:.2f}"
            if "accuracy" in res:
                line += ", accuracy " + ", ".join(f"{k} {v:.2f}" for k, v in res["accuracy"].items())
            print(line)
        if "unlearning" in out:
            u = out["unlearning"]
            print(f"unlearning {u['concept']!r} (images: {u['n']}):")
            for row in u["models"]:
                t, tt = row["CLIP vs T"], row["CLIP vs T'"]
                print(f"  {row['model']}: UA {row['UA']:.2f}, IRA {row['IRA']:.2f}, CRA {row['CRA']:.2f}, "
                      f"CLIP vs T {t:.2f}, vs T' {tt:.2f}")
    return 0


def cmd_report(args) -> int:
    from . import organism
    from .organism.model import organism_kind, sample_scheduler

    seeds = _check_run_args(args)
    if organism_kind(args.model) is None:
        raise LocoError(f"`loco report` measures a model organism: {args.model!r} is not one "
                        "(use toy, toy-t5 or a folder written by `python -m loco_lib.organism.training`)")
    settings.steps(None, args.steps, "--steps", scheduler=sample_scheduler())
    if args.out is not None:
        _check_output_path(args.out, (".json",))
    cache = args.cache if args.cache is not None else organism.default_cache_dir()
    from .organism.training import load_long_context, trained_context

    context = trained_context(args.model)  # an organism trained at a longer context is measured at it
    pipe = load_long_context(args.model, dtype=settings.dtype(args.dtype, None, "--dtype")) if context else None
    if context:
        cache = os.path.join(str(cache), f"context-{context}")
    if args.artists:
        from .organism.protocol import artist_windows
        from .organism.records import save_record

        rec = artist_windows(args.model, seeds=seeds, steps=args.steps, pipe=pipe, dtype=settings.dtype(args.dtype, None, "--dtype"), cache_dir=os.path.join(str(cache), "artists",
                                                                                                os.path.basename(str(args.model))))
        if args.out is not None:
            save_record(rec, args.out)
        if args.json:
            print(dumps(rec, indent=1))
        else:
            for style, r in rec["artists"].items():
                per = ", ".join(p["window"] for p in r["prompts"])
                print(f"{style}: window {r['window']} (readout moved {r['moved']:.2f}); per prompt: {per}")
        return 0
    dtype = settings.dtype(args.dtype, None, "--dtype")
    at_context = {} if pipe is None else {"pipe": pipe}  # a long-context organism, loaded padding to its context
    rep = organism.report(args.model, seeds=seeds, steps=args.steps, cache_dir=cache, progress=not args.quiet, dtype=dtype,
                          **at_context)
    if args.out is not None:
        organism.save_report(rep, args.out)
    if args.json:
        print(dumps(rep.to_json(), indent=1))
    else:
        t = rep.training
        print(f"{args.model} (training seed {t['seed']}, {t['steps']} steps, final loss {t['final_loss']:.4f}); "
              f"{len(seeds)} seed(s) per prompt")
        for name, value in organism.summary(rep).items():
            print(f"  {name}: {value}")
    return 0


def _one_line_warnings(show):
    """A ``warnings.showwarning`` that prints loco's own warnings as ``loco: warning: ...`` (one line,
    no source location) and hands every other warning to ``show``."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, LocoWarning):
            print(f"loco: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


def cmd_reproduce(args) -> int:
    import json
    from pathlib import Path

    from . import reproduce

    extra = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise LocoError(f"--param {item!r}: write NAME=VALUE, e.g. SEEDS=[0,1]")
        try:
            extra[name] = json.loads(value)
        except ValueError:
            extra[name] = value
    only = [c.strip() for c in args.chapters.split(",") if c.strip()] if args.chapters else None
    if args.dry_run:
        import pandas as pd

        from . import budget

        table = budget.dry_run(args.profile, args.model, only, extra, gpu=args.gpu)
        if not len(table):
            print("nothing to run on a real model: the chapters of this plan run the model organisms only")
            return 0
        with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 40):
            print(table.fillna("").to_string())
        print(f"a row: the UNet on one image at one step (classifier-free guidance: two per image and step); FLOPs counted "
              f"on the meta device at each model's resolution; time at {budget.EFFICIENCY:.0%} of the {args.gpu}'s fp16 peak "
              f"({budget.GPU_PEAKS[args.gpu] / 1e12:.0f} TFLOP/s), an assumption; activations come on top of the weights")
        return 0
    status = reproduce.run(args.profile, out=args.out, model=args.model, only=only, extra=extra, book=not args.no_book,
                           log=lambda line: print(line, flush=True), processes=args.processes,
                           foreign_cpu_isa=args.foreign_cpu)
    print(f"{sum(v == 'ran' for v in status.values())} chapters run, {sum(v == 'kept' for v in status.values())} kept"
          + ("" if args.no_book else f"; book: {Path(args.out or reproduce.ROOT / 'runs' / args.profile).resolve()}/html/index.html"))
    return 0


SPLIT_COMMANDS = ("locogen", "trace", "evaluate")  # the long sweeps that several processes share (loco_lib.parallel)


@contextlib.contextmanager
def _one_process_speaks(command: str):
    """Under ``accelerate launch`` with several processes every process runs the command and shares
    its sweeps; only the first one prints. Commands that split nothing are refused."""
    from . import parallel

    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        yield
        return
    if command not in SPLIT_COMMANDS:
        raise LocoError(f"`loco {command}` runs in one process; only {', '.join(SPLIT_COMMANDS)} split their work "
                        "over the processes of `accelerate launch`")
    if parallel.world().main:
        yield
        return
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        yield


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
        commands = {"layers": cmd_layers, "generate": cmd_generate, "locogen": cmd_locogen, "rank": cmd_rank, "edit": cmd_edit, "evaluate": cmd_evaluate,
                    "report": cmd_report, "trace": cmd_trace, "reproduce": cmd_reproduce}
        with warnings.catch_warnings(), _one_process_speaks(args.command):
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            return commands[args.command](args)
    except LocoError as exc:
        print(f"loco: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loco: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
