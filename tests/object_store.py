"""rclone and the object stores the backup tasks (Kubernetes Jobs, the AWS export task) keep archives in, for real: rclone built from
its Go module (engine/gotool.sh), moto's S3 server and Azurite (tests/governance/servers.py), and the
commands of the rclone image (Alpine: busybox applets and rclone, nothing else on PATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "governance"))

from servers import AZURITE_ACCOUNT, AZURITE_KEY, FAKE_AWS  # noqa: E402

__all__ = ["AZURITE_ACCOUNT", "AZURITE_KEY", "FAKE_AWS", "alpine_path", "rclone_binary"]  # s3_server, azurite: tests/conftest.py


def rclone_binary() -> Path | None:
    """The built rclone: $MXINFRA_RCLONE_BIN, else the complete entry engine/gotool.sh caches."""
    env = os.environ.get("MXINFRA_RCLONE_BIN")
    if env:
        return Path(env) if Path(env).is_file() else None
    out = subprocess.run([str(ROOT / "engine" / "gotool.sh"), "path", "rclone"], capture_output=True, text=True)
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def _required(what: str, how: str) -> None:
    message = f"{what} is missing: {how}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)  # CI ran ./dev test, which installs it: its absence is a failure
    pytest.skip(message)


@pytest.fixture(scope="session")
def alpine_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH of busybox's applets and rclone only: what the rclone image (Alpine) gives store.sh."""
    busybox = shutil.which("busybox")
    if busybox is None:
        _required("busybox", "./dev test installs Debian's busybox package (the rclone image's shell and tools)")
    rclone = rclone_binary()
    if rclone is None:
        _required("rclone", "run `engine/gotool.sh build rclone` (./dev test builds it; about 3 minutes cold)")
    bin_dir = tmp_path_factory.mktemp("alpine-bin")
    subprocess.run([str(busybox), "--install", "-s", str(bin_dir)], check=True)
    (bin_dir / "rclone").symlink_to(rclone)
    return str(bin_dir)
