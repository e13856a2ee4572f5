"""Stable Diffusion 3 and 3.5 (``StableDiffusion3Pipeline``; the denoiser ``SD3Transformer2DModel``):
a diffusion transformer whose blocks read the text by *joint* attention.

* c is what the pipeline computes: the penultimate hidden states of two CLIP encoders, concatenated
  on channels and zero-padded to T5's width, then the T5 encoder's output appended on the sequence
  axis (77 + ``max_sequence_length`` tokens, no padding mask), plus the two CLIPs' pooled
  projections concatenated (``pooled``). A pipeline without T5 (``text_encoder_3=None``) gets zeros
  in the T5 positions.
* The transformer projects c once (``context_embedder``); from there the text is a *stream* that
  every block updates: block i's joint attention ``attn`` reads the AdaLN-normed text stream
  through ``add_q_proj`` / ``add_k_proj`` / ``add_v_proj`` beside the image tokens, and writes back
  into it (the last block, ``context_pre_only``, only reads). What block i reads therefore depends
  on the earlier blocks, on the image tokens and on the timestep: it cannot be computed from c
  alone. The text layers are the blocks' ``attn`` in order, their K/V projections ``add_k_proj`` /
  ``add_v_proj``.
* LocoGen's intervention here (loco's definition, as Zarei et al. do for FLUX): "block i reads T'"
  means block i's attention gets, as its text input, what the same block reads in a run of T' with
  the same seed. That run rides in the same batch (a donor sample, :class:`~loco_lib.hooks.FromSample`),
  so it is computed alongside, step by step, on its own trajectory. The variant
  ``joint_text="stream"`` gives block i instead the text stream *entering* it in T''s run: block i's
  attention then reads T''s text, and the stream it writes back (which later blocks read) starts
  from T''s.
* The pooled text enters the time embedding of every block (``pooled_projections``): a text path
  outside the blocks' attention, swapped (from the donor) only with ``swap_text_paths=True``.
* Guidance lays the batch out as [uncond, cond], as the UNet pipelines do. The pipelines' skip-layer
  guidance (a third, conditional-only pass) is not used by loco.
* LocoEdit's rows (loco's choice): what ``add_k_proj`` / ``add_v_proj`` read depends on the run, so
  the rows are recorded along denoising trajectories: for each prompt and seed, the text input of
  each edited block at the last subject token of the CLIP part and of the T5 part
  (:func:`loco_lib.tokens.edit_positions`), at every step of a guided run (conditional branch),
  each (prompt, seed, step, part) one row; a target row is the target prompt's at the same seed,
  step and part, on its own run. The closed form then fits all of them at once
  (:mod:`loco_lib.locoedit`).
* Defaults: the pipeline's 28 steps and guidance 7.0.
"""
from __future__ import annotations

import torch

from ..errors import LocoError
from ..hooks import Site
from .base import CrossAttentionLayer, DenoiserFamily, PipelineFamily, State


