#!/usr/bin/env bash
# Retrain the shipped MNIST classifier (course_ddpm/weights/mnist_classifier.*, the package's one
# model format: safetensors + JSON card, read by course_ddpm.checkpoints.load_model) from scratch
# on one CPU thread, then print the sha256 lines to paste into
# course_ddpm/pretrained.py:REGISTRY["classifier"] (the package refuses unregistered files).
#
#   scripts/train_classifier.sh            # PYTHON=... to pick the interpreter
#   scripts/train_classifier.sh b          # the second classifier (mnist_classifier_b: seed 1, half the width)
#
# Needs MNIST offline (see `python -m course_ddpm.data`); takes a few CPU minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
"$PYTHON" -m course_ddpm.data --no-download
if [ "${1:-}" = "b" ]; then
  "$PYTHON" -m course_ddpm.classifier --epochs 8 --seed 1 --channels 16 32 --hidden 64 --out course_ddpm/weights/mnist_classifier_b
else
  "$PYTHON" -m course_ddpm.classifier --epochs 8 --seed 0 --out course_ddpm/weights/mnist_classifier
fi
"$PYTHON" -m course_ddpm.pretrained
