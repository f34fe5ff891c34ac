"""Every misuse of the installed `mxinfra` console script: exit 2, a short message naming the problem on
stderr, never a traceback; help, version and option placement as README's CLI section states."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scaffold import EXAMPLE_MDA, copy_example

EXE = shutil.which("mxinfra", path=str(Path(sys.executable).parent)) or "mxinfra"

# (arguments, exit code, text that stderr (or stdout for exit 0) must contain); {mda}, {repo}, {file},
# {project} are filled in below.
ROWS: list[tuple[str, int, str]] = [
    ("", 2, "Usage: mxinfra"),
    ("-h", 0, "Usage: mxinfra [OPTIONS] COMMAND"),
    ("--help", 0, "Commands:"),
    ("--version", 0, "mxinfra 0.1.0"),
    ("frobnicate", 2, "No such command 'frobnicate'"),
    ("inspct {mda}", 2, "Did you mean 'inspect'?"),
    ("inspect", 2, "Missing argument 'MDA'"),
    ("inspect --frob", 2, "No such option: --frob"),
    ("inspect {mda} extra-arg", 2, "unexpected extra argument(s) (extra-arg)"),
    ("inspect {mda} --json true", 2, "unexpected extra argument(s) (true)"),
    ("inspect {missing}", 2, "nope.mda"),
    ("inspect -h", 0, "--verify"),
    ("plan", 2, "Missing option '-s'"),
    ("plan -s", 2, "Option '-s' requires an argument"),
    ("plan -s test -C {project} --out {file}", 2, "is a file"),
    ("plan -s nosuchstack -C {project}", 2, "no stack file for stack 'nosuchstack'"),
    ("plan -s test -C {project} --json yes", 2, "unexpected extra argument(s) (yes)"),
    ("package", 2, "Usage: mxinfra package"),
    ("package frob", 2, "No such command 'frob'"),
    ("package push", 2, "Missing argument 'MDA'"),
    ("package push {mda} --story", 2, "Option '--story' requires an argument"),
    ("package list --frob", 2, "No such option: --frob"),
    ("package list --json --repository", 2, "Option '--repository' requires an argument"),
    ("package list --repository ftp://x/y", 2, "ftp://x/y"),
    ("activity --json --csv --repository {repo}", 2, "choose one of --json and --csv"),
    ("activity verify --frob", 2, "No such option: --frob"),
    ("activity verify --json --repository {repo}", 2, "No such option: --json"),
    ("activity frob", 2, "No such command 'frob'"),
    ("promote", 2, "Missing option '--from'"),
    ("promote --from acceptance", 2, "Missing option '--to'"),
    ("promote --from acceptance --to nowhere -C {project}", 2, "'nowhere'"),
    ("trace", 2, "Missing argument 'STORY'"),
    ("trace ORD-1 --json yes --repository {repo}", 2, "unexpected extra argument(s) (yes)"),
    ("access", 2, "Usage: mxinfra access"),
    ("access grant", 2, "Missing option"),
    # option placement: a group's options work after the subcommand too (and the reverse)
    ("activity verify --repository {repo}", 0, "activity log intact"),
    # -e names an environment without a log (issue 18: said "intact"): exit 2 wherever -e is written
    ("activity verify --repository {repo} -e acceptance", 2, "environment 'acceptance' has no activity log; environments with a log: none yet"),
    ("activity --repository {repo} -e acceptance verify", 2, "environment 'acceptance' has no activity log; environments with a log: none yet"),
    ("activity -e acceptance verify --repository {repo}", 2, "environment 'acceptance' has no activity log; environments with a log: none yet"),
    ("package --repository {repo} list --json", 0, "["),
    ("package list --json --repository {repo}", 0, "["),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run every row once, four at a time (each is a fresh interpreter)."""
    base = tmp_path_factory.mktemp("cli")
    project = copy_example(base / "project")
    file = base / "a-file"
    file.write_text("x")
    fill = {"mda": str(EXAMPLE_MDA), "repo": f"file://{base / 'repo'}", "file": str(file), "project": str(project), "missing": str(base / "nope.mda")}
    env = dict(os.environ, COLUMNS="100", NO_COLOR="1")

    def run(args: str) -> subprocess.CompletedProcess[str]:
        argv = [a.format(**fill) for a in args.split()]
        return subprocess.run([EXE, *argv], capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)

    with ThreadPoolExecutor(max_workers=4) as pool:
        done = dict(zip([r[0] for r in ROWS], pool.map(run, [r[0] for r in ROWS])))
    return done


