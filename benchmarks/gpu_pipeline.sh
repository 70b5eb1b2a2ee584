#!/usr/bin/env bash
# bench_pipeline.py on a lent GPU machine, in one call of the device tool (docs/input-pipeline.md, "On a GPU").
# Needs the wheels ultralytics itself needs there, in .whl/ (carry: [".whl"]); writes under $OUT.
# Sizes fit the 15 minutes of device time: ~1 min to generate 400 large photos on 16 cores, ~1 min of loader
# measurements, ~5 min for 2 seeds x (plain, ours) x 3 epochs of yolo11n at 640 px.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false
out="${OUT:-/tmp/bench-out}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
df -h /dev/shm | tee -a "$out/gpu.txt"
python3 benchmarks/bench_pipeline.py --large "${LARGE:-400}" --small "${SMALL:-400}" --imgsz 640 --batch 64 \
    --workers "${WORKERS:-15}" --repeats 2 --passes 2 \
    --train --train-imgsz 640 --train-epochs "${EPOCHS:-3}" --seeds "${SEEDS:-0,1}" --device 0 --gpu-sample \
    --work /tmp/bench-pipeline 2>&1 | tee "$out/bench.txt"
