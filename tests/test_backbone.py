"""Model loading: presets, folders, fine-tuned UNets, pickles, LoRA adapters, devices."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch

from flipsketch.api import SamplerSettings, animate, load_pipeline
from flipsketch.devices import resolve_dtype
from flipsketch.errors import ModelLoadError, UsageError
from flipsketch.models.lora import save_lora
from flipsketch.models.presets import MODELSCOPE_BASE, PRESETS, SKETCH_FINETUNE, resolve_model
from flipsketch.plugins import PluginManager, hookimpl
from flipsketch.sampler.pipeline import FlipSketchPipeline

from testing import build_tiny_components, save_authors_checkpoint


def test_presets_name_the_real_models():
    # The authors' demo loads every part from checkpoint-2500, a whole diffusers pipeline.
    sketch = PRESETS["modelscope-sketch"]
    assert (sketch.source, sketch.subfolder) == (SKETCH_FINETUNE, "checkpoint-2500")
    assert SKETCH_FINETUNE == "Hmrishav/t2v_sketch-lora"
    assert sketch.fallback == MODELSCOPE_BASE == "damo-vilab/text-to-video-ms-1.7b"
    assert sketch.unet_source is None
    assert sketch.hub_ids == [SKETCH_FINETUNE, MODELSCOPE_BASE]
    assert PRESETS["modelscope"].source == MODELSCOPE_BASE
    assert PRESETS["tiny"].source.endswith("models/weights/tiny")
    assert PRESETS["tiny"].hub_ids == []


def test_resolve_model_accepts_folders_and_hub_ids_and_rejects_the_rest(tmp_path):
    assert resolve_model(str(tmp_path)).source == str(tmp_path)
    assert resolve_model("org/some-model").source == "org/some-model"
    spec = resolve_model("org/base", unet="org/finetune:checkpoint-10")
    assert (spec.unet_source, spec.unet_subfolder) == ("org/finetune", "checkpoint-10")
    with pytest.raises(UsageError, match="not_a_model"):
        resolve_model("not_a_model")


class OwnIds:
    """A third-party backbone with model ids of its own, which ``resolve_model`` rejects."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @hookimpl
    def register_backbones(self, register) -> None:
        def load(model, *, unet, device, dtype, allow_pickle):
            if not model.startswith("mybackend:"):
                raise UsageError(f"mybackend loads 'mybackend:NAME' models, not '{model}'")
            self.calls.append((model, unet, device, dtype, allow_pickle))
            return FlipSketchPipeline(**build_tiny_components())

        register("mybackend", load)


def test_a_third_party_backbone_gets_the_model_id_as_given():
    with pytest.raises(UsageError):
        resolve_model("mybackend:thing")
    manager = PluginManager(load_entry_points=False)
    backend = OwnIds()
    manager.register(backend, name="own-ids")
    pipe = load_pipeline("mybackend:thing", backbone="mybackend", manager=manager)
    assert backend.calls == [("mybackend:thing", None, None, None, False)]
    [clip] = animate(pipe, "a fish", None, SamplerSettings(num_frames=2, num_inference_steps=1),
                     manager=manager)
    assert clip.frames.shape == (2, 64, 64)


def test_the_default_backbone_rejects_an_unknown_model_in_one_line():
    with pytest.raises(UsageError, match="mybackend:thing") as error:
        load_pipeline("mybackend:thing")
    assert "\n" not in str(error.value) and "--model tiny" in str(error.value)


def test_dtype_rules():
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype(None, torch.device("cuda")) == torch.bfloat16
    with pytest.raises(UsageError, match="fp16"):
        resolve_dtype("fp16", torch.device("cpu"))
    with pytest.raises(UsageError, match="fp8"):
        resolve_dtype("fp8", torch.device("cpu"))


def test_loads_a_diffusers_folder_frozen_and_bf16_on_request(tiny_model_dir):
    pipe = load_pipeline(str(tiny_model_dir), device="cpu", dtype="bf16")
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    assert not any(p.requires_grad for p in pipe.unet.parameters())
    assert pipe.model_resolution == 64
    [clip] = animate(pipe, "a fish", None, SamplerSettings(num_frames=3,
                                                           num_inference_steps=2))
    assert clip.frames.shape == (3, 64, 64)


def test_a_fine_tune_unet_replaces_the_base_unet(tiny_model_dir, tmp_path):
    other = FlipSketchPipeline(**build_tiny_components(seed=1))
    other.save_pretrained(tmp_path / "finetune")
    pipe = load_pipeline(str(tiny_model_dir), unet=str(tmp_path / "finetune"))
    for mine, theirs in zip(pipe.unet.parameters(), other.unet.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs)
    base = load_pipeline(str(tiny_model_dir))
    assert not torch.allclose(next(base.unet.parameters()), next(pipe.unet.parameters()))


def assert_same_weights(module: torch.nn.Module, expected: torch.nn.Module) -> None:
    for mine, theirs in zip(module.parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs)


