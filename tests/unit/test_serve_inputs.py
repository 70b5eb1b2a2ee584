"""What a careless user (or a tampered model.tar.gz) hands `serve`: odd SERVING_WEIGHTS values and broken side
files. Each is a UserError naming the cause and the fix, raised by ``check`` in the master before gunicorn starts
(exit 2), never an OSError traceback (exit 1) nor a worker's load error blaming the weights (found in the
variant and the full image alike, issue 26 item 4's review)."""

from __future__ import annotations

import os
import subprocess

import pytest

from container.failure import UserError
from container.serving import server, variant
from container.yolo import serve as yolo_serve
from tests.conftest import ROOT

DATA = "nc: 2\nnames:\n  0: rectangle\n  1: ellipse\n"


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.delenv(yolo_serve.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(variant.VARIANT_ENV, raising=False)
    (tmp_path / "exports").mkdir()
    for name in ("best.pt", "exports/best.onnx"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "data.yaml").write_text(DATA)
    (tmp_path / "args.yaml").write_text("imgsz: 320\nconf: null\n")
    return tmp_path


@pytest.mark.parametrize("choice", [" ONNX ", "Onnx"])
def test_format_names_ignore_case_and_spaces(model, choice):
    assert yolo_serve.weights_path(model, choice) == model / "exports" / "best.onnx"


@pytest.mark.parametrize("choice", ["exports/" + "a" * 300 + ".onnx", "a" * 300 + ".onnx"])
def test_a_name_too_long_for_the_file_system_is_no_such_file(model, choice):
    with pytest.raises(UserError, match=r"\.\.\.: no such file") as err:  # the value, cut short
        yolo_serve.weights_path(model, choice)
    assert len(str(err.value)) < 400


@pytest.mark.parametrize("choice", ["exports/best\x00.onnx", "on\x00nx"])
def test_a_nul_byte_is_a_user_error(model, choice):
    """No environment variable carries one, but --weights from Python could: it was a ValueError."""
    with pytest.raises(UserError, match="SERVING_WEIGHTS"):
        yolo_serve.weights_path(model, choice)


def test_a_huge_format_name_is_cut_short_in_the_message(model):
    with pytest.raises(UserError) as err:
        yolo_serve.weights_path(model, "a" * 5000)
    assert len(str(err.value)) < 600


@pytest.mark.parametrize("choice", ["*", "on?x", "[a]"])
def test_a_pattern_is_not_a_format_name(model, choice):
    with pytest.raises(UserError, match="best.pt, a format name"):
        yolo_serve.weights_path(model, choice)


def test_the_variant_refuses_a_torch_format_before_looking_for_it(model, monkeypatch):
    """`pt` in the variant said "Train with the hyperparameter export=pt", which the variant could not serve either."""
    monkeypatch.setenv(variant.VARIANT_ENV, variant.SERVE_ONLY)
    with pytest.raises(UserError, match="needs torch.*full YOLO image") as err:
        yolo_serve.weights_path(model, "pt")
    assert "export=pt" not in str(err.value)


def test_a_directory_named_like_an_export_is_not_the_export(model):
    (model / "exports" / "best.onnx").unlink()
    (model / "exports" / "best.onnx").mkdir()
    with pytest.raises(UserError, match=r"no \*\.onnx.*exports there: best\.onnx/\)"):  # a folder, so marked
        yolo_serve.weights_path(model, "onnx")


def test_an_empty_folder_says_it_holds_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(yolo_serve.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(variant.VARIANT_ENV, raising=False)
    with pytest.raises(UserError, match=r"it holds nothing"):
        yolo_serve.weights_path(tmp_path)


@pytest.mark.parametrize(("name", "text", "says"), [
    ("data.yaml", "names: [a, b\n  : : :\n", r"data\.yaml is not valid YAML"),
    ("data.yaml", "names: 5\n", r"data\.yaml: names is 5"),
    ("data.yaml", "- a\n- b\n", r"data\.yaml holds a list"),
    ("data.yaml", "names: {zero: a}\n", r"data\.yaml: names"),
    ("data.yaml", b"\xff\xfe", r"data\.yaml is not valid YAML"),
    ("args.yaml", "imgsz: big\n", r"args\.yaml: imgsz='big' is not usable"),
    ("args.yaml", "conf: x\n", r"args\.yaml: conf='x', iou=None"),
    ("args.yaml", "imgsz: [a, b]\n", r"args\.yaml: imgsz"),
])
def test_a_broken_side_file_is_named_before_any_worker_starts(model, name, text, says):
    """It was a worker's ModelLoadError blaming exports/best.onnx ("ParserError ...", "'int' object is not
    iterable"), /ping 500 for ever; now `serve` exits 2 naming the file."""
    path = model / name
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    with pytest.raises(UserError, match=says) as err:
        server.resolve(model, "yolo")
    assert "training job" in str(err.value)  # the fix: the folder as training wrote it


def test_a_broken_metrics_json_does_not_stop_serving(model):
    """metrics.json only names the job in the model's name: unreadable, the name is the weights' file name."""
    (model / "metrics.json").write_text("{")
    weights = yolo_serve.check(model)
    assert yolo_serve.training_args(model, weights).name == "best.pt"


def test_a_good_folder_still_reads_as_before(model):
    (model / "metrics.json").write_text('{"job_name": "j1"}')
    info = yolo_serve.training_args(model, yolo_serve.check(model))
    assert (info.names, info.imgsz, info.name) == (["rectangle", "ellipse"], 320, "j1/best.pt")
    assert info.defaults.conf == yolo_serve.ULTRALYTICS_DEFAULT_CONF


@pytest.mark.parametrize(("args", "hint"), [
    (["yolo-serve", "sm-yolo", "v1"], "./build-and-push.sh sm-yolo yolo-serve v1"),  # name and kind swapped
    (["sm-yolo", "v1", "yolo-serve"], "./build-and-push.sh sm-yolo yolo-serve v1"),  # kind and tag swapped
])
def test_build_and_push_names_swapped_arguments(args, hint, tmp_path):
    """It said only "unknown image kind 'sm-yolo'"; it stops there, before any AWS call or build."""
    result = subprocess.run(["bash", str(ROOT / "build-and-push.sh"), *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert result.returncode != 0
    assert "unknown image kind" in result.stderr and hint in result.stderr, result.stderr


def test_no_writable_temporary_folder_is_a_user_error_before_gunicorn(model, monkeypatch):
    """`docker run --read-only` without a tmpfs: gunicorn's arbiter died with "No usable temporary directory
    found" in a traceback (exit 255) in both images; now `serve` says which folder to mount, exit 2."""
    import tempfile

    def no_tmp():
        raise FileNotFoundError(2, "No usable temporary directory found in ['/tmp', '/var/tmp', '/usr/tmp']")

    monkeypatch.setattr(tempfile, "gettempdir", no_tmp)
    monkeypatch.setattr(server, "run_gunicorn", lambda *a, **k: pytest.fail("gunicorn started"))
    monkeypatch.setenv(yolo_serve.WEIGHTS_ENV, "onnx")
    with pytest.raises(UserError, match=r"temporary folder.*--tmpfs /tmp"):
        server.serve(["--model-dir", str(model), "--image", "yolo"])


@pytest.mark.parametrize(("serve_only", "fix"), [(True, "full YOLO image"), (False, "SERVING_WEIGHTS unset")])
def test_tracking_refused_names_a_fix_this_image_can_do(serve_only, fix, monkeypatch):
    """In the variant the 400 said to use best.pt, which the variant refuses; now it names the full image."""
    from container.serving import video

    monkeypatch.delenv(variant.VARIANT_ENV, raising=False)
    if serve_only:
        monkeypatch.setenv(variant.VARIANT_ENV, variant.SERVE_ONLY)
    err = video.tracking_refused("best.onnx")
    assert err.status == 400 and "track=true needs" in str(err) and fix in str(err)
