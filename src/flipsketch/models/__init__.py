"""Models: presets and loading, the LoRA adapter format, the embedded tiny model."""
