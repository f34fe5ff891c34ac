"""mxinfra.backup_archive: the Mendix Cloud backup archive written and read on the machine running mxinfra
(Cloud Foundry's download and restore --archive). Archives are built here with Python's tarfile and GNU
tar, never with the module under test, for the refusals; the round trip checks bytes and hashes with
hashlib and `tar -tzf`."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from mxinfra.backup_archive import CLEAN_SQL, ArchiveError, Opening, UnsafeDump, check, pack, store_key, tree_path, unpack
from mxinfra.errors import UserError


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_pack_then_unpack_gives_back_the_dump_and_every_file(tmp_path):
    dump = tmp_path / "dump"
    dump.write_bytes(b"PGDMP" + os.urandom(200_000))
    tree = tmp_path / "files"
    (tree / "a1" / "b2").mkdir(parents=True)
    (tree / "a1" / "b2" / "7f3e").write_bytes(os.urandom(70_000))
    (tree / "Zoë's doc").write_bytes(b"")
    (tree / "empty-dir").mkdir()
    out = tmp_path / "20261205T020000Z.tar.gz"
    written = pack(dump, tree, out, metadata={"modelVersion": "1.4.2.17", "duration": "3"})
    data = out.read_bytes()
    assert written.size == len(data) and written.sha256 == hashlib.sha256(data).hexdigest()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial file left
    # GNU tar reads it as a Mendix Cloud backup: db/db.backup, tree/ and .metadata
    listed = subprocess.run(["tar", "-tzf", str(out)], capture_output=True, text=True, check=True).stdout.splitlines()
    assert listed == ["db/db.backup", "tree/", "tree/Zoë's doc", "tree/a1/", "tree/a1/b2/", "tree/a1/b2/7f3e", "tree/empty-dir/", ".metadata"]
    # Mendix Cloud's description: every value a string, the sizes those of the dump and of the files
    described = json.loads(subprocess.run(["tar", "-xzOf", str(out), ".metadata"], capture_output=True, check=True).stdout)
    assert described == {"dumpSize": "200005", "filesSize": "70000", "modelVersion": "1.4.2.17", "duration": "3"}
    got = unpack(out, tmp_path / "restore")
    assert got.dump.read_bytes() == dump.read_bytes() and got.files == 2
    assert _tree(got.tree) == _tree(tree) and (got.tree / "empty-dir").is_dir()


def test_pack_never_overwrites_and_leaves_nothing_when_it_fails(tmp_path):
    dump = tmp_path / "dump"
    dump.write_bytes(b"PGDMP")
    tree = tmp_path / "files"
    tree.mkdir()
    (tree / "link").symlink_to(dump)
    out = tmp_path / "b.tar.gz"
    with pytest.raises(UserError, match=r"files/link: a symbolic link in the files to back up: expected regular files and directories"):
        pack(dump, tree, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump", "files"]
    out.write_bytes(b"an earlier backup")
    (tree / "link").unlink()
    with pytest.raises(UserError, match=r"b.tar.gz: exists already: not overwritten"):
        pack(dump, tree, out)
    assert out.read_bytes() == b"an earlier backup"


def _archive(path: Path, *members: tuple[str, bytes | str | None]) -> Path:
    """A .tar.gz of (name, content) members: bytes a file, None a directory, 'symlink:x' a link to x."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content.split(":", 1)[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


