"""A conversion where the data lives: ``python -m sdk.data convert s3://... --instance-count 2`` creates a
Processing job on the moto server; the double plays its two machines, each downloading the annotation
files and only its share of the images (``ShardedByS3Key`` over a manifest file) and running the real
``convert`` entry; the union of their outputs is compared with a local conversion of the same data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from container.annotations import convert
from container.annotations.labelmap import read_label_map
from container.annotations.tfrecord import decode_example, read_records
from sdk.cli import data_main as data_cli
from sdk.data import convert_on_sagemaker
from sdk.data.convert_inputs import Staged
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


def download(s3, prefix: str, into: Path) -> Path:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            (into / obj["Key"]).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(BUCKET, obj["Key"], str(into / obj["Key"]))
    return into / prefix


def entry_lines(sagemaker, job: str) -> dict[str, dict]:
    """Each machine's last line: the entry's JSON summary (images converted, problems by kind)."""
    runs = sagemaker.process_results[job]
    assert set(runs) == {"algo-1", "algo-2"}
    for host, run in runs.items():
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"machine {int(host[-1])} of 2" in run.stdout
    return {host: json.loads(run.stdout.strip().splitlines()[-1]) for host, run in runs.items()}


def test_cli_converts_on_two_processing_machines(aws, sagemaker, tmp_path, capsys):
    source = coco_dataset(tmp_path / "coco")
    data = json.loads((source / "instances.json").read_text())  # an image the annotations name, in no listing
    data["images"].append({"id": 99, "file_name": "cam0/gone.jpg", "width": 64, "height": 48})
    data["annotations"].append({"id": 99, "image_id": 99, "category_id": 1, "bbox": [1, 1, 9, 9], "iscrowd": 0})
    (source / "instances.json").write_text(json.dumps(data))
    s3 = aws.client("s3")
    upload(s3, source, "raw/coco")
    code = data_cli(["convert", f"s3://{BUCKET}/raw/coco/", "--to", "tfrecord", "--out", f"s3://{BUCKET}/records/",
                     "--instance-count", "2", "--image", TFOD, "--role", ROLE, "--split", "0.75,0.25"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "16 images (" in printed.err and "sharded over 2 machines" in printed.err
    job = json.loads(printed.out)["job"]
    lines = entry_lines(sagemaker, job)
    # what each machine downloaded: the annotations and the image list whole, about half of the images each
    downloads = sagemaker.process_downloads[job]
    images = {host: got["images"] for host, got in downloads.items()}
    assert all(len(keys) == 8 for keys in images.values()), images
    assert sorted(images["algo-1"] + images["algo-2"]) == sorted(f"raw/coco/{k['file_name']}" for k in data["images"]
                                                                 if k["id"] != 99)
    for got in downloads.values():
        assert got["annotations"] == ["raw/coco/instances.json"]
        assert got["image-list"] == [f"sm-detectors/convert/{job}/image-list/images.manifest"]
    # each converted what it received (plus the missing image, reported by one machine alone)
    missing = {host: line["problems"].get("missing image", 0) for host, line in lines.items()}
    assert sum(missing.values()) == 1
    assert {host: line["converted"]["images"] - missing[host] for host, line in lines.items()} == {
        "algo-1": 8, "algo-2": 8}
    got = download(s3, "records/", tmp_path / "got")
    shards = sorted(got.glob("*.tfrecord"))
    assert {p.name.split("-")[1] for p in shards} == {"host0of2", "host1of2"}
    assert {p.name.split("-")[0] for p in shards} == {"train", "val"}
    assert not list(got.rglob("*.manifest"))  # the job's manifest files are beside the output, not in it
    convert(source, "tfrecord", tmp_path / "local", log=lambda _: None)
    local = by_image(sorted((tmp_path / "local").glob("*.tfrecord")))
    assert by_image(shards) == local and len(local) == 16  # each image once, the same boxes (crowd left out)
    assert read_label_map(got / "label_map.csv") == ["car", "bus, red"]


def voc_dataset(root: Path, n: int = 12) -> Path:
    """labelImg's layout: each XML beside its image, naming it bare (one bare name in two folders)."""
    for i in range(n):
        rel = f"cam{i % 2}/{i // 2:04d}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), tuple(hashlib.sha1(rel.encode()).digest()[:3])).save(root / rel)
        (root / rel).with_suffix(".xml").write_text(
            f"<annotation><filename>{rel[5:]}</filename><size><width>64</width><height>48</height></size>"
            f"<object><name>{('car', 'bus')[i % 2]}</name><bndbox><xmin>{i}</xmin><ymin>2</ymin>"
            f"<xmax>{i + 20}</xmax><ymax>30</ymax></bndbox></object></annotation>")
    return root


def yolo_by_image(out: Path) -> dict[str, tuple[str, str]]:
    """image bytes -> (split, label text) of a YOLO tree; an image twice fails."""
    found: dict[str, tuple[str, str]] = {}
    for img in sorted((out / "images").rglob("*.jpg")):
        digest = hashlib.sha1(img.read_bytes()).hexdigest()
        assert digest not in found, f"{img} converted twice"
        found[digest] = (img.parent.name, (out / "labels" / img.parent.name / f"{img.stem}.txt").read_text())
    return found


