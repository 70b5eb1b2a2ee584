"""Leaderboard, predict and track on models trained here for real (YOLO from its YAML on generated shapes)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from container import local
from sdk.cli import main as cli
from sdk.leaderboard import leaderboard
from sdk.predict import predict
from tests.conftest import FAST, ROOT

pytestmark = pytest.mark.slow


def _train(base: Path, shapes: Path, **hps: str) -> Path:
    tree = local.build_tree(base / "opt_ml", {"train": shapes}, {**FAST, **hps})
    result = local.run_train(tree, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return tree / "model"


@pytest.fixture(scope="module")
def models(shapes, tmp_path_factory):
    """Two runs that differ in image size, as one would compare them."""
    root = tmp_path_factory.mktemp("runs")
    return {size: _train(root / f"imgsz{size}", shapes, imgsz=size) for size in ("64", "96")}


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """A model trained long enough to see shapes (30 epochs, 128 px: mAP50 near 0.5 in about 40 s), and a
    video of one of its validation scenes panning 2 px per frame (MJPG in AVI: OpenCV always writes it)."""
    import cv2
    import numpy as np

    from container.synthetic import make_shapes

    root = tmp_path_factory.mktemp("tracking")
    shapes = make_shapes(root / "shapes", train=64, val=8, size=128, seed=1)
    model = _train(root / "run", shapes, imgsz="128", epochs="30", batch="16")
    scene = cv2.imread(str(min((shapes / "images" / "val").iterdir())))
    path = root / "panning.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12, scene.shape[1::-1])
    for i in range(24):
        writer.write(np.roll(scene, 2 * i, axis=1))
    writer.release()
    return model, path


def test_leaderboard_table_csv_and_plot(models, shapes, tmp_path):
    board = leaderboard([models["64"], models["96"]], images=shapes / "images" / "val", count=4, out=tmp_path / "lb")
    assert [e.imgsz for e in board.entries] and {e.imgsz for e in board.entries} == {64, 96}
    scores = [e.map50_95 for e in board.entries]
    assert scores == sorted(scores, reverse=True), "sorted by mAP50-95, best first"
    for entry in board.entries:
        assert entry.image == "yolo" and entry.model == "yolo11n.yaml" and entry.epochs == 2 and entry.batch == 8
        assert entry.ms_per_image is not None and entry.ms_per_image > 0
        assert entry.size_mb and entry.size_mb > 0
    rows = list(csv.DictReader((tmp_path / "lb" / "leaderboard.csv").open()))
    assert [r["imgsz"] for r in rows] == [str(e.imgsz) for e in board.entries]
    png = (tmp_path / "lb" / "leaderboard.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    text = board.text()
    assert text.splitlines()[0].split()[:3] == ["name", "image", "model"] and "yolo11n.yaml" in text


def test_leaderboard_cli_reads_local_out_folders_and_tarballs(models, tmp_path, capsys):
    run_dir = models["64"].parent.parent  # what `container.local --out` leaves: opt_ml/model
    assert cli(["leaderboard", str(run_dir), "--no-timing", "--out", str(tmp_path / "lb")]) == 0
    out = capsys.readouterr().out
    assert "yolo11n.yaml" in out and "leaderboard.csv" in out
    assert cli(["leaderboard", str(tmp_path / "nothing-here"), "--no-timing", "--out", str(tmp_path / "lb2")]) == 2
    assert "no such model folder" in capsys.readouterr().err and not (tmp_path / "lb2").exists()


def test_predict_images_writes_annotations_and_json(models, shapes, tmp_path):
    folder = shapes / "images" / "val"
    result = predict(models["64"], folder, out=tmp_path / "pred", conf=0.001)
    images = sorted(folder.iterdir())
    assert [Path(f["source"]).name for f in result.frames] == [p.name for p in images]
    assert all((tmp_path / "pred" / f"{p.stem}_pred{p.suffix}").is_file() for p in images)
    data = json.loads(result.json_path.read_text())
    boxes = [d for f in data["frames"] for d in f["detections"]]
    assert boxes, "at conf 0.001 even a 2-epoch model proposes boxes"
    for d in boxes:
        assert d["label"] in ("rectangle", "ellipse") and len(d["box"]) == 4 and d["track_id"] is None


def test_track_video_follows_objects_across_frames(tracking, tmp_path):
    """ultralytics' ByteTrack through predict(track=True): one id follows an object through the video. A short
    training's scores are low (about 0.15), so the tracker's thresholds come down and scores are not fused."""
    import cv2

    model, video = tracking
    tracker = tmp_path / "lenient_bytetrack.yaml"
    tracker.write_text("tracker_type: bytetrack\ntrack_high_thresh: 0.05\ntrack_low_thresh: 0.01\n"
                       "new_track_thresh: 0.05\ntrack_buffer: 30\nmatch_thresh: 0.8\nfuse_score: false\n")
    result = predict(model, video, out=tmp_path / "track", track=True, tracker=str(tracker), conf=0.05)
    assert [f["frame"] for f in result.frames] == list(range(24))
    annotated = cv2.VideoCapture(str(result.outputs[0]))
    assert result.outputs[0].name == "panning_pred.mp4" and int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    longest = max(result.tracks.values(), key=lambda t: t["frames"])
    assert longest["frames"] >= 12, result.tracks
    ids = [{d["track_id"] for d in f["detections"]} for f in result.frames]
    assert sum(1 for frame_ids in ids if frame_ids & set(result.tracks)) >= 12
    data = json.loads(result.json_path.read_text())
    assert set(data["tracks"]) == {str(k) for k in result.tracks}


def test_predict_refuses_bad_input_with_the_cause(models, tmp_path):
    import sdk

    with pytest.raises(sdk.ConfigurationError, match="no such image, video or folder"):
        predict(models["64"], tmp_path / "missing.jpg")
    with pytest.raises(sdk.ConfigurationError, match="holds neither best.pt nor a .tflite"):
        predict(tmp_path, tmp_path)
    with pytest.raises(sdk.ConfigurationError, match="tracker 'deepsort'"):
        predict(models["64"], models["64"].parent / "input", track=True, tracker="deepsort")
    assert cli(["predict", str(models["64"]), str(tmp_path / "missing.mp4")]) == 2
