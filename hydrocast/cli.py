"""The ``hydrocast`` command line: options → config → one call per command → exit code.

No science here. Heavy libraries (torch, xarray, rasterio) are imported inside the commands so
that ``hydrocast --help`` stays instant. ``python -m hydrocast`` runs the same :func:`main`.

Exit codes come from :data:`hydrocast.errors.EXIT_CODES` (the top-level ``--help`` lists them).

``--json``: every run prints exactly one JSON object (one line) on stdout, also on an error
(usage errors included, exit 2). Its first keys are the same for every command:

================== =====================================================================
``schema_version`` :data:`JSON_SCHEMA_VERSION` (bumped when a key changes meaning or goes)
``command``        ``ingest``, ``train``, ``predict``, ``evaluate``, ``init`` (null when the
                   command line names none)
``ok``             true when the command did all it was asked (exit code 0)
``exit_code``      the process's exit status
``hydrocast_version``
``model_id``       first 8 hex digits of the model weights' SHA-256 (null where no model is
                   involved or the run failed before reaching it)
``error``          only when ``ok`` is false: the one-line message (also printed on stderr)
================== =====================================================================

followed by the command's own summary (``result.to_json()``) when it got that far.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from . import __version__
from .errors import EX_SOFTWARE, EXIT_CODES, DiskFullError, HydrocastError, OutputError

#: Version of the ``--json`` objects' layout (see the module docstring).
JSON_SCHEMA_VERSION = 1

# Click's base exception (usage errors, bad parameters). Typer >= 0.23 vendors its own copy of
# Click, so it is found through an exception Typer exports rather than imported from ``click``.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def exit_codes_help() -> str:
    """The exit-code block of ``hydrocast --help``, made from :data:`EXIT_CODES`."""
    return "\b\nExit codes:\n" + "\n".join(f"  {code:<3} {meaning}" for code, meaning in EXIT_CODES.items())


def examples(*lines: str) -> str:
    """A help epilog: ``Examples:`` and the command lines, kept as written (``\\b``)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


# -- the one --json object ------------------------------------------------------------------------

def json_object(command: str | None, *, exit_code: int = 0, error: str | None = None,
                model_id: str | None = None, summary: dict | None = None) -> dict:
    """The ``--json`` object: the common keys (module docstring), then ``summary``'s (a summary's own
    ``model_id`` stands in for a missing ``model_id``)."""
    summary = summary or {}
    if model_id is None:
        model_id = summary.get("model_id")
    obj: dict[str, Any] = {"schema_version": JSON_SCHEMA_VERSION, "command": command, "ok": exit_code == 0,
                           "exit_code": exit_code, "hydrocast_version": __version__, "model_id": model_id}
    if error is not None:
        obj["error"] = error
    for k, v in summary.items():
        obj.setdefault(k, v)
    return obj


def print_json(obj: dict) -> None:
    from .jsonutil import jsonable

    print(json.dumps(jsonable(obj), default=str, allow_nan=False), flush=True)