@pytest.mark.parametrize(
    "members, message",
    [
        ((("db/db.backup", b"x"), ("tree/../../escaped", b"x")), "entry 'tree/../../escaped' would be written outside the archive's directory: refused"),
        ((("/etc/cron.d/x", b"x"),), "entry '/etc/cron.d/x' would be written outside the archive's directory: refused"),
        ((("db/db.backup", b"x"), ("tree/l", "symlink:/etc/passwd")), "entry 'tree/l' is a link: a backup archive holds only regular files and directories"),
        ((("db/db.backup", b"x"), ("tree/a", b"1"), ("tree/a", b"2")), "entry 'tree/a' appears twice: a backup archive has each entry once"),
        # names other tar readers take otherwise (GNU tar keeps tree//x absolute after --strip-components)
        ((("db/db.backup", b"x"), ("tree//tmp/victim", b"1")), "entry 'tree//tmp/victim' is not a plain relative name"),
        ((("db/db.backup", b"x"), ("./tree/a", b"1")), "entry './tree/a' is not a plain relative name"),
        ((("db/./db.backup", b"x"),), "entry 'db/./db.backup' is not a plain relative name"),
        ((("db/db.backup", b"x"), ("etc/passwd", b"x")), "entry 'etc/passwd' is not part of a backup: expected only .metadata, db/db.backup and tree/ (the files)"),
        ((("db/db.backup", b"x"), (".metadata", None)), "entry '.metadata' must be a file of at most 65536 bytes"),
        ((("db/db.backup", b"x"), (".metadata", b" " * 65537)), "entry '.metadata' must be a file of at most 65536 bytes"),
        ((("db/db.backup", b"x"), ("tree/.metadata", None), ("db/.metadata", b"{}")), "entry 'db/.metadata' is not part of a backup"),
        ((("tree/a", b"x"),), "no db/db.backup in the archive: a backup archive holds the database dump there"),
        ((("db/db.backup", b"x"), ("tree", b"not a directory")), "entry 'tree' must be a directory"),
        ((("db/db.backup", b"x"), ("tree/a", b"1"), ("tree/a/b", b"2")), "entry 'tree/a/b' lies under 'tree/a', which the archive has as a file"),
    ],
)
def test_an_archive_that_is_not_a_backup_is_refused_naming_the_entry(tmp_path, members, message):
    archive = _archive(tmp_path / "a.tar.gz", *members)
    with pytest.raises(ArchiveError) as e:
        unpack(archive, tmp_path / "out")
    assert str(e.value).startswith(f"{archive}: ") and message in str(e.value)
    with pytest.raises(ArchiveError) as e:  # the same judgement when nothing is written
        check(archive)
    assert message in str(e.value)
    assert not (tmp_path / "etc").exists() and not (tmp_path / "escaped").exists()


def test_a_damaged_or_cut_off_archive_is_refused_in_words(tmp_path):
    good = _archive(tmp_path / "g.tar.gz", ("db/db.backup", os.urandom(100_000)), ("tree/a", os.urandom(100_000)))
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    flipped = bytearray(good.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(flipped))
    plain = tmp_path / "plain.tar.gz"
    plain.write_bytes(gzip.compress(b"not a tar at all" * 100))
    for archive in (cut, bad, plain, tmp_path / "missing.tar.gz"):
        with pytest.raises(ArchiveError) as e:
            unpack(archive, tmp_path / f"out-{archive.stem}")
        assert str(e.value).startswith(f"{archive}: "), str(e.value)


