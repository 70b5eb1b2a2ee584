"""The YOLO image's serving variant (Dockerfile.yolo --target serve, container/serving/variant.py): what it
installs, how it is named, what it serves and what it refuses. The built image is tried in
tests/images/test_serve_image.py."""

from __future__ import annotations

import re
import subprocess
import sys
import types

import pytest

from container.failure import UserError
from container.serving import variant
from container.yolo import serve as yolo_serve
from tests.conftest import ROOT


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_lock_is_the_full_images_versions_without_torch():
    serve, full = _pins(ROOT / "requirements/yolo-serve.lock"), _pins(ROOT / "requirements/yolo.lock")
    assert {name: full.get(name) for name in serve} == serve  # the same answers as the full image
    assert not {n for n in serve if re.match(r"torch|nvidia-|ultralytics|triton|mlflow", n)}
    assert {"onnxruntime", "opencv-python-headless", "numpy", "gunicorn", "pillow", "pyyaml"} <= set(serve)


def test_dockerfile_has_the_serve_target_first_and_full_last():
    stages = re.findall(r"(?m)^FROM \S+ AS (\w+)", (ROOT / "Dockerfile.yolo").read_text())
    assert stages == ["serve", "full"]  # a plain build (no --target) is the full image
    text = (ROOT / "Dockerfile.yolo").read_text()
    assert f"{variant.VARIANT_ENV}={variant.SERVE_ONLY}" in text and "yolo-serve.lock" in text


def test_build_and_push_knows_the_variant_and_its_tag_suffix():
    script = (ROOT / "build-and-push.sh").read_text()
    assert "yolo-serve" in script and f'suffix="{variant.TAG_SUFFIX}"' in script


@pytest.mark.parametrize(("image", "expected"), [
    ("123.dkr.ecr.eu-west-1.amazonaws.com/yolo:git-abc", "123.dkr.ecr.eu-west-1.amazonaws.com/yolo:git-abc-serve"),
    ("localhost:5000/team/yolo:v1", "localhost:5000/team/yolo:v1-serve"),
    ("localhost:5000/team/yolo", None),  # no tag: nothing to derive from (":5000/team/yolo" is no tag)
    ("yolo", None),
    ("123.dkr.ecr.eu-west-1.amazonaws.com/yolo@sha256:" + "a" * 64, None),
    ("123.dkr.ecr.eu-west-1.amazonaws.com/yolo:v1-serve", None),  # already the variant
])
def test_serving_tag(image, expected):
    assert variant.serving_tag(image) == expected


