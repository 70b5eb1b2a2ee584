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
def video(tmp_path_factory):
    """24 frames of a rectangle and an ellipse moving across a 128 px scene (MJPG in AVI: OpenCV always writes it)."""
    import cv2
    import numpy as np

    path = tmp_path_factory.mktemp("video") / "moving.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12, (128, 128))
    for i in range(24):
        frame = np.full((128, 128, 3), 200, np.uint8)
        cv2.rectangle(frame, (10 + 3 * i, 20), (40 + 3 * i, 50), (40, 40, 200), -1)
        cv2.ellipse(frame, (100 - 2 * i, 95), (16, 10), 0, 0, 360, (200, 60, 40), -1)
        writer.write(frame)
    writer.release()
    return path


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
    assert cli(["leaderboard", str(tmp_path / "nothing-here"), "--no-timing"]) == 2


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


def test_track_video_follows_objects_across_frames(models, video, tmp_path):
    """ultralytics' ByteTrack, thresholds lowered (a 2-epoch model is unsure of itself): ids persist."""
    import cv2

    tracker = tmp_path / "lenient_bytetrack.yaml"
    tracker.write_text("tracker_type: bytetrack\ntrack_high_thresh: 0.01\ntrack_low_thresh: 0.001\n"
                       "new_track_thresh: 0.01\ntrack_buffer: 30\nmatch_thresh: 0.9\nfuse_score: true\n")
    result = predict(models["64"], video, out=tmp_path / "track", track=True, tracker=str(tracker), conf=0.001)
    assert len(result.frames) == 24 and [f["frame"] for f in result.frames] == list(range(24))
    annotated = cv2.VideoCapture(str(result.outputs[0]))
    assert result.outputs[0].name == "moving_pred.mp4" and int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    assert result.tracks, "tracks formed"
    assert max(t["frames"] for t in result.tracks.values()) >= 3, result.tracks
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
