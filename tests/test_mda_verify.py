"""A byte damaged inside a member: invisible to the central directory, caught by `verify`."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mxinfra.cli import main
from mxinfra.integrity import DamagedMembersError, verify_archive
from mxinfra.mda import open_mda
from mxinfra.zipdir import MemberTable

from mda_builders import MINIMAL_METADATA, RawMember, app_members, raw_zip, write_many

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
        members = MemberTable.from_infos(z.infolist())
    with pytest.raises(DamagedMembersError) as exc:
        verify_archive(bad, members, workers=workers)
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


def test_bzip2_and_lzma_members_are_verified(tmp_path):
    path = tmp_path / "methods.mda"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model/metadata.json", json.dumps(MINIMAL_METADATA))
        z.writestr("model/model.mdp", TEXT[:5000], compress_type=zipfile.ZIP_LZMA)
        z.writestr("web/index.html", TEXT, compress_type=zipfile.ZIP_BZIP2)
        z.writestr("web/app.js", TEXT[::-1], compress_type=zipfile.ZIP_LZMA)
    assert open_mda(path).verify() == hashlib.sha256(path.read_bytes()).hexdigest()
    bad = flip(flip(path, "web/index.html", at=20), "web/app.js", at=20)
    with pytest.raises(DamagedMembersError) as exc:
        open_mda(bad).verify()
    assert [m for m, _ in exc.value.problems] == ["web/index.html", "web/app.js"]


def test_members_are_reported_in_file_order_whatever_the_directory_order(tmp_path):
    members = [RawMember(n.encode(), d) for n, d in app_members()]
    members += [RawMember(b"web/dir/"), RawMember(b"web/late.js", b"B" * 300), RawMember(b"web/early.js", b"A" * 300)]
    data = bytearray(raw_zip(members, order=[5, 3, 4, 0, 1, 2]))  # the directory lists them backwards
    for member in (b"B" * 300, b"A" * 300):
        data[data.find(member) + 7] ^= 1
    path = tmp_path / "shuffled.mda"
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedMembersError) as exc:
        open_mda(path).verify()
    assert exc.value.problems == [
        ("web/late.js", "CRC-32 mismatch: its content does not match the checksum recorded in the archive"),
        ("web/early.js", "CRC-32 mismatch: its content does not match the checksum recorded in the archive"),
    ]


def test_a_local_header_naming_another_file_is_damage(tmp_path):
    members = [RawMember(n.encode(), d) for n, d in app_members()]
    members.append(RawMember(b"web/ok.js", b"x", local_name=b"web/ko.js"))
    path = tmp_path / "renamed.mda"
    path.write_bytes(raw_zip(members))
    with pytest.raises(DamagedMembersError) as exc:
        open_mda(path).verify()
    assert exc.value.problems == [("web/ok.js", "its local header names another file than the central directory")]


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (here: pytest) across exec
_PEAK_RSS = """
import re, sys
from mxinfra.mda import open_mda
open_mda(sys.argv[1]).verify()
with open("/proc/self/status") as f:
    print(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1))
"""


def _peak_rss(path: Path) -> int:
    """Peak RSS in bytes of a fresh interpreter that opens and verifies `path` (as `inspect --verify` does)."""
    run = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(path)], capture_output=True, text=True, check=True)
    return int(run.stdout) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from Linux's /proc")
def test_verify_memory_stays_flat_as_the_member_count_grows(tmp_path):
    small = _peak_rss(write_many(tmp_path / "small.mda", 5_000))
    large = _peak_rss(write_many(tmp_path / "large.mda", 50_000))
    # 45,000 more members. The compact table holds 28 bytes plus the name (29 bytes here) per member
    # and the duplicate check ~12-24 bytes per member while it runs: measured +4.4 MiB with the
    # allocator's slack. A ZipInfo per member (the zipfile-based reader) measured +29 MiB. 10 MiB
    # is twice what the table needs and a third of what the old reader took.
    assert large - small < 10 << 20, f"peak RSS grew by {(large - small) / 2**20:.1f} MiB"
