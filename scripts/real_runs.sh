#!/usr/bin/env bash
# The real CIFAR-10 runs, one after another, each resumable from its checkpoint under
# ~/.cache/labkit/checkpoints/<run>/ (outside the work tree). Run it again after an
# interruption: finished runs are only re-evaluated, unfinished ones continue.
#   nohup scripts/real_runs.sh > ~/.cache/labkit/real_runs.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
data=${LABKIT_REAL_DATA:-../shared/datasets/cifar10-jpeg.tar.gz}
for model in ${MODELS:-cnn resnet18 se_resnet18 densenet_cifar se_resnet18_imagenet_stem}; do
  python -m labkit.train --model "$model" --data "$data" --val-size 5000 --device cpu --resume --no-progress
done
