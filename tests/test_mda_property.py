"""Fuzzing the MDA reader: whatever the bytes, only MdaError escapes, and nothing is left half-written."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mxinfra.mda import ExtractionLimits, MdaError, open_mda
from tests.mda_builders import app_members, zip_bytes

VALID = zip_bytes(app_members() + [("web/dist/index.js", b"console.log('hi');\n" * 50), ("native/x", b"n")])
# tight limits so fuzzed headers that claim huge sizes are refused quickly rather than written
LIMITS = ExtractionLimits(max_total_bytes=1 << 20, max_members=1000)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _exercise(data: bytes) -> None:
    """Open, check and extract; only MdaError may escape, and a failed extraction leaves nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        archive = root / "fuzz.mda"
        archive.write_bytes(data)
        try:
            pkg = open_mda(archive)
            pkg.check_members(LIMITS)
            pkg.sha256()
            out = pkg.extract(root / "out", LIMITS)
            assert out.is_dir()
        except MdaError as exc:
            assert str(exc).startswith(str(archive))
            assert sorted(p.name for p in root.iterdir()) == ["fuzz.mda"]


@SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _exercise(data)


@SETTINGS
@given(st.binary(max_size=64).map(lambda b: b"PK\x03\x04" + b))
def test_random_bytes_with_zip_magic(data: bytes) -> None:
    _exercise(data)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(VALID) - 1), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, len(VALID) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(VALID)), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, len(VALID) - 1), st.integers(1, 64)),
)


def _mutate(data: bytes, ops: list[tuple]) -> bytes:
    buf = bytearray(data)
    for kind, at, arg in ops:
        at = min(at, len(buf))
        if kind == "flip" and at < len(buf):
            buf[at] ^= arg
        elif kind == "cut":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = arg
        elif kind == "delete":
            del buf[at : at + arg]
    return bytes(buf)


@SETTINGS
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_valid_archive(ops: list[tuple]) -> None:
    _exercise(_mutate(VALID, ops))


# the central directory and local headers are where parsers break: aim flips there
CENTRAL = VALID.find(b"PK\x01\x02")


@SETTINGS
@given(st.lists(st.tuples(st.integers(CENTRAL, len(VALID) - 1), st.integers(1, 255)), min_size=1, max_size=6))
def test_mutated_central_directory(flips: list[tuple[int, int]]) -> None:
    _exercise(_mutate(VALID, [("flip", at, x) for at, x in flips]))


def test_valid_archive_passes_the_harness() -> None:
    _exercise(VALID)
