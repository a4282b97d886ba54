"""What every benchmark does with its markdown table: print it and keep it under bench/results/."""

from __future__ import annotations

from pathlib import Path


def publish(text: str, out: str | Path) -> None:
    """Print `text` and write it to `out` (creating its folder), ending in one newline."""
    text = text.rstrip("\n") + "\n"
    print(text, end="")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text, encoding="utf-8")
