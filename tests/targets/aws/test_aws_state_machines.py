"""The state machines the aws target renders, checked by asl-validator (npm, the Amazon States Language's
schema and its JSONPath rules), as the Kubernetes manifests are by kubernetes-validate: the export machine
behind `mxinfra backup download`, the restore machine behind `restore --archive`, production's files-restore
machine behind `restore --id` and the redeploy after a password rotation, from the plan itself."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mxinfra.components import MendixApp

from awshelpers import ACCOUNT, REGION, config, deployment, run_as_update

ROOT = Path(__file__).resolve().parents[3]
VALIDATOR = ROOT / ".tools" / "node_modules" / ".bin" / "asl-validator"
ECR = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
EXPORT = {"postgresImage": f"{ECR}/mirror/postgres:17.7@sha256:" + "ab" * 32, "rcloneImage": f"{ECR}/mirror/rclone:1.76.0@sha256:" + "cd" * 32}


def _validate(definition: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if not VALIDATOR.exists():
        message = "asl-validator is missing: ./dev test installs it into .tools (npm ci)"
        pytest.fail(message, pytrace=False) if os.environ.get("CI") else pytest.skip(message)
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(definition))
    return subprocess.run([str(VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=60)


def _machines(role: str) -> dict[str, dict[str, Any]]:
    block = {"backupExport": EXPORT, **({"vpcTags": {}} if role != "production" else {})}
    inputs = run_as_update(lambda: MendixApp("orders", {"deployment": deployment(config(role, aws=block), f"aws-{role}")}), f"aws-{role}")
    return {name: json.loads(i["definition"]) for name, (t, i) in inputs.items() if t == "aws:sfn/stateMachine:StateMachine"}


@pytest.mark.parametrize("role", ["test", "production"])
def test_every_rendered_state_machine_is_valid_asl(role: str, tmp_path: Path) -> None:
    machines = _machines(role)
    assert sorted(machines) == sorted([f"orders-{role}-export-machine", f"orders-{role}-redeploy", f"orders-{role}-restore-machine", *([f"orders-{role}-files-restore-machine"] if role == "production" else [])])
    for name, definition in machines.items():
        done = _validate(definition, tmp_path)
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"


def test_the_validator_refuses_a_broken_export_machine(tmp_path: Path) -> None:
    """The check can fail: the export machine with a string where its guard compares a number, and with
    its Choice's target state removed."""
    definition = _machines("test")["orders-test-export-machine"]
    wrong = json.loads(json.dumps(definition))
    wrong["States"]["Alone"]["Choices"][0]["NumericGreaterThan"] = "1"
    done = _validate(wrong, tmp_path)
    assert done.returncode != 0 and "NumericGreaterThan" in done.stdout + done.stderr
    dangling = json.loads(json.dumps(definition))
    del dangling["States"]["Busy"]
    done = _validate(dangling, tmp_path)
    assert done.returncode != 0 and "Busy" in done.stdout + done.stderr
