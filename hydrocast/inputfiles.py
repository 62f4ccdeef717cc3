"""Input files shared by the ingest of the cube and of the forecast store: which files a source's
globs match, and the record of a rejected file (one line naming it and what is wrong)."""

from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .config import Config, SourceConfig


@dataclass
class Rejection:
    path: str
    message: str


def expand_paths(cfg: Config, source: SourceConfig) -> list[Path]:
    """The files a source's ``paths`` globs match (sorted, duplicates removed), as resolved
    absolute paths (a symbolic link stands for the file it points to)."""
    seen, out = set(), []
    folders: dict[str, str] = {}
    for pattern in source.paths:
        full = str(cfg.resolve(pattern))
        for p in sorted(glob.glob(full, recursive=True)):
            # Path.resolve() per file costs an lstat per path component: resolve each folder once
            head, name = os.path.split(p)
            if head not in folders:
                folders[head] = os.path.realpath(head)
            rp = os.path.join(folders[head], name)
            try:
                st = os.lstat(rp)
                if stat.S_ISLNK(st.st_mode):
                    rp = os.path.realpath(rp)
                    st = os.stat(rp)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and rp not in seen:
                seen.add(rp)
                out.append(Path(rp))
    return out


def rejection_summary(rejected: list[Rejection], strict: bool = False) -> str:
    head = f"{len(rejected)} input file(s) rejected"
    if strict:
        head += "; --strict: nothing was written"
    return head + ": " + rejected[0].message + (" (and more, see above)" if len(rejected) > 1 else "")
