"""The command line as users and cron see it: help text, examples, exit codes, ``--json``,
``hydrocast init``, ``python -m hydrocast`` and shell completion.

The stage functions (ingest/train/predict/evaluate) are replaced by stand-ins where a test is
about what the CLI does with their result or their error; the real runs are tests/test_pipeline.py.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hydrocast import __version__, config
from hydrocast.cli import JSON_SCHEMA_VERSION, app
from hydrocast.errors import EXIT_CODES, BusyError

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("init", "ingest", "train", "predict", "evaluate")
COMMON_KEYS = ("schema_version", "command", "ok", "exit_code", "hydrocast_version", "model_id")
runner = CliRunner()
group = typer.main.get_command(app)


def invoke(*args: str, **kw):
    return runner.invoke(app, list(args), **kw)


def one_json(res) -> dict:
    """The single JSON object a --json run printed (stdout holds exactly one line)."""
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.stdout
    obj = json.loads(lines[0])
    assert list(obj)[:len(COMMON_KEYS)] == list(COMMON_KEYS)
    assert obj["schema_version"] == JSON_SCHEMA_VERSION and obj["hydrocast_version"] == __version__
    assert obj["exit_code"] == res.exit_code and obj["ok"] is (res.exit_code == 0)
    return obj


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def project(tmp_path) -> Path:
    """A valid hydrocast.toml (the starter file) in a fresh folder."""
    p = tmp_path / "proj" / "hydrocast.toml"
    p.parent.mkdir()
    p.write_text(config.starter_toml())
    return p


# -- help --------------------------------------------------------------------------------------

def test_help_keeps_section_names_and_flags_have_no_metavar():
    sections = re.compile(r"\[(?:grid|sources|cube|basins|discharge|train)\] \w+")
    found = 0
    for name in COMMANDS:
        cmd = group.commands[name]
        res = invoke(name, "--help", terminal_width=200)
        assert res.exit_code == 0
        text = flat(res.stdout)
        # every "[section] key" written in the command's docstring or option help reaches the screen
        written = [m for s in [cmd.help or ""] + [p.help or "" for p in cmd.params] for m in sections.findall(s)]
        found += len(written)
        for ref in written:
            assert ref in text, (name, ref)
        assert "<bool>" not in res.stdout
        for p in cmd.params:
            if getattr(p, "is_flag", False):
                long = next(o for o in p.opts if o.startswith("--"))
                line = next(ln for ln in res.stdout.splitlines() if re.search(rf"(^|\s){re.escape(long)}\b", ln))
                # a metavar follows its option after one space; the help column starts after two or more
                assert not re.search(rf"{re.escape(long)} \S", line), line
    assert found >= 6
    assert "[train] seed" in flat(invoke("train", "--help").stdout)
    assert "[cube] path" in flat(invoke("ingest", "--help").stdout)


def test_flags_take_no_value():
    """`--force` is a flag: the word after it is the PATH argument, not its value."""
    for name in COMMANDS:
        for p in group.commands[name].params:
            if p.name in ("strict", "deterministic", "resume", "plot", "quiet", "json_out", "force"):
                assert p.is_flag, (name, p.name)


def test_top_level_help_lists_every_exit_code_and_completion():
    res = invoke("--help", terminal_width=200)
    assert res.exit_code == 0
    for code, meaning in EXIT_CODES.items():
        assert re.search(rf"^\s+{code}\s+{re.escape(meaning)}$", res.stdout, re.MULTILINE), code
    assert "--install-completion" in res.stdout and "--show-completion" in res.stdout
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s", res.stdout, re.MULTILINE)


def _examples(cmd) -> list[list[str]]:
    epilog = cmd.epilog or ""
    assert "Examples:" in epilog
    lines = [ln.strip() for ln in epilog.split("Examples:", 1)[1].splitlines() if ln.strip()]
    return [shlex.split(ln.split(">>")[0], comments=True) for ln in lines]


@pytest.mark.parametrize("name", COMMANDS)
def test_examples_parse_and_name_real_files(name):
    cmd = group.commands[name]
    examples = _examples(cmd)
    assert len(examples) >= 3
    for argv in examples:
        assert argv[:2] == ["hydrocast", name], argv
        ctx = cmd.make_context(name, argv[2:])  # a usage error (unknown option, bad value) raises here
        for value in ctx.params.values():
            if isinstance(value, Path) and str(value).startswith("sample_data"):
                assert (REPO / value).is_file(), value
        for token in argv:
            if token.startswith("sample_data/"):
                assert (REPO / token).is_file(), token
        if name == "predict":
            ids = ctx.params["basin"]
            text = (REPO / "sample_data/basins/basins.geojson").read_text()
            text += (REPO / "sample_data/basins/ungauged.geojson").read_text()
            assert all(b == "all" or f'"{b}"' in text for b in ids), ids


def test_top_level_examples_name_real_commands_and_options():
    examples = _examples(group)
    assert examples
    top_opts = {o for p in group.params for o in p.opts}
    for argv in examples:
        assert argv[0] == "hydrocast"
        assert argv[1] in group.commands or argv[1] in top_opts, argv


def test_readme_exit_code_table_matches_errors_module():
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Exit codes", 1)[1].split("\n### ", 1)[0]
    codes = [int(m) for m in re.findall(r"^\|\s*(\d+)\s*\|", section, re.MULTILINE)]
    assert sorted(codes) == sorted(EXIT_CODES)


def test_readme_running_it_uses_the_venv_and_sample_paths():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Running it", 1)[1].split("\n## ", 1)[0]
    assert ".venv/bin/activate" in section and "hydrocast init" in section and "--install-completion" in section
    for path in set(re.findall(r"sample_data/[\w./-]+", section)):
        assert (REPO / path).exists(), path
    # every command line in its code blocks parses with the real options
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        for line in block.splitlines():
            argv = shlex.split(line.split(">>")[0], comments=True)
            if len(argv) >= 2 and argv[0] == "hydrocast" and argv[1] in group.commands and "--help" not in argv:
                group.commands[argv[1]].make_context(argv[1], argv[2:])


# -- --json and exit codes ---------------------------------------------------------------------

def test_json_error_missing_config(tmp_path):
    res = invoke("train", "--config", str(tmp_path / "nope.toml"), "--json")
    assert res.exit_code == 66
    obj = one_json(res)
    assert obj["command"] == "train" and obj["model_id"] is None
    assert "nope.toml" in obj["error"] and "\n" not in obj["error"]
    assert res.stderr == f"hydrocast: error: {obj['error']}\n"


def test_no_json_no_stdout_on_error(tmp_path):
    res = invoke("predict", "--config", str(tmp_path / "nope.toml"), "--basin", "PT01")
    assert res.exit_code == 66 and res.stdout == "" and res.stderr.count("\n") == 1


@pytest.mark.parametrize("args,command", [
    (["predict", "--json", "--bogus"], "predict"),
    (["predict", "--json"], "predict"),  # missing --basin
    (["train", "--json", "--epochs", "0"], "train"),  # out of range
    (["frobnicate", "--json"], None),
])
def test_json_usage_errors_print_one_object(args, command):
    res = invoke(*args)
    assert res.exit_code == 2
    obj = one_json(res)
    assert obj["command"] == command and obj["error"] and "\n" not in obj["error"]
    assert obj["error"] in res.stderr  # Click's message is on stderr too


@dataclass
class FakeResult:
    """What a stage returns, as far as the CLI is concerned."""

    summary: dict
    model_id: str | None = "0123abcd"
    files: list = field(default_factory=list)
    rejected: list = field(default_factory=list)

    def to_json(self) -> dict:
        return dict(self.summary)

    def __getattr__(self, name):  # the plain-text summaries read a few numbers
        if name.startswith("__"):
            raise AttributeError(name)
        return 0.5


def stand_in(monkeypatch, module: str, func: str, impl, **extra) -> list:
    """Replace ``hydrocast.<module>.<func>`` (never importing the real module); returns the calls."""
    calls: list = []
    mod = types.ModuleType(f"hydrocast.{module}")

    def wrapper(*a, **kw):
        calls.append((a, kw))
        return impl(*a, **kw)

    setattr(mod, func, wrapper)
    for k, v in extra.items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, f"hydrocast.{module}", mod)
    return calls


@pytest.mark.parametrize("command,module,func,args", [
    ("train", "train", "train", ["--seed", "3"]),
    ("predict", "predict", "predict", ["--basin", "PT01", "--out", "fc"]),
    ("evaluate", "evaluate", "evaluate", ["--out", "ev"]),
])
def test_json_success_carries_model_id_and_the_summary(monkeypatch, project, command, module, func, args):
    summary = {"files": ["a.nc"], "nse": float("nan"), "n": 2}
    calls = stand_in(monkeypatch, module, func, lambda *a, **kw: FakeResult(summary), render_table=None)
    res = invoke(command, "--config", str(project), "--json", "--quiet", *args)
    assert res.exit_code == 0, res.output
    obj = one_json(res)
    assert obj["command"] == command and obj["model_id"] == "0123abcd"
    assert {k: obj[k] for k in summary} == {"files": ["a.nc"], "nse": None, "n": 2}  # NaN is not JSON
    cfg = calls[0][0][0]
    assert cfg.path == project  # the stage got the loaded config
    if command == "train":
        assert calls[0][1]["seed"] == 3


def test_json_ingest_with_rejected_files_is_one_object_exit_65(monkeypatch, project):
    bad = types.SimpleNamespace(path="/x/bad.HDF5", message="/x/bad.HDF5: not an HDF5 file")
    result = FakeResult({"changed": True, "rejected": [{"file": bad.path, "error": bad.message}]},
                        model_id=None, rejected=[bad])
    stand_in(monkeypatch, "ingest", "ingest", lambda *a, **kw: result)
    res = invoke("ingest", "--config", str(project), "--json", "--quiet")
    assert res.exit_code == 65
    obj = one_json(res)
    assert obj["command"] == "ingest" and obj["model_id"] is None and obj["ok"] is False
    assert obj["rejected"][0]["file"] == "/x/bad.HDF5" and "1 file(s) rejected" in obj["error"]
    assert "hydrocast: rejected: /x/bad.HDF5: not an HDF5 file" in res.stderr


def _raise(exc):
    def f(*a, **kw):
        raise exc
    return f


@pytest.mark.parametrize("exc,code,needle", [
    (BusyError("/w/model.lock: another run holds the lock"), 75, "model.lock"),
    (RuntimeError("boom\nsecond line"), 70, "internal error: RuntimeError: boom second line"),
    (OSError(errno.ENOSPC, "No space left on device", "/w/model/model.safetensors"), 74,
     "/w/model/model.safetensors: disk full"),
])
def test_errors_map_to_exit_codes_with_one_line(monkeypatch, project, exc, code, needle):
    stand_in(monkeypatch, "train", "train", _raise(exc))
    res = invoke("train", "--config", str(project), "--json")
    assert res.exit_code == code
    obj = one_json(res)
    assert needle in obj["error"] and obj["model_id"] is None
    assert res.stderr.count("\n") == 1 and needle in res.stderr


def test_debug_prints_the_traceback_and_keeps_exit_70(monkeypatch, project):
    stand_in(monkeypatch, "train", "train", _raise(RuntimeError("boom")))
    monkeypatch.setenv("HYDROCAST_DEBUG", "1")
    res = invoke("train", "--config", str(project), "--json")
    assert res.exit_code == 70 and "Traceback" in res.stderr
    assert one_json(res)["error"] == "internal error: RuntimeError: boom"


BAD_GRID = ("resolution = 0.05", "resolution = 0.07")


@pytest.mark.parametrize("command,args", [
    ("train", []), ("predict", ["--basin", "PT01"]), ("evaluate", []), ("ingest", []),
])
def test_every_command_refuses_an_invalid_grid(monkeypatch, project, command, args):
    calls = stand_in(monkeypatch, command, command, lambda *a, **kw: pytest.fail("stage reached"),
                     render_table=None)
    project.write_text(project.read_text().replace(*BAD_GRID))
    res = invoke(command, "--config", str(project), *args, "--json")
    assert res.exit_code == 78 and not calls
    obj = one_json(res)
    assert str(project) in obj["error"] and "[grid]" in obj["error"] and "whole number" in obj["error"]


# -- init --------------------------------------------------------------------------------------

def test_init_writes_a_loadable_file_and_never_overwrites(tmp_path):
    target = tmp_path / "new" / "hydrocast.toml"
    res = invoke("init", str(target), "--json")
    assert res.exit_code == 0, res.output
    obj = one_json(res)
    assert obj["command"] == "init" and obj["path"] == str(target) and obj["overwritten"] is False
    assert target.read_text() == config.starter_toml()
    cfg = config.load(target)
    assert cfg.grid_spec().shape == (32, 32)

    target.write_text("# mine\n")
    res = invoke("init", str(target), "--json")
    assert res.exit_code == 73 and target.read_text() == "# mine\n"
    assert "already exists" in one_json(res)["error"] and "--force" in res.stderr

    res = invoke("init", "--force", str(target))
    assert res.exit_code == 0 and target.read_text() == config.starter_toml()
    assert sorted(p.name for p in target.parent.iterdir()) == ["hydrocast.toml"]  # no temporary left


def test_init_default_path_is_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("init", "--quiet").exit_code == 0
    assert (tmp_path / "hydrocast.toml").read_text() == config.starter_toml()


def test_init_refuses_a_folder_or_a_path_it_cannot_create(tmp_path):
    res = invoke("init", str(tmp_path))
    assert res.exit_code == 73 and "is a folder" in res.stderr
    (tmp_path / "afile").write_text("x")
    res = invoke("init", str(tmp_path / "afile" / "hydrocast.toml"), "--json")
    assert res.exit_code == 73 and "cannot write" in one_json(res)["error"]
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("code,exit_code,needle", [
    (errno.EROFS, 73, "cannot write here"),
    (errno.ENOSPC, 74, "disk full"),
])
def test_init_write_failures_leave_nothing(monkeypatch, tmp_path, code, exit_code, needle):
    """A read-only file system or a full disk while the file is published (simulated: root may
    write into a chmod-ed folder, and the test machine's disk is not full)."""
    import hydrocast.fsio

    def failing_commit(tmp, path):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(hydrocast.fsio, "commit", failing_commit)
    target = tmp_path / "hydrocast.toml"
    res = invoke("init", str(target), "--json")
    assert res.exit_code == exit_code
    err = one_json(res)["error"]
    assert err.startswith(str(target)) and needle in err
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


# -- python -m hydrocast, the installed script, completion -------------------------------------

SCRIPT = Path(sys.executable).parent / "hydrocast"


def run(argv: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env})