@pytest.fixture
def sketch_preset_on_disk(monkeypatch, tmp_path, tiny_model_dir):
    """``modelscope-sketch`` as it is, but with both repositories as local folders: the
    authors' layout (seed 1) at ``repo`` and ``tiny_model_dir`` (seed 0) as the base."""

    def preset(**layout) -> tuple:
        repo, marker = tmp_path / "t2v_sketch-lora", tmp_path / "lora-was-unpickled"
        save_authors_checkpoint(repo, marker=marker, **layout)
        monkeypatch.setitem(PRESETS, "modelscope-sketch", replace(
            PRESETS["modelscope-sketch"], source=str(repo), fallback=str(tiny_model_dir)))
        return repo, marker

    return preset


def test_the_sketch_preset_is_the_authors_whole_fine_tune(sketch_preset_on_disk):
    # Every part from checkpoint-2500, the text encoder too (a LoRA was trained into it);
    # the pickled lora/ folder beside them is never read.
    _, marker = sketch_preset_on_disk()
    pipe = load_pipeline("modelscope-sketch", device="cpu")
    finetune = build_tiny_components(seed=1)
    for part in ("unet", "text_encoder", "vae"):
        assert_same_weights(getattr(pipe, part), finetune[part])
    assert not marker.exists()


def test_a_part_the_fine_tune_lacks_comes_from_its_base(sketch_preset_on_disk):
    _, marker = sketch_preset_on_disk(without=("text_encoder",))
    pipe = load_pipeline("modelscope-sketch", device="cpu")
    assert_same_weights(pipe.text_encoder, build_tiny_components(seed=0)["text_encoder"])
    assert_same_weights(pipe.unet, build_tiny_components(seed=1)["unet"])
    assert not marker.exists()


def test_a_part_the_fine_tune_lists_but_lacks_is_not_taken_from_the_base(
        sketch_preset_on_disk):
    # model_index.json names text_encoder, so its folder is missing (an interrupted copy or
    # download), not absent by design: the base's text encoder would silently mix two models.
    repo, _ = sketch_preset_on_disk()
    shutil.rmtree(repo / "checkpoint-2500" / "text_encoder")
    with pytest.raises(ModelLoadError, match="incomplete") as error:
        load_pipeline("modelscope-sketch", device="cpu")
    assert "text_encoder/" in str(error.value) and "\n" not in str(error.value)


def test_unet_override_still_replaces_only_the_unet(sketch_preset_on_disk, tmp_path):
    sketch_preset_on_disk()
    other = FlipSketchPipeline(**build_tiny_components(seed=2))
    other.save_pretrained(tmp_path / "other" / "ckpt")
    pipe = load_pipeline("modelscope-sketch", unet=f"{tmp_path / 'other'}:ckpt")
    assert_same_weights(pipe.unet, other.unet)
    assert_same_weights(pipe.text_encoder, build_tiny_components(seed=1)["text_encoder"])


def test_pickled_weights_need_allow_pickle(tmp_path):
    folder = tmp_path / "pickled"
    FlipSketchPipeline(**build_tiny_components()).save_pretrained(
        folder, safe_serialization=False)
    with pytest.raises(ModelLoadError, match="--allow-pickle"):
        load_pipeline(str(folder))
    assert load_pipeline(str(folder), allow_pickle=True).unet is not None


def test_incomplete_folder_is_one_line(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(ModelLoadError) as error:
        load_pipeline(str(tmp_path))
    assert "\n" not in str(error.value) and "incomplete" in str(error.value)


def make_lora(components: dict, folder, base: str, seed: int = 0):
    """A rank-2 peft LoRA on the UNet's attention projections with non-zero weights."""
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(seed)
    config = LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                        target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    unet = components["unet"]
    inject_adapter_in_model(config, unet, adapter_name="default")
    return save_lora(unet, folder, base_model=base)


def sample(pipe) -> torch.Tensor:
    settings = SamplerSettings(num_frames=3, num_inference_steps=3, align=False)
    return torch.from_numpy(animate(pipe, "a fish", None, settings)[0].frames)


def test_lora_changes_the_output_and_scale_zero_is_the_base(tiny_model_dir, tmp_path):
    adapter = make_lora(build_tiny_components(), tmp_path / "lora", str(tiny_model_dir))
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 2 and config["base_model_name_or_path"] == str(tiny_model_dir)
    base = sample(load_pipeline(str(tiny_model_dir)))
    with_lora = sample(load_pipeline(str(tiny_model_dir), loras=[str(adapter)]))
    scaled_off = sample(load_pipeline(str(tiny_model_dir), loras=[f"{adapter}:0"]))
    assert not torch.allclose(base, with_lora, atol=1e-4)
    torch.testing.assert_close(base, scaled_off)


def test_lora_for_another_base_model_is_a_clear_error(tiny_model_dir, tmp_path):
    from diffusers import UNet3DConditionModel

    components = build_tiny_components()
    components["unet"] = UNet3DConditionModel.from_config(
        {**components["unet"].config, "block_out_channels": (32, 64)})
    adapter = make_lora(components, tmp_path / "wide-lora", "some/other-model")
    with pytest.raises(ModelLoadError, match="some/other-model") as error:
        load_pipeline(str(tiny_model_dir), loras=[str(adapter)])
    assert "\n" not in str(error.value)
