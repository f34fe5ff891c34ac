"""Real storage emulators on loopback for the governance tests: a moto S3/STS server and Azurite.

Each runs as its own process on a free port, is waited for until it answers, and is stopped at the end.
Run as a script (`python servers.py moto PORT`) this module is the moto server process itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AZURITE_ACCOUNT = "devstoreaccount1"
# the well-known, public development key of Azurite and the Azure Storage emulator
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
AZURITE_MISSING = (
    "Azurite is not installed: expected .tools/node_modules/.bin/azurite-blob (`./dev test` installs it with "
    "`npm install --prefix .tools azurite@3`) or azurite-blob on PATH"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    """Block until 127.0.0.1:port accepts connections; fail with the server's log if it died or never answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} within {timeout:.0f}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    """A moto server (S3, STS, ...) on a free loopback port; yields its endpoint URL."""
    port = free_port()
    log = workdir / "moto.log"
    env = {**os.environ, **FAKE_AWS}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, __file__, "moto", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def azurite_binary() -> str | None:
    """The azurite-blob executable: the one `./dev` installs into .tools, else one on PATH."""
    local = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    return shutil.which("azurite-blob")


def azurite_connection_string(port: int) -> str:
    """The connection string of Azurite's well-known development account on 127.0.0.1:port."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


@contextlib.contextmanager
def azurite_server(workdir: Path) -> Iterator[str]:
    """Azurite's blob service on a free loopback port; yields its connection string."""
    binary = azurite_binary()
    if binary is None:
        raise RuntimeError(AZURITE_MISSING)
    port = free_port()
    location = workdir / "azurite"
    location.mkdir(parents=True, exist_ok=True)
    log = workdir / "azurite.log"
    cmd = [
        binary,
        "--blobHost", "127.0.0.1",
        "--blobPort", str(port),
        "--location", str(location),
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--loose",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log)
        yield azurite_connection_string(port)
    finally:
        _stop(proc)


def _serve_moto(port: int) -> None:
    """Serve moto's WSGI app on 127.0.0.1:port, one request at a time.

    Real S3 evaluates `If-None-Match: *` atomically. Moto checks and then stores in two Python steps,
    so under its threaded server two concurrent conditional PUTs can both succeed, which real S3 never
    allows. Serialising requests restores S3's guarantee; everything else is moto's own code.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialised(environ: dict[str, Any], start_response: Any) -> Any:
        with lock:
            # moto builds the whole body inside the call; materialise it so no work escapes the lock
            return list(app(environ, start_response))

    server = make_server("127.0.0.1", port, serialised, threaded=True, request_handler=MotoRequestHandler)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "moto":
        _serve_moto(int(sys.argv[2]))
    else:
        sys.exit("usage: servers.py moto PORT")
