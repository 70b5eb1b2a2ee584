"""A conversion where the data lives: ``python -m sdk.data convert s3://... --instance-count 2`` creates a
Processing job on the moto server; the double plays its two machines, each running the real ``convert``
entry on its share; the union of their TFRecords is compared with a local conversion of the same data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from container.annotations import convert
from container.annotations.labelmap import read_label_map
from container.annotations.tfrecord import decode_example, read_records
from sdk.data import convert_on_sagemaker
from sdk.data import main as data_cli
from tests.sdk.conftest import BUCKET, ROLE
from tests.sdk.double import check_against_service_model

TFOD = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sm-tfod:1.0"


def coco_dataset(root: Path, n: int = 16) -> Path:
    images, annotations = [], []
    for i in range(n):
        name = f"cam{i % 2}/{i // 2:04d}.jpg"  # one file name in two folders
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), tuple(hashlib.sha1(name.encode()).digest()[:3])).save(root / name)
        images.append({"id": i + 1, "file_name": name, "width": 64, "height": 48})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [i, 2, 20, 30],
                            "iscrowd": int(i == 3)})
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": [
        {"id": 1, "name": "car"}, {"id": 2, "name": "bus, red"}]}))
    return root


def by_image(shards: list[Path]) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for shard in shards:
        for raw in read_records(shard):
            ex = decode_example(raw)
            key = hashlib.sha1(ex["image/encoded"][0]).hexdigest()
            assert key not in out, f"an image converted twice ({shard.name})"
            out[key] = (tuple(ex["image/object/class/text"]), tuple(round(v, 5) for v in ex["image/object/bbox/xmin"]))
    return out


def upload(s3, root: Path, prefix: str) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(root).as_posix()}")


def test_cli_converts_on_two_processing_machines(aws, sagemaker, tmp_path, capsys):
    source = coco_dataset(tmp_path / "coco")
    s3 = aws.client("s3")
    upload(s3, source, "raw/coco")
    code = data_cli(["convert", f"s3://{BUCKET}/raw/coco/", "--to", "tfrecord", "--out", f"s3://{BUCKET}/records/",
                     "--instance-count", "2", "--image", TFOD, "--role", ROLE, "--split", "0.75,0.25"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    job = json.loads(printed.out)["job"]
    machines = sagemaker.process_results[job]
    assert set(machines) == {"algo-1", "algo-2"}
    for host, run in machines.items():
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"machine {int(host[-1])} of 2" in run.stdout
    got = tmp_path / "got"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="records/")["Contents"]]
    for key in keys:
        (got / key).parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(BUCKET, key, str(got / key))
    shards = sorted((got / "records").glob("*.tfrecord"))
    assert {p.name.split("-")[1] for p in shards} == {"host0of2", "host1of2"}
    assert {p.name.split("-")[0] for p in shards} == {"train", "val"}
    convert(source, "tfrecord", tmp_path / "local", log=lambda _: None)
    local = by_image(sorted((tmp_path / "local").glob("*.tfrecord")))
    assert by_image(shards) == local and len(local) == 16  # each image once, the same boxes (crowd left out)
    assert read_label_map(got / "records" / "label_map.csv") == ["car", "bus, red"]


def test_request_and_failure(aws, sagemaker, tmp_path):
    from sdk._errors import ConfigurationError, JobFailedError
    from sdk.data import processing_request

    request = processing_request(source=f"s3://{BUCKET}/raw/", to="yolo", out=f"s3://{BUCKET}/out/", image=TFOD,
                                 role=ROLE, instance_count=4, names=["a", "b"], keep_crowd=True)
    check_against_service_model("CreateProcessingJob", request)
    assert request["AppSpecification"]["ContainerArguments"][-3:] == ["--names", "a,b", "--keep-crowd"]
    with pytest.raises(ConfigurationError, match="reads and writes S3"):
        processing_request(source="data/", to="yolo", out=f"s3://{BUCKET}/o/", image=TFOD, role=ROLE)
    aws.client("s3").put_object(Bucket=BUCKET, Key="empty/readme.md", Body=b"no annotations here")
    with pytest.raises(JobFailedError, match="processing job .* failed: AlgorithmError: algo-1 exited 2"):
        convert_on_sagemaker(source=f"s3://{BUCKET}/empty/", to="yolo", out=f"s3://{BUCKET}/o/", image=TFOD,
                             role=ROLE, poll_s=0.2)
