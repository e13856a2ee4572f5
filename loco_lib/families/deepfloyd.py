"""DeepFloyd IF, stage I (``IFPipeline``), paper Sec. 8 and App. G.

c is the raw T5 output (77 x 4096); the UNet projects it with ``encoder_hid_proj`` before its
attention layers and pools it into the time embedding (``add_embedding``). loco calls the pipeline
with ``clean_caption=False``: the prompt is only lower-cased and stripped before tokenizing.
Defaults: the pipeline's own 100 steps and guidance 7.0 (loco's choice; the authors' code has none).
"""
from __future__ import annotations

from .base import PipelineFamily


class DeepFloydIF(PipelineFamily):
    name = "if"
    pipelines = ("IFPipeline",)
    describe = "IFPipeline (stage I)"
    defaults = {"steps": 100, "guidance": 7.0}
    raw_output = "pt"  # stage I samples pixels

    def encode(self, pipe, prompts, negative_prompt):
        neg = None if negative_prompt == "" else [negative_prompt] * len(prompts)
        e, ne = pipe.encode_prompt(prompts, do_classifier_free_guidance=True, num_images_per_prompt=1,
                                   device=pipe._execution_device, negative_prompt=neg, clean_caption=False)
        return {"embeds": e, "negative": ne}

    def call_kwargs(self) -> dict:
        return {"clean_caption": False}

    def tokenizer_text(self, prompt: str) -> str:
        return prompt.lower().strip()  # what IFPipeline does with clean_caption=False
