"""``python -m hydrocast``: the same command line, options and exit codes as ``hydrocast``."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
