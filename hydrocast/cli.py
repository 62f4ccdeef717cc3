"""The ``hydrocast`` command line: options → config → one call per command → exit code.

No science here. Heavy libraries (torch, xarray, rasterio) are imported inside the commands so
that ``hydrocast --help`` stays instant.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from . import __version__
from .errors import EX_SOFTWARE, HydrocastError

app = typer.Typer(
    name="hydrocast",
    help="Forecast river discharge (hydrographs) and forecast maps from gridded precipitation, "
         "soil moisture and terrain with a ConvLSTM. Exit codes: 0 ok, 2 usage, 65 bad input data, "
         "66 missing input, 70 internal error, 75 busy/try later, 78 bad configuration.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = typer.Option(Path("hydrocast.toml"), "--config", "-c",
                         help="Project file (hydrocast.toml). Relative paths inside it are relative to its folder.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress and no log lines on stderr; errors are still printed.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON summary object on stdout.")


class Console:
    """Log lines and progress on stderr; results on stdout."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty() and not quiet and os.environ.get("TERM") != "dumb"

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    @contextmanager
    def progress(self, description: str):
        """A callback ``cb(event, n)`` driving a rich progress bar on a terminal (no-op in cron)."""
        if not self.tty:
            yield None
            return
        from rich.console import Console as RichConsole
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=RichConsole(stderr=True), transient=True) as bar:
            task = bar.add_task(description, total=None)

            def cb(event: str, n: int = 1) -> None:
                if event == "start":
                    bar.update(task, total=n)
                elif event == "advance":
                    bar.advance(task, n)
                elif event == "describe":
                    bar.update(task, description=str(n))

            yield cb


def fail(exc: BaseException) -> "typer.Exit":
    """Print a one-line error on stderr and turn it into the right exit code."""
    if isinstance(exc, HydrocastError):
        print(f"hydrocast: error: {exc}", file=sys.stderr)
        return typer.Exit(exc.exit_code)
    if os.environ.get("HYDROCAST_DEBUG"):
        raise exc
    print(f"hydrocast: internal error: {type(exc).__name__}: {exc} (set HYDROCAST_DEBUG=1 for a traceback)",
          file=sys.stderr)
    return typer.Exit(EX_SOFTWARE)


@contextmanager
def errors_to_exit_codes():
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - every error leaves as one line and an exit code
        raise fail(exc) from None


