"""The embedded tiny model: architecture from models/tiny.yaml, tokenizer, exported folder."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from safetensors.torch import load_file
from transformers import CLIPTextModel, CLIPTokenizer

from flipsketch.errors import UsageError
from flipsketch.models.tiny import (
    CONFIG_PATH,
    TINY_DIR,
    build_components,
    export_model,
    load_config,
)
from flipsketch.sampler.latents import decode_latents, encode_frames

# Reference ids of OpenAI/OpenCLIP's tokenizer for this prompt (from the CLIP paper's BPE).
REFERENCE = ("a fish moving to the right", [49406, 320, 2759, 3584, 531, 518, 1155, 49407])


@pytest.fixture(scope="module")
def components():
    torch.manual_seed(0)
    return build_components(load_config(CONFIG_PATH))


def n_params(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def test_shipped_tokenizer_is_the_real_clip_bpe():
    tokenizer = CLIPTokenizer.from_pretrained(TINY_DIR / "tokenizer")
    assert tokenizer(REFERENCE[0]).input_ids == REFERENCE[1]
    assert len(tokenizer) == 49408
    padded = tokenizer("", padding="max_length", max_length=77).input_ids
    assert padded[:2] == [49406, 49407] and len(padded) == 77
    # Unseen words still split into known pieces rather than one unknown token.
    ids = tokenizer("a xylophone pirouettes").input_ids
    assert len(ids) > 5 and tokenizer.unk_token_id not in ids[1:-1]


def test_architecture_sizes_and_shapes(components):
    vae, unet, text_encoder = components["vae"], components["unet"], components["text_encoder"]
    assert 0.8 < n_params(vae) < 2.0
    assert 9.0 < n_params(unet) < 12.5
    assert unet.config.cross_attention_dim == text_encoder.config.hidden_size
    assert text_encoder.config.vocab_size == 49408
    assert text_encoder.config.max_position_embeddings == 77

    frames = torch.rand(3, 128, 128)
    with torch.no_grad():
        z = encode_frames(vae, frames)  # (3, 4, 16, 16)
        assert z.shape == (3, 4, 16, 16)
        assert decode_latents(vae, z).shape == (3, 128, 128)
        ids = components["tokenizer"]([REFERENCE[0]], padding="max_length", max_length=77,
                                      return_tensors="pt").input_ids
        text = text_encoder(ids)[0]  # (1, 77, d)
        video = torch.randn(1, 4, 10, 16, 16)
        out = unet(video, torch.tensor([999]), encoder_hidden_states=text).sample
    assert out.shape == video.shape


def test_scheduler_is_v_prediction_with_zero_terminal_snr(components):
    scheduler = components["scheduler"]
    assert isinstance(scheduler, DDIMScheduler)
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.timestep_spacing == "trailing"
    assert scheduler.alphas_cumprod[-1] < 1e-6  # pure noise at the last step
    scheduler.set_timesteps(25)
    assert int(scheduler.timesteps[0]) == 999


def test_export_loads_part_by_part_in_float16_within_budget(components, tmp_path):
    out = export_model(components, tmp_path / "tiny")
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "FlipSketchPipeline"
    assert index["unet"] == ["diffusers", "UNet3DConditionModel"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert total <= 40e6, f"model folder is {total / 1e6:.1f} MB"
    assert not list(tmp_path.glob(".*"))  # no temp folder left beside it

    unet = UNet3DConditionModel.from_pretrained(out, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(out, subfolder="vae")
    text_encoder = CLIPTextModel.from_pretrained(out, subfolder="text_encoder")
    tokenizer = CLIPTokenizer.from_pretrained(out, subfolder="tokenizer")
    scheduler = DDIMScheduler.from_pretrained(out, subfolder="scheduler")
    for part, loaded in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
        original = components[part]
        (weights,) = (out / part).glob("*.safetensors")
        stored = load_file(weights)
        assert {t.dtype for t in stored.values()} == {torch.float16}
        assert n_params(loaded) == n_params(original)
        name, param = next(iter(original.state_dict().items()))
        assert torch.equal(loaded.state_dict()[name].float(), param.half().float())
    assert list(vae.config.latents_std) == list(components["vae"].config.latents_std)
    assert tokenizer(REFERENCE[0]).input_ids == REFERENCE[1]
    assert scheduler.config.prediction_type == "v_prediction"
    # The live components were not cast by the export.
    assert next(components["unet"].parameters()).dtype == torch.float32

    # Exporting again replaces the model parts whole but keeps the folder's other files.
    (out / "unet" / "stale.bin").write_text("old weights")
    (out / "README.md").write_text("model card")
    export_model(components, out)
    assert not (out / "unet" / "stale.bin").exists()
    assert (out / "README.md").read_text() == "model card"


def test_config_errors_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("seed: 1\n")
    with pytest.raises(UsageError, match="no 'model' section"):
        load_config(empty)
