"""What the architecture notebooks show: the model's structure, sample images and predictions,
per-class tables, the look inside each architecture, and the analysis notebook's Grad-CAM figure."""
from __future__ import annotations

import io
from inspect import getmodule, getsource
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import nn

from labkit.data import BatchLoader, Cifar10
from labkit.evaluate import TTA_LEVELS
from labkit.models import available_builders, build_model, inspect
from labkit.reporting import figures as plots
from labkit.reporting.select import load_benchmarks
from labkit.robustness.suite import save_analysis
from labkit.runs.store import RunDataError, run_dir
from labkit.storage import write_atomic
from labkit.training.loop import estimate_epoch_seconds


def module_tree(model: nn.Module, depth: int = 2) -> str:
    """The module tree down to `depth`, one line per module with its parameter count."""
    lines = []

    def walk(module: nn.Module, name: str, level: int) -> None:
        params = sum(p.numel() for p in module.parameters())
        children = list(module.named_children())
        detail = (f"{type(module).__name__} ({len(children)} children)" if children
                  else repr(module).split("\n")[0])
        lines.append(f"{'    ' * level}{name}: {detail}  [{params:,} params]")
        if level < depth:
            for child_name, child in children:
                walk(child, child_name, level + 1)
    walk(model, type(model).__name__, 0)
    return "\n".join(lines)


def summary_table(model: nn.Module) -> pd.DataFrame:
    rows = inspect.stage_summary(model)
    table = pd.DataFrame(rows)
    total = {"stage": "total", "type": "", "params": sum(r["params"] for r in rows),
             "flops": sum(r["flops"] for r in rows), "output_shape": ""}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    table["MFLOPs"] = (table.pop("flops") / 1e6).round(2)
    return table


def sample_grid(data: Cifar10, count: int = 32, seed: int = 0):
    index = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(seed))[:count]
    return plots.image_grid(data.train_images[index], [data.classes[i] for i in data.train_labels[index]],
                            title="training images")


def prediction_sample(data: Cifar10, count: int = 24, seed: int = 0) -> torch.Tensor:
    """Indices of the random test images the prediction figure shows."""
    return torch.randperm(len(data.test_labels), generator=torch.Generator().manual_seed(seed))[:count]


def prediction_grid(result, data: Cifar10, count: int = 24, seed: int = 0):
    """Random test images, 'true → predicted (confidence)'; mistakes in red."""
    index = prediction_sample(data, count, seed)
    return predictions_figure(result.test.probabilities[index], data, index, result.config.run_name)


def predictions_figure(probabilities: torch.Tensor, data: Cifar10, index: torch.Tensor, run_name: str):
    predicted, truth = probabilities.argmax(1), data.test_labels[index]
    titles = [f"{data.classes[t]} → {data.classes[p]}\n{c:.0%}"
              for t, p, c in zip(truth.tolist(), predicted.tolist(), probabilities.max(1).values.tolist())]
    return plots.image_grid(data.test_images[index], titles, mistakes=(predicted != truth).tolist(),
                            title=f"{run_name}: test predictions (true → predicted); mistakes in red")


def accuracy_summary(result) -> str:
    """The final test accuracy at the chosen TTA level, every level measured, and the final val accuracy."""
    levels = ", ".join(f"{TTA_LEVELS[int(level)]} {accuracy:.2%}"
                       for level, accuracy in result.info["test_accuracy_by_tta"].items())
    return (f"test accuracy: {result.test.accuracy:.2%} at TTA level {result.config.tta} "
            f"({TTA_LEVELS[result.config.tta]}); by TTA level: {levels}; "
            + (f"final val accuracy: {result.history[-1]['val_acc']:.2%}" if result.history[-1]["val_acc"] is not None
               else f"trained on all {result.info['train_images']:,} training images (no val split)"))


def per_class_table(result) -> pd.DataFrame:
    table = pd.DataFrame({"accuracy": result.test.per_class})
    table["correct"] = result.test.confusion.diag().tolist()
    table["images"] = result.test.confusion.sum(1).tolist()
    return table


