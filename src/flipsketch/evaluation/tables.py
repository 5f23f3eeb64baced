"""Result tables as files: what ``flipsketch eval ... --csv`` writes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from flipsketch.files import write_text_atomic


def write_csv(rows: list[dict], path: Path, *, force: bool = True) -> None:
    """Write ``rows`` (one column per key of the first row) to ``path`` as CSV.

    The table is built in memory and the file replaced atomically, so a bad row or Ctrl-C
    leaves an earlier table untouched. ``force`` is True because the command checked the path
    before spending minutes sampling; pass False to refuse a file that appeared since.
    """
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(Path(path), buffer.getvalue(), force=force)
