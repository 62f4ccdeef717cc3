"""ACDD-1.3 discovery attributes, shared by every file hydrocast writes (cube, hydrographs, forecast
maps, hindcasts).

What each attribute says, and why
=================================

============================= ===================================================================
``Conventions``               ``"CF-1.8, ACDD-1.3"``
``title``, ``summary``,       per product (see :mod:`hydrocast.netcdf` and :mod:`hydrocast.cube`);
``keywords``, ``comment``     ``comment`` states the time semantics of the file
``license``                   hydrocast's code is MIT; a data file derives from the input products
                              (IMERG, ESA CCI, the DEM) and the discharge observations used to
                              train, whose licences apply (:data:`DATA_LICENSE`): hydrocast cannot
                              know them, so it does not claim one.
``institution``,              the configured institution, else ``"unknown"`` (hydrocast does not
``creator_name``,             know who runs it); ``creator_type = "institution"``
``creator_institution``
``project``, ``source``,      ``"hydrocast"``, the producing step and version, ``hydrocast <version>``
``product_version``
``history``, ``date_created`` ISO 8601 UTC time of writing
``geospatial_*``              what the data *cover*, in degrees (EPSG:4326): for basin outlets the
                              points themselves; for a grid the outer **edges** of its cells (not
                              the centres), a projected grid's outline transformed (21 points per
                              side). ``geospatial_bounds`` is the same in WKT, latitude first as
                              ACDD's EPSG:4326 default wants (``POINT``/``MULTIPOINT`` for
                              outlets, ``POLYGON`` for a grid).
``time_coverage_*``           the **bounds** of the data's periods: the start of the first UTC day
                              averaged to the end of the last (``time_bnds``), ``duration`` the
                              difference, ``resolution = "P1D"``
``standard_name_vocabulary``  the CF table the standard names were checked against
============================= ===================================================================

compliance-checker's ACDD suite compares ``geospatial_lat/lon_min/max`` with the *centres* of a
grid and ``time_coverage_start/end`` with the first and last time *coordinate* (within an hour).
Coverage here is the extent of the cells and periods, so on a grid the checker reports a
half-cell mismatch, and a one-day mismatch on the side of the day the time coordinate does not
sit on: expected, and left so (Recommended level, not a failure).

Attributes a user can give (``global_attrs`` of the builders and of ``CubeWriter``, e.g.
``creator_email``, ``creator_url``, ``publisher_name``, ``naming_authority``, ``acknowledgement``,
a stricter ``license``) override or extend these.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np

from . import __version__

CONVENTIONS = "CF-1.8, ACDD-1.3"
#: the standard-name table shipped with compliance-checker 6.1, against which the names are tested
STANDARD_NAME_VOCABULARY = "CF Standard Name Table v93"
CODE_LICENSE = "MIT"
DATA_LICENSE = (
    "The hydrocast software that wrote this file is MIT-licensed. The data derive from the input "
    "products (e.g. NASA GPM IMERG precipitation, ESA CCI soil moisture, a digital elevation model) "
    "and the discharge observations used to train the model: their licences and terms of use apply "
    "to this file. hydrocast adds no restriction of its own.")
UNKNOWN = "unknown"
#: points per side of a projected grid's outline when it is transformed to longitude/latitude
OUTLINE_POINTS = 21


def iso_utc(t) -> str:
    """A datetime64 (or anything numpy reads as one) as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return str(np.datetime64(t, "s")) + "Z"


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_duration(delta) -> str:
    """A non-negative timedelta64 as an ISO 8601 duration: ``P7D`` for whole days, else ``PT<s>S``."""
    seconds = int(np.timedelta64(delta, "s").astype("int64"))
    if seconds < 0:
        raise ValueError(f"negative duration {delta}")
    days, rest = divmod(seconds, 86_400)
    if rest == 0:
        return f"P{days}D"
    return f"P{days}DT{rest}S" if days else f"PT{rest}S"


def time_coverage(bounds, resolution: str = "P1D") -> dict:
    """``time_coverage_*`` from the periods' bounds (any shape, datetime64, NaT ignored): start
    = earliest lower bound, end = latest upper bound. Empty dict when there is no period."""
    b = np.asarray(bounds).astype("datetime64[s]")
    b = b[~np.isnat(b)]
    if b.size == 0:
        return {}
    start, end = b.min(), b.max()
    return {"time_coverage_start": iso_utc(start), "time_coverage_end": iso_utc(end),
            "time_coverage_duration": iso_duration(end - start), "time_coverage_resolution": resolution}


