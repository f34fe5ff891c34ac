"""The MDA reader on well-formed packages: real metadata from four Mendix versions, digests, extraction."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest

from mxinfra.errors import UserError
from mxinfra.mda import (
    Constant,
    DestinationError,
    ExtractionLimits,
    LayoutError,
    MdaError,
    Metadata,
    MetadataError,
    NotAZipError,
    PackageNotFoundError,
    RuntimeVersion,
    RuntimeVersionError,
    open_mda,
    sha256_file,
)
from tests.mda_builders import FIXTURES, MINIMAL_METADATA, app_members, fixture_files, tree, write_dir, write_zip

FIXTURE_FILES = fixture_files()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "orders" / "orders-1.4.2.mda"


def test_fixtures_present() -> None:
    assert len(FIXTURE_FILES) == 4, f"expected four metadata fixtures in {FIXTURES}"


@pytest.fixture(params=FIXTURE_FILES, ids=lambda p: p.stem)
def fixture(request: pytest.FixtureRequest) -> Path:
    return request.param


def test_fixture_metadata_matches_json(fixture: Path, tmp_path: Path) -> None:
    raw = json.loads(fixture.read_bytes())
    pkg = open_mda(write_zip(tmp_path / "app.mda", app_members(fixture.read_bytes())))
    md = pkg.metadata
    assert pkg.is_archive
    assert str(md.runtime_version) == raw["RuntimeVersion"]
    assert md.project_id == raw["ProjectID"]
    assert md.project_name == raw["ProjectName"]
    assert md.model_version == raw["ModelVersion"]
    assert md.admin_user == raw["AdminUser"]
    assert md.admin_role == raw.get("AdminRole")
    assert md.java_version == raw.get("JavaVersion")
    assert [(c.name, c.type, c.default_value, c.description) for c in md.constants] == [
        (c["Name"], c["Type"], c["DefaultValue"], c["Description"]) for c in raw["Constants"]
    ]
    assert [(e.name, e.description) for e in md.scheduled_events] == [
        (e["Name"], e["Description"]) for e in raw["ScheduledEvents"]
    ]
    assert [(h.name, h.default_enabled, h.match_exactly) for h in md.request_handlers] == [
        (h["Name"], h["DefaultEnabled"], h["MatchExactly"]) for h in raw["RequestHandlers"]
    ]
    assert [(r.id, r.name, list(r.manageable_roles)) for r in md.roles] == [
        (rid, r["Name"], r.get("ManageableRoles", [])) for rid, r in raw["Roles"].items()
    ]
    assert md.languages == tuple(raw.get("Languages", []))
    # everything not modelled survives verbatim
    for key in ("Configuration", "Description", "DataBrokerConfiguration"):
        if key in raw:
            assert md.extra[key] == raw[key]


def test_old_versions_have_no_java_version() -> None:
    by_stem = {p.stem: Metadata.from_json(p.read_bytes(), source=p.name) for p in FIXTURE_FILES}
    assert by_stem["mx7.20-demo"].java_version is None
    assert by_stem["mx8.0-mydemoversion8"].java_version is None
    assert by_stem["mx10.24-aws-kms-connector"].java_version == 21
    assert by_stem["mx7.20-demo"].languages == ()
    assert by_stem["mx10.24-aws-kms-connector"].languages == ("en_US",)


def test_zip_and_directory_give_equal_metadata(fixture: Path, tmp_path: Path) -> None:
    members = app_members(fixture.read_bytes())
    zipped = open_mda(write_zip(tmp_path / "app.mda", members))
    unpacked = open_mda(write_dir(tmp_path / "app", members))
    assert not unpacked.is_archive
    assert zipped.metadata == unpacked.metadata
    assert unpacked.size_bytes == sum(len(d) for _, d in members)


def test_sha256_equals_hashlib(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "app.mda", app_members())
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    pkg = open_mda(path)
    seen: list[int] = []
    assert pkg.sha256(seen.append) == expected
    assert sum(seen) == path.stat().st_size == pkg.size_bytes
    assert pkg.sha256() == expected  # cached
    assert sha256_file(path, chunk=7) == expected


def test_directory_sha256_is_deterministic_and_content_sensitive(tmp_path: Path) -> None:
    members = app_members()
    a = open_mda(write_dir(tmp_path / "a", members)).sha256()
    b = open_mda(write_dir(tmp_path / "b", list(reversed(members)))).sha256()
    assert a == b
    (tmp_path / "b" / "web" / "index.html").write_bytes(b"changed")
    assert open_mda(tmp_path / "b").sha256() != a
    # files outside model/, web/, native/ are not part of the app
    (tmp_path / "a" / "Procfile").write_text("web: x")
    assert open_mda(tmp_path / "a").sha256() == a


def test_runtime_version_ordering_and_parsing() -> None:
    assert RuntimeVersion.parse("10.24.15.93102") > RuntimeVersion.parse("9.6.0.27784")
    assert RuntimeVersion.parse("9.6.0") == RuntimeVersion(9, 6, 0, 0)
    assert RuntimeVersion.parse("9.10.0.1") > RuntimeVersion.parse("9.9.99.99999")
    assert str(RuntimeVersion.parse("10.24.15.93102")) == "10.24.15.93102"
    assert sorted(RuntimeVersion.parse(v) for v in ["8.0.0.50768", "10.24.15.93102", "7.20.1.42379"])[0].major == 7
    for bad in ["10.x", "10", "10.24", "1.2.3.4.5", "", " 10.24.15.1", "10.24.15.-1", "１０.1.1"]:
        with pytest.raises(ValueError):
            RuntimeVersion.parse(bad)


def test_unknown_keys_kept_in_extra() -> None:
    doc = dict(MINIMAL_METADATA, FutureThing={"nested": [1, 2]}, Description="hi")
    md = Metadata.from_json(json.dumps(doc), source="x")
    assert md.extra == {"FutureThing": {"nested": [1, 2]}, "Description": "hi"}
    assert "RuntimeVersion" not in md.extra
    with pytest.raises(TypeError):
        md.extra["x"] = 1  # type: ignore[index]


def test_defaults_for_absent_optional_fields() -> None:
    doc = {k: MINIMAL_METADATA[k] for k in ("RuntimeVersion", "ProjectID", "ProjectName", "ModelVersion")}
    md = Metadata.from_json(json.dumps(doc).encode(), source="x")
    assert md.admin_user == "MxAdmin"
    assert md.admin_role is None and md.java_version is None
    assert md.roles == md.constants == md.scheduled_events == md.request_handlers == md.languages == ()


def test_constant_lookup_and_module() -> None:
    md = Metadata.from_json((FIXTURES / "mx7.20-demo.json").read_bytes(), source="demo")
    c = md.constant("UnitTesting.RemoteApiEnabled")
    assert c == Constant("UnitTesting.RemoteApiEnabled", "Boolean", "False", "")
    assert c.module == "UnitTesting"
    assert md.constant("Nope.Nothing") is None


@pytest.mark.parametrize(
    ("patch", "field", "expected"),
    [
        ({"RuntimeVersion": "10.x"}, "RuntimeVersion", "expected three or four dot-separated numbers like 10.24.15.93102 or 9.6.0 (a pre-release suffix like -rc1 may follow)"),
        ({"RuntimeVersion": 10}, "RuntimeVersion", "expected a string"),
        ({"ProjectID": None}, "ProjectID", "expected a string"),
        ({"JavaVersion": "21"}, "JavaVersion", "expected an integer"),
        ({"JavaVersion": True}, "JavaVersion", "expected an integer"),
        ({"Roles": []}, "Roles", "expected an object"),
        ({"Roles": {"r1": {"Name": 3}}}, "Roles['r1'].Name", "expected a string"),
        ({"Roles": {"r1": {"Name": "A", "ManageableRoles": [1]}}}, "Roles['r1'].ManageableRoles[0]", "expected a string"),
        (
            {"Constants": [{"Name": "A.b", "Type": "String", "DefaultValue": "", "Description": ""}] * 2
             + [{"Name": "A.c", "Type": "Integer", "DefaultValue": 5, "Description": ""}]},
            "Constants[2].DefaultValue",
            "expected a string",
        ),
        ({"Constants": [{"Type": "String"}]}, "Constants[0].Name", "is missing"),
        ({"Constants": ["A.b"]}, "Constants[0]", "expected an object"),
        ({"ScheduledEvents": [{"Name": 1}]}, "ScheduledEvents[0].Name", "expected a string"),
        ({"RequestHandlers": [{"Name": "/api/", "DefaultEnabled": "true"}]}, "RequestHandlers[0].DefaultEnabled", "expected a boolean"),
        ({"Languages": "en_US"}, "Languages", "expected an array"),
    ],
)
def test_wrong_field_types_name_the_field(patch: dict, field: str, expected: str, tmp_path: Path) -> None:
    path = write_zip(tmp_path / "orders.mda", app_members(dict(MINIMAL_METADATA, **patch)))
    with pytest.raises(MetadataError) as info:
        open_mda(path)
    err = info.value
    assert err.field == field
    assert err.member == "model/metadata.json"
    assert err.archive == str(path)
    assert f"model/metadata.json: field '{field}'" in str(err)
    assert expected in str(err)
    assert isinstance(err, UserError)


def test_runtime_version_error_message(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "orders.mda", app_members(dict(MINIMAL_METADATA, RuntimeVersion="10.x")))
    with pytest.raises(RuntimeVersionError) as info:
        open_mda(path)
    assert str(info.value) == (
        f"{path}: model/metadata.json: field 'RuntimeVersion' is '10.x': "
        "expected three or four dot-separated numbers like 10.24.15.93102 or 9.6.0 (a pre-release suffix like -rc1 may follow)"
    )


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000, "not valid JSON"),
        (json.dumps({"ProjectID": "x"}).encode(), "'RuntimeVersion' is missing"),
    ],
)
def test_bad_metadata_documents(body: bytes, needle: str, tmp_path: Path) -> None:
    path = write_zip(tmp_path / "a.mda", app_members(body))
    with pytest.raises(MetadataError, match=needle):
        open_mda(path)


def test_metadata_with_bom_is_accepted() -> None:
    md = Metadata.from_json(b"\xef\xbb\xbf" + json.dumps(MINIMAL_METADATA).encode(), source="x")
    assert md.project_name == "Tiny"


def test_not_a_zip_and_missing_path(tmp_path: Path) -> None:
    junk = tmp_path / "notes.mda"
    junk.write_text("hello")
    with pytest.raises(NotAZipError, match="notes.mda: is not a ZIP archive"):
        open_mda(junk)
    (tmp_path / "empty.mda").write_bytes(b"")
    with pytest.raises(NotAZipError):
        open_mda(tmp_path / "empty.mda")
    with pytest.raises(PackageNotFoundError, match="does not exist"):
        open_mda(tmp_path / "nope.mda")


@pytest.mark.parametrize(
    ("drop", "member"),
    [("model/metadata.json", "model/metadata.json"), ("web/index.html", "web/"), ("model/", "model/")],
)
def test_layout_errors(drop: str, member: str, tmp_path: Path) -> None:
    members = [(n, d) for n, d in app_members() if not n.startswith(drop)]
    with pytest.raises(LayoutError) as info:
        open_mda(write_zip(tmp_path / "a.mda", members))
    assert info.value.member == member
    with pytest.raises(LayoutError) as info:
        open_mda(write_dir(tmp_path / "dir", members))
    assert info.value.member == member


def test_extract_archive_and_directory(tmp_path: Path) -> None:
    members = app_members() + [("native/bundle.js", b"x"), ("web/dist/", b"")]
    pkg = open_mda(write_zip(tmp_path / "a.mda", members))
    assert pkg.check_members() == len(members)
    out = pkg.extract(tmp_path / "out")
    assert out == tmp_path / "out"
    for name, data in members:
        if not name.endswith("/"):
            assert (out / name).read_bytes() == data
    assert (out / "web" / "dist").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]

    unpacked = write_dir(tmp_path / "dir", [m for m in members if not m[0].endswith("/")])
    (unpacked / "Procfile").write_text("ignored")
    copy = open_mda(unpacked).extract(tmp_path / "copy")
    assert tree(copy) == [p for p in tree(out) if p != "web/dist"]
    assert open_mda(copy).sha256() == open_mda(unpacked).sha256()


def test_extract_refuses_existing_destination(tmp_path: Path) -> None:
    pkg = open_mda(write_zip(tmp_path / "a.mda", app_members()))
    (tmp_path / "out").mkdir()
    with pytest.raises(DestinationError, match="out already exists"):
        pkg.extract(tmp_path / "out")
    with pytest.raises(DestinationError, match="not a directory"):
        pkg.extract(tmp_path / "missing" / "out")
    assert tree(tmp_path) == ["a.mda", "out"]


def test_member_count_limit(tmp_path: Path) -> None:
    pkg = open_mda(write_zip(tmp_path / "a.mda", app_members()))
    with pytest.raises(MdaError, match="expected at most 2"):
        pkg.check_members(ExtractionLimits(max_members=2))


def test_errors_pickle() -> None:
    err = MetadataError("a.mda", "model/metadata.json", "field 'X' is missing", field="X")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.field == "X" and type(again) is MetadataError


def test_bundled_example_app() -> None:
    pkg = open_mda(EXAMPLE)
    md = pkg.metadata
    assert str(md.runtime_version) == "10.24.15.93102"
    assert md.project_name == "Orders" and md.model_version == "1.4.2.1234" and md.java_version == 21
    assert {r.name for r in md.roles} == {"Administrator", "OrderManager", "Customer", "Auditor"}
    assert {c.type for c in md.constants} >= {"String", "Integer", "Boolean", "Decimal", "DateTime"}
    assert md.constant("Orders.PageSize").default_value == "50"
    assert pkg.check_members() > 5
    assert pkg.size_bytes < 20_000


def test_hash_ahead_gives_the_same_digest_and_stops_on_a_refused_archive(tmp_path):
    """open_mda(hash_ahead=True) hashes on a thread beside the directory read: the same digest as the
    sequential path, progress adds up to the size, and a refused archive leaves no reader behind."""
    import os
    import threading

    from mxinfra.mda import MdaError, open_mda, sha256_file
    from scaffold import EXAMPLE_MDA

    seen = []
    pkg = open_mda(EXAMPLE_MDA, hash_ahead=True)
    assert pkg.sha256(seen.append) == sha256_file(EXAMPLE_MDA) == open_mda(EXAMPLE_MDA).sha256()
    assert sum(seen) == os.path.getsize(EXAMPLE_MDA)
    bad = tmp_path / "bad.mda"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 100_000)
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(MdaError):
        open_mda(bad, hash_ahead=True)
    for t in threading.enumerate():
        if t.name == "mxinfra-sha256":
            t.join(5)
    assert len(os.listdir("/proc/self/fd")) == before
