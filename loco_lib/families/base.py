"""The two kinds of model family: how a pipeline is driven, and where a denoiser reads the text.

The two are independent (``toy-if`` is an SD pipeline carrying an IF-topology UNet), so a family is
a pair: a :class:`PipelineFamily`, chosen by the pipeline's class, and a :class:`DenoiserFamily`,
chosen by the denoiser module's class. Every method asks these records; nothing below the methods
compares a family name.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..hooks import Site


# -- the records a family produces --------------------------------------------------------------------

@dataclass(frozen=True)
class CrossAttentionLayer:
    index: int  # position in execution order (the paper's layer index)
    name: str  # dotted name of the attention module inside the denoiser
    block: str  # "down", "mid" or "up"
    kv_dim: int  # width of the text input of the K/V projections
    key: str  # attribute name of the key projection ("to_k" or "add_k_proj")
    value: str  # attribute name of the value projection ("to_v" or "add_v_proj")
    resolution: int  # side of the feature map at the model's default sample size

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class State:
    """One restorable state: the output of module ``name`` of ``component``."""

    index: int  # position in execution order (within its list)
    name: str  # dotted module path inside the component
    kind: str  # resnet / transformer / self-attention / cross-attention / feed-forward / attention; self-attention / mlp / layer
    component: str = "unet"
    block: str = ""  # "down 0", "mid", "up 2"; "layer 0" in a text encoder
    # a module whose output is a tuple of streams (a joint-attention block: (text, image)): which
    # element is the state, and the stream it carries ("image", "text"; "joint": both in one sequence)
    element: int | None = None
    stream: str = ""

    @property
    def site(self) -> Site:
        return Site(self.component, self.name, "output", self.element)

    @property
    def ident(self) -> str:
        """The state's name in a trace's records: its module path, with its stream where it has one."""
        return f"{self.name} ({self.stream})" if self.stream else self.name

    @property
    def layer(self) -> int | None:
        """The text-encoder layer of the state (``block`` "layer 3" -> 3); None for a UNet state."""
        return int(self.block.split()[-1]) if self.block.startswith("layer ") else None

    @property
    def label(self) -> str:
        short = {"resnet": "res", "transformer": "tb", "cross-attention": "xattn", "attention": "attn",
                 "self-attention": "attn1" if self.component == "unet" else "attn", "feed-forward": "ff",
                 "mlp": "mlp", "layer": "out", "image stream": "img", "text stream": "txt", "pooled": "pooled"}[self.kind]
        if self.stream and self.kind not in ("image stream", "text stream"):
            short = f"{short} {dict(image='img', text='txt').get(self.stream, self.stream)}"
        return short if self.kind == "pooled" else f"{self.block} {short}"


# -- the families ---------------------------------------------------------------------------------------

class PipelineFamily:
    """What loco needs to know about a pipeline class: how it encodes prompts (the fields of a
    :class:`~loco_lib.text.TextCondition`), which keywords give that condition back to the pipeline
    call, its sampling defaults, and what it does to a prompt's text before tokenizing it."""

    name: str = ""  # "sd", "sdxl", "if": the family recorded in edit files and model cards
    pipelines: tuple = ()  # names of the diffusers pipeline classes, most specific first
    denoiser: str = "unet"  # the pipeline component that denoises
    defaults: dict = {}  # {"steps": ..., "guidance": ...}
    describe: str = ""  # how the family is named in a message

    def classes(self) -> tuple:
        import diffusers

        return tuple(getattr(diffusers, n) for n in self.pipelines if hasattr(diffusers, n))

    def matches(self, pipe) -> bool:
        return isinstance(pipe, self.classes())

    def defaults_for(self, pipe) -> dict:
        """The sampling defaults of this pipeline (a family whose checkpoints differ says so here)."""
        return dict(self.defaults)

    def guided_rows(self, pipe, guidance: float) -> bool:
        """Whether a call at this guidance scale lays its denoiser batch out as [uncond, cond]."""
        return guidance > 1.0

    def encode(self, pipe, prompts: list, negative_prompt: str) -> dict:
        """The fields of the :class:`~loco_lib.text.TextCondition` the pipeline computes for ``prompts``."""
        raise NotImplementedError

    def pipeline_kwargs(self, cond) -> dict:
        """The keywords that hand ``cond`` to the pipeline call in place of prompt strings."""
        return {"prompt_embeds": cond.embeds, "negative_prompt_embeds": cond.negative}

    # the denoiser-call arguments that carry text beside ``encoder_hidden_states`` (name -> argument
    # as a hooks input site names it), and the pipeline's output type that stops before decoding
    added_inputs: dict = {}
    raw_output: str = "latent"

    def call_kwargs(self) -> dict:
        """Further keywords every loco pipeline call passes (IF: no caption cleaning)."""
        return {}

    def added_for(self, cond, added: dict | None) -> dict | None:
        """The denoiser's ``added_inputs`` of one row recorded as ``added`` but carrying the text of
        the one-prompt condition ``cond`` (the training baselines' prediction for another prompt at
        the same point): nothing to change here."""
        return added

    def tokenizer_text(self, prompt: str) -> str:
        """The text the pipeline hands its tokenizer for ``prompt``."""
        return prompt

    def encoder_positions(self, pipe, positions) -> list[int]:
        """Where the token ``positions`` of the encoded prompt (what the denoiser reads) sit in the
        sequence the text encoder itself runs over: the same positions here."""
        return [int(p) for p in positions]

    def encoder_view(self, pipe, component: str):
        """What finds a prompt's token positions in text encoder ``component``'s own input (with
        :func:`loco_lib.tokens.subject_tokens` and :func:`~loco_lib.tokens.encoder_positions`): the
        pipeline (its family's view of the prompt) for the first encoder, the encoder's own
        tokenizer for the others."""
        return pipe if component == "text_encoder" else getattr(pipe, component.replace("text_encoder", "tokenizer"))

    def default_size(self, pipe) -> int | None:
        """The image side loco asks for when none is given; None: the pipeline's own default."""
        return None

    def fewest_steps(self, pipe) -> tuple[int, str]:
        """The fewest denoising steps the pipeline samples with its scheduler, and why (empty: 1)."""
        return 1, ""

    def text_parts(self, pipe) -> list[int]:
        """Where each text encoder's part starts in the sequence the denoiser reads (SD3: CLIP's
        tokens, then T5's); here one part."""
        return [0]

    def token_offsets(self, pipe, tok, text: str) -> tuple[list, list]:
        """Token ids and character offsets (into ``text``) of the sequence the text encoder's output
        is indexed by: here the prompt tokenized alone, as the pipeline does."""
        enc = tok(text, truncation=True, max_length=tok.model_max_length, return_offsets_mapping=True)
        return enc["input_ids"], enc["offset_mapping"]