class SD3(PipelineFamily):
    name = "sd3"
    pipelines = ("StableDiffusion3Pipeline",)
    describe = "StableDiffusion3Pipeline"
    denoiser = "transformer"
    defaults = {"steps": 28, "guidance": 7.0}

    def max_length(self, pipe) -> int:
        """T5's sequence length: the pipeline's default 256, or a pipeline's own ``loco_text_length``."""
        own = getattr(pipe, "loco_text_length", None)
        return own if own else 256

    def encode(self, pipe, prompts, negative_prompt):
        n = len(prompts)
        e, ne, p, npool = pipe.encode_prompt(prompt=prompts, prompt_2=None, prompt_3=None, device=pipe._execution_device,
                                             num_images_per_prompt=1, do_classifier_free_guidance=True,
                                             negative_prompt=[negative_prompt] * n, max_sequence_length=self.max_length(pipe))
        return {"embeds": e, "negative": ne, "pooled": p, "negative_pooled": npool}

    def pipeline_kwargs(self, cond) -> dict:
        return {**super().pipeline_kwargs(cond), "pooled_prompt_embeds": cond.pooled,
                "negative_pooled_prompt_embeds": cond.negative_pooled}

    def token_offsets(self, pipe, tok, text: str) -> tuple[list, list]:
        """Ids and character offsets of the sequence the transformer reads: the CLIP tokens padded to
        77 (both CLIPs tokenize alike; the first one's ids), then the T5 tokens padded to the T5
        length (offsets into the same ``text``). A pipeline without T5 reads zeros there: no token."""
        enc = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
        n = self.max_length(pipe)
        t5 = getattr(pipe, "tokenizer_3", None) if getattr(pipe, "text_encoder_3", None) is not None else None
        if t5 is None:
            return ids + [tok.pad_token_id] * n, offsets + [(0, 0)] * n
        enc = t5(text, padding="max_length", max_length=n, truncation=True, return_offsets_mapping=True)
        special = set(t5.all_special_ids) - set(tok.all_special_ids)  # T5's pad / eos: no offsets, and not CLIP's
        return ids + list(enc["input_ids"]), offsets + [(0, 0) if i in special else o
                                                        for i, o in zip(enc["input_ids"], enc["offset_mapping"])]

    def text_parts(self, pipe) -> list[int]:
        """The CLIP part (77 tokens), then the T5 part."""
        return [0, pipe.tokenizer.model_max_length]

    def encoder_view(self, pipe, component: str):
        """Each encoder's own tokenizer: the sequence the denoiser reads joins several encoders' parts."""
        return getattr(pipe, component.replace("text_encoder", "tokenizer"))

    def default_size(self, pipe) -> int:
        """The transformer's sample size in pixels, as the pipeline's own default."""
        return pipe.transformer.config.sample_size * pipe.vae_scale_factor


