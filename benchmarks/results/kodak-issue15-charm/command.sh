#!/bin/bash
# Issue 15: one Kodak run with charm-hyperprior (channel-wise context), the equal-budget mbt2018-mean control and
# the classical anchors (tcm-hyperprior and ckbd-hyperprior: ../kodak-issue15-equal-budget, same control and anchors).
set -euo pipefail
cd /work/main
W=/work/eval/weights3
rm -rf "$W" && mkdir -p "$W"
.venv/bin/nicbeam train --run-dir /work/train-runs/charm-q10 --resume --export-only --export charm-hyperprior --export-dir "$W"
.venv/bin/nicbeam train --run-dir /work/train-runs/mbt-q10-control --resume --export-only --export mbt2018-mean --export-dir "$W"
ls -la "$W"
rm -rf /work/eval/out-charm
time NICBEAM_WEIGHTS_DIR="$W" .venv/bin/nicbeam evaluate ../shared/data/kodak /work/eval/out-charm \
  --codec charm-hyperprior:quality=1,2,3,4,5,6,7,8,9,10 --codec mbt2018-mean:quality=1,2,3,4,5,6,7,8,9,10 \
  --codec jpeg:quality=5,10,20,30,50,75,90 --codec webp:quality=5,20,40,60,80,90 --codec avif:quality=10,30,50,70,85 \
  --codec jpegxl:distance=15,8,4,2,1 --compare_to mbt2018-mean --compare_to webp --compare_to avif --compare_to jpegxl \
  --torch_threads 1 --direct_running_mode=multi_processing --direct_num_workers=2
