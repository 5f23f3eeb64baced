"""Frame positions in temporal attention: what they change, and that they survive save/load
while a UNet without them (every real ModelScope checkpoint) loads exactly as before."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from flipsketch.models.frame_positions import (
    CONFIG_KEY,
    add_frame_positions,
    load_unet,
    temporal_blocks,
)
from flipsketch.models.tiny import CONFIG_PATH, build_components, export_model, load_config

from testing import build_tiny_components


def _temporal_attention_output(unet, frames: torch.Tensor) -> torch.Tensor:
    """``transformer_in`` alone on (1, c, F, h, w): temporal attention and nothing else."""
    b, c, f, h, w = frames.shape
    flat = frames.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)  # (b*F, c, h, w)
    with torch.no_grad():
        out = unet.transformer_in(flat, num_frames=f).sample  # (b*F, c, h, w)
    return out.reshape(b, f, c, h, w)


def _unet():
    return build_tiny_components()["unet"].eval()


class _Records(logging.Handler):
    """diffusers' loggers do not propagate to the root logger (so pytest's caplog misses
    them): collect their messages with a handler of our own."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self):
        logging.getLogger("diffusers").addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("diffusers").removeHandler(self)


def test_positions_make_temporal_attention_see_frame_order():
    unet = _unet()
    channels = unet.config.block_out_channels[0]
    frames = torch.randn(1, channels, 6, 4, 4)
    order = torch.tensor([5, 4, 3, 2, 1, 0])
    with torch.no_grad():  # a non-zero output projection, so attention reaches the output
        torch.nn.init.normal_(unet.transformer_in.proj_out.weight, std=0.5)

    # Without positions temporal attention is blind to order: reversing the input frames
    # reverses the output frames, nothing else.
    plain = _temporal_attention_output(unet, frames)
    reversed_plain = _temporal_attention_output(unet, frames[:, :, order])
    torch.testing.assert_close(reversed_plain, plain[:, order], atol=1e-5, rtol=1e-5)

    add_frame_positions(unet, 16)
    placed = _temporal_attention_output(unet, frames)
    reversed_placed = _temporal_attention_output(unet, frames[:, :, order])
    assert (reversed_placed - placed[:, order]).abs().max() > 1e-2


def test_tiny_config_round_trips_with_its_frame_positions(tmp_path):
    config = load_config(CONFIG_PATH)
    components = build_components(config)
    unet = components["unet"].eval()
    n_blocks = len(temporal_blocks(unet))
    assert n_blocks > 0
    assert all(block.pos_embed is not None for block in temporal_blocks(unet))
    assert unet.config[CONFIG_KEY] == config["model"]["unet"]["frame_positions"]
    # ModelScope's layout: attention at the highest resolution, none at the lowest.
    assert unet.config.down_block_types[0] == "CrossAttnDownBlock3D"
    assert unet.config.down_block_types[-1] == "DownBlock3D"

    out = export_model(components, tmp_path / "tiny")
    stored = json.loads((out / "unet" / "config.json").read_text())
    assert stored[CONFIG_KEY] == config["model"]["unet"]["frame_positions"]
    # The sinusoids are computed on load, never stored as weights.
    (weights,) = (out / "unet").glob("*.safetensors")
    assert not [k for k in load_file(weights) if "pos_embed" in k]

    loaded = load_unet(out, subfolder="unet", dtype=torch.float32).eval()
    assert len([b for b in temporal_blocks(loaded) if b.pos_embed is not None]) == n_blocks
    video = torch.randn(1, 4, 10, 16, 16)
    text = torch.randn(1, 77, unet.config.cross_attention_dim)
    with torch.no_grad():
        expected = unet(video, 500, encoder_hidden_states=text).sample
        got = loaded(video, 500, encoder_hidden_states=text).sample
    torch.testing.assert_close(got, expected, atol=5e-2, rtol=0)  # fp16 weights on disk
    with torch.no_grad():
        loaded_plain = load_unet(out, subfolder="unet")
        for block in temporal_blocks(loaded_plain):
            block.pos_embed = None  # what forgetting the positions on load would give
        forgot = loaded_plain.float()(video, 500, encoder_hidden_states=text).sample
    assert (forgot - expected).abs().max() > 10 * (got - expected).abs().max()


def test_a_modelscope_layout_without_positions_loads_unchanged(tmp_path):
    unet = _unet()
    unet.save_pretrained(tmp_path / "unet")
    assert CONFIG_KEY not in json.loads((tmp_path / "unet" / "config.json").read_text())

    loaded = load_unet(tmp_path / "unet").eval()
    assert all(block.pos_embed is None for block in temporal_blocks(loaded))
    assert CONFIG_KEY not in loaded.config
    assert loaded.state_dict().keys() == unet.state_dict().keys()
    video = torch.randn(1, 4, 3, 8, 8)
    text = torch.randn(1, 5, unet.config.cross_attention_dim)
    with torch.no_grad():
        assert torch.equal(loaded(video, 10, encoder_hidden_states=text).sample,
                           unet(video, 10, encoder_hidden_states=text).sample)


def test_loading_positions_says_nothing_misleading(tmp_path):
    from diffusers import UNet3DConditionModel

    unet = add_frame_positions(_unet(), 8)
    unet.save_pretrained(tmp_path / "unet")
    with _Records() as plain:
        UNet3DConditionModel.from_pretrained(tmp_path / "unet")
    # diffusers alone warns that frame_positions "will be ignored" (and forgets them) ...
    assert [m for m in plain.messages if CONFIG_KEY in m]
    with _Records() as ours:
        load_unet(tmp_path / "unet")
    # ... while load_unet restores them, so that warning would only mislead.
    assert not [m for m in ours.messages if CONFIG_KEY in m]


def test_positions_need_at_least_one_frame():
    with pytest.raises(ValueError, match="at least 1"):
        add_frame_positions(_unet(), 0)


def test_a_unets_eq_9_calibration_round_trips_quietly(tmp_path):
    """The constant and rule of eq. 9 a UNet was calibrated with (``LAMBDA_SCALE_KEY``,
    ``LAMBDA_RULE_KEY``) live in its config.json: saved, loaded back by ``load_unet`` and read
    by the sampler, without diffusers' 'will be ignored' notice."""
    from flipsketch.plugins import LAMBDA_RULE_KEY, LAMBDA_SCALE_KEY
    from flipsketch.sampler.attention import model_lambda_rule, model_lambda_scale

    unet = _unet()
    # None recorded: the paper's 1/50 on the logit.
    assert (model_lambda_scale(unet), model_lambda_rule(unet)) == (0.02, "logit")
    unet.register_to_config(**{LAMBDA_SCALE_KEY: 0.75, LAMBDA_RULE_KEY: "weight"})
    unet.save_pretrained(tmp_path / "unet")
    with _Records() as ours:
        loaded = load_unet(tmp_path / "unet")
    assert (model_lambda_scale(loaded), model_lambda_rule(loaded)) == (0.75, "weight")
    assert not [m for m in ours.messages if LAMBDA_SCALE_KEY in m or LAMBDA_RULE_KEY in m]
