"""SANA (``SanaPipeline``; the denoiser ``SanaTransformer2DModel``): a diffusion transformer with
linear self-attention that reads the text by softmax cross-attention in each of its blocks.

* c is the output of a Gemma-2 decoder (causal) over a long instruction followed by the prompt: the
  pipeline prepends its ``complex_human_instruction`` (the call's default), pads on the right, and
  keeps position 0 (the first token) and the last ``max_sequence_length - 1`` = 299 positions, so the
  kept sequence is [first token, last instruction token, prompt tokens, padding]; the instruction
  tokens before were attended by the prompt tokens (Gemma is causal) and are then dropped. The
  padding mask goes to the transformer. The negative prompt is encoded without the instruction.
  Prompts are lower-cased and stripped (``clean_caption=False``).
* A token position of a prompt is therefore its position in that kept sequence
  (:meth:`Sana.token_offsets`), not in the prompt tokenized alone.
* The transformer projects and RMS-normalises c once before its blocks (``caption_projection``,
  ``caption_norm``); every block's ``attn2`` reads that through ``to_k`` / ``to_v`` (with biases),
  with the mask as an additive bias. The text layers are the blocks' ``attn2`` in order.
* Guidance lays the batch out as [uncond, cond]. Defaults: the pipeline's 20 steps and guidance
  4.5; loco turns resolution binning off, as for PixArt.
* Trace states, block by block: the whole block, its self-attention, cross-attention, feed-forward.
"""
from __future__ import annotations

from .base import PipelineFamily
from .pixart import PixArtTransformer


class Sana(PipelineFamily):
    name = "sana"
    pipelines = ("SanaPipeline",)
    describe = "SanaPipeline"
    denoiser = "transformer"
    defaults = {"steps": 20, "guidance": 4.5}
    max_length = 300  # the pipeline's max_sequence_length

    def instruction(self, pipe) -> list | None:
        """The instruction the pipeline prepends: its call's default (a pipeline may carry its own,
        ``loco_instruction``; an empty list prepends nothing)."""
        import inspect

        own = getattr(pipe, "loco_instruction", None)
        if own is not None:
            return list(own)
        return list(inspect.signature(type(pipe).__call__).parameters["complex_human_instruction"].default)

    def encode(self, pipe, prompts, negative_prompt):
        e, m, ne, nm = pipe.encode_prompt(prompts, do_classifier_free_guidance=True, negative_prompt=negative_prompt,
                                          num_images_per_prompt=1, device=pipe._execution_device, clean_caption=False,
                                          max_sequence_length=self.max_length,
                                          complex_human_instruction=self.instruction(pipe))
        return {"embeds": e, "negative": ne, "mask": m, "negative_mask": nm}

    def pipeline_kwargs(self, cond) -> dict:
        return {**super().pipeline_kwargs(cond), "prompt_attention_mask": cond.mask,
                "negative_prompt_attention_mask": cond.negative_mask, "negative_prompt": None}

    def call_kwargs(self) -> dict:
        return {"clean_caption": False, "use_resolution_binning": False}

    # the transformer call's timestep (as the pipeline scales it) and padding mask, for the training baselines
    added_inputs = {"timestep": "timestep", "encoder_attention_mask": "encoder_attention_mask"}

    def added_for(self, cond, added):
        return {**added, "encoder_attention_mask": cond.mask.to(added["encoder_attention_mask"])}

    def default_size(self, pipe) -> int:
        """The transformer's sample size in pixels (1024 for the 1024 px checkpoints; the pipeline's
        own default is 1024 whatever the checkpoint)."""
        return pipe.transformer.config.sample_size * pipe.vae_scale_factor

    def tokenizer_text(self, prompt: str) -> str:
        return prompt.lower().strip()  # what the pipeline does with clean_caption=False

    def _total(self, pipe, tok) -> int | None:
        """The length of the sequence the text encoder runs over (instruction and prompt), or None
        without an instruction."""
        chi = "\n".join(self.instruction(pipe) or [])
        return len(tok.encode(chi)) + self.max_length - 2 if chi else None

    def encoder_positions(self, pipe, positions) -> list[int]:
        """Kept position 0 is the encoder's first; kept position k > 0 is the encoder's
        ``total - 300 + k`` (the pipeline keeps the last 299)."""
        total = self._total(pipe, pipe.tokenizer)
        if total is None:
            return [int(p) for p in positions]
        return [0 if int(p) == 0 else total - self.max_length + int(p) for p in positions]

    def token_offsets(self, pipe, tok, text: str) -> tuple[list, list]:
        """Ids and character offsets (into ``text``) of the kept sequence: the instruction and the
        prompt tokenized together as the pipeline does, then cut to [0] + the last 299 positions;
        instruction tokens get empty offsets."""
        chi = "\n".join(self.instruction(pipe) or [])
        total = self._total(pipe, tok)
        if total is None:
            enc = tok(text, padding="max_length", max_length=self.max_length, truncation=True, return_offsets_mapping=True)
            return enc["input_ids"], enc["offset_mapping"]
        enc = tok(chi + text, padding="max_length", max_length=total, truncation=True, return_offsets_mapping=True)
        keep = [0] + list(range(total - self.max_length + 1, total))
        ids = [enc["input_ids"][i] for i in keep]
        shift = len(chi)
        offsets = [(max(a - shift, 0), b - shift) if b > shift and b > a else (0, 0)
                   for a, b in (enc["offset_mapping"][i] for i in keep)]
        return ids, offsets


class SanaTransformer(PixArtTransformer):
    """As PixArt's blocks (``transformer_blocks.{i}.attn2``, mask as additive bias, four states per
    block), with the caption normalised after its projection."""

    name = "sana"
    classes_ = ("SanaTransformer2DModel",)

    def _conditions(self, model, sample) -> dict:
        return {}  # SANA's transformer takes no micro-conditions

    def text_states(self, model, embeds):
        proj = model.caption_projection
        out = proj(embeds.to(proj.linear_1.weight.dtype))
        return model.caption_norm(out.view(embeds.shape[0], -1, out.shape[-1]))