def save_figure(fig, run_name: str, name: str, table: pd.DataFrame | None = None, root: Path | None = None) -> Path:
    """Keep a notebook figure with its run: results/<run>/figures/<name>.png (under `root` if
    given), and the numbers it plots as <name>.csv when given (the report reads them)."""
    path = (root / run_name if root else run_dir(run_name)) / "figures" / f"{name}.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
    write_atomic(path, buffer.getvalue())
    if table is not None:
        write_atomic(path.with_suffix(".csv"), table.to_csv().encode())
    return path


def normalised_batch(data: Cifar10, count: int, device: torch.device | str = "cpu", seed: int = 0):
    """`count` random test images (seeded; the offline copy is stored class by class) as a
    float, normalised batch, with labels."""
    index = torch.randperm(len(data.test_labels), generator=torch.Generator().manual_seed(seed))[:count]
    loader = BatchLoader(data.test_images[index], data.test_labels[index], count, train=False, device=device)
    return next(iter(loader))


def resnet_gradient_look(model_name: str, data: Cifar10, batch: int = 128, seed: int = 0):
    """Gradient norm per block of a freshly initialised net, with and without shortcuts, and a
    sentence saying what the measurement shows. For plain18, which has no shortcuts to switch, it is
    ResNet-18's: the same network with them and without."""
    torch.manual_seed(seed)
    model = build_model("resnet18" if model_name == "plain18" else model_name)
    x, y = normalised_batch(data, min(batch, len(data.test_labels)))
    with_sc = inspect.block_gradient_norms(model, x, y, use_shortcut=True)
    without = inspect.block_gradient_norms(model, x, y, use_shortcut=False)
    table = pd.DataFrame({"with shortcuts": with_sc, "shortcuts removed": without})
    table["ratio"] = table["with shortcuts"] / table["shortcuts removed"]
    return table.round(3), plots.gradient_norms(with_sc, without, f"{model_name}: gradient norm per block at initialisation")


def densenet_memory_look(batch: int = 32):
    """Channel growth of densenet_cifar and its activation memory next to ResNet-18's."""
    densenet = build_model("densenet_cifar")
    memory = {"densenet_cifar": inspect.activation_memory(densenet, batch),
              "densenet_cifar (memory-efficient)": inspect.activation_memory(
                  build_model("densenet_cifar", memory_efficient=True), batch),
              "resnet18": inspect.activation_memory(build_model("resnet18"), batch)}
    rows = inspect.densenet_channels(densenet)
    return pd.DataFrame(rows), memory, plots.densenet_growth(rows, memory, "densenet_cifar: channel growth and "
                                                                           "activation memory")


def excitation_look(model: nn.Module, data: Cifar10, count: int = 2000, title: str = "se_resnet18"):
    """The SE gates on test images: statistics per block (`inspect.gate_statistics`, with the spread
    of the per-class means and how the classes split by their gates, `inspect.class_split`), and a
    figure of the mean gates per class at the last block of each stage."""
    device = next(model.parameters()).device
    x, y = normalised_batch(data, min(count, len(data.test_labels)), device)
    gates = inspect.se_gates(model, x)
    by_class = inspect.excitation_by_class(gates, y, len(data.classes))
    table = inspect.gate_statistics(gates)
    table["sd over classes"] = pd.Series({name: g.std(0).mean().item() for name, g in by_class.items()})
    splits = {name: inspect.class_split(g, list(data.classes)) for name, g in by_class.items()}
    table["class split"] = pd.Series({name: f"{', '.join(a)} / {', '.join(b)}" for name, (a, b, _) in splits.items()})
    table["split share"] = pd.Series({name: share for name, (_, _, share) in splits.items()})
    shown = {name: by_class[name] for name in inspect.last_blocks(by_class)}
    return table, plots.excitation_heatmaps(shown, data.classes, f"{title}: SE excitation per class")


def show_source(model_name: str):
    """The source of the module that defines `model_name`, highlighted: the code this notebook trains."""
    from IPython.display import Code

    return Code(getsource(getmodule(available_builders()[model_name])), language="python")