class SD3Transformer(DenoiserFamily):
    name = "sd3"
    component = "transformer"
    classes_ = ("SD3Transformer2DModel",)
    trains = False  # the training baselines (ESD, Concept Ablation) do not drive it (yet)
    text_from_run = True  # what a block reads depends on the run: another prompt's text comes from a donor sample

    def text_layers(self, model) -> list:
        side = max(1, model.config.sample_size // model.config.patch_size)  # the token grid's side
        return [CrossAttentionLayer(index=i, name=f"transformer_blocks.{i}.attn", block=f"block {i}",
                                    kv_dim=block.attn.add_k_proj.in_features, key="add_k_proj", value="add_v_proj",
                                    resolution=side)
                for i, block in enumerate(model.transformer_blocks)]

    def donor_site(self, layer, joint_text: str, text_length: int):
        from ..hooks import text_site

        if joint_text == "stream":  # the stream entering the block: what the block and, through it, later blocks carry
            return Site("unet", layer.name.rsplit(".", 1)[0], "input", "encoder_hidden_states"), None
        return text_site(layer), None  # the normed text the block's attention reads (add_q/k/v_proj), this block only

    def donor_paths(self, model) -> list:
        """The text paths outside the blocks' attention, taken from the donor with ``swap_text_paths``."""
        return [Site("unet", "", "input", "pooled_projections")]

    def text_states(self, model, embeds):
        raise LocoError(self.not_from_text)

    def kv_input(self, model, layer, states):
        raise LocoError(self.not_from_text)

    trace_kinds = ("pooled", "image stream", "text stream")
    text_embedder = "context_embedder"

    def states(self, model, kinds) -> list:
        """Causal tracing's states in execution order: the pooled text's path into the time embedding
        (``time_text_embed``, kind ``"pooled"``), then per block the image stream and the text stream
        it hands on (``"transformer"``: both; the last block, ``context_pre_only``, hands on no text),
        its joint attention's image and text outputs (``"attention"``) and its two feed-forwards
        (``"feed-forward"``: ``ff`` on the image, ``ff_context`` on the text)."""
        out = pooled_states(kinds)
        for i, block in enumerate(model.transformer_blocks):
            joint_block_states(out, f"transformer_blocks.{i}", f"block {i}", kinds, block.context_pre_only)
        return out

    def text_attention(self, attn, hidden, text, mask):
        """The image queries' softmax over the joint sequence, restricted to the text keys, and the
        text values (``add_k_proj`` / ``add_v_proj``, keys normed per head where the block does):
        Zarei et al.'s contribution of text tokens to the image tokens' attention output, which
        ``attn.to_out`` finishes (:func:`joint_attention`)."""
        probs, values = joint_attention(attn, hidden, text)
        n = hidden.shape[1]
        return probs[:, :n, n:], values[:, n:]

    not_from_text = ("in a joint-attention transformer (SD3, SD3.5) what block i's K/V projections read depends on the image and the timestep, not "
                     "on the prompt alone: it cannot be computed from the prompt (loco's methods record it along runs: "
                     "LocoEdit and neurons with runs=, or edit the text embedder: UCE)")


def pooled_states(kinds) -> list:
    """The time embedding's output (timestep and pooled text, plus FLUX's guidance): the one place the
    pooled text enters, as a restorable state."""
    return [State(0, "time_text_embed", "pooled", "unet", "")] if "pooled" in kinds else []


def joint_block_states(out: list, name: str, block: str, kinds, last: bool) -> None:
    """Append a joint-attention block's states (SD3's blocks, FLUX's dual-stream ones) to ``out``: its
    output is the tuple (text stream, image stream); its attention returns (image, text)."""
    both = "transformer" in kinds
    add = lambda *a, **k: out.append(State(len(out), *a, **k))  # noqa: E731
    if "attention" in kinds or "self-attention" in kinds:
        add(f"{name}.attn", "attention", "unet", block, element=0, stream="image")
        if not last:
            add(f"{name}.attn", "attention", "unet", block, element=1, stream="text")
    if "feed-forward" in kinds:
        add(f"{name}.ff", "feed-forward", "unet", block, stream="image")
        if not last:
            add(f"{name}.ff_context", "feed-forward", "unet", block, stream="text")
    if both or "image stream" in kinds:
        add(name, "image stream", "unet", block, element=1, stream="image")
    if (both or "text stream" in kinds) and not last:
        add(name, "text stream", "unet", block, element=0, stream="text")


def joint_attention(attn, hidden, text, text_first: bool = False, rotary=None):
    """``(probs, values)`` of one joint-attention call, computed as diffusers' joint processors do but
    with the softmax materialised: queries, keys and values of the image tokens (``to_q`` / ``to_k``
    / ``to_v``) and of the text tokens (``add_q_proj`` / ``add_k_proj`` / ``add_v_proj``), per-head
    norms where the module has them, the sequence laid out [image, text] (SD3) or [text, image]
    (FLUX, ``text_first``; ``rotary``: its position rotation of queries and keys), one softmax over
    all keys: ``probs`` ``[rows * heads, N, N]`` and ``values`` ``[rows * heads, N, head dim]``,
    returned in the [image, text] order whatever the model's."""
    rows, heads = hidden.shape[0], attn.heads
    image = [attn.to_q(hidden), attn.to_k(hidden), attn.to_v(hidden)]
    words = [attn.add_q_proj(text), attn.add_k_proj(text), attn.add_v_proj(text)]
    d = image[1].shape[-1] // heads
    split = lambda x: x.view(rows, -1, heads, d).transpose(1, 2)  # noqa: E731
    image, words = [split(x) for x in image], [split(x) for x in words]
    for part, (nq, nk) in ((image, ("norm_q", "norm_k")), (words, ("norm_added_q", "norm_added_k"))):
        if getattr(attn, nq, None) is not None:
            part[0] = getattr(attn, nq)(part[0])
        if getattr(attn, nk, None) is not None:
            part[1] = getattr(attn, nk)(part[1])
    order = (words, image) if text_first else (image, words)
    q, k, v = (torch.cat([order[0][j], order[1][j]], 2) for j in range(3))
    if rotary is not None:
        from diffusers.models.embeddings import apply_rotary_emb

        q, k = apply_rotary_emb(q, rotary, sequence_dim=2), apply_rotary_emb(k, rotary, sequence_dim=2)
    probs = torch.softmax((q.float() @ k.float().transpose(-1, -2)) * d ** -0.5, dim=-1).to(q.dtype)
    if text_first:  # back to [image, text]
        n = text.shape[1]
        perm = torch.cat([torch.arange(n, q.shape[2]), torch.arange(n)]).to(q.device)
        probs, v = probs[:, :, perm][:, :, :, perm], v[:, :, perm]
    merge = lambda x: x.reshape(rows * heads, x.shape[2], x.shape[3])  # noqa: E731
    return merge(probs), merge(v)