@pytest.mark.parametrize("args,code", [
    (["--version"], 0),
    (["train", "--config", "does/not/exist.toml", "--json"], 66),
    (["predict", "--json", "--bogus"], 2),
])
def test_python_m_hydrocast_behaves_like_the_script(args, code):
    assert SCRIPT.is_file(), "the venv's hydrocast script is missing (pip install -e .)"
    mod = run([sys.executable, "-m", "hydrocast", *args])
    script = run([str(SCRIPT), *args])
    assert mod.returncode == script.returncode == code, (mod.stderr, script.stderr)
    assert mod.stdout == script.stdout
    if "--json" in args:
        assert json.loads(mod.stdout)["exit_code"] == code
    if args == ["--version"]:
        assert mod.stdout == f"hydrocast {__version__}\n"


def test_shell_completion_completes_commands_and_options():
    res = run([str(SCRIPT)], _HYDROCAST_COMPLETE="complete_bash", COMP_WORDS="hydrocast pre", COMP_CWORD="1")
    assert res.returncode == 0 and res.stdout.split() == ["predict"]
    res = run([str(SCRIPT)], _HYDROCAST_COMPLETE="complete_bash", COMP_WORDS="hydrocast predict --iss",
              COMP_CWORD="2")
    assert res.stdout.split() == ["--issue-date"]
    res = run([str(SCRIPT), "--show-completion", "bash"], _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert res.returncode == 0 and "_HYDROCAST_COMPLETE=complete_bash" in res.stdout


def test_json_object_common_keys_win_and_a_summary_model_id_is_used():
    from hydrocast.cli import json_object

    obj = json_object("train", summary={"model_id": "deadbeef", "ok": "shadowed", "command": "x", "n": 1})
    assert obj["model_id"] == "deadbeef" and obj["ok"] is True and obj["command"] == "train" and obj["n"] == 1
    assert json_object("train", model_id="0123abcd", summary={"model_id": "deadbeef"})["model_id"] == "0123abcd"
