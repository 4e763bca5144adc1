"""One module per subcommand: each adds its parser and a pure function tests can call."""

from __future__ import annotations

import argparse
from pathlib import Path


def path(text: str) -> Path:
    """A path argument; an empty one is refused (Path("") would quietly mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a file or folder name")
    return Path(text)
