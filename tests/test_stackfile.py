"""Stack files are read as Pulumi reads them, and malformed ones are user errors (exit 2)."""

from __future__ import annotations

import pytest

from mxinfra.cli import main
from mxinfra.stackfile import read_project, read_stack_config


def write(project, text):
    (project.path / "stacks" / "Pulumi.s.yaml").write_text(text)
    return read_stack_config(read_project(project.path), "s")


def test_yaml_12_scalars_like_pulumi(project):
    raw = write(project, "config:\n  mxinfra:x: {a: 1:30, b: 2026-01-01, c: yes, d: true, e: 012, f: 0x1f, g: 1.5, h: null}\n")
    assert raw.values["mxinfra:x"] == {"a": "1:30", "b": "2026-01-01", "c": "yes", "d": True, "e": 12, "f": 31, "g": 1.5, "h": None}


def test_keys_without_namespace_take_the_project_name(project):
    assert write(project, "config:\n  region: x\n").values == {"orders:region": "x"}


@pytest.mark.parametrize(
    "text",
    [
        "config:\n  1: x\n",
        "config:\n  ~: x\n",
        "config: [a, b]\n",
        "config:\n  mxinfra:x: !!binary aGVsbG8=\n",
        "- just a list\n",
        "config: {mxinfra:app: [unclosed\n",
    ],
)
def test_malformed_stack_files_exit_2(project, capsys, text):
    (project.path / "stacks" / "Pulumi.s.yaml").write_text(text)
    assert main(["plan", "-s", "s", "-C", str(project.path)]) == 2
    err = capsys.readouterr().err
    assert "Pulumi.s.yaml" in err and "Traceback" not in err


def test_malformed_project_config_exits_2(project, capsys):
    (project.path / "Pulumi.yaml").write_text("name: orders\nruntime: python\nconfig: [a]\n")
    (project.path / "stacks" / "Pulumi.s.yaml").write_text("config: {}\n")
    assert main(["plan", "-s", "s", "-C", str(project.path)]) == 2
    assert "Pulumi.yaml" in capsys.readouterr().err
