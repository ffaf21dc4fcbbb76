"""Redraw the figures each architecture notebook saves (predictions, the look inside the model and,
for analysed runs, the Grad-CAM row from analysis.json) for runs already in results/, from their
saved weights, without retraining; and the benchmark figures from their JSON. Used when the figure
code changes; the executed notebooks of those runs keep the figures they were run with.

    python scripts/refresh_run_figures.py [RUN ...]      # default: every run in results/, and the benchmarks
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after matplotlib.use)

from labkit import bench
from labkit.data import load_cifar10
from labkit.evaluate import predict
from labkit.notebook.views import (architecture_look, prediction_sample, predictions_figure,
                                   save_figure, save_gradcam_figure)
from labkit.paths import REPO_ROOT, results_root
from labkit.robustness.suite import load_analysis
from labkit.runs.store import RunDataError, list_runs, load_model, read_metrics, run_dir


def refresh(run_name: str, data) -> list[str]:
    metrics = read_metrics(run_dir(run_name))
    model = load_model(run_name)
    index = prediction_sample(data)
    probabilities = predict(model, data.test_images[index], tta=metrics["test_tta"], precision=metrics["precision"])
    figures = {"predictions": (predictions_figure(probabilities, data, index, run_name), None)}
    name, look, table = architecture_look(metrics["model"], model, data, run_name)
    figures[name] = (look, table)
    for figure_name, (figure, numbers) in figures.items():
        save_figure(figure, run_name, figure_name, numbers)
        plt.close(figure)
    try:
        analysis = load_analysis(run_name)
    except RunDataError as err:
        print(f"{run_name}: Grad-CAM not redrawn: {err}")
        analysis = None
    if analysis and analysis.get("gradcam") and not analysis["stale"]:
        save_gradcam_figure(run_name, analysis, data)
        figures["gradcam"] = None
    return list(figures)


def refresh_benchmarks() -> list[str]:
    paths = sorted((results_root() / "benchmarks").glob("*.json"))
    for path in paths:
        bench.figure(json.loads(path.read_text()), path.with_suffix(".png"))
    return [path.stem for path in paths]


if __name__ == "__main__":
    runs = sys.argv[1:] or list_runs()
    data = load_cifar10(str(REPO_ROOT / read_metrics(run_dir(runs[0]))["data_location"])) if runs else None
    for run in runs:
        print(run, "→", ", ".join(refresh(run, data)), flush=True)
    if not sys.argv[1:]:
        print("benchmarks →", ", ".join(refresh_benchmarks()))
