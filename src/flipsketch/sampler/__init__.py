"""The paper's sampler (Algorithm 1): pipeline, inversion, alignment, attention composition."""
