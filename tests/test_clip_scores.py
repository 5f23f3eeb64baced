"""The paper's CLIP scores on tiny random CLIP and X-CLIP models saved like hub folders.

The models are the real transformers classes with a few thousand random weights, saved with
``save_pretrained`` (safetensors) beside a processor and a CLIP tokenizer, and loaded through
the same code as openai/clip-vit-base-patch32 and microsoft/xclip-base-patch32. Random weights
cannot say whether an animation is good; they can say that identical images score exactly 1,
that batching changes nothing and that every input reaches the score.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from flipsketch.errors import ModelLoadError, UsageError
from flipsketch.evaluation import clip_scores

from testing import byte_level_vocab, shared_sketch

NUM_FRAMES = 4  # X-CLIP's fixed clip length in the tiny model (8 in the released ones)
SIZE = 64


def _text_config() -> dict:
    # The byte-level vocabulary of conftest: 512 bytes, then <|startoftext|>, <|endoftext|>.
    # End of text is the largest id, as X-CLIP's pooling (argmax of the ids) needs.
    return dict(vocab_size=514, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=32, bos_token_id=512,
                eos_token_id=513, pad_token_id=513)


def _tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=byte_level_vocab(), merges=[], model_max_length=32)


def _image_processor_args() -> dict:
    return dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A CLIP folder as save_pretrained writes it: config, safetensors, processor, tokenizer."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("scorers") / "tiny-clip"
    model = CLIPModel(CLIPConfig(
        text_config=_text_config(), projection_dim=16,
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=8)))
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=CLIPImageProcessorPil(**_image_processor_args()),
                  tokenizer=_tokenizer()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def xclip_dir(tmp_path_factory):
    """An X-CLIP folder; its image processor is VideoMAE's, as in microsoft/xclip-base-*."""
    import torch
    from transformers import VideoMAEImageProcessorPil, XCLIPConfig, XCLIPModel, XCLIPProcessor

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("scorers") / "tiny-xclip"
    model = XCLIPModel(XCLIPConfig(
        text_config=_text_config(), projection_dim=16, prompt_layers=1,
        prompt_num_attention_heads=2,
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=16,
                           num_frames=NUM_FRAMES, mit_hidden_size=16, mit_intermediate_size=32,
                           mit_num_attention_heads=2)))
    model.save_pretrained(folder)
    processor = VideoMAEImageProcessorPil(**_image_processor_args(),
                                          image_mean=[0.485, 0.456, 0.406],
                                          image_std=[0.229, 0.224, 0.225])
    XCLIPProcessor(image_processor=processor, tokenizer=_tokenizer()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def consistency(clip_dir):
    return clip_scores.load_clip_consistency(str(clip_dir), device="cpu")


@pytest.fixture(scope="module")
def alignment(xclip_dir):
    return clip_scores.load_xclip_alignment(str(xclip_dir), device="cpu")


def _drawing(name: str) -> np.ndarray:
    """A real sketch as the package's frames hold it: (H, W) float32 in [0, 1], 1 = white."""
    from flipsketch.frames.images import images_to_array, load_sketch, to_grey_square

    return images_to_array([to_grey_square(load_sketch(shared_sketch(name)), SIZE)])[0]


def _moving(drawing: np.ndarray, frames: int = 6) -> np.ndarray:
    """(F, H, W): the drawing sliding right 3 px a frame, white paper coming in."""
    clip = [np.pad(drawing, ((0, 0), (3 * k, 0)), constant_values=1.0)[:, :SIZE]
            for k in range(frames)]
    return np.stack(clip)


# -- sketch-to-video consistency -------------------------------------------------------------

def test_frames_identical_to_the_sketch_score_one_and_another_drawing_lower(consistency):
    cat, horse = _drawing("cat.png"), _drawing("horse.png")
    still = np.stack([cat] * 3)
    assert consistency.score(cat, still) == pytest.approx(1.0, abs=1e-5)
    other = consistency.score(cat, np.stack([horse] * 3))
    assert other < 1.0 - 1e-4
    # The score is the mean over the frames, frame 1 included: one frame of the other drawing
    # among two of the sketch counts for a third.
    mixed = consistency.score(cat, np.stack([cat, horse, cat]))
    assert mixed == pytest.approx((2 * 1.0 + other) / 3, abs=1e-5)


def test_pil_frames_score_as_arrays_do_and_transparency_is_white_paper(consistency):
    from flipsketch.frames.images import array_to_images

    cat = _drawing("cat.png")
    frames = _moving(cat)
    as_arrays = consistency.score(cat, frames)
    sketch = array_to_images(cat[None])[0]
    assert consistency.score(sketch, array_to_images(frames)) == pytest.approx(as_arrays,
                                                                               abs=1e-6)
    # The same drawing as black ink on a transparent layer: laid on white, it is the sketch.
    ink = Image.new("LA", sketch.size, (0, 0))
    ink.putalpha(Image.eval(sketch, lambda v: 255 - v))
    assert consistency.score(ink, np.stack([cat])) == pytest.approx(1.0, abs=1e-5)


def test_score_many_equals_scoring_one_by_one(consistency, monkeypatch):
    cat = _drawing("cat.png")
    animations = [_moving(cat, 3), np.stack([_drawing("horse.png")] * 2), _moving(cat, 5)]
    one_by_one = [consistency.score(cat, frames) for frames in animations]
    monkeypatch.setattr(clip_scores, "BATCH_IMAGES", 4)  # several passes, split mid-animation
    assert consistency.score_many(cat, animations) == pytest.approx(one_by_one, abs=1e-5)
    assert len(set(one_by_one)) == 3
    assert consistency.score_many(cat, []) == []


# -- text-to-video alignment -----------------------------------------------------------------

def test_xclip_alignment_is_a_deterministic_cosine_that_reads_prompt_and_frames(alignment):
    assert alignment.num_frames == NUM_FRAMES
    cat = _drawing("cat.png")
    clip = _moving(cat, 10)
    score = alignment.score("a cat walking to the right", clip)
    assert -1.0 <= score <= 1.0
    assert alignment.score("a cat walking to the right", clip) == score
    assert alignment.score("a horse galloping", clip) != pytest.approx(score, abs=1e-6)
    assert alignment.score("a cat walking to the right",
                           np.stack([_drawing("horse.png")] * 10)) != pytest.approx(score,
                                                                                    abs=1e-6)


def test_xclip_score_many_equals_one_by_one(alignment, monkeypatch):
    cat, horse = _drawing("cat.png"), _drawing("horse.png")
    # Different lengths (3 frames repeats some, 10 skips some) and prompts of different
    # token lengths, which the batch pads.
    prompts = ["a cat", "a horse galloping across the page", "a cat walking to the right"]
    animations = [_moving(cat, 3), np.stack([horse] * 10), _moving(cat, 10)]
    one_by_one = [alignment.score(p, a) for p, a in zip(prompts, animations, strict=True)]
    monkeypatch.setattr(clip_scores, "BATCH_IMAGES", 2 * NUM_FRAMES)  # passes of 2 videos
    assert alignment.score_many(prompts, animations) == pytest.approx(one_by_one, abs=1e-5)
    with pytest.raises(ValueError, match="2 prompts for 1 animations"):
        alignment.score_many(["a", "b"], [animations[0]])


def test_frames_are_sampled_evenly_first_and_last_included():
    frames = list(range(10))
    assert clip_scores.sample_frames(frames, 4) == [0, 3, 6, 9]
    assert clip_scores.sample_frames(frames, 8) == [0, 1, 3, 4, 5, 6, 8, 9]
    assert clip_scores.sample_frames([0, 1, 2], 4) == [0, 1, 1, 2]


# -- loading ---------------------------------------------------------------------------------

def test_a_name_that_is_no_folder_and_no_hub_id_fails_before_loading(tmp_path):
    with pytest.raises(UsageError, match="--clip '.*no-clip': no such folder"):
        clip_scores.load_clip_consistency(str(tmp_path / "no-clip"))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(UsageError, match="is a file"):
        clip_scores.load_xclip_alignment(str(tmp_path / "weights.bin"))


def test_an_offline_hub_id_names_the_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as error:
        clip_scores.load_clip_consistency("flipsketch-tests/no-such-clip", device="cpu")
    message = str(error.value)
    assert "\n" not in message and "hf download flipsketch-tests/no-such-clip" in message


def test_a_model_of_the_other_kind_is_refused_not_loaded_with_random_weights(clip_dir,
                                                                            xclip_dir):
    with pytest.raises(ModelLoadError, match="is a 'clip' model, not 'xclip'"):
        clip_scores.load_xclip_alignment(str(clip_dir), device="cpu")
    with pytest.raises(ModelLoadError, match="is a 'xclip' model, not 'clip'"):
        clip_scores.load_clip_consistency(str(xclip_dir), device="cpu")


def test_pickled_weights_load_only_when_allowed(clip_dir, consistency, tmp_path):
    import shutil

    import torch
    from transformers import CLIPModel

    folder = tmp_path / "pickled"
    shutil.copytree(clip_dir, folder)
    state = CLIPModel.from_pretrained(clip_dir).state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="no safetensors weights.*--allow-pickle"):
        clip_scores.load_clip_consistency(str(folder), device="cpu")
    pickled = clip_scores.load_clip_consistency(str(folder), device="cpu", allow_pickle=True)
    cat = _drawing("cat.png")
    frames = _moving(cat)
    assert pickled.score(cat, frames) == pytest.approx(consistency.score(cat, frames), abs=1e-6)


