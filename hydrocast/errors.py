"""Every error that reaches the user: one line, and a distinct exit code (sysexits.h numbers).

This module is the one place that defines error classes and exit codes; the CLI, the README's
exit-code table and the tests read them from here.

| exit | class                | meaning                                                              |
|------|----------------------|----------------------------------------------------------------------|
| 0    |                      | success, also "nothing new to do"                                    |
| 2    |                      | command-line usage error (Click/Typer)                               |
| 65   | BadInputError        | bad input data (corrupt file, wrong variable, tampered artefact, ...) |
| 66   | MissingInputError    | missing input (a file or folder that should exist does not)          |
| 67   | UnknownBasinError    | a basin id that the model / basins file does not know                |
| 70   |                      | internal error (a bug: please report it)                             |
| 73   | OutputError          | cannot create an output (read-only folder, --out is a file, ...)     |
| 74   | DiskFullError        | I/O error writing a file: disk full, quota exceeded, device error    |
| 75   | BusyError            | temporary: another run holds the lock, or the data is not there yet  |
| 78   | ConfigError          | configuration error (hydrocast.toml: unknown key, wrong type, ...)   |
"""

from __future__ import annotations

EX_OK = 0
EX_USAGE = 2
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78

#: exit code -> short meaning (for ``--help``, ``--json`` and the README)
EXIT_CODES = {
    EX_OK: "success (also: nothing new to do)",
    EX_USAGE: "command-line usage error",
    EX_DATAERR: "bad input data",
    EX_NOINPUT: "missing input",
    EX_NOUSER: "unknown basin id",
    EX_SOFTWARE: "internal error",
    EX_CANTCREAT: "cannot create output",
    EX_IOERR: "I/O error (disk full)",
    EX_TEMPFAIL: "busy or data not there yet: retry later",
    EX_CONFIG: "configuration error",
}


class HydrocastError(Exception):
    """Base class: ``str(error)`` is the one-line message, ``exit_code`` the process status."""

    exit_code = EX_SOFTWARE


class BadInputError(HydrocastError):
    """An input file exists but its content is wrong. The message names the file."""

    exit_code = EX_DATAERR


class GridMismatchError(BadInputError):
    """The cube's grid is not the grid the model (or the config) expects."""


class MissingInputError(HydrocastError):
    """An input file or folder does not exist."""

    exit_code = EX_NOINPUT


class UnknownBasinError(HydrocastError):
    """A requested basin id is not in the model or in the basins file."""

    exit_code = EX_NOUSER


class OutputError(HydrocastError):
    """An output cannot be created where it was asked for (read-only, a file in the way, ...)."""

    exit_code = EX_CANTCREAT


class DiskFullError(HydrocastError):
    """Writing a file failed for lack of space (or another device error). The message names the file."""

    exit_code = EX_IOERR


class BusyError(HydrocastError):
    """Another run holds the lock, or the data for the request is not there yet."""

    exit_code = EX_TEMPFAIL


class ConfigError(HydrocastError):
    """hydrocast.toml (or an option) is invalid. The message names the key."""

    exit_code = EX_CONFIG