class DenoiserFamily:
    """What loco needs to know about a denoiser class: its text-reading attention layers in
    execution order (the paper's layer index), what their K/V projections read, the text paths
    outside cross-attention, and its restorable states for causal tracing."""

    name: str = ""
    component: str = "unet"  # the pipeline component it is
    classes_: tuple = ()  # names of the diffusers model classes
    guided: bool = True  # a guided call lays its batch out as [uncond, cond]
    trains: bool = True  # loco_lib.finetune (ESD, Concept Ablation) trains it through :meth:`predict`
    # True where what a text layer reads depends on the run (joint attention: the image, the step),
    # so that another prompt's text at a layer is what a donor sample of that prompt reads there
    text_from_run: bool = False
    shares_rows: bool = True  # the sweep may evaluate bitwise-identical rows of a call once
    trace_kinds: tuple = ()  # the state kinds a causal trace restores by default (empty: loco's UNet kinds)
    # the one linear map from the encoded prompt into a joint-attention transformer's text stream
    # (what UCE edits there); None where the text layers read the prompt's states themselves
    text_embedder: str | None = None

    def classes(self) -> tuple:
        import diffusers

        return tuple(getattr(diffusers, n) for n in self.classes_ if hasattr(diffusers, n))

    def matches(self, model) -> bool:
        return isinstance(model, self.classes())

    def text_layers(self, model) -> list:
        raise NotImplementedError

    def text_states(self, model, embeds: torch.Tensor) -> torch.Tensor:
        """What every text layer's attention processor receives when ``model`` gets ``embeds``."""
        return embeds

    def kv_input(self, model, layer, states: torch.Tensor) -> torch.Tensor:
        """What ``layer``'s K/V projections read, given the text states its processor receives."""
        return states

    def text_mask(self, model, mask) -> torch.Tensor | None:
        """What a text layer's processor gets as its attention mask for the padding ``mask`` of a text
        condition; None where the layers take no mask (the UNets)."""
        return None

    def side_paths(self, model, alt) -> list:
        """Patches giving ``alt``'s text to the paths outside the text layers (pooled text)."""
        return []

    def donor_site(self, layer, joint_text: str, text_length: int):
        """``(site, tokens)``: where a ``text_from_run`` family's ``layer`` takes its donor's text,
        ``joint_text`` ``"attention"`` (the text input of the layer's attention) or ``"stream"`` (the
        text stream entering the layer's block); ``tokens``: None, or a mask of the first positions
        (the text part of a sequence that holds text and image, ``text_length`` tokens)."""
        raise NotImplementedError

    def edit_refusal(self, layer) -> str | None:
        """Why LocoEdit cannot edit ``layer``'s K/V projections (None: it can)."""
        return None

    def donor_paths(self, model) -> list:
        """Where ``text_from_run`` families carry text outside the text layers: the sites a sample
        takes from its donor with ``swap_text_paths``."""
        return []

    def states(self, model, kinds) -> list:
        raise NotImplementedError

    def predict(self, model, sample, t, hidden, added, params=None):
        """The denoiser's prediction (as many channels as ``sample`` has) for the text states
        ``hidden`` at timestep ``t``, with the pipeline family's ``added_inputs`` in ``added``;
        ``params`` replace the model's own parameters (:func:`torch.func.functional_call`, the
        frozen model of the training baselines). A UNet takes ``added`` as ``added_cond_kwargs``."""
        kwargs = {"encoder_hidden_states": hidden}
        if added is not None:
            kwargs["added_cond_kwargs"] = added
        if params is None:
            out = model(sample, t, **kwargs).sample
        else:
            out = torch.func.functional_call(model, params, (sample, t), kwargs).sample
        return out[:, : sample.shape[1]]

    def text_attention_available(self, model) -> None:
        """Raise a one-line LocoError where :meth:`text_attention` is not available for ``model``."""

    def text_attention(self, attn, hidden: torch.Tensor, text: torch.Tensor, mask) -> tuple:
        """``(probs, values)`` of one call of a text layer's attention, computed as its processor does
        but with the softmax materialised: ``probs`` ``[rows * heads, queries, L]`` over the L text
        keys, ``values`` ``[rows * heads, L, head dim]``; the rows' ``attn.batch_to_head_dim`` then
        ``attn.to_out`` finish the layer. Here: a plain cross-attention (``to_q`` on the image
        tokens, ``to_k`` / ``to_v`` on the text, optional per-head ``norm_q`` / ``norm_k`` and
        additive mask), as in SD's, PixArt's and SANA's ``attn2``."""
        rows = hidden.shape[0]
        if hidden.ndim == 4:
            hidden = hidden.flatten(2).transpose(1, 2)
        if attn.norm_cross:
            text = attn.norm_encoder_hidden_states(text)
        query, key, value = attn.to_q(hidden), attn.to_k(text), attn.to_v(text)
        heads = attn.heads
        split = lambda x: x.view(rows, -1, heads, x.shape[-1] // heads).transpose(1, 2)  # noqa: E731
        query, key, value = split(query), split(key), split(value)
        if getattr(attn, "norm_q", None) is not None:
            query = attn.norm_q(query)
        if getattr(attn, "norm_k", None) is not None:
            key = attn.norm_k(key)
        merge = lambda x: x.reshape(rows * heads, x.shape[2], x.shape[3])  # noqa: E731
        bias = None if mask is None else attn.prepare_attention_mask(mask, key.shape[2], rows)
        return attn.get_attention_scores(merge(query), merge(key), bias), merge(value)
