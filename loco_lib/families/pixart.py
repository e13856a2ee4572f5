"""PixArt-alpha and PixArt-Sigma (``PixArtAlphaPipeline``, ``PixArtSigmaPipeline``; the denoiser
``PixArtTransformer2DModel``): a diffusion transformer that reads the text by cross-attention.

* c is the T5 encoder's output over the prompt padded to ``max_sequence_length`` tokens (120 for
  alpha, 300 for Sigma: the pipelines' defaults), with its padding mask; the pipeline passes both to
  the transformer. Prompts are lower-cased and stripped (``clean_caption=False``).
* The transformer projects c once, before its blocks (``caption_projection``), and every block's
  cross-attention ``attn2`` reads that projection through ``to_k`` / ``to_v`` (which carry biases),
  with the mask as an additive bias (``(1 - mask) * -10000``). The text layers are the blocks'
  ``attn2`` in order; an altered layer gets T''s projection *and* T''s mask.
* No text path bypasses the blocks' cross-attention (the timestep embedding carries no text).
* Guidance lays the batch out as [uncond, cond], as the UNet pipelines do.
* Trace states, block by block: the whole block, its self-attention, cross-attention, feed-forward.
* Defaults: the pipelines' 20 steps and guidance 4.5; loco turns the pipelines' resolution binning
  off (an image is made at the size asked for; loco's choice).
"""
from __future__ import annotations

import torch

from .base import CrossAttentionLayer, DenoiserFamily, PipelineFamily, State


class PixArt(PipelineFamily):
    name = "pixart"
    pipelines = ("PixArtSigmaPipeline", "PixArtAlphaPipeline")
    describe = "PixArtAlphaPipeline, PixArtSigmaPipeline"
    denoiser = "transformer"
    defaults = {"steps": 20, "guidance": 4.5}

    def max_length(self, pipe) -> int:
        """The caption length: the pipelines' default, or a pipeline's own ``loco_text_length`` (the
        DiT organism's 12 tokens, as it was trained)."""
        import diffusers

        own = getattr(pipe, "loco_text_length", None)
        return own if own else (300 if isinstance(pipe, diffusers.PixArtSigmaPipeline) else 120)

    def encode(self, pipe, prompts, negative_prompt):
        e, m, ne, nm = pipe.encode_prompt(prompts, do_classifier_free_guidance=True, negative_prompt=negative_prompt,
                                          num_images_per_prompt=1, device=pipe._execution_device, clean_caption=False,
                                          max_sequence_length=self.max_length(pipe))
        return {"embeds": e, "negative": ne, "mask": m, "negative_mask": nm}

    def pipeline_kwargs(self, cond) -> dict:
        return {**super().pipeline_kwargs(cond), "prompt_attention_mask": cond.mask,
                "negative_prompt_attention_mask": cond.negative_mask, "negative_prompt": None}  # its default "" clashes

    def call_kwargs(self) -> dict:
        return {"clean_caption": False, "use_resolution_binning": False}

    def fewest_steps(self, pipe):
        # at 1 step the PixArt pipelines take the second output of the scheduler's step (a one-step
        # scheduler's prediction); a scheduler whose step returns one output cannot sample 1 step there
        import copy

        import torch

        scheduler = copy.deepcopy(pipe.scheduler)
        try:
            scheduler.set_timesteps(1)
            x = torch.zeros(1, 4, 2, 2)
            outputs = len(scheduler.step(x, scheduler.timesteps[0], x, return_dict=False))
        except Exception:  # noqa: BLE001 (a scheduler this probe cannot drive: the pipeline decides)
            return 1, ""
        if outputs >= 2:
            return 1, ""
        return 2, f"the PixArt pipeline samples 1 step only with a scheduler whose step returns a second output, not {type(pipe.scheduler).__name__}"

    # the transformer call's timestep (as the pipeline scales it) and padding mask, for the training baselines
    added_inputs = {"timestep": "timestep", "encoder_attention_mask": "encoder_attention_mask"}

    def added_for(self, cond, added):
        return {**added, "encoder_attention_mask": cond.mask.to(added["encoder_attention_mask"])}

    def tokenizer_text(self, prompt: str) -> str:
        return prompt.lower().strip()  # what the pipelines do with clean_caption=False


class PixArtTransformer(DenoiserFamily):
    name = "pixart"
    component = "transformer"
    classes_ = ("PixArtTransformer2DModel",)

    def text_layers(self, model) -> list:
        side = max(1, model.config.sample_size // model.config.patch_size)  # the token grid's side
        return [CrossAttentionLayer(index=i, name=f"transformer_blocks.{i}.attn2", block=f"block {i}",
                                    kv_dim=block.attn2.to_k.in_features, key="to_k", value="to_v", resolution=side)
                for i, block in enumerate(model.transformer_blocks)]

    def predict(self, model, sample, t, hidden, added, params=None):
        """As :meth:`DenoiserFamily.predict`, with the timestep and padding mask the pipeline gave
        the transformer (``added``), and PixArt's micro-conditions (resolution, aspect ratio) where
        the model uses them, as the pipeline computes them for a square image (8 pixels per latent)."""
        kwargs = {"encoder_hidden_states": hidden, "timestep": added["timestep"],
                  "encoder_attention_mask": added["encoder_attention_mask"]}
        kwargs.update(self._conditions(model, sample))
        if params is None:
            out = model(sample, **kwargs).sample
        else:
            out = torch.func.functional_call(model, params, (sample,), kwargs).sample
        return out[:, : sample.shape[1]]  # PixArt-alpha's learned variance: its second half

    def _conditions(self, model, sample) -> dict:
        if not getattr(model, "use_additional_conditions", False):
            return {"added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}
        side = sample.shape[-1] * 8
        rows = sample.shape[0]
        return {"added_cond_kwargs": {"resolution": torch.tensor([[side, side]], dtype=sample.dtype).repeat(rows, 1),
                                      "aspect_ratio": torch.ones(rows, 1, dtype=sample.dtype)}}

    def text_states(self, model, embeds):
        proj = model.caption_projection
        if proj is None:
            return embeds
        out = proj(embeds.to(proj.linear_1.weight.dtype))
        return out.view(embeds.shape[0], -1, out.shape[-1])

    def text_mask(self, model, mask) -> torch.Tensor | None:
        """The additive bias the blocks' ``attn2`` processors get for a padding ``mask`` ([B, L])."""
        if mask is None:
            return None
        return ((1 - mask.to(model.dtype)) * -10000.0).unsqueeze(1)

    def states(self, model, kinds) -> list:
        out = []
        for i, block in enumerate(model.transformer_blocks):
            name = f"transformer_blocks.{i}"
            for kind, sub in (("transformer", ""), ("self-attention", ".attn1"), ("cross-attention", ".attn2"),
                              ("feed-forward", ".ff")):
                if kind in kinds:
                    out.append(State(len(out), name + sub, kind, "transformer", f"block {i}"))
        return out
