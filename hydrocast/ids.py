"""Basin ids: one rule for every source (artefact, GeoJSON, Shapefile, CSV, ``--basin``).

Ids become parts of file names (``<basin>_<YYYYMMDD>_<model>_hydrograph.nc``), so an id is
1-64 characters of ``A-Z a-z 0-9 _ . -`` that does not start with ``.``: no ``/``, no ``..``
component, no hidden files, nothing a shell or a file system reads specially. Every path built
from an id goes through :func:`id_path`, which checks the id again and that the result stays
inside its folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import BadInputError

ID_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
ID_RULE = "1-64 characters of A-Z a-z 0-9 _ . -, not starting with '.'; ids become file names"


def check_basin_id(value, source, error=BadInputError) -> str:
    """The basin id as a string, or ``error`` naming ``source`` (a file, or an option) and the id."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) and not hasattr(value, "__index__"):
        raise error(f"{source}: basin id {value!r} must be a string")
    s = str(value)
    if not ID_RE.fullmatch(s):  # (not .match: "$" also matches before a final newline)
        raise error(f"{source}: basin id {s!r} is not allowed ({ID_RULE})")
    return s


def id_path(folder: Path, basin_id: str, suffix: str) -> Path:
    """``folder / (basin_id + suffix)``, refusing any id that could leave ``folder``."""
    check_basin_id(basin_id, folder)
    folder = Path(folder)
    p = folder / f"{basin_id}{suffix}"
    if p.parent != folder or "/" in suffix or "\\" in suffix:
        raise BadInputError(f"{folder}: refusing to build a file name from basin id {basin_id!r}")
    return p
