import gzip
import io
import stat
import tarfile

import pytest

from container import archive as archive_module
from container.archive import (
    MAX_MEMBERS,
    MAX_RATIO,
    RATIO_FLOOR,
    DestinationConflict,
    make_tarball,
    safe_extract,
    sha256,
)
from container.failure import UserError


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = b"weights"
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, "best.pt"
                tar.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
    return path


@pytest.mark.parametrize("members, words", [
    ([("best.pt", "file"), ("../escape.pt", "file")], "outside"),
    ([("/abs/best.pt", "file")], "outside"),
    ([("best.pt", "file"), ("link.pt", "symlink")], "link"),
    ([("best.pt", "file"), ("hard.pt", "hardlink")], "link"),
    ([("pipe", "fifo")], "not a regular file"),
])
def test_unsafe_archives_refused_before_writing(tmp_path, members, words):
    archive = _tar(tmp_path / "model.tar.gz", members)
    with pytest.raises(UserError, match=words):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "escape.pt").exists()


def test_round_trip(tmp_path):
    src = tmp_path / "model"
    (src / "exports").mkdir(parents=True)
    (src / "best.pt").write_bytes(b"1")
    (src / "exports" / "best.onnx").write_bytes(b"2")
    archive = make_tarball(src, tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["best.pt", "exports", "exports/best.onnx"]
    files = safe_extract(archive, tmp_path / "x")
    assert sorted(p.name for p in files) == ["best.onnx", "best.pt"]
    assert sha256(tmp_path / "x" / "best.pt") == sha256(src / "best.pt")


def test_not_an_archive(tmp_path):
    bad = tmp_path / "model.tar.gz"
    bad.write_text("not a tarball")
    with pytest.raises(UserError, match="not a readable tar"):
        safe_extract(bad, tmp_path / "out")


# -- bounded, refused without a trace, never losing what is there --------------------------------
def _sparse_tar(path, claimed=200 * 1024**2):
    """A GNU (old-format) sparse member: one data byte at the end of a ``claimed``-byte hole, gzipped."""
    info = tarfile.TarInfo("hole.bin")
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 1
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    header[386:410] = b"%011o\0%011o\0" % (claimed - 1, 1)  # the sparse map: 1 byte at the end
    header[482] = 0  # no extended map
    header[483:495] = b"%011o\0" % claimed  # the real size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    body = bytes(header) + b"x".ljust(512, b"\0") + b"\0" * 1024
    path.write_bytes(gzip.compress(body, 9))
    return path


def _add(tar, name, data=b"weights", **fields):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


def _snapshot(folder):
    """Every entry under folder: type, mode and bytes (what 'exactly as it was' means)."""
    if not folder.exists():
        return None
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[p.relative_to(folder).as_posix()] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                                 p.read_bytes() if p.is_file() and not p.is_symlink() else None)
    return out


@pytest.fixture
def target(tmp_path):
    """A folder that already holds a good model and a note of the user's."""
    folder = tmp_path / "models"
    (folder / "exports").mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"good weights")
    (folder / "exports" / "best.onnx").write_bytes(b"onnx")
    (folder / "notes.txt").write_text("mine")
    return folder


def _refused(archive, folder, match, **kwargs):
    before = _snapshot(folder)
    with pytest.raises(UserError, match=match):
        safe_extract(archive, folder, **kwargs)
    assert _snapshot(folder) == before
    assert not list(folder.parent.glob(f".{folder.name}.unpack-*")), "the staging folder is removed"


def test_sparse_member_is_refused(tmp_path, target):
    archive = _sparse_tar(tmp_path / "sparse.tar.gz")
    assert archive.stat().st_size < 160  # ~122 bytes that claim 200 MiB
    with tarfile.open(archive) as tar:
        assert tar.getmembers()[0].size == 200 * 1024**2  # what an unchecked extractall would write
    _refused(archive, target, "sparse")
    _refused(archive, tmp_path / "new", "sparse")
    assert not (tmp_path / "new").exists()


def test_member_count_is_capped(tmp_path, target):
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(MAX_MEMBERS + 1):
            _add(tar, f"f{i}", b"")
    assert archive.stat().st_size < 200_000
    _refused(archive, target, f"more than {MAX_MEMBERS:,} members .cap max_members")
    _refused(archive, target, "more than 10 members", max_members=10)
    small = tmp_path / "few.tar.gz"
    with tarfile.open(small, "w:gz") as tar:
        for i in range(10):
            _add(tar, f"f{i}")
    assert len(safe_extract(small, tmp_path / "ok", max_members=10)) == 10


