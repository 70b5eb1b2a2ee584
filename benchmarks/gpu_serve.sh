#!/usr/bin/env bash
# Serving on a lent GPU machine (docs/serving.md, "On a GPU instance"): bench_serve.py in process there, best.pt
# through torch CUDA and the ONNX export through ONNX Runtime, p50/p95 latency and images/s, and the server's own
# device lines (the first log line, each worker's load line). Nothing is built or downloaded there.
#
#   bash benchmarks/gpu_serve.sh prepare     here, once: .whl/ (ultralytics' wheels for Python 3.12, gunicorn) and
#                                            .gpu-serve/model (yolo11n, one epoch at 640 on generated shapes, with
#                                            its ONNX export); .ort/1..N: onnxruntime-gpu, split (see below)
#   device run, carry [".whl", ".gpu-serve"], command "bash benchmarks/gpu_serve.sh"       the measurement
#
# ONNX Runtime on the GPU needs onnxruntime-gpu, whose wheel (256 MB) is over the 64 MiB a call carries; the machine
# has the CPU onnxruntime only (../shared/docs/gpu-here.md), with which the ONNX rows run on the CPU, as the load line
# then says. To measure the CUDA provider, stage the wheel first: one call per part, back to back (the machine goes
# back 30 s after a call), carry [".ort/K"], command "bash benchmarks/gpu_serve.sh stage K"; then the measurement
# (carry [".whl", ".gpu-serve", ".ort/sum"]) joins the parts, checks the sum and installs it. Its CUDA libraries are
# the machine's torch's (nvidia-* wheels, CUDA 13), put on the loader's path here.
# Sizes fit the device time: ~1 min to install and load, ~2 min of requests (200 per run, 4 runs).
set -euo pipefail
model=.gpu-serve/model
py_tag=cp312  # the machine's Python (gpu-here.md)

if [ "${1:-}" = prepare ]; then
    grep -qs '^/.whl/$' .git/info/exclude || { mkdir -p .git/info; printf '/.whl/\n/.gpu-serve/\n/.ort/\n' >> .git/info/exclude; }
    platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
               --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
    get() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
                "${platforms[@]}" -d "$1" "${@:2}"; }
    # polars (45 MB) is left out: serving never imports it, and with the model the working tree must stay under 64 MiB
    get .whl "ultralytics==$(grep -Po '^ultralytics==\K.*' requirements/yolo.lock)" \
        "ultralytics-thop==$(grep -Po '^ultralytics-thop==\K.*' requirements/yolo.lock)" \
        "ultralytics-platform==$(grep -Po '^ultralytics-platform==\K.*' requirements/yolo.lock)" \
        "gunicorn==$(grep -Po '^gunicorn==\K.*' requirements/yolo.lock)"
    if [ ! -f "$model/exports/best.onnx" ]; then
        rm -rf .gpu-serve && mkdir -p .gpu-serve
        .venv/bin/python -c "import sys; sys.path[:0] = ['benchmarks', '.']; from pathlib import Path; import shutil
from bench_serve import train
shutil.copytree(train(640, Path('.gpu-serve/work').resolve()), '$model'); shutil.rmtree('.gpu-serve/work')"
        rm -f "$model/last.pt"  # best.pt is what serves; the carried tree stays small
    fi
    ort="onnxruntime_gpu-$(grep -Po '^onnxruntime-gpu==\K.*' requirements/yolo-serve-cuda.lock)-$py_tag-$py_tag-manylinux_2_28_x86_64.whl"
    if [ ! -f .ort/sum ]; then
        rm -rf .ort && mkdir -p .ort/whl
        get .ort/whl "onnxruntime-gpu==$(grep -Po '^onnxruntime-gpu==\K.*' requirements/yolo-serve-cuda.lock)"
        split -b 56M -d -a 1 ".ort/whl/$ort" .ort/part-
        for part in .ort/part-*; do k=$((${part##*-} + 1)); mkdir -p ".ort/$k"; mv "$part" ".ort/$k/"; done
        mkdir -p .ort/sum && (cd .ort/whl && sha256sum "$ort" > ../sum/SHA256SUM) && rm -rf .ort/whl
    fi
    du -sh .whl .gpu-serve .ort/* | sed 's/^/carry: /'
    exit 0
fi

if [ "${1:-}" = stage ]; then  # one part of onnxruntime-gpu into /tmp, which lasts while the machine stays warm
    mkdir -p /tmp/ort-parts && cp ".ort/$2"/part-* /tmp/ort-parts/ && ls -l /tmp/ort-parts
    exit 0
fi

out="${OUT:-/tmp/gpu-serve-out}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
if [ -f .ort/sum/SHA256SUM ] && ls /tmp/ort-parts/part-* > /dev/null 2>&1; then
    wheel=$(awk '{print $2}' .ort/sum/SHA256SUM)
    sums="$PWD/.ort/sum/SHA256SUM"
    cat /tmp/ort-parts/part-* > "/tmp/$wheel" && (cd /tmp && sha256sum -c "$sums")
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "/tmp/$wheel"
fi
# onnxruntime-gpu's preload_dlls looks for the CUDA libraries beside itself (/tmp/site): point the loader at torch's
site=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
export LD_LIBRARY_PATH="$site/nvidia/cu13/lib:$site/nvidia/cudnn/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="/tmp/site:$PWD" YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import onnxruntime as ort, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| onnxruntime', ort.__version__, ort.get_available_providers())"
    # the server's own lines: the first (the device) and each worker's load line (its runtime), best.pt then ONNX
    python3 - "$model" <<'EOF'
import sys
from sdk.serving import LocalServer
for weights in ("best.pt", "onnx"):
    server = LocalServer(sys.argv[1], environment={"SERVING_WEIGHTS": weights}).start(timeout=600)
    try:
        print("\n".join(line for line in server.log().splitlines() if "device:" in line or " loaded from " in line))
    finally:
        server.stop()
EOF
} 2>&1 | tee "$out/devices.txt"
python3 benchmarks/bench_serve.py --model-dir "$model" --imgsz 640 --requests "${REQUESTS:-200}" \
    --clients "${CLIENTS:-4}" 2>&1 | tee "$out/bench.txt"