def test_a_flipped_byte_that_still_inflates_is_caught_by_gzips_checksum(tmp_path):
    """Stored (level 0) deflate blocks inflate whatever their bytes: only the member's CRC-32 tells."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, body in (("db/db.backup", b"PGDMP" + b"d" * 5000), ("tree/a", b"f" * 5000)):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    data = bytearray(gzip.compress(buf.getvalue(), compresslevel=0))
    at = bytes(data).index(b"f" * 100) + 50
    data[at] ^= 0x01
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(bytes(data))
    with tarfile.open(archive) as tar:  # tarfile alone reads it without a word
        assert tar.extractfile("tree/a").read()[50:51] != b"f"
    with pytest.raises(ArchiveError, match=r"not a readable \.tar\.gz backup archive \(BadGzipFile: CRC check failed"):
        unpack(archive, tmp_path / "out")


def test_bytes_other_than_those_checked_are_refused(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", ("db/db.backup", b"PGDMP"), ("tree/a", b"1"))
    with pytest.raises(ArchiveError, match=r"its bytes changed since they were checked \(sha256 [0-9a-f]{64}, not 0{64}\): nothing was restored"):
        unpack(archive, tmp_path / "out", "0" * 64)
    assert unpack(archive, tmp_path / "out2", hashlib.sha256(archive.read_bytes()).hexdigest()).files == 1


def test_packing_on_every_core_writes_the_same_bytes_as_on_one(tmp_path, monkeypatch):
    """Blocks compressed at once are written in order: the archive does not depend on the cores, and gzip
    (and GNU tar) read its many members as one stream."""
    import mxinfra.backup_archive as archive_module

    monkeypatch.setattr(archive_module._Members, "BLOCK", 64 << 10)
    # .metadata carries the time it was written: the two archives are compared at one time (two packs a
    # second apart, under load, differed there and nowhere else)
    monkeypatch.setattr(archive_module.time, "time", lambda: 1_796_000_000.0)
    dump = tmp_path / "dump"
    dump.write_bytes(b"PGDMP" + b"row data " * 100_000)
    tree = tmp_path / "files"
    tree.mkdir()
    for i in range(5):
        (tree / f"f{i}").write_bytes(os.urandom(150_000))
    one = pack(dump, tree, tmp_path / "one.tar.gz", workers=1)
    two = pack(dump, tree, tmp_path / "two.tar.gz", workers=2)
    assert one.sha256 == two.sha256 and (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()
    data = (tmp_path / "two.tar.gz").read_bytes()
    assert data.count(b"\x1f\x8b\x08") >= 1_750_000 // (64 << 10)  # one member a block (at least)
    subprocess.run(["tar", "-tzf", str(tmp_path / "two.tar.gz")], check=True, capture_output=True)
    got = unpack(tmp_path / "two.tar.gz", tmp_path / "out")
    assert got.dump.read_bytes() == dump.read_bytes() and _tree(got.tree) == _tree(tree)


def test_a_block_that_does_not_deflate_is_stored_and_one_that_does_is_deflated(tmp_path, monkeypatch):
    """A file store is mostly documents and images: a block whose first MiB does not deflate to under 90%
    is written as stored blocks (level 0), the rest at level 1; gzip and GNU tar read both as they are."""
    import zlib

    import mxinfra.backup_archive as archive_module

    monkeypatch.setattr(archive_module._Members, "BLOCK", 2 << 20)
    dump = tmp_path / "dump"
    dump.write_bytes(b"PGDMP" + b"row data " * 400_000)  # 3.6 MB: two blocks that deflate
    tree = tmp_path / "files"
    tree.mkdir()
    (tree / "photo").write_bytes(os.urandom(5 << 20))  # blocks that do not
    (tree / "notes").write_bytes(b"mendix " * 300_000)
    out = tmp_path / "b.tar.gz"
    pack(dump, tree, out, workers=2)
    data = out.read_bytes()
    def gzipped(raw: bytes, level: int) -> bytes:
        c = zlib.compressobj(level, zlib.DEFLATED, 31)
        return c.compress(raw) + c.flush()

    members, at = [], 0
    while at < len(data):
        d = zlib.decompressobj(wbits=31)
        raw = d.decompress(data[at:])
        end = len(data) - len(d.unused_data)
        members.append((raw, data[at:end]))
        at = end
    levels = []
    for raw, member in members:
        # stored exactly when its first MiB does not deflate to under 90% (943718 bytes): the photo's blocks
        level = 0 if len(gzipped(raw[: 1 << 20], 1)) >= 943718 else 1
        assert member == gzipped(raw, level), (len(raw), level)
        levels.append(level)
    assert levels.count(0) >= 2 and levels.count(1) >= 2, levels
    listed = subprocess.run(["tar", "-tzf", str(out)], capture_output=True, text=True, check=True).stdout.split()
    assert sorted(listed) == [".metadata", "db/db.backup", "tree/", "tree/notes", "tree/photo"]
    got = unpack(out, tmp_path / "out")
    assert got.dump.read_bytes() == dump.read_bytes() and _tree(got.tree) == _tree(tree)


def test_a_file_system_without_hard_links_still_gets_the_archive_and_never_over_a_file(tmp_path, monkeypatch):
    import errno

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    dump = tmp_path / "dump"
    dump.write_bytes(b"PGDMP")
    tree = tmp_path / "files"
    tree.mkdir()
    (tree / "a").write_bytes(b"1")
    out = tmp_path / "b.tar.gz"
    written = pack(dump, tree, out)
    assert written.sha256 == hashlib.sha256(out.read_bytes()).hexdigest() and out.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.gz", "dump", "files"]


def test_anything_after_the_tars_end_is_refused(tmp_path):
    """A second tar hidden after the first's end marker: a reader starting there (restore.sh follows the
    archive's trailer to where tree/ starts) would extract what this reader never judged."""
    first = _archive(tmp_path / "first.tar.gz", ("db/db.backup", b"PGDMP"), ("tree/a", b"1"))
    hidden = _archive(tmp_path / "hidden.tar.gz", ("tree/evil", "symlink:/proc/self/environ"))
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(first.read_bytes() + hidden.read_bytes())
    with pytest.raises(ArchiveError, match=r"data after the tar's end: a backup archive ends with its end marker \(and zeros\)"):
        check(archive)
    # an empty gzip member after the end (backup.sh's trailer) and zero padding are fine
    archive.write_bytes(first.read_bytes() + gzip.compress(b"") + gzip.compress(b"\0" * 4096))
    checked = check(archive)
    # one pass: what was judged is what was hashed, to the last byte
    assert checked.files == 1 and checked.size == archive.stat().st_size and checked.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_check_asks_the_caller_about_each_file(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", ("db/db.backup", b"PGDMP"), ("tree/x.mx", b"1"), ("tree/y", b"2"))
    with pytest.raises(ArchiveError, match=r"entry 'tree/y': lacks the store's suffix"):
        check(archive, file_name=lambda name: None if name.endswith(".mx") else "lacks the store's suffix")


def test_an_archive_as_mendix_cloud_writes_it_restores(tmp_path):
    # The layout of docs.mendix.com's "Format of a Backup File": .metadata first, db/db.backup, and the
    # files at tree/xx/yy/<uuid> (here without directory entries: the docs list only the files)
    uuid = "0d3e301f-5551-46f8-ad44-8de2be084c95"
    metadata = b'{"duration":"0","dumpSize":"5","modelVersion":"1.0.0.40","databaseSize":"9730584","filesSize":"3"}'
    archive = _archive(tmp_path / "files_and_database-fc9e126f-201811210121.tar.gz", (".metadata", metadata), ("db/db.backup", b"PGDMP"), (f"tree/0d/3e/{uuid}", b"abc"))
    assert check(archive).files == 1
    got = unpack(archive, tmp_path / "out")
    assert got.dump.read_bytes() == b"PGDMP" and _tree(got.tree) == {f"0d/3e/{uuid}": b"abc"}
    assert not (tmp_path / "out" / ".metadata").exists()  # read past: nothing depends on it


@pytest.mark.parametrize(
    "key, suffix, path",
    [
        # Mendix's own keys: the file's UUID, with the store's suffix where one is configured
        ("0d3e301f-5551-46f8-ad44-8de2be084c95", "", "0d/3e/0d3e301f-5551-46f8-ad44-8de2be084c95"),
        ("0d3e301f-5551-46f8-ad44-8de2be084c95.orders-prod", ".orders-prod", "0d/3e/0d3e301f-5551-46f8-ad44-8de2be084c95"),
        # no such name: the key itself, as archives kept every key before
        ("abc", "", "abc"),
        ("ab.orders-prod", ".orders-prod", "ab.orders-prod"),
        ("some/folder/key", "", "some/folder/key"),
        ("..abcdef", "", "..abcdef"),
        ("ab..cdef", "", "ab..cdef"),
        ("abcd", "", "ab/cd/abcd"),
        # only plain ASCII among the first four is nested (the Kubernetes scripts' tar counts bytes)
        ("\u00e9abcdef", "", "\u00e9abcdef"),
        ("x\ny-abcd", "", "x\ny-abcd"),
        # a key without the store's suffix is not one of the runtime's: kept as it is
        ("abcdefgh", ".sfx", "abcdefgh"),
    ],
)
def test_an_object_key_and_its_place_under_tree_map_both_ways(key, suffix, path):
    assert tree_path(key, suffix) == path
    assert store_key(path, suffix) == key


def test_a_key_that_would_read_back_as_another_is_refused():
    with pytest.raises(UserError, match=r"object 'ab/cd/abcdef' is named like a file of Mendix Cloud's layout \(xx/yy/<name>\): it would be restored as 'abcdef'"):
        tree_path("ab/cd/abcdef")


def test_files_of_an_older_archive_keep_their_keys():
    # tree/<key> as mxinfra wrote archives of object stores before Mendix Cloud's layout: the key as it was
    assert store_key("0d3e301f-5551-46f8-ad44-8de2be084c95.sfx", ".sfx") == "0d3e301f-5551-46f8-ad44-8de2be084c95.sfx"
    assert store_key("0d/3e/0d3e301f", ".sfx") == "0d3e301f.sfx"
    assert store_key("0d/3f/0d3e301f", ".sfx") == "0d/3f/0d3e301f"  # not where the name would be: a path, kept


def _opened(*lines: bytes) -> bytes:
    opening = Opening("9IrlsD9EB7")
    return b"".join(opening.line(line) for line in lines)


def test_pg_restore_output_opens_restricted_and_in_one_transaction_probed_first_and_gets_the_clean_step_after_its_settings():
    # pg_restore --single-transaction's opening as PostgreSQL 15.14 and newer write it, 17's setting among it
    out = _opened(b"--\n", b"-- PostgreSQL database dump\n", b"\n", b"\\restrict 9IrlsD9EB7\n", b"\n", b"-- Dumped from database version 15.18\n",
                  b"BEGIN;\n", b"\n", b"SET statement_timeout = 0;\n", b"SET transaction_timeout = 0;\n",
                  b"SELECT pg_catalog.set_config('search_path', '', false);\n", b"SET row_security = off;\n", b"\n", b"DROP TABLE IF EXISTS public.t;\n")
    assert out == (b"--\n-- PostgreSQL database dump\n\n\\restrict 9IrlsD9EB7\n\n-- Dumped from database version 15.18\nBEGIN;\n"
                   b"SELECT pg_catalog.concat(pg_catalog.concat_ws(' ', 'mxinfra-transaction 9IrlsD9EB7'::pg_catalog.text, pg_catalog.txid_current(), pg_catalog.pg_backend_pid(), "
                   b"(SELECT pg_catalog.date_part('epoch', s.backend_start) FROM pg_catalog.pg_stat_activity s WHERE s.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()), "
                   b"pg_catalog.concat(pg_catalog.date_part('epoch', pg_catalog.pg_postmaster_start_time()), '/', "
                   b"(SELECT pg_catalog.date_part('epoch', b.stats_reset) FROM pg_catalog.pg_stat_bgwriter b))), pg_catalog.chr(10), pg_catalog.repeat('#', 1048576));\n"
                   b"\nSET statement_timeout = 0;\n"
                   b"SELECT pg_catalog.set_config('transaction_timeout', '0', false) WHERE pg_catalog.current_setting('server_version_num')::int >= 170000;\n"
                   b"SELECT pg_catalog.set_config('search_path', '', false);\nSET row_security = off;\n\n" + CLEAN_SQL.encode() + b"DROP TABLE IF EXISTS public.t;\n")


@pytest.mark.parametrize(
    "lines, message",
    [
        # a pg_restore before the fix: its first command is a setting, or what a crafted dump put there
        ((b"--\n", b"SET statement_timeout = 0;\n"), "did not open its output with the \\restrict key it was given"),
        ((b"\\! touch /tmp/x\n",), "did not open its output with the \\restrict key it was given"),
        ((b"\\restricted\n",), "did not open its output with the \\restrict key it was given"),
        # a \restrict line with a key other than the one given (a dump's header field can write one)
        ((b"-- Dumped from database version 15.0\n", b"\\restrict k\n"), "did not open its output with the \\restrict key it was given"),
        # a blank line of spaces is not an empty one (restore.sh reads it the same way)
        ((b" \n",), "did not open its output with the \\restrict key it was given"),
        # restricted, but not one transaction (no --single-transaction): large objects would commit
        ((b"\\restrict 9IrlsD9EB7\n", b"SET statement_timeout = 0;\n"), "did not begin its output with BEGIN"),
    ],
)
def test_pg_restore_output_that_psql_may_not_run_is_refused(lines, message):
    with pytest.raises(UnsafeDump, match=re.escape(message)):
        _opened(*lines)


def test_a_transaction_is_settled_by_the_servers_word_and_never_guessed():
    from mxinfra.backup_archive import settled

    answers = iter([None, "in progress", "committed"])
    assert settled(lambda: next(answers), wait=5, every=0) is True
    answers = iter([None, "aborted"])
    assert settled(lambda: next(answers), wait=5, every=0) is False
    assert settled(lambda: "unknown", wait=5, every=0) is None  # final: not asked again
    asked: list[int] = []
    assert settled(lambda: asked.append(1) or None, wait=0.2, every=0.05) is None and len(asked) >= 2


def test_what_the_servers_answer_says_of_the_restores_transaction():
    from mxinfra.backup_archive import Probe, probed_transaction, transaction_outcome

    probe = Probe(4294968060, 4242, "1796551201.5", "1796551200.123456")
    assert probe.xid == 764  # pg_stat_activity's 32 bits
    assert transaction_outcome(probe, "committed 1796551200.123456") == "committed"
    assert transaction_outcome(probe, "aborted 1796551200.123456") == "aborted"
    assert transaction_outcome(probe, "in progress 1796551200.123456") == "in progress"
    # another run of the server (restarted, or reinitialised after a crash): its 'committed' or 'in progress'
    # may be another transaction's that got the lost id
    assert transaction_outcome(probe, "committed 1796559999.5") == "unknown"
    assert transaction_outcome(probe, "in progress 1796559999.5") == "in progress"  # TERMINATE ends only the probe's backend
    assert transaction_outcome(probe, "aborted 1796559999.5") == "aborted"
    # an id not handed out yet (a crash lost it), in this run of the server or another
    assert transaction_outcome(probe, "unassigned 1796551200.123456") == "aborted"
    assert transaction_outcome(probe, "unassigned 1796559999.5") == "aborted"
    # not answered, no status (NULL: too old to tell), a row that is no answer: ask again
    for said in (None, "1796551200.123456", "", "committed", "commit 1796551200.123456", "WARNING: collation version mismatch"):
        assert transaction_outcome(probe, said) is None, said
    rows = [b"\n", b"mxinfra-transaction K3y 12 34 56\n", b"mxinfra-transaction other 5 6 7 8\n", b"mxinfra-transaction K3y 4294968060 4242 1796551201.5 1796551200.123456\r\n"]
    assert probed_transaction(rows, "K3y") == probe
    assert probed_transaction(rows[:3], "K3y") is None
