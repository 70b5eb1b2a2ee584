"""fetch_model never destroys: what ``dest`` may hold, what a refused archive leaves, which errors come out."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

import sdk
from sdk.cli import main as cli
from tests.sdk.conftest import BUCKET, IMAGE, ROLE

OUT = f"s3://{BUCKET}/jobs"
METRICS = json.dumps({"final": {"mAP50": 0.5}}).encode()


def _job(aws, name, members):
    """A job moto marks Completed, whose model.tar.gz holds ``members`` ((name, bytes) or (name, TarInfo))."""
    plan = sdk.plan_job(image=IMAGE, role=ROLE, output_path=OUT, train=f"s3://{BUCKET}/d/", job_name=name)
    aws.client("sagemaker").create_training_job(**plan.request)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, data in members:
            if isinstance(data, tarfile.TarInfo):
                tar.addfile(data)
                continue
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    aws.client("s3").put_object(Bucket=BUCKET, Key=f"jobs/{name}/output/model.tar.gz", Body=buf.getvalue())
    return name


def _good(aws, name="pcb-1"):
    return _job(aws, name, [("best.pt", b"weights of " + name.encode()), ("metrics.json", METRICS),
                            ("exports/best.onnx", b"onnx")])


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def test_a_folder_of_other_models_is_refused_and_kept(aws, tmp_path):
    models = tmp_path / "models"
    (models / "old-job").mkdir(parents=True)
    (models / "old-job" / "best.pt").write_bytes(b"old")
    (models / "notes.md").write_text("mine")
    before = _snapshot(models)
    with pytest.raises(sdk.ConfigurationError, match=r"notes.md \(not in the archive\).*old-job"):
        sdk.fetch_model(_good(aws), dest=models)  # the README's old `--dest models/`
    assert _snapshot(models) == before
    assert not [n for n in os.listdir(tmp_path) if "unpack" in n]  # no staging folder left beside it


def test_the_working_directory_is_never_emptied(aws, tmp_path):
    (tmp_path / "train.py").write_text("print('mine')")
    before = _snapshot(tmp_path)
    with pytest.raises(sdk.ConfigurationError, match="train.py"):
        sdk.fetch_model(_good(aws), dest=".")
    assert _snapshot(tmp_path) == before


def test_fetch_again_and_into_an_empty_folder(aws, tmp_path):
    name = _good(aws)
    first = sdk.fetch_model(name, dest=tmp_path / "m")
    assert first.best.read_bytes() == b"weights of pcb-1" and first.exports["onnx"].is_file()
    (tmp_path / "m" / "exports" / "best.onnx").unlink()  # an earlier fetch, partly removed: fetched again
    again = sdk.fetch_model(name, dest=tmp_path / "m")
    assert again.exports["onnx"].read_bytes() == b"onnx"
    (tmp_path / "empty").mkdir()
    assert sdk.fetch_model(name, dest=tmp_path / "empty").metrics["final"] == {"mAP50": 0.5}
    assert sdk.fetch_model(name).directory.resolve() == tmp_path / "models" / name  # the default, under the cwd
    # the same folder, another job: its best.pt differs, so nothing is replaced
    other = _good(aws, "pcb-2")
    with pytest.raises(sdk.ConfigurationError, match=r"best.pt \(differs\)"):
        sdk.fetch_model(other, dest=tmp_path / "m")
    assert (tmp_path / "m" / "best.pt").read_bytes() == b"weights of pcb-1"
    # an earlier fetch the user edited is theirs now
    (tmp_path / "m" / "best.pt").write_bytes(b"fine-tuned by hand")
    with pytest.raises(sdk.ConfigurationError, match="best.pt"):
        sdk.fetch_model(name, dest=tmp_path / "m")
    assert (tmp_path / "m" / "best.pt").read_bytes() == b"fine-tuned by hand"


def test_a_refused_archive_is_an_sdk_error_and_keeps_the_good_model(aws, tmp_path):
    good = sdk.fetch_model(_good(aws), dest=tmp_path / "m")
    before = _snapshot(good.directory)
    link = tarfile.TarInfo("best.pt")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    bad = _job(aws, "evil-1", [("metrics.json", METRICS), ("best.pt", link)])
    with pytest.raises(sdk.FetchError, match="is a link") as info:
        sdk.fetch_model(bad, dest=tmp_path / "m")
    assert isinstance(info.value, sdk.SDKError)
    assert _snapshot(good.directory) == before
    assert not (tmp_path / "fresh").exists()
    with pytest.raises(sdk.FetchError, match="is a link"):
        sdk.fetch_model(bad, dest=tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_other_errors_are_sdk_errors(aws, tmp_path):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(sdk.ConfigurationError, match="is a file"):
        sdk.fetch_model(_good(aws), dest=tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"
    broken = _job(aws, "broken-1", [("metrics.json", b"{not json"), ("best.pt", b"w")])
    with pytest.raises(sdk.FetchError, match="metrics.json is not the metrics.json an image writes"):
        sdk.fetch_model(broken, dest=tmp_path / "b")
    assert (tmp_path / "b" / "best.pt").is_file()  # the model itself is there
    with pytest.raises(sdk.ConfigurationError, match="not int"):
        sdk.fetch_model(42)
    _job(aws, "junk-1", [])
    aws.client("s3").put_object(Bucket=BUCKET, Key="jobs/junk-1/output/model.tar.gz", Body=b"not a tarball")
    with pytest.raises(sdk.FetchError, match="not a readable tar archive"):
        sdk.fetch_model("junk-1", dest=tmp_path / "j")


def test_cli_fetch_into_a_folder_of_other_files_exits_2(aws, tmp_path, capsys):
    _good(aws)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "notes.md").write_text("mine")
    assert cli(["fetch", "pcb-1", "--dest", "models/"]) == 2
    assert "notes.md (not in the archive)" in capsys.readouterr().err
    assert os.listdir(tmp_path / "models") == ["notes.md"]