# -- the CLI ---------------------------------------------------------------------------------

def _one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def test_eval_fidelity_reports_the_paper_scores(cli, clip_dir, xclip_dir, tmp_path):
    cat = _drawing("cat.png")
    sketch = tmp_path / "cat.png"
    Image.fromarray(np.uint8(cat * 255)).save(sketch)
    frames = tmp_path / "frames"
    frames.mkdir()
    for k, frame in enumerate(np.stack([cat] * 3)):
        Image.fromarray(np.uint8(frame * 255)).save(frames / f"{k:03d}.png")
    scorers = ("--clip", str(clip_dir), "--xclip", str(xclip_dir), "--device", "cpu")
    result = cli("eval", "fidelity", str(sketch), str(frames), "--size", str(SIZE),
                 "--prompt", "a cat sitting still", *scorers, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["s2v_consistency"] == pytest.approx(1.0, abs=1e-5)  # the sketch, 3 times
    assert -1 <= report["t2v_alignment"] <= 1
    assert "sketch-to-video consistency 1.000" in result.stderr

    line = _one_line_error(cli("eval", "fidelity", str(sketch), str(frames), *scorers))
    assert "--prompt" in line


def test_eval_ablate_prints_table_1_with_the_paper_numbers(cli, tiny_model_dir, clip_dir,
                                                           xclip_dir, tmp_path):
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    (sketches / "cat.png").write_bytes(shared_sketch("cat.png").read_bytes())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a {subject} moving to the left\n")
    result = cli("eval", "ablate", str(sketches), str(prompts), "--model", str(tiny_model_dir),
                 "--seeds", "0", "--steps", "2", "--frames", "3", "--device", "cpu",
                 "--clip", str(clip_dir), "--xclip", str(xclip_dir), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["clip"], report["xclip"]) == (str(clip_dir), str(xclip_dir))
    rows = {row["config"]: row for row in report["rows"]}
    for row in rows.values():
        assert 0 < row["s2v_consistency"] <= 1 + 1e-6 and -1 <= row["t2v_alignment"] <= 1
    full = rows["full (lambda 0.5)"]
    assert (full["paper_row"], full["paper_s2v_consistency"], full["paper_t2v_alignment"]) \
        == ("Ours", 0.956, 0.172)
    assert rows["w/o C^T & C^S"]["paper_s2v_consistency"] == 0.876
    assert rows["naive baseline"]["paper_row"] is None  # not a row of the paper's table
    # The paper's numbers stand beside rows sampled as the paper; the toolkit's have none.
    assert full["sampler"] == "paper"
    toolkit = rows["toolkit: full (lambda 0.5)"]
    assert toolkit["sampler"] == "toolkit" and toolkit["paper_s2v_consistency"] is None
    assert toolkit["s2v_consistency"] != full["s2v_consistency"]
    assert report["paper_table_1"]["Live-Sketch"]["t2v_alignment"] == 0.142
    table = result.stderr
    for words in ("S2V consistency", "T2V alignment", "0.956", "0.172", "0.968", "Live-Sketch",
                  f"{full['s2v_consistency']:.3f}", f"{full['t2v_alignment']:.3f}"):
        assert words in table, table
    assert "--clip" not in table  # both measured: no hint to pass them


def test_eval_sketch_scores_every_clip(cli, tiny_model_dir, clip_dir, tmp_path):
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    (sketches / "cat.png").write_bytes(shared_sketch("cat.png").read_bytes())
    result = cli("eval", "sketch", str(sketches), "--model", str(tiny_model_dir), "--seeds",
                 "0,1", "--steps", "2", "--frames", "3", "--device", "cpu", "--clip",
                 str(clip_dir), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    scores = [case["s2v_consistency"] for case in report["cases"]]
    assert len(scores) == 8 and all(0 < s <= 1 + 1e-6 for s in scores)  # 4 prompts x 2 seeds
    assert report["s2v_consistency"] == pytest.approx(np.mean(scores))
    assert report["t2v_alignment"] is None  # no --xclip
    assert "S2V consistency" in result.stderr


def test_eval_ablate_refuses_a_missing_scorer_before_loading_anything(cli, tmp_path):
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    Image.new("L", (SIZE, SIZE), 255).save(sketches / "blank.png")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a {subject}\n")
    # The video model does not exist either: reaching its loader would fail differently.
    no_model = ("--model", str(tmp_path / "no-model"))
    for option in ("--clip", "--xclip"):
        line = _one_line_error(cli("eval", "ablate", str(sketches), str(prompts), *no_model,
                                   option, str(tmp_path / "no-scorer")))
        assert f"{option} '" in line and "no-scorer" in line and "no such folder" in line



def test_best_of_k_ranks_by_clip_consistency_with_rank_model(cli, clip_dir, consistency,
                                                             tiny_model_dir, tmp_path):
    """``animate --keep J --rank-model CLIP``: the scores are the CLIP consistency of each
    sample against the drawing as the sampler framed it."""
    from flipsketch.api import SamplerSettings, animate, load_pipeline, prepare_sketch

    sketch = shared_sketch("cat.png")
    result = cli("animate", str(sketch), "a cat", "--model", str(tiny_model_dir),
                 "--samples", "3", "--keep", "1", "--rank-model", str(clip_dir), "--seed", "2",
                 "--steps", "2", "--frames", "3", "--size", "32", "-o", str(tmp_path / "c.gif"),
                 "--json")
    assert result.returncode == 0, result.stderr
    ranking = json.loads(result.stdout)["ranking"]
    assert ranking["by"] == f"clip:{clip_dir}"
    pipe = load_pipeline(str(tiny_model_dir), device="cpu")
    clips = animate(pipe, "a cat", sketch, SamplerSettings(
        num_frames=3, num_inference_steps=2, seed=2, samples=3))
    reference = prepare_sketch(sketch, pipe.model_resolution).numpy()
    own = {c.seed: consistency.score(reference, c.frames) for c in clips}
    assert {s["seed"]: round(s["score"], 5) for s in ranking["samples"]} == {
        seed: round(score, 5) for seed, score in own.items()}
    assert ranking["samples"][0]["score"] == max(s["score"] for s in ranking["samples"])
    assert [p.name for p in tmp_path.iterdir()] == ["c-1.gif"]
