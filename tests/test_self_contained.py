"""The project and its tests need nothing outside the repository: no file reads the reference material
that sits beside a checkout (`../shared/`); what a test needs is copied in (tests/fixtures/)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a path into the sibling folder, written as a string or built with pathlib
OUTSIDE = re.compile(r"\.\./shared|parents\[\d\]\.parent\s*/\s*[\"']shared|[\"']shared[\"']\s*/\s*[\"'](fixtures|specs|docs)")


# The one allowed read (issue 18): the engine toolchain builds the third-party pulumi-random provider from
# the workplace's vendor copy, which must stay out of this repository. Only that path, only there.
ALLOWED = {"engine/toolchain.sh": "../shared/vendor/pulumi-random/provider"}


def _reads_outside(f: str, text: str) -> bool:
    allowed = ALLOWED.get(f)
    return any(not (allowed and text.startswith(allowed, m.start())) for m in OUTSIDE.finditer(text))


def test_no_code_reads_the_folder_beside_the_checkout():
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    code = [f for f in files if (f.endswith((".py", ".sh", ".toml", ".cfg", ".ini", ".json", ".yaml")) or f in ("dev", ".ci/run")) and f != "tests/test_self_contained.py"]
    offenders = [f for f in code if (ROOT / f).is_file() and _reads_outside(f, (ROOT / f).read_text(errors="replace"))]
    assert offenders == []


def test_the_metadata_fixtures_are_in_the_repository_with_their_sources():
    fixtures = ROOT / "tests" / "fixtures" / "metadata"
    names = sorted(p.name for p in fixtures.glob("*.json"))
    assert len(names) == 4
    readme = (fixtures / "README.md").read_text()
    assert all(name in readme for name in names)


def test_the_allowance_is_exactly_the_vendor_path():
    assert not _reads_outside("engine/toolchain.sh", 'SRC="$REPO_DIR/../shared/vendor/pulumi-random/provider"')
    assert _reads_outside("engine/toolchain.sh", 'cp ../shared/fixtures/metadata/x.json .')
    assert _reads_outside("tests/x.py", '"../shared/vendor/pulumi-random/provider"')
