"""Training: the one denoising loop (``loop``), its data (``data``, ``synth``), the tiny base
model's stages (``base``) and LoRA fine-tuning (``lora``)."""
