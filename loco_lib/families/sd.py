"""Stable Diffusion pipelines: SD-1.x / 2.x / OpenJourney (``StableDiffusionPipeline``) and SD-XL
(``StableDiffusionXLPipeline``), paper Sec. 5.1.

* SD-1.x / 2.x: c is the text encoder's last hidden state (77 x d).
* SD-XL: c is the concatenated penultimate hidden states of both encoders (77 x 2048) plus the
  pooled, projected output of the second encoder (fed to the time embedding with the size "time
  ids"); the unconditional embedding is zeros (``force_zeros_for_empty_prompt``).

Defaults: DDIM sampling (Sec. 5.1) with the authors' public code's 50 steps and guidance 7.5
(NUM_DIFFUSION_STEPS, GUIDANCE_SCALE in loco_edit.py, github.com/samyadeepbasu/LocoGen; the paper
states neither). SD-XL: its pipeline's defaults (loco's choice; the authors' code has none).
"""
from __future__ import annotations

from .base import PipelineFamily


class SD(PipelineFamily):
    name = "sd"
    pipelines = ("StableDiffusionPipeline",)
    describe = "StableDiffusionPipeline"
    defaults = {"steps": 50, "guidance": 7.5}

    def encode(self, pipe, prompts, negative_prompt):
        e, ne = pipe.encode_prompt(prompts, pipe._execution_device, 1, True, negative_prompt=[negative_prompt] * len(prompts))
        return {"embeds": e, "negative": ne}


class SDXL(PipelineFamily):
    name = "sdxl"
    pipelines = ("StableDiffusionXLPipeline",)
    describe = "StableDiffusionXLPipeline"
    defaults = {"steps": 50, "guidance": 5.0}
    added_inputs = {"text_embeds": "added_cond_kwargs.text_embeds", "time_ids": "added_cond_kwargs.time_ids"}

    def added_for(self, cond, added):
        return {"text_embeds": cond.pooled.to(added["text_embeds"]), "time_ids": added["time_ids"]}

    def encode(self, pipe, prompts, negative_prompt):
        neg = None if negative_prompt == "" else [negative_prompt] * len(prompts)
        e, ne, p, npool = pipe.encode_prompt(prompt=prompts, device=pipe._execution_device, num_images_per_prompt=1,
                                             do_classifier_free_guidance=True, negative_prompt=neg)
        return {"embeds": e, "negative": ne, "pooled": p, "negative_pooled": npool}

    def pipeline_kwargs(self, cond) -> dict:
        return {**super().pipeline_kwargs(cond), "pooled_prompt_embeds": cond.pooled,
                "negative_pooled_prompt_embeds": cond.negative_pooled}
