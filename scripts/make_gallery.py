"""docs/gallery/: the shared sketches animated by a model, with and without composition, drawn
by the ``lineart`` and ``binarize`` post-processors, as GIFs and contact sheets.

Each clip is sampled once and post-processed both ways (the CLI would sample it once per
output). README.md lists the equivalent ``flipsketch animate`` commands, and overview.png
puts every drawing's four contact sheets side by side. Rerun whenever the shipped weights
change:

    OMP_NUM_THREADS=2 python scripts/make_gallery.py [--model tiny] [-o docs/gallery]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from flipsketch.api import SamplerSettings, animate, load_pipeline, postprocess, save
from flipsketch.frames.images import load_sketch

ENTRIES = (
    ("fish", "a fish swimming to the right"),
    ("cat", "a cat walking to the left"),
    ("camel", "a camel walking to the right"),
    ("horse", "a surfer riding to the left"),
    ("cloud", "a cloud drifting to the right"),
)
MODES = (("compose", "both"), ("no-compose", "none"))
POSTPROCESSORS = ("lineart", "binarize")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/gallery"))
    parser.add_argument("--sketches", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "sketches")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(args.model)
    commands, rows = [], []
    for name, prompt in ENTRIES:
        sketch = load_sketch(args.sketches / f"{name}.png")
        sheets = []
        for mode, compose in MODES:
            [clip] = animate(pipe, prompt, sketch, SamplerSettings(compose=compose,
                                                                   seed=args.seed))
            for post in POSTPROCESSORS:
                base = out / f"{name}-{mode}-{post}"
                save(postprocess(clip.frames, post, size=256, sketch=sketch),
                     base.with_suffix(".gif"), force=True)
                contact = postprocess(clip.frames, post, size=128, sketch=sketch)
                sheets.append((f"{mode}, {post}",
                               save(contact, base.with_suffix(".contact.png"), force=True)))
                flag = " --no-compose" if compose == "none" else ""
                commands.append(f"flipsketch animate ../shared/sketches/{name}.png \"{prompt}\" "
                                f"--model {args.model} --seed {args.seed}{flag} "
                                f"--postprocessor {post} --size 256 -o {base.name}.gif")
        rows.append((name, prompt, sheets))
        print(f"{name}: done", flush=True)
    (out / "README.md").write_text(
        f"# Gallery: `{args.model}` on the shared sketches\n\n"
        "Each row: the input, then every frame with composition (the method) and with "
        "`--no-compose`, drawn by the `lineart` and `binarize` post-processors; GIFs beside "
        "the contact sheets.\n\n![overview](overview.png)\n\n"
        f"Made by `python scripts/make_gallery.py --model {args.model}` (each clip sampled "
        "once); the same clips from the CLI:\n\n```bash\n" + "\n".join(commands) + "\n```\n")
    _overview(rows, args.sketches, out / "overview.png")


def _overview(rows, sketches: Path, path: Path) -> None:
    """One row per drawing: the input, then its four contact sheets, each labelled."""
    font = ImageFont.load_default(size=14)
    thumbs = []
    for name, prompt, sheets in rows:
        row = [(f"{name}.png (input)", load_sketch(sketches / f"{name}.png"))]
        row += [(label, Image.open(p)) for label, p in sheets]
        thumbs.append((prompt, row))
    height = 240
    scaled = [[(label, _fit(im, height)) for label, im in row] for _, row in thumbs]
    width = max(sum(im.width + 12 for _, im in row) for row in scaled) + 12
    canvas = Image.new("RGB", (width, len(rows) * (height + 46) + 10), "white")
    draw = ImageDraw.Draw(canvas)
    y = 8
    for (prompt, _), row in zip(thumbs, scaled, strict=True):
        draw.text((12, y), f'"{prompt}"', fill="black", font=font)
        x = 12
        for label, im in row:
            canvas.paste(im, (x, y + 20))
            draw.text((x, y + 22 + height), label, fill=(90, 90, 90), font=font)
            x += im.width + 12
        y += height + 46
    canvas.save(path)


def _fit(image: Image.Image, height: int) -> Image.Image:
    rgba = image.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, "white")
    flat = Image.alpha_composite(paper, rgba).convert("RGB")
    return flat.resize((max(1, round(flat.width * height / flat.height)), height),
                       Image.Resampling.LANCZOS)


if __name__ == "__main__":
    main()