def test_expanded_size_is_capped_by_bytes_and_by_ratio(tmp_path, target):
    zeros = tmp_path / "zeros.tar.gz"
    size = RATIO_FLOOR + 1024**2  # just over the floor below which the ratio is not checked
    with tarfile.open(zeros, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    ratio = size / zeros.stat().st_size
    assert ratio > MAX_RATIO
    _refused(zeros, target, r"cap max_ratio=100 x its")
    _refused(zeros, target, r"cap max_bytes=0.0 MiB", max_bytes=1000)
    got = safe_extract(zeros, tmp_path / "trusted", max_ratio=ratio + 1)  # a trusted archive: the cap raised
    assert got[0].stat().st_size == size


@pytest.mark.parametrize("build, match", [
    (lambda t: (_add(t, "best.pt"), _add(t, "best.pt", b"other")), "appears twice"),
    (lambda t: (_add(t, "best.pt"), _add(t, "./best.pt", b"other")), "appears twice"),
    (lambda t: (_add(t, "exports", type=tarfile.DIRTYPE), _add(t, "exports", type=tarfile.DIRTYPE)), "appears twice"),
    (lambda t: (_add(t, "a"), _add(t, "a/b")), "which the archive has as a file"),
    (lambda t: (_add(t, "best.pt"), _add(t, "hard.pt", b"", type=tarfile.LNKTYPE, linkname="best.pt")), "is a link"),
    (lambda t: _add(t, "link.pt", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd"), "is a link"),
    (lambda t: _add(t, "pipe", b"", type=tarfile.FIFOTYPE), "not a regular file"),
    (lambda t: _add(t, "tty", b"", type=tarfile.CHRTYPE, devmajor=5, devminor=0), "not a regular file"),
    (lambda t: _add(t, "disk", b"", type=tarfile.BLKTYPE, devmajor=8, devminor=0), "not a regular file"),
    (lambda t: _add(t, "/tmp/abs.pt"), "outside"),
    (lambda t: (_add(t, "ok.pt"), _add(t, "sub/../../up.pt")), "outside"),
    # a member written through a folder link extracted just before it
    (lambda t: (_add(t, "d", b"", type=tarfile.SYMTYPE, linkname="../../outside"), _add(t, "d/evil.pt")), "is a link"),
])
def test_crafted_archives_leave_the_target_as_it_was(tmp_path, target, build, match):
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "crafted.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        build(tar)
    _refused(archive, target, match)
    _refused(archive, tmp_path / "fresh", match)
    assert not (tmp_path / "fresh").exists() and not list(outside.iterdir())
    assert not (tmp_path / "up.pt").exists() and not (tmp_path / "abs.pt").exists()


def test_a_truncated_archive_writes_nothing(tmp_path, target):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "best.pt", bytes(range(256)) * 4000)  # incompressible enough to span the cut
        _add(tar, "last.pt", bytes(range(256)) * 4000)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    _refused(archive, target, "not a readable tar archive")


def test_existing_files_are_never_overwritten(tmp_path, target):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "best.pt", b"new weights")
        _add(tar, "metrics.json", b"{}")
    _refused(archive, target, r"best.pt \(differs\)")
    (target / "best.pt").write_bytes(b"new weights")
    with pytest.raises(DestinationConflict, match=r"exports \(not in the archive\); notes.txt \(not in the archive\)"):
        safe_extract(archive, target, exclusive=True)  # exclusive: files the archive lacks are not mixed with
    # the same archive again: every file identical, nothing to lose
    fresh = tmp_path / "fresh"
    safe_extract(archive, fresh, exclusive=True)
    (fresh / "metrics.json").unlink()  # a file the user removed comes back
    assert sorted(p.name for p in safe_extract(archive, fresh, exclusive=True)) == ["best.pt", "metrics.json"]
    assert (fresh / "metrics.json").read_bytes() == b"{}"
    # not exclusive: merged beside what is there, nothing replaced
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "notes.txt").write_text("mine")
    safe_extract(archive, merged)
    assert sorted(p.name for p in merged.iterdir()) == ["best.pt", "metrics.json", "notes.txt"]
    # a link where the archive has a folder is refused, never written through
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "exports").symlink_to(tmp_path / "outside_dir", target_is_directory=True)
    (tmp_path / "outside_dir").mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "exports/best.onnx")
    _refused(archive, linked, r"exports \(a folder in the archive, not a folder here\)")
    assert not list((tmp_path / "outside_dir").iterdir())


def test_a_refused_archive_leaves_no_folders_behind(tmp_path):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "pipe", b"", type=tarfile.FIFOTYPE)
    with pytest.raises(UserError, match="not a regular file"):
        safe_extract(archive, tmp_path / "new" / "deep" / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz"]


def _long_name_bomb(path, claimed):
    """A GNU long-name header claiming ``claimed`` bytes of name: tarfile would read it into memory whole."""
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = tarfile.GNUTYPE_LONGNAME, claimed
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(header.tobuf(format=tarfile.GNU_FORMAT))
        chunk = b"a" * (1 << 20)
        for _ in range(claimed // len(chunk)):
            out.write(chunk)
    return path


def test_a_huge_header_is_refused_before_it_is_read(tmp_path, target):
    archive = _long_name_bomb(tmp_path / "longname.tar.gz", 8 * 1024**2)
    _refused(archive, target, r"a long-name header claims 8.0 MiB")
    pax = tmp_path / "pax.tar"
    with tarfile.open(pax, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "best.pt", pax_headers={"comment": "x" * (2 * 1024**2)})
    _refused(pax, target, r"a pax header claims 2.0 MiB")


def test_the_stream_itself_is_cut_off_past_the_caps(tmp_path, target, monkeypatch):
    monkeypatch.setattr(archive_module, "_MAX_HEADER", 64 * 1024**2)  # let the long name through to the stream cap
    archive = _long_name_bomb(tmp_path / "longname.tar.gz", 8 * 1024**2)
    _refused(archive, target, r"more than 2.0 MiB of tar headers and data \(cap max_bytes=1.0 MiB\)",
             max_bytes=1024**2, max_members=10)
