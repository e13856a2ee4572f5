"""Text conditioning c of a prompt (paper Sec. 5.1), as each pipeline family computes it.

``encode(pipe, prompts)`` returns exactly the tensors the pipeline itself would compute from the
prompts (its family's :meth:`~loco_lib.families.base.PipelineFamily.encode`: SD's last hidden
state, SD-XL's two encoders with the pooled vector, IF's raw T5 output), so a run fed with them
equals a run fed with the prompt strings, and an altered input c' is computed the same way as c.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import LocoError
from .settings import as_prompt_list, pipeline_family  # noqa: F401 (as_prompt_list: its home was here)


@dataclass
class TextCondition:
    embeds: torch.Tensor  # [B, L, D]: the UNet's ``encoder_hidden_states`` for the prompts
    negative: torch.Tensor  # [B, L, D]: the unconditional branch's
    pooled: torch.Tensor | None = None  # SD-XL only: [B, P]
    negative_pooled: torch.Tensor | None = None
    mask: torch.Tensor | None = None  # diffusion transformers: [B, L], 1 at the prompt's tokens
    negative_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def select(self, idx) -> "TextCondition":
        pick = lambda t: None if t is None else t[idx]
        return TextCondition(pick(self.embeds), pick(self.negative), pick(self.pooled), pick(self.negative_pooled),
                             pick(self.mask), pick(self.negative_mask))

    def joined(self, other: "TextCondition") -> "TextCondition":
        """This condition's rows followed by ``other``'s."""
        join = lambda a, b: None if a is None else torch.cat([a, b])  # noqa: E731
        return TextCondition(*(join(getattr(self, f), getattr(other, f)) for f in
                               ("embeds", "negative", "pooled", "negative_pooled", "mask", "negative_mask")))

    def pipeline_kwargs(self, family: str) -> dict:
        """The pipeline-call keywords that hand this condition to a pipeline of ``family`` (its name)."""
        from .families.registry import by_name

        return by_name(family).pipeline_kwargs(self)


@torch.no_grad()
def encode(pipe, prompts, negative_prompt: str = "") -> TextCondition:
    """Encode ``prompts`` (and the negative prompt for the unconditional branch) as the pipeline does."""
    from .families.registry import pipeline_family as family_of

    prompts = as_prompt_list(prompts)
    return TextCondition(**family_of(pipe).encode(pipe, prompts, negative_prompt))


@dataclass
class AttentionMap:
    """Head-averaged self-attention probabilities of one text-encoder layer among a prompt's tokens."""

    tokens: list  # the tokens shown (the prompt's, with start/end-of-text), in order
    weights: torch.Tensor  # [n, n]: row i = how token i attends to each token j
    layer: int
    causal: bool  # True when no token attends to a later one (CLIP), False for T5

    def after(self, position: int) -> float:
        """Attention mass that the token at ``position`` puts on the tokens after it."""
        return float(self.weights[position, position + 1 :].sum())


@torch.no_grad()
def attention_map(pipe, prompt: str, layer: int = -1, encoder: int = 1) -> AttentionMap:
    """Fig. 62's picture: the self-attention of text-encoder ``layer`` (default: the last) for
    ``prompt``, averaged over heads, over its real tokens (padding left out). CLIP's is causal,
    T5's is not. The encoder's attention implementation is switched to the eager one for the call
    (it alone returns the probabilities) and switched back afterwards."""
    comp = "text_encoder" if encoder == 1 else "text_encoder_2"
    te, tok = getattr(pipe, comp, None), getattr(pipe, "tokenizer" if encoder == 1 else "tokenizer_2", None)
    if te is None or tok is None:
        raise LocoError(f"this pipeline has no text encoder {encoder}")
    prompt = as_prompt_list(prompt)[0]
    enc = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
    ids, mask = enc["input_ids"].to(te.device), enc["attention_mask"].to(te.device)
    before = getattr(te.config, "_attn_implementation", None)
    te.set_attn_implementation("eager")
    try:
        out = te(ids, attention_mask=mask, output_attentions=True)
    finally:
        if before is not None:
            te.set_attn_implementation(before)
    n_layers = len(out.attentions)
    if not -n_layers <= layer < n_layers:
        raise LocoError(f"the text encoder has layers 0..{n_layers - 1}, not {layer}")
    n = int(mask[0].sum())
    w = out.attentions[layer][0].float().mean(0)[:n, :n].cpu()
    words = tok.convert_ids_to_tokens(ids[0, :n].tolist())
    causal = bool(torch.triu(w, diagonal=1).abs().max() < 1e-6)
    return AttentionMap([t.replace("</w>", "") for t in words], w, layer % n_layers, causal)
