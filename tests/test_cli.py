"""`mxinfra inspect` and the CLI's exit codes, with hostile input."""

from __future__ import annotations

import json
import zipfile

import pytest

from mxinfra.cli import main

from mda_builders import FIXTURES


def archive(tmp_path, metadata_text: str):
    path = tmp_path / "app.mda"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model/metadata.json", metadata_text)
        z.writestr("model/model.mdp", "x")
        z.writestr("web/index.html", "x")
    return path


def test_inspect_json_fields(example_mda, capsys):
    assert main(["inspect", str(example_mda), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"path", "sha256", "sizeBytes", "runtimeVersion", "modelVersion", "projectId", "projectName", "javaVersion", "adminUser", "roles", "constants", "scheduledEvents", "requestHandlers"} <= set(doc)
    assert doc["runtimeVersion"] == "10.24.15.93102" and doc["sizeBytes"] == example_mda.stat().st_size
    assert {"name": "Orders.PageSize", "type": "Integer", "defaultValue": "50"} in doc["constants"]


def test_untrusted_metadata_cannot_drive_the_terminal(tmp_path, capsys):
    meta = json.loads((FIXTURES / "mx10.24-aws-kms-connector.json").read_text())
    meta["ProjectName"] = "[/bold] \x1b]0;pwned\x07 [link=http://evil]x[/link]"
    assert main(["inspect", str(archive(tmp_path, json.dumps(meta)))]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "[/bold]" in out and "[link=http://evil]" in out  # shown literally, not interpreted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"RuntimeVersion": "10.24.15.93102", "ProjectID": "p", "ProjectName": "\\ud800", "ModelVersion": "x"}', "surrogate"),
        ('{"RuntimeVersion": ' + "9" * 5000 + "}", "not valid JSON"),
    ],
)
def test_hostile_metadata_exits_2(tmp_path, capsys, text, expected):
    assert main(["inspect", str(archive(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_missing_file_exits_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.mda")]) == 2
    assert "nope.mda" in capsys.readouterr().err
