"""Redraw the figures each architecture notebook saves (predictions and the look inside the model)
for runs already in results/, from their saved weights, without retraining. Used when the
figure code changes; the executed notebooks of those runs keep the figures they were run with.

    python scripts/refresh_run_figures.py [RUN ...]      # default: every run in results/
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from labkit.data import load_cifar10
from labkit.evaluate import predict
from labkit.notebook.views import architecture_look, prediction_sample, predictions_figure, save_figure
from labkit.paths import REPO_ROOT
from labkit.runs.store import list_runs, load_model, read_metrics, run_dir


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
    return list(figures)


if __name__ == "__main__":
    runs = sys.argv[1:] or list_runs()
    data = load_cifar10(str(REPO_ROOT / read_metrics(run_dir(runs[0]))["data_location"])) if runs else None
    for run in runs:
        print(run, "→", ", ".join(refresh(run, data)), flush=True)