@pytest.fixture
def model(tmp_path):
    (tmp_path / "exports").mkdir()
    for name in ("best.pt", "exports/best.onnx", "exports/best.torchscript", "data.yaml"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_variant_serves_onnx_by_default_and_refuses_torch_weights(model, monkeypatch):
    monkeypatch.delenv(yolo_serve.WEIGHTS_ENV, raising=False)
    assert yolo_serve.weights_path(model) == model / "best.pt"  # the full image
    monkeypatch.setenv(variant.VARIANT_ENV, variant.SERVE_ONLY)
    assert yolo_serve.weights_path(model) == model / "exports" / "best.onnx"
    for choice in ("best.pt", "torchscript"):
        with pytest.raises(UserError, match="needs torch.*full YOLO image"):
            yolo_serve.weights_path(model, choice)
    (model / "exports" / "best.onnx").unlink()
    with pytest.raises(UserError, match=r"no \*\.onnx.*export=onnx.*full YOLO image"):
        yolo_serve.weights_path(model)


def test_variant_refuses_training_and_conversion(tmp_path):
    """`IMAGE train` and `IMAGE convert` in the variant: exit 2, the failure file names the full image."""
    (tmp_path / "input" / "config").mkdir(parents=True)
    env = {"PYTHONPATH": str(ROOT), variant.VARIANT_ENV: variant.SERVE_ONLY, "SAGEMAKER_BASE_DIR": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    for command in ("train", "convert"):
        done = subprocess.run([sys.executable, "-m", "container", command], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "needs torch" in done.stderr and "full YOLO image" in done.stderr
    assert "full YOLO image" in (tmp_path / "output" / "failure").read_text()
    described = subprocess.run([sys.executable, "-m", "container", "describe"], env=env, capture_output=True,
                               text=True, timeout=120)
    assert described.returncode == 0 and described.stdout.startswith("SERVING VARIANT")
    # no command (the image's CMD): serve where no training job is mounted (here no model: serve's own error) ...
    bare = subprocess.run([sys.executable, "-m", "container"], env=env, capture_output=True, text=True, timeout=120)
    assert bare.returncode == 2 and bare.stderr.startswith("serve: "), bare.stderr
    # ... and refuse to train, naming the full image, where one is (SageMaker SDK v3's local mode)
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text("{}")
    (tmp_path / "output" / "failure").unlink()
    job = subprocess.run([sys.executable, "-m", "container"], env=env, capture_output=True, text=True, timeout=120)
    assert job.returncode == 2 and "full YOLO image" in (tmp_path / "output" / "failure").read_text()


def test_cuda_lock_is_the_cpu_lock_with_onnxruntime_gpu_and_the_cuda_libraries():
    """--build-arg SERVE_ACCELERATOR=cuda: yolo.lock's versions where it has the package, onnxruntime-gpu for
    onnxruntime, the libraries its CUDA provider links and its cuda/cudnn extras name, and still no torch."""
    cpu, cuda = _pins(ROOT / "requirements/yolo-serve.lock"), _pins(ROOT / "requirements/yolo-serve-cuda.lock")
    full = _pins(ROOT / "requirements/yolo.lock")
    assert {name: full[name] for name in cuda if name in full} == {n: v for n, v in cuda.items() if n in full}
    assert "onnxruntime" not in cuda and cuda["onnxruntime-gpu"] == cpu["onnxruntime"]
    assert {n: v for n, v in cuda.items() if n != "onnxruntime-gpu" and not n.startswith("nvidia-")} == \
        {n: v for n, v in cpu.items() if n != "onnxruntime"}  # the same server, decoders and closure
    assert not {n for n in cuda if re.match(r"torch|ultralytics|triton|mlflow", n)}
    assert {"nvidia-cublas", "nvidia-cuda-runtime", "nvidia-curand", "nvidia-cudnn-cu13", "nvidia-cuda-nvrtc",
            "nvidia-cufft", "nvidia-nvjitlink"} <= set(cuda)


def test_dockerfile_builds_the_cuda_lock_only_when_asked():
    text = (ROOT / "Dockerfile.yolo").read_text()
    assert "ARG SERVE_ACCELERATOR=cpu" in text  # the default build is the CPU variant
    assert "cpu) lock=/tmp/yolo-serve.lock" in text and "cuda) lock=/tmp/yolo-serve-cuda.lock" in text
    assert "preload_cuda(ort)" in text and "CUDAExecutionProvider' in ort.get_available_providers()" in text


class _FakeOrt:
    """onnxruntime-gpu as seen in a worker: it lists CUDAExecutionProvider whether or not a GPU is there, and a
    session asked for CUDA then CPU quietly runs on the CPU when CUDA cannot start (``gpu=False``)."""

    def __init__(self, gpu: bool, preload_prints: str = "") -> None:
        self.gpu, self.preload_prints, self.preloaded, self.asked = gpu, preload_prints, 0, None

    def get_available_providers(self):
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def preload_dlls(self):
        self.preloaded += 1
        print(self.preload_prints, end="")

    def SessionOptions(self):
        return types.SimpleNamespace()

    def InferenceSession(self, path, options, providers):
        import numpy as np

        self.asked = providers
        got = providers if self.gpu else [p for p in providers if p == "CPUExecutionProvider"]
        return types.SimpleNamespace(
            get_providers=lambda: got,
            get_modelmeta=lambda: types.SimpleNamespace(custom_metadata_map={"names": "{0: ball}"}),
            get_inputs=lambda: [types.SimpleNamespace(name="images", shape=[1, 3, 32, 32])],
            run=lambda outputs, feed: [np.zeros((1, 5, 21), np.float32)])


def _onnx_predictor(monkeypatch, tmp_path, ort):
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    info = yolo_serve.TrainingArgs(names=[], defaults=yolo_serve.Thresholds(), imgsz=32, name="m")
    return yolo_serve.OnnxPredictor(tmp_path / "best.onnx", info)


def test_onnx_worker_gets_cuda_where_it_starts(monkeypatch, tmp_path):
    ort = _FakeOrt(gpu=True)
    predictor = _onnx_predictor(monkeypatch, tmp_path, ort)
    assert ort.asked == ["CUDAExecutionProvider", "CPUExecutionProvider"]  # never TensorRT unasked
    assert ort.preloaded == 1  # the nvidia-* wheels' libraries, which no loader path points at
    assert predictor.device == "onnxruntime CUDAExecutionProvider" and predictor.names == ["ball"]


@pytest.mark.parametrize(("driver", "why"), [(False, "no NVIDIA driver (libcuda.so.1 not found"),
                                             (True, "the NVIDIA driver found no usable GPU")])
def test_onnx_worker_says_when_cuda_is_listed_but_does_not_start(monkeypatch, tmp_path, driver, why):
    """onnxruntime-gpu without a GPU (or its driver) falls back to the CPU with only a warning of its own: the
    worker serves on the CPU and its load line says that CUDA did not start, and why."""
    import ctypes

    import numpy as np

    def cdll(name, *args, **kwargs):
        if not driver:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return object()

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    predictor = _onnx_predictor(monkeypatch, tmp_path, _FakeOrt(gpu=False))
    assert predictor.device.startswith("onnxruntime CPUExecutionProvider (CUDAExecutionProvider did not start: ")
    assert why in predictor.device and predictor.device.endswith("; running on the CPU)")
    assert predictor.predict([np.zeros((48, 64, 3), np.uint8)], predictor.defaults) == [[]]


def test_onnx_worker_names_the_cuda_libraries_that_failed_to_load(monkeypatch, tmp_path):
    ort = _FakeOrt(gpu=False, preload_prints="Failed to load /x/nvidia/cu13/lib/libcublasLt.so.13: no space\n"
                                              "Please follow https://onnxruntime.ai/docs/install/ to install CUDA.\n")
    predictor = _onnx_predictor(monkeypatch, tmp_path, ort)
    assert "did not start: Failed to load /x/nvidia/cu13/lib/libcublasLt.so.13: no space; running on the CPU" \
        in predictor.device


def test_cpu_onnxruntime_loads_no_cuda_libraries(monkeypatch, tmp_path):
    ort = _FakeOrt(gpu=False)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    predictor = _onnx_predictor(monkeypatch, tmp_path, ort)
    assert ort.preloaded == 0 and predictor.device == "onnxruntime CPUExecutionProvider"
