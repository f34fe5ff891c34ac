"""A byte damaged inside a member: invisible to the central directory, caught by `verify`."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from mxinfra.cli import main
from mxinfra.integrity import DamagedMembersError, verify_archive
from mxinfra.mda import open_mda

from mda_builders import MINIMAL_METADATA

import json

TEXT = ("const widget = render(props, state); " * 4000).encode()


def build(path: Path, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("model/metadata.json", json.dumps(MINIMAL_METADATA))
        z.writestr("model/model.mdp", TEXT[:5000])
        z.writestr("web/index.html", TEXT)
        z.writestr("web/app.js", TEXT[::-1])
    return path


def flip(path: Path, member: str, at: int = 40) -> Path:
    """Flip one bit `at` bytes into `member`'s data (the central directory stays as it was)."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len = int.from_bytes(header[26:28], "little")
    extra_len = int.from_bytes(header[28:30], "little")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + name_len + extra_len + at] ^= 0x10
    out = path.with_name(f"bad-{path.name}")
    out.write_bytes(data)
    return out


def test_verify_returns_the_file_digest(tmp_path):
    path = build(tmp_path / "app.mda")
    assert open_mda(path).verify() == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_a_damaged_deflated_member_is_named(tmp_path, workers):
    bad = flip(build(tmp_path / "app.mda"), "web/app.js")
    with zipfile.ZipFile(bad) as z:
        infos = z.infolist()
    with pytest.raises(DamagedMembersError) as exc:
        verify_archive(bad, infos, workers=workers)
    assert [m for m, _ in exc.value.problems] == ["web/app.js"]


def test_a_damaged_stored_member_fails_its_crc(tmp_path):
    bad = flip(build(tmp_path / "app.mda", zipfile.ZIP_STORED), "web/index.html", at=1000)
    with pytest.raises(DamagedMembersError) as exc:
        open_mda(bad).verify()
    assert exc.value.problems == [("web/index.html", "CRC-32 mismatch: its content does not match the checksum recorded in the archive")]


def test_every_damaged_member_is_reported_at_once_in_archive_order(tmp_path):
    path = build(tmp_path / "app.mda", zipfile.ZIP_STORED)
    once = flip(path, "web/app.js", at=500)
    twice = flip(once, "model/model.mdp", at=100)
    with pytest.raises(DamagedMembersError) as exc:
        open_mda(twice).verify()
    assert [m for m, _ in exc.value.problems] == ["model/model.mdp", "web/app.js"]
    assert "2 damaged member(s)" in str(exc.value)


def test_inspect_reads_the_directory_only_and_verify_inflates(tmp_path, capsys):
    bad = flip(build(tmp_path / "app.mda"), "web/index.html")
    assert main(["inspect", str(bad), "--json"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(bad), "--verify", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "web/index.html" in captured.err and "damaged" in captured.err and "Traceback" not in captured.err


def test_push_refuses_a_damaged_package_before_writing_anything(tmp_path, capsys):
    bad = flip(build(tmp_path / "app.mda"), "web/index.html")
    repo = tmp_path / "repo"
    assert main(["package", "push", str(bad), "--repository", f"file://{repo}", "--commit", "abc"]) == 2
    assert "web/index.html" in capsys.readouterr().err
    assert not repo.exists() or not any(p.is_file() for p in repo.rglob("*"))