def _extent(lon: np.ndarray, lat: np.ndarray) -> dict:
    return {"geospatial_lat_min": float(lat.min()), "geospatial_lat_max": float(lat.max()),
            "geospatial_lon_min": float(lon.min()), "geospatial_lon_max": float(lon.max()),
            "geospatial_lat_units": "degrees_north", "geospatial_lon_units": "degrees_east",
            "geospatial_bounds_crs": "EPSG:4326"}


def point_extent(lon, lat) -> dict:
    """``geospatial_*`` of points (basin outlets, degrees); non-finite positions are left out."""
    lon, lat = np.asarray(lon, dtype="float64").ravel(), np.asarray(lat, dtype="float64").ravel()
    ok = np.isfinite(lon) & np.isfinite(lat)
    lon, lat = lon[ok], lat[ok]
    if lon.size == 0:
        return {}
    pts = [f"{la:.6f} {lo:.6f}" for lo, la in zip(lon, lat)]
    wkt = f"POINT ({pts[0]})" if len(pts) == 1 else "MULTIPOINT (" + ", ".join(f"({p})" for p in pts) + ")"
    return {**_extent(lon, lat), "geospatial_bounds": wkt}


def grid_outline_lonlat(grid) -> tuple[np.ndarray, np.ndarray]:
    """The outer edges of ``grid``'s cells as a closed ring of (lon, lat) points (EPSG:4326),
    counter-clockwise from the south-west corner; ``OUTLINE_POINTS`` per side."""
    from pyproj import Transformer

    west, south, east, north = grid.bounds
    t = np.linspace(0.0, 1.0, OUTLINE_POINTS)[:-1]
    xs = np.concatenate([west + (east - west) * t, np.full(t.size, east), east - (east - west) * t,
                         np.full(t.size, west), [west]])
    ys = np.concatenate([np.full(t.size, south), south + (north - south) * t, np.full(t.size, north),
                         north - (north - south) * t, [south]])
    if grid.crs.to_epsg() == 4326:
        return xs, ys
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    return np.asarray(lon), np.asarray(lat)


def grid_extent(grid) -> dict:
    """``geospatial_*`` of the area ``grid`` covers (its cells' outer edges, in degrees), with the
    cell size on a geographic grid."""
    lon, lat = grid_outline_lonlat(grid)
    if grid.crs.to_epsg() == 4326:  # a rectangle: its four corners say it all
        lon, lat = lon[::OUTLINE_POINTS - 1], lat[::OUTLINE_POINTS - 1]
    ring = ", ".join(f"{la:.6f} {lo:.6f}" for lo, la in zip(lon, lat))
    attrs = {**_extent(lon, lat), "geospatial_bounds": f"POLYGON (({ring}))"}
    if grid.is_geographic:
        dx, dy = grid.res
        attrs["geospatial_lat_resolution"] = f"{dy:g} degrees"
        attrs["geospatial_lon_resolution"] = f"{dx:g} degrees"
    return attrs


def discovery_attrs(*, title: str, summary: str, keywords: str, source: str, processing_level: str,
                    comment: str = "", institution: str | None = None, extent: Mapping | None = None,
                    coverage: Mapping | None = None, id: str | None = None, extra: Mapping | None = None,
                    attrs: Mapping | None = None) -> dict:
    """The global attributes of one file: the ACDD set above, then ``extra`` (the product's own
    attributes, e.g. ``featureType``), then ``attrs`` (the user's, overriding)."""
    now = now_utc()
    who = str(institution) if institution else UNKNOWN
    out = {
        "Conventions": CONVENTIONS,
        "title": title,
        "summary": summary,
        "keywords": keywords,
        "comment": comment,
        "license": DATA_LICENSE,
        "institution": who,
        "creator_name": who,
        "creator_type": "institution",
        "creator_institution": who,
        "project": "hydrocast",
        "source": source,
        "processing_level": processing_level,
        "product_version": __version__,
        "hydrocast_version": __version__,
        "history": f"{now} written by hydrocast {__version__}",
        "date_created": now,
        "standard_name_vocabulary": STANDARD_NAME_VOCABULARY,
    }
    if id:
        out["id"] = id.replace(" ", "_")
    if not comment:
        del out["comment"]
    out.update(extent or {})
    out.update(coverage or {})
    out.update(extra or {})
    out.update({k: v for k, v in (attrs or {}).items() if v is not None})
    return out
