import io
import tarfile

import pytest

from container.archive import make_tarball, safe_extract, sha256
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
