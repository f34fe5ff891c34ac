"""The engine suite's helpers: the real CLI on a project copy, stack secrets set by the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "orders"))
import stack_secrets  # noqa: E402


# A process that a shell without job control started in the background (`cmd &` in a script, many CI
# runners) ignores SIGINT, and every process it starts inherits that. The CLI stops the language host it starts for an
# update's metadata with SIGINT and waits 5 s before killing it: each preview and up here would then
# take 5 s longer than on a user's terminal (measured: 4.94 s against 0.00 s), in the suite and in
# bench_engine.py alike. Handled here, the default is what the children get again.
SIGINT_WAS_IGNORED = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
if SIGINT_WAS_IGNORED and threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.default_int_handler)


# ---- the Pulumi CLI -----------------------------------------------------------------------------------
class Pulumi:
    """The real CLI on one project directory, with its own PULUMI_HOME and file backend."""

    def __init__(self, bin_dir: Path, project: Path, state: Path, home: Path, python: Path | None = None) -> None:
        self.bin = bin_dir
        self.project = project
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "AWS_", "KUBECONFIG", "VIRTUAL_ENV", "PYTHON"))
        }
        # The program's Python: this repository's venv, or a user's venv installed from built wheels.
        self.python = python or Path(sys.executable)
        venv_bin = self.python.parent
        self.env.update(
            PATH=f"{bin_dir}{os.pathsep}{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            PULUMI_HOME=str(home),
            PULUMI_BACKEND_URL=f"file://{state}",
            PULUMI_CONFIG_PASSPHRASE=stack_secrets.EXAMPLE_PASSPHRASE,
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
            PULUMI_SKIP_UPDATE_CHECK="true",
            # enables `--event-log` (the engine's step events, in order), which some tests read
            PULUMI_DEBUG_COMMANDS="true",
            PULUMI_PYTHON_CMD=str(self.python),
            # The file repository's actor (governance: OS user and git e-mail).
            GIT_AUTHOR_EMAIL="engine-suite@example.com",
        )

    def run(self, *args: str, stack: str | None = None, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / "pulumi"), *args, "--non-interactive"]
        if stack:
            cmd += ["--stack", stack]
        proc = subprocess.run(cmd, cwd=self.project, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd[1:])} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        return proc

    def as_identity(self, kubeconfig: Path | None) -> None:
        """Run what follows with this kubeconfig (the ambient one a user has), or none."""
        if kubeconfig is None:
            self.env.pop("KUBECONFIG", None)
        else:
            self.env["KUBECONFIG"] = str(kubeconfig)

    def mxinfra(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        exe = self.python.parent / "mxinfra"
        proc = subprocess.run([str(exe), *args], cwd=self.project, env=self.env, capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"mxinfra {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def up(self, stack: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("up", "--yes", "--skip-preview", "--diff", *extra, stack=stack, check=check)

    def outputs(self, stack: str) -> dict[str, Any]:
        return json.loads(self.run("stack", "output", "--json", "--show-secrets", stack=stack).stdout)

    def export(self, stack: str) -> str:
        return self.run("stack", "export", stack=stack).stdout


# ---- the registry ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Oci:
    """The suite's registry: its host, a runtime base image (by tag) and the example package's app image."""

    host: str
    base: str
    example: str

    def images_of(self, text: str) -> str:
        """A stack file with the example's images (the committed references name no real registry) as this registry's."""
        text = re.sub(r"registry\.example\.com/orders/orders:1\.4\.2(@sha256:[0-9a-f]{64})?", self.example, text)
        assert "registry.example.com" not in text, "a stack names an image this suite's registry does not hold"
        return text


# ---- stack files with secrets set by the CLI ----------------------------------------------------------
class Project:
    """A copy of the example project with its own state, where `init(stack)` makes a real stack."""

    def __init__(self, root: Path, engine_bin: Path, cluster: LocalCluster | None, oci: Oci) -> None:
        self.dir = root / "project"
        self.dir.mkdir(parents=True)
        for name in ("Pulumi.yaml", "__main__.py"):
            shutil.copy(ROOT / name, self.dir / name)
        for name in ("stacks", "examples"):
            shutil.copytree(ROOT / name, self.dir / name)
        for stack in (self.dir / "stacks").glob("Pulumi.*.yaml"):
            stack.write_text(oci.images_of(stack.read_text()))
        # Pulumi.yaml's `virtualenv: .venv`: the engine points the dynamic-provider plugin at it.
        (self.dir / ".venv").symlink_to(Path(sys.prefix))
        (root / "state").mkdir()
        self.pulumi = Pulumi(engine_bin, self.dir, root / "state", root / "pulumi-home")
        self.cluster = cluster
        self.secrets: dict[str, dict[str, str]] = {}  # stack -> config path -> plaintext

    def stack_file(self, stack: str) -> Path:
        return self.dir / "stacks" / f"Pulumi.{stack}.yaml"

    def init(self, stack: str, extra_secrets: dict[str, str] | None = None) -> dict[str, str]:
        """`pulumi stack init` with the passphrase provider on the stack file as committed (its secrets
        were encrypted by the CLI under the example passphrase: examples/orders/stack_secrets.py), then
        `extra_secrets` and the cluster's kubeconfig set with `pulumi config set --secret --path`."""
        self.pulumi.run("stack", "init", stack, "--secrets-provider", "passphrase")
        values = dict(stack_secrets.VALUES.get(stack, {}))
        # the CLI decrypts the committed values to exactly the documented plaintexts
        shown = json.loads(self.pulumi.run("config", "--json", "--show-secrets", stack=stack).stdout)
        for key, plain in values.items():
            top = key.split(".", 1)[0]
            assert plain in json.dumps(shown[top]["objectValue"] if "objectValue" in shown[top] else shown[top]["value"]), key
        extra = dict(extra_secrets or {})
        if self.cluster is not None:
            extra["mxinfra:kubernetes.kubeconfig"] = self.cluster.kubeconfig_text()
        for key, plain in extra.items():
            self.pulumi.run("config", "set", "--secret", "--path", key, plain, stack=stack)
        values.update(extra)
        self.secrets[stack] = values
        return values
