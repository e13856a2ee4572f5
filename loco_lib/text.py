"""Text conditioning c of a prompt, for each pipeline family (paper Sec. 5.1).

``encode(pipe, prompts)`` returns exactly the tensors the pipeline itself would compute from the
prompts, so a run fed with them equals a run fed with the prompt strings, and an altered input c'
is computed the same way as c:

* SD-1.x / 2.x: the text encoder's last hidden state (77 x d).
* SD-XL: the concatenated penultimate hidden states of both encoders (77 x 2048) plus the pooled,
  projected output of the second encoder (fed to the time embedding with the size "time ids").
  The unconditional embedding is zeros (``force_zeros_for_empty_prompt``).
* DeepFloyd IF: the raw T5 output (77 x 4096); the UNet projects it with ``encoder_hid_proj``
  before cross-attention and also pools it into the time embedding (``add_embedding``).
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

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def select(self, idx) -> "TextCondition":
        pick = lambda t: None if t is None else t[idx]
        return TextCondition(pick(self.embeds), pick(self.negative), pick(self.pooled), pick(self.negative_pooled))

    def pipeline_kwargs(self, family: str) -> dict:
        kw = {"prompt_embeds": self.embeds, "negative_prompt_embeds": self.negative}
        if family == "sdxl":
            kw.update(pooled_prompt_embeds=self.pooled, negative_pooled_prompt_embeds=self.negative_pooled)
        return kw


@torch.no_grad()
def encode(pipe, prompts, negative_prompt: str = "") -> TextCondition:
    """Encode ``prompts`` (and the negative prompt for the unconditional branch) as the pipeline does."""
    prompts = as_prompt_list(prompts)
    family = pipeline_family(pipe)
    device = pipe._execution_device
    n = len(prompts)
    if family == "sd":
        e, ne = pipe.encode_prompt(prompts, device, 1, True, negative_prompt=[negative_prompt] * n)
        return TextCondition(e, ne)
    if family == "sdxl":
        neg = None if negative_prompt == "" else [negative_prompt] * n
        e, ne, p, npool = pipe.encode_prompt(
            prompt=prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True, negative_prompt=neg
        )
        return TextCondition(e, ne, p, npool)
    neg = None if negative_prompt == "" else [negative_prompt] * n
    e, ne = pipe.encode_prompt(
        prompts, do_classifier_free_guidance=True, num_images_per_prompt=1, device=device,
        negative_prompt=neg, clean_caption=False,
    )
    return TextCondition(e, ne)


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
