"""The plan shows the task definitions' container definitions: variables, constants, scheduled events and
secret references by name; only what AWS assigns on create is a `(known after apply)` placeholder."""

from __future__ import annotations

import json

from mxinfra.cli import main
from mxinfra.target import KNOWN_AFTER_APPLY

from awshelpers import ROOT


def plan(capsys, *args):
    rc = main(["plan", "-s", "aws-acceptance", "-C", str(ROOT), *args])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def containers(doc, name):
    task = next(r for r in doc["resources"] if r["name"] == name)
    return json.loads(task["inputs"]["containerDefinitions"])


def test_container_definitions_are_shown_in_json_with_only_cloud_values_unknown(capsys):
    doc = json.loads(plan(capsys, "--json"))
    (c,) = containers(doc, "orders-acceptance-task")
    env = {e["name"]: e["value"] for e in c["environment"]}
    # the core's buildpack contract, as the stack file sets it
    assert json.loads(env["CONSTANTS"]) == {"Orders.ApiUrl": "https://api.acceptance.example.com", "Orders.PageSize": 20}
    assert env["SCHEDULED_EVENTS"] == "CommunityCommons.releaseOldLocks,Orders.SE_SendInvoices"
    assert env["MXRUNTIME_DTAPMode"] == "A" and env["CF_INSTANCE_INDEX"] == "0"
    assert env["MXRUNTIME_DatabaseHost"] == f"orders-acceptance-db.{KNOWN_AFTER_APPLY}.eu-west-1.rds.amazonaws.com:5432"
    secrets = {s["name"]: s["valueFrom"] for s in c["secrets"]}
    runtime_arn = f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:mxinfra/orders/acceptance/runtime-{KNOWN_AFTER_APPLY}"
    assert secrets["ADMIN_PASSWORD"] == f"{runtime_arn}:ADMIN_PASSWORD::{KNOWN_AFTER_APPLY}"
    assert secrets["MXRUNTIME_DatabasePassword"] == f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-{KNOWN_AFTER_APPLY}:password::"
    # everything else is known: only the database host and the secret references hold placeholders
    unknown_env = [k for k, v in env.items() if KNOWN_AFTER_APPLY in v]
    assert unknown_env == ["MXRUNTIME_DatabaseHost"]
    others = {k: v for k, v in c.items() if k not in ("environment", "secrets")}
    assert KNOWN_AFTER_APPLY not in json.dumps(others)


def test_rendered_file_and_tree_note(capsys, tmp_path):
    doc = json.loads(plan(capsys, "--json"))
    # the tree wraps at the terminal's width, continuation lines under a branch start with its glyph
    tree = " ".join(plan(capsys, "--out", str(tmp_path)).replace("│", " ").split())
    written = json.loads((tmp_path / "aws" / "acceptance" / "containers" / "task.json").read_text())
    assert written == containers(doc, "orders-acceptance-task")
    assert "note: task: container mendix of" in tree and "SCHEDULED_EVENTS" in tree
    assert "secrets by reference: ADMIN_PASSWORD" in tree
