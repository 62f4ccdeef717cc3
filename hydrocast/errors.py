"""Errors that reach the user as one line and a distinct exit code (sysexits.h numbers).

| exit | meaning                                                            |
|------|--------------------------------------------------------------------|
| 0    | success, also "nothing new to do"                                  |
| 2    | command-line usage error (Click/Typer)                             |
| 65   | bad input data (corrupt file, wrong variable, wrong units, ...)    |
| 66   | missing input (a file or folder that should exist does not)        |
| 70   | internal error (a bug: please report it)                           |
| 75   | temporary failure: another run holds the lock, data not there yet  |
| 78   | configuration error (hydrocast.toml: unknown key, wrong type, ...) |
"""

from __future__ import annotations

EX_OK = 0
EX_USAGE = 2
EX_DATAERR = 65
EX_NOINPUT = 66
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78


class HydrocastError(Exception):
    """Base class: ``str(error)`` is the one-line message, ``exit_code`` the process status."""

    exit_code = EX_SOFTWARE


class BadInputError(HydrocastError):
    """An input file exists but its content is wrong. The message names the file."""

    exit_code = EX_DATAERR


class MissingInputError(HydrocastError):
    """An input file or folder does not exist."""

    exit_code = EX_NOINPUT


class BusyError(HydrocastError):
    """Another run holds the lock, or the data for the request is not there yet."""

    exit_code = EX_TEMPFAIL


class ConfigError(HydrocastError):
    """hydrocast.toml (or an option) is invalid. The message names the key."""

    exit_code = EX_CONFIG
