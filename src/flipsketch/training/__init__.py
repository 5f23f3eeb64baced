"""Training: the one denoising loop (``loop``) and its loss (``noise``), its data (``data``;
procedural clips from ``synth`` and ``deform``), the tiny base model's stages (``base``), LoRA
fine-tuning (``lora``), the latent cache of a run (``latent_store``) and step profiling
(``profiling``)."""