def _version(value: bool) -> None:
    if value:
        print(f"hydrocast {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """hydrocast: watch the whole watershed, forecast the river."""


@app.command()
def ingest(
    config: Path = ConfigOpt,
    cube: Optional[Path] = typer.Option(None, "--cube", help="Write this cube instead of [cube] path."),
    strict: bool = typer.Option(False, "--strict", help="Reject the whole run (write nothing) if any input file is bad."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Regrid IMERG precipitation, ESA CCI soil moisture and a DEM onto the grid, into the data cube.

    Reruns append only new days (or days a better IMERG run replaces); a rerun with nothing new
    changes nothing. Bad files are listed and skipped (exit 65), or abort with --strict."""
    con = Console(quiet)
    with errors_to_exit_codes():
        from . import config as config_mod
        from .ingest import ingest as run_ingest

        cfg = config_mod.load(config)
        if cube is not None:
            cfg.cube.path = cube.resolve()
        with con.progress("ingest") as cb:
            result = run_ingest(cfg, strict=strict, progress=cb, log=con.log)
        for r in result.rejected:
            print(f"hydrocast: rejected: {r.message}", file=sys.stderr)
        if json_out:
            print(json.dumps(result.to_json(), indent=None))
        elif result.changed:
            con.log(f"{result.cube}: {result.days_added} day(s) added, {result.days_replaced} replaced, "
                    f"{result.days_total} in all ({result.first_day} .. {result.last_day})")
        else:
            con.log(f"{result.cube}: nothing new ({result.days_total} days, {result.first_day} .. {result.last_day})")
        if result.rejected:
            con.log(f"hydrocast: {len(result.rejected)} file(s) rejected; the good files were ingested")
            raise typer.Exit(65)


@app.command()
def train(
    config: Path = ConfigOpt,
    device: str = typer.Option("auto", "--device", help="auto (a GPU when there is one), cpu, cuda or cuda:N."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default: [train] seed)."),
    deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic algorithms only (slower on GPU)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last completed epoch."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Maximum epochs (default: [train] epochs)."),
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="Write the model here instead of [train] model_dir."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Train the ConvLSTM (and the lumped LSTM baseline) on the cube's gauged basins.

    Early stopping on the validation period; the result is one self-contained model folder
    (safetensors weights + model.json)."""
    con = Console(quiet)
    with errors_to_exit_codes():
        from . import config as config_mod
        from .train import train as run_train

        cfg = config_mod.load(config)
        if model_dir is not None:
            cfg.train.model_dir = model_dir.resolve()
        with con.progress("train") as cb:
            result = run_train(cfg, device=device, seed=seed, deterministic=deterministic, resume=resume,
                               epochs=epochs, progress=cb, log=con.log)
        if json_out:
            print(json.dumps(result.to_json()))
        else:
            con.log(f"{result.model_dir}: validation NSE median {result.validation_nse_median:.3f} "
                    f"(lumped LSTM {result.lumped_validation_nse_median:.3f}), best epoch {result.best_epoch} "
                    f"of {result.epochs_run}, {result.seconds:.0f} s")


@app.command()
def predict(
    config: Path = ConfigOpt,
    basin: list[str] = typer.Option(..., "--basin", "-b",
                                    help="Basin id (repeatable), or 'all' for every basin of the model (or of --basins)."),
    out: Path = typer.Option(Path("forecasts"), "--out", "-o", help="Folder for the NetCDF (and PNG) files."),
    issue_date: Optional[str] = typer.Option(None, "--issue-date",
                                             help="YYYY-MM-DD; default: the latest day the cube can support."),
    basins: Optional[Path] = typer.Option(None, "--basins",
                                          help="Polygons/outlets file of other basins (ungauged prediction)."),
    plot: bool = typer.Option(False, "--plot", help="Also write PNGs of the hydrograph and the maps."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Forecast hydrographs and maps for lead days 1..H after the issue date, as CF NetCDF.

    Exit 67 for an unknown basin id, 75 when the cube cannot support the issue date yet (missing
    days), 65 when the cube's grid is not the model's. Nothing is written on an error."""
    con = Console(quiet)
    with errors_to_exit_codes():
        from . import config as config_mod
        from .predict import predict as run_predict

        cfg = config_mod.load(config)
        ids = ["all"] if "all" in basin else list(dict.fromkeys(basin))
        result = run_predict(cfg, ids, out.resolve(), issue_date=issue_date,
                             basins_path=basins.resolve() if basins else None, plot=plot, log=con.log)
        if json_out:
            print(json.dumps(result.to_json()))
        else:
            for f in result.files:
                print(f)


@app.command()
def evaluate(
    config: Path = ConfigOpt,
    period: Optional[str] = typer.Option(None, "--period", help="START:END (YYYY-MM-DD:YYYY-MM-DD); default [train] test_period."),
    out: Path = typer.Option(Path("evaluation"), "--out", "-o", help="Folder for hindcast.nc and metrics.csv."),
    basins: Optional[Path] = typer.Option(None, "--basins", help="Evaluate these basins instead of the model's."),
    discharge: Optional[Path] = typer.Option(None, "--discharge", help="Observations to score against (default [discharge] path)."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Hindcast every day of a period; score the ConvLSTM against the lumped LSTM, persistence
    and climatology on the same days (NSE, KGE and its parts, bias, RMSE, peak timing)."""
    con = Console(quiet)
    with errors_to_exit_codes():
        from . import config as config_mod
        from .evaluate import evaluate as run_evaluate, render_table

        cfg = config_mod.load(config)
        result = run_evaluate(cfg, period, out.resolve(), basins_path=basins.resolve() if basins else None,
                              discharge_path=discharge.resolve() if discharge else None, log=con.log)
        if json_out:
            print(json.dumps(result.to_json()))
        else:
            from rich.console import Console as RichConsole

            RichConsole(width=110).print(render_table(result))
            print(result.hindcast)
            print(result.metrics_csv)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
