"""The gif, webp, apng, mp4, png-frames and contact-sheet writers (``flipsketch.frames.writers``).

Registered in this order on purpose: of the writers claiming one suffix the first registered
wins, and the built-ins register before any other plugin.
"""

from flipsketch.frames.writers import (
    FOLDER_WRITER,
    write_apng,
    write_contact_sheet,
    write_gif,
    write_mp4,
    write_png_frames,
    write_webp,
)
from flipsketch.plugins import Register, Writer, hookimpl


@hookimpl
def register_writers(register: Register) -> None:
    register("gif", Writer("gif", (".gif",), write_gif))
    register("webp", Writer("webp", (".webp",), write_webp))
    register("apng", Writer("apng", (".png", ".apng"), write_apng))
    register("mp4", Writer("mp4", (".mp4",), write_mp4))
    register(FOLDER_WRITER, Writer(FOLDER_WRITER, (), write_png_frames, folder=True))
    register("contact-sheet", Writer("contact-sheet", (".contact.png",), write_contact_sheet))
