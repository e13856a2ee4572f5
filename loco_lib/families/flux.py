"""FLUX.1 (``FluxPipeline``; the denoiser ``FluxTransformer2DModel``): a diffusion transformer of
dual-stream joint-attention blocks followed by single-stream blocks.

* c is the T5 encoder's output over the prompt padded to ``max_sequence_length`` tokens (512 for
  dev, the pipeline's default; no padding mask), plus CLIP's pooled output (``pooled``), which the
  transformer adds to the time embedding that modulates every block: a text path outside the
  blocks' attention, swapped (from the donor) only with ``swap_text_paths=True``.
* The transformer projects c once (``context_embedder``); from there the text is a stream, as in
  SD3 (:mod:`loco_lib.families.sd3`). The 19 dual-stream blocks read it by joint attention: ``attn``
  with its own text projections ``add_q_proj`` / ``add_k_proj`` / ``add_v_proj`` (keys RMS-normed
  per head). The 38 single-stream blocks concatenate [text, image] and run one attention whose
  ``to_q`` / ``to_k`` / ``to_v`` serve both: the text layers are the 19 + 38 = 57 blocks' ``attn``
  in order (single blocks after the dual ones, as the model runs them).
* "Block i reads T'" (loco's definition, as for SD3, and as Zarei et al. intervene on FLUX): block
  i's attention gets the text input it has in a run of T' with the same seed (a donor sample in
  the same batch). In a single-stream block that is the text positions (the first ones) of the
  normed joint sequence its attention reads. ``joint_text="stream"``: the text stream entering the
  block instead.
* Guidance: FLUX.1-dev embeds the guidance scale in the time embedding and runs one pass per step,
  so every row of a call is conditional; FLUX.1-schnell has no guidance. loco never asks for the
  pipeline's true classifier-free guidance (``true_cfg_scale``), so there is no unconditional pass.
* Defaults: dev's pipeline defaults, 28 steps and guidance 3.5; schnell (a transformer without a
  guidance embedding) 4 steps, guidance 1 (ignored by the model).
"""
from __future__ import annotations

import torch

from ..errors import LocoError
from ..hooks import Site
from .base import CrossAttentionLayer, DenoiserFamily, PipelineFamily


class Flux(PipelineFamily):
    name = "flux"
    pipelines = ("FluxPipeline",)
    describe = "FluxPipeline"
    denoiser = "transformer"
    defaults = {"steps": 28, "guidance": 3.5}

    def defaults_for(self, pipe) -> dict:
        if not pipe.transformer.config.guidance_embeds:  # schnell
            return {"steps": 4, "guidance": 1.0}
        return dict(self.defaults)

    def guided_rows(self, pipe, guidance: float) -> bool:
        return False  # guidance is an embedding (dev) or absent (schnell): one conditional row per sample

    def max_length(self, pipe) -> int:
        own = getattr(pipe, "loco_text_length", None)
        return own if own else 512

    def encode(self, pipe, prompts, negative_prompt):
        kw = dict(prompt_2=None, device=pipe._execution_device, num_images_per_prompt=1,
                  max_sequence_length=self.max_length(pipe))
        e, p, _ = pipe.encode_prompt(prompt=prompts, **kw)
        ne, npool, _ = pipe.encode_prompt(prompt=[negative_prompt] * len(prompts), **kw)
        return {"embeds": e, "negative": ne, "pooled": p, "negative_pooled": npool}

    def pipeline_kwargs(self, cond) -> dict:
        # no negative: with the pipeline's true_cfg_scale at 1 it would not be used
        return {"prompt_embeds": cond.embeds, "pooled_prompt_embeds": cond.pooled}

    def encoder_view(self, pipe, component: str):
        """Each encoder's own tokenizer: the sequence the denoiser reads joins several encoders' parts."""
        return getattr(pipe, component.replace("text_encoder", "tokenizer"))

    def default_size(self, pipe) -> int:
        return pipe.default_sample_size * pipe.vae_scale_factor

    def token_offsets(self, pipe, tok, text: str) -> tuple[list, list]:
        """Ids and character offsets of the sequence the transformer reads: the T5 tokens
        (``tokenizer_2``) padded to the T5 length; ``tok`` (CLIP's, which only gives the pooled
        vector) is not that sequence."""
        t5 = pipe.tokenizer_2
        enc = t5(text, padding="max_length", max_length=self.max_length(pipe), truncation=True,
                 return_offsets_mapping=True)
        special = set(t5.all_special_ids)
        return list(enc["input_ids"]), [(0, 0) if i in special else o
                                        for i, o in zip(enc["input_ids"], enc["offset_mapping"])]