class HydrocastGroup(TyperGroup):
    """The app's command group: with ``--json``, a usage error (exit 2) also prints its object."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(args=argv, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        try:
            rc = super().main(args=argv, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
        except _ClickException as exc:
            if "--json" in argv:
                ctx = getattr(exc, "ctx", None)
                command = ctx.info_name if ctx is not None and ctx.parent is not None else None
                print_json(json_object(command, exit_code=exc.exit_code, error=exc.format_message()))
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            print("Aborted!", file=sys.stderr)
            sys.exit(1)
        sys.exit(rc if isinstance(rc, int) else 0)


app = typer.Typer(
    name="hydrocast",
    cls=HydrocastGroup,
    help="Forecast river discharge (hydrographs) and forecast maps from gridded precipitation, "
         "soil moisture and terrain with a ConvLSTM.\n\n"
         "Every command reads the project file hydrocast.toml (--config; `hydrocast init` writes "
         "one to start from). Logs go to stderr, results to stdout; --json prints one JSON object, "
         "also on an error.\n\n" + exit_codes_help(),
    epilog=examples(
        "hydrocast init                                    # write ./hydrocast.toml to edit",
        "hydrocast ingest -c sample_data/hydrocast.toml    # then train, predict, evaluate",
        "hydrocast predict --help                          # every option of a command",
        "hydrocast --install-completion                    # tab completion for your shell",
    ),
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,  # plain help: rich markup ate "[train]" and gave flags a <bool> metavar
    pretty_exceptions_enable=False,
)

ConfigOpt = typer.Option(Path("hydrocast.toml"), "--config", "-c", metavar="PATH",
                         help="Project file (hydrocast.toml). Relative paths inside it are relative to its folder.")
QuietOpt = typer.Option(False, "--quiet", "-q",
                        help="No progress and no log lines on stderr; errors are still printed.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object on stdout: the summary, or the error and "
                                             "exit code.")

CFG = "sample_data/hydrocast.toml"  # the examples run from the repository root after scripts/sample-run.sh


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
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

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


def describe_error(exc: BaseException) -> tuple[int, str, str]:
    """(exit code, one-line message, stderr line) of an error that ends a command."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        # a disk-full error that no stage turned into a DiskFullError: still name the file
        where = f"{exc.filename}: " if exc.filename else ""
        exc = DiskFullError(f"{where}disk full ({exc.strerror or os.strerror(exc.errno)})")
    if isinstance(exc, HydrocastError):
        msg = " ".join(str(exc).splitlines())
        return exc.exit_code, msg, f"hydrocast: error: {msg}"
    if os.environ.get("HYDROCAST_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)
    msg = " ".join(f"internal error: {type(exc).__name__}: {exc}".splitlines())
    return EX_SOFTWARE, msg, f"hydrocast: {msg} (set HYDROCAST_DEBUG=1 for a traceback)"


class Run:
    """One command's run: its console and the one ``--json`` object it prints (:meth:`finish`)."""

    def __init__(self, command: str, quiet: bool, json_out: bool):
        self.command = command
        self.json_out = json_out
        self.con = Console(quiet)
        self.printed = False

    def finish(self, result: Any = None, *, exit_code: int = 0, error: str | None = None) -> None:
        """Print the ``--json`` object (once per run), then leave with ``exit_code`` if not 0."""
        if self.json_out and not self.printed:
            self.printed = True
            summary = result.to_json() if result is not None and hasattr(result, "to_json") else result
            print_json(json_object(self.command, exit_code=exit_code, error=error,
                                   model_id=getattr(result, "model_id", None), summary=summary))
        if exit_code:
            raise typer.Exit(exit_code)


@contextmanager
def command_run(command: str, quiet: bool, json_out: bool) -> Iterator[Run]:
    """Run a command's body: any error leaves as one line on stderr, its exit code and, with
    ``--json``, one object on stdout."""
    run = Run(command, quiet, json_out)
    try:
        yield run
    except (typer.Exit, typer.Abort, KeyboardInterrupt, _ClickException):
        raise
    except Exception as exc:  # noqa: BLE001 - every error leaves as one line and an exit code
        code, msg, line = describe_error(exc)
        print(line, file=sys.stderr, flush=True)
        run.finish(exit_code=code, error=msg)


def _version(value: bool) -> None:
    if value:
        print(f"hydrocast {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """hydrocast: watch the whole watershed, forecast the river."""


@app.command(epilog=examples(
    "hydrocast init                          # ./hydrocast.toml",
    "hydrocast init projects/rhine/hydrocast.toml",
    "hydrocast init --force                  # replace an existing file",
))
def init(
    path: Path = typer.Argument(Path("hydrocast.toml"), metavar="PATH", show_default=False,
                                help="File to write (default: ./hydrocast.toml)."),
    force: bool = typer.Option(False, "--force", help="Overwrite PATH if it exists."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Write a commented hydrocast.toml to start from: every section and key with its meaning.

    Its live lines are a valid example (edit the paths, grid and periods); the optional keys are
    commented out at their default. An existing file is left alone (exit 73) unless --force."""
    with command_run("init", quiet, json_out) as run:
        from .config import starter_toml
        from .fsio import atomic_write_text

        target = path.expanduser().absolute()
        existed = target.exists() or target.is_symlink()
        if target.is_dir():
            raise OutputError(f"{target}: is a folder; give the file to write, e.g. {target / 'hydrocast.toml'}")
        if existed and not force:
            raise OutputError(f"{target}: already exists; not overwritten (--force replaces it)")
        try:  # disk full, read-only: DiskFullError / OutputError from fsio already
            atomic_write_text(target, starter_toml())
        except OSError as exc:  # e.g. a part of the path is a file
            raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
        run.con.log(f"hydrocast: wrote {target}; edit it, then: hydrocast ingest --config {path}")
        run.finish({"path": str(target), "overwritten": existed})


@app.command(epilog=examples(
    f"hydrocast ingest --config {CFG}",
    f"hydrocast ingest -c {CFG} --strict --quiet --json >> ingest.jsonl",
    f"hydrocast ingest -c {CFG} --cube work/sample/other-cube.nc",
    f"hydrocast ingest -c {CFG} --workers 4          # tiles read on a local cluster of 4 processes",
    f"hydrocast ingest -c {CFG} --scheduler tcp://10.0.0.5:8786   # on a running dask cluster",
))
def ingest(
    config: Path = ConfigOpt,
    cube: Path | None = typer.Option(None, "--cube", metavar="PATH", help="Write this cube instead of [cube] path."),
    strict: bool = typer.Option(False, "--strict",
                                help="Reject the whole run (write nothing) if any input file is bad."),
    workers: int = typer.Option(1, "--workers", min=1, metavar="N",
                                help="Read and regrid the new days as tiles ([cube] tile_cells) on a local dask "
                                     "cluster of N processes (one thread each); 1: in this process, as without "
                                     "the option."),
    scheduler: str | None = typer.Option(None, "--scheduler", metavar="ADDRESS",
                                         help="Run the tiles on the dask cluster whose scheduler is at ADDRESS "
                                              "(e.g. tcp://10.0.0.5:8786; its workers need this hydrocast)."),
    worker_memory: str = typer.Option("2GiB", "--worker-memory", metavar="SIZE",
                                      help="Memory limit of each --workers process (dask pauses a worker at 80 %, "
                                           "restarts it at 95 %)."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Regrid IMERG precipitation, ESA CCI soil moisture and a DEM onto the grid, into the data cube.

    Reruns append only new days (or days a better IMERG run replaces); a rerun with nothing new
    changes nothing. Bad files are listed and skipped (exit 65), or abort with --strict. With
    --workers N (N > 1) or --scheduler, the reading and regridding run as tasks (source x
    chunk_days days x spatial tile) on dask workers; this process plans, writes and commits, and
    the cube is the same."""
    if workers > 1 and scheduler:
        raise typer.BadParameter("give --workers N or --scheduler ADDRESS, not both", param_hint="--workers")
    if workers > 1 or scheduler:
        from dask.utils import parse_bytes

        try:
            parse_bytes(worker_memory)
        except (ValueError, TypeError):
            raise typer.BadParameter(f"not a size: {worker_memory!r} (e.g. 2GiB, 4GB)",
                                     param_hint="--worker-memory") from None
    if scheduler:
        from distributed.comm import parse_address

        try:
            parse_address(scheduler if "://" in scheduler else f"tcp://{scheduler}")
        except ValueError as exc:
            raise typer.BadParameter(f"not a scheduler address: {scheduler!r} ({exc})",
                                     param_hint="--scheduler") from None
    with command_run("ingest", quiet, json_out) as run:
        from . import config as config_mod

        cfg = config_mod.load(config)
        from .ingest import ingest as run_ingest

        if cube is not None:
            cfg.cube.path = cube.resolve()
        con = run.con
        with con.progress("ingest") as cb:
            if workers > 1 or scheduler:
                from .ingest_dask import ingest as run_on_cluster

                result = run_on_cluster(cfg, workers=workers, scheduler=scheduler, memory_limit=worker_memory,
                                        strict=strict, progress=cb, log=con.log)
            else:
                result = run_ingest(cfg, strict=strict, progress=cb, log=con.log)
        for r in result.rejected:
            print(f"hydrocast: rejected: {r.message}", file=sys.stderr)
        if not json_out:
            if result.changed:
                con.log(f"{result.cube}: {result.days_added} day(s) added, {result.days_replaced} replaced, "
                        f"{result.days_total} in all ({result.first_day} .. {result.last_day})")
            else:
                con.log(f"{result.cube}: nothing new ({result.days_total} days, "
                        f"{result.first_day} .. {result.last_day})")
        if result.rejected:
            msg = f"{len(result.rejected)} file(s) rejected; the good files were ingested"
            con.log(f"hydrocast: {msg}")
            run.finish(result, exit_code=65, error=msg)
        run.finish(result)


@app.command(epilog=examples(
    f"hydrocast train --config {CFG}",
    f"hydrocast train -c {CFG} --device cpu --seed 1 --deterministic",
    f"hydrocast train -c {CFG} --resume             # after an interrupted run",
    f"hydrocast train -c {CFG} --epochs 5 --model-dir work/sample/model-quick",
))
def train(
    config: Path = ConfigOpt,
    device: str = typer.Option("auto", "--device", metavar="DEVICE",
                               help="auto (a GPU when there is one), cpu, cuda or cuda:N."),
    seed: int | None = typer.Option(None, "--seed", metavar="N", help="Random seed (default: [train] seed)."),
    deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic algorithms only (slower on GPU)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last completed epoch."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, metavar="N",
                                         help="Maximum epochs (default: [train] epochs)."),
    model_dir: Path | None = typer.Option(None, "--model-dir", metavar="PATH",
                                             help="Write the model here instead of [train] model_dir."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Train the ConvLSTM (and the lumped LSTM baseline) on the cube's gauged basins.

    Early stopping on the validation period ([train] validation_period); the result is one
    self-contained model folder (safetensors weights + model.json). Multi-process:
    torchrun --nproc-per-node N -m hydrocast train ... (rank 0 logs, prints and writes)."""
    from . import distributed

    if not distributed.is_main():  # torchrun: the other processes print nothing but their errors
        quiet, json_out = True, False
    with command_run("train", quiet, json_out) as run:
        from . import config as config_mod

        cfg = config_mod.load(config)
        from .train import train as run_train

        if model_dir is not None:
            cfg.train.model_dir = model_dir.resolve()
        con = run.con
        with con.progress("train") as cb:
            result = run_train(cfg, device=device, seed=seed, deterministic=deterministic, resume=resume,
                               epochs=epochs, progress=cb, log=con.log)
        if not json_out:
            con.log(f"{result.model_dir}: validation NSE median {result.validation_nse_median:.3f} "
                    f"(lumped LSTM {result.lumped_validation_nse_median:.3f}), best epoch {result.best_epoch} "
                    f"of {result.epochs_run}, {result.seconds:.0f} s")
        run.finish(result)


@app.command(epilog=examples(
    f"hydrocast predict -c {CFG} --basin PT01 --out work/sample/forecasts --plot",
    f"hydrocast predict -c {CFG} --basin PT01 --basin PT02 --issue-date 2020-06-30 --out work/sample/forecasts",
    f"hydrocast predict -c {CFG} --basins sample_data/basins/ungauged.geojson --basin all "
    "--out work/sample/forecasts   # ungauged",
    f"hydrocast predict -c {CFG} --basin all --out work/sample/forecasts --quiet --json",
))
def predict(
    config: Path = ConfigOpt,
    basin: list[str] = typer.Option(..., "--basin", "-b", metavar="ID",
                                    help="Basin id (repeatable), or 'all' for every basin of the model "
                                         "(or of --basins)."),
    out: Path = typer.Option(Path("forecasts"), "--out", "-o", metavar="FOLDER",
                             help="Folder for the NetCDF (and PNG) files."),
    issue_date: str | None = typer.Option(None, "--issue-date", metavar="YYYY-MM-DD",
                                             help="Issue date; default: the latest day the cube can support."),
    basins: Path | None = typer.Option(None, "--basins", metavar="PATH",
                                          help="Polygons/outlets file of other basins (ungauged prediction); "
                                               "default: the model's basins."),
    plot: bool = typer.Option(False, "--plot", help="Also write PNGs of the hydrograph and the maps."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Forecast hydrographs and maps for lead days 1..H after the issue date, as CF NetCDF.

    The model is [train] model_dir, the cube [cube] path. Exit 67 for an unknown basin id, 75
    when the cube cannot support the issue date yet (missing days), 65 when the cube's grid is not
    the model's. Nothing is written on an error."""
    with command_run("predict", quiet, json_out) as run:
        from . import config as config_mod

        cfg = config_mod.load(config)
        from .predict import predict as run_predict

        ids = ["all"] if "all" in basin else list(dict.fromkeys(basin))
        result = run_predict(cfg, ids, out.resolve(), issue_date=issue_date,
                             basins_path=basins.resolve() if basins else None, plot=plot, log=run.con.log)
        if not json_out:
            for f in result.files:
                print(f)
        run.finish(result)


@app.command(epilog=examples(
    f"hydrocast evaluate --config {CFG} --out work/sample/evaluation",
    f"hydrocast evaluate -c {CFG} --period 2020-01-01:2020-06-30 --out work/sample/evaluation-h1",
    f"hydrocast evaluate -c {CFG} --out work/sample/evaluation --quiet --json",
    f"hydrocast evaluate -c {CFG} --seeds 0,1,2,3 --out work/sample/seeds   # the seed spread (4 trainings)",
))
def evaluate(
    config: Path = ConfigOpt,
    period: str | None = typer.Option(None, "--period", metavar="START:END",
                                         help="YYYY-MM-DD:YYYY-MM-DD; default [train] test_period."),
    out: Path = typer.Option(Path("evaluation"), "--out", "-o", metavar="FOLDER",
                             help="Folder for hindcast.nc and metrics.csv."),
    basins: Path | None = typer.Option(None, "--basins", metavar="PATH",
                                          help="Evaluate these basins instead of the model's."),
    discharge: Path | None = typer.Option(None, "--discharge", metavar="PATH",
                                             help="Observations to score against (default [discharge] path)."),
    kfold: int | None = typer.Option(None, "--kfold", metavar="K", min=2,
                                     help="Ungauged skill instead: train K ConvLSTM + lumped LSTM pairs, each on "
                                          "K-1 folds of the basins, and score every held-out basin as ungauged "
                                          "(writes kfold.csv; the models under <out>/kfold/)."),
    seeds: str | None = typer.Option(None, "--seeds", metavar="S,S,...",
                                     help="Seed spread instead: train one ConvLSTM + lumped LSTM pair per seed "
                                          "(e.g. 0,1,2,3) and score each on the validation period and --period "
                                          "(writes seeds.csv and seeds_summary.csv; the models under "
                                          "<out>/seeds/)."),
    device: str = typer.Option("auto", "--device", help="With --kfold or --seeds: auto, cpu, cuda or cuda:N."),
    quiet: bool = QuietOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Hindcast every day of a period; score the ConvLSTM against the lumped LSTM, persistence
    and climatology on the same days (NSE, KGE and its parts, bias, RMSE, peak timing), and the
    forecast distributions (CRPS, CRPSS, interval coverage, PIT, warnings at the thresholds), with
    a basin-by-basin paired comparison of the ConvLSTM and the lumped LSTM."""
    with command_run("evaluate", quiet, json_out) as run:
        from . import config as config_mod

        cfg = config_mod.load(config)
        if seeds is not None:
            if kfold is not None or basins is not None or discharge is not None:
                raise typer.BadParameter("--seeds retrains on the config's basins: no --kfold/--basins/--discharge")
            from .seeds import parse_seeds, run_seeds
            from .seeds import render_table as render_seeds

            res = run_seeds(cfg, parse_seeds(seeds), period, out.resolve(), device=device, log=run.con.log)
            _finish_with_table(run, json_out, res, render_seeds, width=130)
            return
        if kfold is not None:
            if basins is not None or discharge is not None:
                raise typer.BadParameter("--kfold cross-validates the config's basins: no --basins/--discharge")
            from .crossval import kfold as run_kfold
            from .crossval import render_table as render_kfold

            res = run_kfold(cfg, kfold, period, out.resolve(), device=device, log=run.con.log)
            _finish_with_table(run, json_out, res, render_kfold)
            return
        from .evaluate import evaluate as run_evaluate

        result = run_evaluate(cfg, period, out.resolve(), basins_path=basins.resolve() if basins else None,
                              discharge_path=discharge.resolve() if discharge else None, log=run.con.log)
        if not json_out:
            from rich.console import Console as RichConsole

            from .evaluate import render_probabilistic, render_table

            console = RichConsole(width=110)
            console.print(render_table(result))
            if result.probabilistic:
                console.print(render_probabilistic(result))
            if result.ensemble:
                console.print(render_probabilistic(result, ensemble=True))
            for path in result.files:
                print(path)
        run.finish(result)


def _finish_with_table(run, json_out: bool, result, render, width: int = 110) -> None:
    """The end of a retraining evaluate mode (--kfold, --seeds): its table and files on stdout
    (unless --json), then the summary."""
    if not json_out:
        from rich.console import Console as RichConsole

        RichConsole(width=width).print(render(result))
        for path in result.files:
            print(path)
    run.finish(result)


def main() -> None:
    """Entry point of the ``hydrocast`` script and of ``python -m hydrocast`` (exits with the code)."""
    app()


if __name__ == "__main__":
    main()
