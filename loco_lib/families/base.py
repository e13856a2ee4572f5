"""The two kinds of model family: how a pipeline is driven, and where a denoiser reads the text.

The two are independent (``toy-if`` is an SD pipeline carrying an IF-topology UNet), so a family is
a pair: a :class:`PipelineFamily`, chosen by the pipeline's class, and a :class:`DenoiserFamily`,
chosen by the denoiser module's class. Every method asks these records; nothing below the methods
compares a family name.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..errors import LocoError
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

    @property
    def site(self) -> Site:
        return Site(self.component, self.name, "output")

    @property
    def layer(self) -> int | None:
        """The text-encoder layer of the state (``block`` "layer 3" -> 3); None for a UNet state."""
        return int(self.block.split()[-1]) if self.block.startswith("layer ") else None

    @property
    def label(self) -> str:
        short = {"resnet": "res", "transformer": "tb", "cross-attention": "xattn", "attention": "attn",
                 "self-attention": "attn1" if self.component == "unet" else "attn", "feed-forward": "ff",
                 "mlp": "mlp", "layer": "out"}[self.kind]
        return f"{self.block} {short}"


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

    def tokenizer_text(self, prompt: str) -> str:
        """The text the pipeline hands its tokenizer for ``prompt``."""
        return prompt


class DenoiserFamily:
    """What loco needs to know about a denoiser class: its text-reading attention layers in
    execution order (the paper's layer index), what their K/V projections read, the text paths
    outside cross-attention, and its restorable states for causal tracing."""

    name: str = ""
    component: str = "unet"  # the pipeline component it is
    classes_: tuple = ()  # names of the diffusers model classes
    guided: bool = True  # a guided call lays its batch out as [uncond, cond]
    trains: bool = True  # loco_lib.finetune (ESD, Concept Ablation) calls it as a UNet

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

    def states(self, model, kinds) -> list:
        raise NotImplementedError
