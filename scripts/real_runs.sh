#!/usr/bin/env bash
# The real CIFAR-10 runs, each through its notebook with papermill, kept with its results as
# results/<run>/notebook.ipynb. Every run resumes from its checkpoint under
# ~/.cache/labkit/checkpoints/<run>/ (outside the work tree), so after an interruption just run
# this again: finished runs are skipped, an unfinished one continues where it stopped.
#   nohup scripts/real_runs.sh > ~/.cache/labkit/real_runs.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(realpath "${LABKIT_REAL_DATA:-../shared/datasets/cifar10-jpeg.tar.gz}")

run() {  # notebook run/model epochs
  local notebook=$1 model=$2 epochs=$3
  if [ -f "results/$model/notebook.ipynb" ] && [ -f "results/$model/metrics.json" ]; then
    echo "results/$model is complete; skipping"
    return
  fi
  mkdir -p "results/$model"
  LABKIT_PROGRESS_INTERVAL=60 papermill -k python3 --log-output "notebooks/$notebook.ipynb" \
    "results/$model/notebook.ipynb" -p model "$model" -p epochs "$epochs" -p data "$data" \
    -p val_size 5000 -p device cpu -p resume True
}

# cheap runs first: the ablation has 15× fewer FLOPs per image than se_resnet18
run 01_cnn cnn 30
run 04_se_resnet18 se_resnet18_imagenet_stem 15
run 02_resnet18 resnet18 15
run 04_se_resnet18 se_resnet18 15
run 03_densenet densenet_cifar 15
papermill -k python3 notebooks/05_comparison.ipynb results/comparison.ipynb
analysed="cnn,resnet18,densenet_cifar,se_resnet18,se_resnet18_imagenet_stem"
if python -c "import sys; from labkit import beyond; sys.exit(not beyond.analyses_current(sys.argv[1].split(',')))" "$analysed"; then
  echo "every analysis in results/ is from the present weights; skipping notebooks/06_analysis"
else
  papermill -k python3 --log-output notebooks/06_analysis.ipynb results/analysis.ipynb -p data "$data" -p runs "$analysed"
fi
python -m labkit.report