class FluxTransformer(DenoiserFamily):
    name = "flux"
    component = "transformer"
    classes_ = ("FluxTransformer2DModel",)
    trains = False  # the training baselines (ESD, Concept Ablation) do not drive it (yet)
    text_from_run = True
    # the call carries token tensors without a batch dimension (txt_ids, img_ids), which row sharing
    # could mistake for rows when their length equals the batch
    shares_rows = False

    def text_layers(self, model) -> list:
        side = max(1, model.config.get("sample_size", 64) // max(1, model.config.patch_size))
        dual = [CrossAttentionLayer(index=i, name=f"transformer_blocks.{i}.attn", block=f"block {i}",
                                    kv_dim=b.attn.add_k_proj.in_features, key="add_k_proj", value="add_v_proj",
                                    resolution=side)
                for i, b in enumerate(model.transformer_blocks)]
        n = len(dual)
        single = [CrossAttentionLayer(index=n + j, name=f"single_transformer_blocks.{j}.attn", block=f"single {j}",
                                      kv_dim=b.attn.to_k.in_features, key="to_k", value="to_v", resolution=side)
                  for j, b in enumerate(model.single_transformer_blocks)]
        return dual + single

    def donor_site(self, layer, joint_text: str, text_length: int):
        from ..hooks import text_site

        block = layer.name.rsplit(".", 1)[0]
        if joint_text == "stream":
            return Site("unet", block, "input", "encoder_hidden_states"), None
        if layer.name.startswith("single_"):  # the text positions (the first ones) of the normed joint sequence
            return Site("unet", layer.name, "input", "hidden_states"), torch.ones(text_length, dtype=torch.bool)
        return text_site(layer), None

    def donor_paths(self, model) -> list:
        return [Site("unet", "", "input", "pooled_projections")]

    def edit_refusal(self, layer) -> str | None:
        if layer.name.startswith("single_"):
            return (f"{layer.block} is a single-stream FLUX block: its to_k / to_v serve the image tokens too, so a "
                    "closed-form edit there would change how every image token is read; LocoEdit edits the dual-stream blocks")
        return None

    def text_states(self, model, embeds):
        raise LocoError(self.not_from_text)

    def kv_input(self, model, layer, states):
        raise LocoError(self.not_from_text)

    trace_kinds = ("pooled", "image stream", "text stream")
    text_embedder = "context_embedder"

    def states(self, model, kinds) -> list:
        """Causal tracing's states in execution order: the time embedding (timestep, guidance and
        pooled CLIP text: kind ``"pooled"``); each dual-stream block as SD3's
        (:func:`~loco_lib.families.sd3.joint_block_states`); each single-stream block's output, which
        diffusers hands on split into the text and the image positions (the two ``"... stream"`` kinds)
        and, with ``"attention"``, its attention's output over the joint sequence (stream ``"joint"``;
        its MLP branch is fused into ``proj_out``, no state of its own). The last single block's text
        positions are dropped by the model: no state."""
        from .base import State
        from .sd3 import joint_block_states, pooled_states

        out = pooled_states(kinds)
        for i, _ in enumerate(model.transformer_blocks):
            joint_block_states(out, f"transformer_blocks.{i}", f"dual {i}", kinds, False)
        last = len(model.single_transformer_blocks) - 1
        for j, _ in enumerate(model.single_transformer_blocks):
            name = f"single_transformer_blocks.{j}"
            if "attention" in kinds or "self-attention" in kinds:
                out.append(State(len(out), f"{name}.attn", "attention", "unet", f"single {j}", stream="joint"))
            if "transformer" in kinds or "image stream" in kinds:
                out.append(State(len(out), name, "image stream", "unet", f"single {j}", element=1, stream="image"))
            if ("transformer" in kinds or "text stream" in kinds) and j < last:  # the model drops the last one's text
                out.append(State(len(out), name, "text stream", "unet", f"single {j}", element=0, stream="text"))
        return out

    def text_attention_available(self, model) -> None:
        raise LocoError("the attention-contribution ranking of joint-attention blocks (flux) is not available yet: its "
                        "blocks rotate queries and keys by position (RoPE), which the ranking's recomputation does not get")

    def text_attention(self, attn, hidden, text, mask):
        self.text_attention_available(attn)

    not_from_text = ("in FLUX what block i's K/V projections read depends on the image and the timestep, not "
                     "on the prompt alone: it cannot be computed from the prompt (loco's methods record it along runs: "
                     "LocoEdit and neurons with runs=, or edit the text embedder: UCE)")
