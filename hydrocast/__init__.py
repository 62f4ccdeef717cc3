"""hydrocast: forecast river discharge from maps with a ConvLSTM.

Importing the package imports :mod:`pyproj` first, on purpose (``../shared/design/FORMATS.md``, last bullet
of "NWP precipitation forecasts"): the PyPI ``eccodes`` wheel (its ``eckitlib`` bundles a second PROJ
library) loaded *before* pyproj makes the interpreter abort at exit (``free(): invalid pointer`` /
``double free``, exit 134, or a segfault, 139), and xarray loads eccodes through the cfgrib engine
whenever it lists its backends, i.e. on any ``xarray.open_dataset``. With pyproj loaded first both
coexist. Every hydrocast entry point (the CLI, ``python -m hydrocast``, :mod:`hydrocast.api`, the
readers) imports this module first, so this one line guards them all; ``tests/test_sources_nwp.py``
runs commands in subprocesses and checks their exit codes.
"""

from __future__ import annotations

import pyproj  # noqa: F401  (must stay before anything that can import eccodes: see above)

__version__ = "0.1.0"