@pytest.mark.slow  # two Processing jobs of two machines each (about 10 s)
def test_voc_to_yolo_on_two_machines_with_and_without_the_images(aws, sagemaker, tmp_path):
    """A per-file format: the images sharded (each machine half of them), then annotations alone (no image
    downloaded at all); both unions equal the local conversion."""
    source = voc_dataset(tmp_path / "voc")
    s3 = aws.client("s3")
    upload(s3, source, "raw/voc")
    info = convert_on_sagemaker(source=f"s3://{BUCKET}/raw/voc", to="yolo", out=f"s3://{BUCKET}/yolo/", image=TFOD,
                                role=ROLE, instance_count=2, names=["car", "bus"], poll_s=0.2)
    downloads = sagemaker.process_downloads[info["ProcessingJobName"]]
    assert sorted(len(got["images"]) for got in downloads.values()) == [6, 6]
    assert all(len(got["annotations"]) == 12 and all(k.endswith(".xml") for k in got["annotations"])
               for got in downloads.values())
    entry_lines(sagemaker, info["ProcessingJobName"])
    convert(source, "yolo", tmp_path / "local", names=["car", "bus"], log=lambda _: None)
    local = yolo_by_image(tmp_path / "local")
    assert yolo_by_image(download(s3, "yolo/", tmp_path / "got")) == local and len(local) == 12

    info = convert_on_sagemaker(source=f"s3://{BUCKET}/raw/voc/", to="yolo", out=f"s3://{BUCKET}/labels/",
                                image=TFOD, role=ROLE, instance_count=2, names=["car", "bus"],
                                annotations_only=True, poll_s=0.2)
    downloads = sagemaker.process_downloads[info["ProcessingJobName"]]
    assert all(set(got) == {"annotations", "image-list"} for got in downloads.values())  # no image downloaded
    lines = entry_lines(sagemaker, info["ProcessingJobName"])
    assert sorted(line["converted"]["images"] for line in lines.values()) != [0, 12]  # split by the key hash
    convert(source, "yolo", tmp_path / "local-labels", names=["car", "bus"], images=False, log=lambda _: None)
    labels = download(s3, "labels/", tmp_path / "got")
    theirs = {p.relative_to(labels).as_posix(): p.read_text() for p in labels.rglob("*.txt")}
    ours = {p.relative_to(tmp_path / "local-labels").as_posix(): p.read_text()
            for p in (tmp_path / "local-labels").rglob("*.txt")}
    assert theirs == ours and len(ours) == 12


def test_request_and_failure(aws, sagemaker, tmp_path, capsys):
    from sdk._errors import ConfigurationError, JobFailedError
    from sdk.data import processing_request

    request = processing_request(source=f"s3://{BUCKET}/raw/", to="yolo", out=f"s3://{BUCKET}/out/", image=TFOD,
                                 role=ROLE, instance_count=4, names=["a", "b"], keep_crowd=True)
    check_against_service_model("CreateProcessingJob", request)
    assert request["AppSpecification"]["ContainerArguments"][-3:] == ["--names", "a,b", "--keep-crowd"]
    with pytest.raises(ConfigurationError, match="reads and writes S3"):
        processing_request(source="data/", to="yolo", out=f"s3://{BUCKET}/o/", image=TFOD, role=ROLE)
    with pytest.raises(ConfigurationError, match="TFRecords hold the image bytes"):
        processing_request(source=f"s3://{BUCKET}/raw/", to="tfrecord", out=f"s3://{BUCKET}/o/", image=TFOD,
                           role=ROLE, annotations_only=True)
    staged = Staged(annotations=f"s3://{BUCKET}/sm-detectors/convert/j/annotations.manifest",
                    images=f"s3://{BUCKET}/sm-detectors/convert/j/image-list/images.manifest",
                    image_list=f"s3://{BUCKET}/sm-detectors/convert/j/image-list/")
    request = processing_request(source=f"s3://{BUCKET}/raw/", to="yolo", out=f"s3://{BUCKET}/out/", image=TFOD,
                                 role=ROLE, instance_count=2, staged=staged)
    check_against_service_model("CreateProcessingJob", request)
    assert {i["InputName"]: (i["S3Input"]["S3DataType"], i["S3Input"]["S3DataDistributionType"])
            for i in request["ProcessingInputs"]} == {"annotations": ("ManifestFile", "FullyReplicated"),
                                                      "image-list": ("S3Prefix", "FullyReplicated"),
                                                      "images": ("ManifestFile", "ShardedByS3Key")}
    s3 = aws.client("s3")
    upload(s3, coco_dataset(tmp_path / "coco", n=2), "raw/coco")
    assert data_cli(["convert", f"s3://{BUCKET}/raw/coco/", "--out", f"s3://{BUCKET}/", "--instance-count", "2",
                     "--image", TFOD, "--role", ROLE]) == 2  # nothing listed or written yet
    assert "would hold the job's manifest files" in capsys.readouterr().err
    with pytest.raises(ConfigurationError, match="2 images for 3 machines"):
        convert_on_sagemaker(source=f"s3://{BUCKET}/raw/coco/", to="yolo", out=f"s3://{BUCKET}/o/", image=TFOD,
                             role=ROLE, instance_count=3)
    s3.put_object(Bucket=BUCKET, Key="empty/readme.md", Body=b"no annotations here")
    with pytest.raises(JobFailedError, match="processing job .* failed: AlgorithmError: algo-1 exited 2"):
        convert_on_sagemaker(source=f"s3://{BUCKET}/empty/", to="yolo", out=f"s3://{BUCKET}/o/", image=TFOD,
                             role=ROLE, poll_s=0.2)