@pytest.mark.parametrize(("args", "code", "says"), ROWS, ids=[r[0] or "(no arguments)" for r in ROWS])
def test_cli_row(results, args, code, says):
    proc = results[args]
    shown = proc.stderr if code else proc.stdout
    assert proc.returncode == code, f"mxinfra {args}: exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert says in shown, f"mxinfra {args}: {says!r} not in:\n{shown}"
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "internal error" not in proc.stderr
    if code == 2:
        assert len(proc.stderr.splitlines()) < 40  # short: the problem, not a dump


def test_help_has_no_bool_placeholders(results):
    for args in ("-h", "inspect -h"):
        assert "<bool>" not in results[args].stdout and "BOOLEAN" not in results[args].stdout


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    # A Pulumi.yaml that is a FIFO holds the command in its read until the user gives up with Ctrl-C.
    (tmp_path / "proj").mkdir()
    fifo = tmp_path / "proj" / "Pulumi.yaml"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [EXE, "plan", "-s", "test", "-C", str(tmp_path / "proj")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        # a background shell may have left SIGINT ignored: give the command the default a terminal gives
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    writer = None
    try:
        deadline = time.monotonic() + 60
        while writer is None and time.monotonic() < deadline and proc.poll() is None:
            try:  # succeeds once the command has opened the FIFO for reading; its read then waits for us
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.05)
        assert writer is not None, proc.communicate(timeout=5)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        if writer is not None:
            os.close(writer)
    assert proc.returncode == 130
    assert err == "interrupted\n"


def test_governance_commands_outside_a_project_say_so(tmp_path, capsys):
    """Issue 18: outside a project `activity` printed "no activity recorded" (exit 0) for a repository
    that cannot exist there."""
    import os

    from mxinfra.cli import main

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for args in (["activity", "-e", "prod"], ["activity", "verify"], ["trace", "ORD-1"], ["package", "list"]):
            assert main(args) == 2, args
            err = capsys.readouterr().err
            assert "found no Pulumi project here (no Pulumi.yaml)" in err and "--repository" in err, (args, err)
    finally:
        os.chdir(cwd)


def test_an_environment_without_a_log_names_those_with_one(tmp_path, capsys):
    from mxinfra.cli import main
    from mxinfra.governance.activity import ActivityLog
    from mxinfra.governance.store import open_store

    url = f"file://{tmp_path / 'repo'}"
    for env in ("acceptance", "production"):
        ActivityLog(open_store(url)).append(env, actor="a", action="deploy", package_sha256="a" * 64, package_version=None, changes={})
    assert main(["activity", "-e", "prod", "--repository", url]) == 2
    err = capsys.readouterr().err
    assert "environment 'prod' has no activity log; environments with a log: acceptance, production" in err


def test_the_development_key_is_never_committable(tmp_path):
    """Issue 18: the dev signing key under .mxinfra/keys/ must not be committable in the user's project."""
    import subprocess

    from mxinfra.governance.signing import dev_signer

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    signer = dev_signer(f"file://{tmp_path / '.mxinfra'}")
    assert signer is not None
    keys = list((tmp_path / ".mxinfra").rglob("*.pem")) or [p for p in (tmp_path / ".mxinfra").rglob("*") if p.is_file() and p.name != ".gitignore"]
    assert keys
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert not any(str(k.relative_to(tmp_path)) in status for k in keys), status