def time_estimate(config, data: Cifar10) -> str:
    """How long `config` will train on this machine (timed over a few steps), and how to run shorter."""
    seconds = estimate_epoch_seconds(config, data)
    hours = seconds * config.epochs / 3600
    return (f"Estimated training time here: {seconds / 60:.1f} min per epoch, about {hours:.1f} h "
            f"for {config.epochs} epochs (timed over 4 steps after 4 warm-up steps, on this machine as loaded now; "
            f"validation adds a little). For a quick run, pass a shorter schedule, e.g. `papermill ... -p epochs 5`, "
            f"or a GPU (`-p device cuda`).")


def architecture_look(model_name: str, model: nn.Module, data: Cifar10, run_name: str):
    """The look inside each architecture that its notebook shows: (figure name, figure, the table
    of numbers behind it or None)."""
    if model_name == "cnn":
        return "filters", plots.conv_filters(model.features[0].weight,
                                             f"{run_name}: first-layer filters (6 × 5×5×3)"), None
    if model_name in ("resnet18", "plain18"):
        table, figure = resnet_gradient_look(model_name, data)
        return "gradient_norms", figure, table
    if model_name == "densenet_cifar":
        return "channels_memory", densenet_memory_look()[2], None
    table, figure = excitation_look(model, data, title=run_name)
    return "excitation", figure, table


def densenet_benchmarks() -> pd.DataFrame:
    """Measured speed and peak memory of densenet_cifar, normal and memory-efficient, from every
    benchmark in results/benchmarks/ (python -m labkit.bench)."""
    rows = []
    for file, bench in load_benchmarks().items():
        for name in ("densenet_cifar", "densenet_cifar_memory_efficient"):
            if name in bench["models"]:
                fast = bench["models"][name]["fast"]
                rows.append({"benchmark": file, "batch": bench["settings"]["batch_size"], "model": name,
                             "img/s": fast["images_per_s"], "peak memory (MB)": fast["peak_memory_mb"]})
    return pd.DataFrame(rows)


def styled(table: pd.DataFrame, percent: list[str] | str = ()):
    """A table for a notebook: the `percent` columns ("all": every column) as percentages with one
    decimal, other numbers with three decimals, missing values as a dash."""
    columns = list(table.columns) if percent == "all" else list(percent)
    return (table.style.format(precision=3, thousands=",", na_rep="–")
            .format("{:.1%}", subset=columns, na_rep="–"))


def gradcam_figure(summaries: dict[str, dict], data: Cifar10):
    """The Grad-CAM images the analyses picked, then each run's maps over them, from the runs'
    analysis summaries (`analysis.json`): nothing is recomputed."""
    missing = [name for name, s in summaries.items() if not s.get("gradcam")]
    if missing:
        raise RunDataError(f"{', '.join(missing)}: the saved analysis has no Grad-CAM (the analysis stopped before "
                           "it); run the analysis notebook on these runs with analyse = True")
    gradcams = {name: s["gradcam"] for name, s in summaries.items()}
    picks = next(iter(gradcams.values()))
    if any(g["test_indices"] != picks["test_indices"] for g in gradcams.values()):
        raise RunDataError(f"the analyses of {', '.join(gradcams)} picked different Grad-CAM images (they were "
                           "analysed apart); analyse them together (analyse = True) to compare them on one set")
    index = torch.tensor(picks["test_indices"], dtype=torch.long)
    captions = plots.gradcam_captions([data.classes[int(data.test_labels[i])] for i in index.tolist()], picks["kinds"])
    return plots.gradcam_overlays(data.test_images[index], gradcams, captions)


def save_gradcam_figure(name: str, summary: dict, data: Cifar10, root: Path | None = None) -> Path:
    """A run's Grad-CAM row as results/<run>/figures/gradcam.png."""
    fig = gradcam_figure({name: summary}, data)
    path = save_figure(fig, name, "gradcam", root=root)
    plt.close(fig)
    return path


def save_analyses(analyses: dict, data: Cifar10, root: Path | None = None) -> None:
    """Each run's analysis.json, and its Grad-CAM row as figures/gradcam.png, in its results folder;
    an analysis read from there and left unchanged is not written again."""
    for name, analysis in analyses.items():
        if analysis.saved:
            continue
        print("saved", save_analysis(analysis, root))
        save_gradcam_figure(name, analysis.summary, data, root)
