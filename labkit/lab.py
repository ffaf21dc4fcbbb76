"""What the notebooks call: parameter checks, smoke mode, and the per-architecture looks.

With env LABKIT_SMOKE=1 (set by the test suite) every notebook trains one epoch on the small
synthetic data set, so nbval runs all five in a few minutes; results then go wherever
LABKIT_RESULTS points (the suite points it at a temporary folder).
"""
from __future__ import annotations

import ast
import io
from pathlib import Path

import pandas as pd
import torch
from torch import nn

import matplotlib.pyplot as plt

from . import analysis, plots
from .beyond import AnalysisSettings, save_analysis
from .data import BatchLoader, Cifar10, load_cifar10
from .evaluate import TTA_LEVELS
from .models import available_models
from .paths import smoke_mode
from .results import list_runs, results_root, run_dir, save_run
from .storage import write_atomic
from .train import TrainConfig, fit

SMOKE = smoke_mode()
SMOKE_SETTINGS = dict(data="synthetic", epochs=1, val_size=100, batch_size=64, train_subset=0, resume=False)


def injected_parameters() -> set[str]:
    """Names papermill injected (`-p name value`) in this kernel: it runs them as a cell that
    starts with the line '# Parameters'. Empty outside papermill."""
    try:
        from IPython import get_ipython
    except ImportError:
        return set()
    shell = get_ipython()
    cells = [cell for cell in (shell.user_ns.get("In", []) if shell else []) if cell.startswith("# Parameters\n")]
    if not cells:
        return set()
    tree = ast.parse(cells[-1])
    return {target.id for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def reject_unknown_parameters(known) -> None:
    """Fail with the valid names when papermill was given a parameter this notebook does not take
    (papermill itself only logs 'Passed unknown parameter' and carries on)."""
    unknown = sorted(injected_parameters() - set(known))
    if unknown:
        raise ValueError(f"unknown notebook parameter(s) {', '.join(unknown)}; this notebook takes: "
                         f"{', '.join(sorted(known))}")


def configure(**parameters) -> TrainConfig:
    """Check the notebook's parameters and build the training config. Fails here, in the
    first code cell, with a message naming the bad value or an unknown parameter name.
    Smoke mode overrides the size."""
    reject_unknown_parameters(parameters)
    data = str(parameters.get("data", "auto"))
    if data not in ("auto", "synthetic", "torchvision") and not Path(data).expanduser().exists():
        raise ValueError(f"data path {data!r} does not exist (relative paths resolve from "
                         f"{Path.cwd()}); pass 'auto', 'synthetic', 'torchvision', or an existing path")
    parameters["progress"] = parameters.get("progress", True)
    config = TrainConfig(**parameters)              # validates what the user asked for
    if SMOKE:
        print("LABKIT_SMOKE=1: smoke mode, 1 epoch on synthetic data; results go to", run_dir(""))
        config = TrainConfig(**{**parameters, **SMOKE_SETTINGS})
    return config


def load_data(config: TrainConfig) -> Cifar10:
    data = load_cifar10(config.data)
    print(f"data: {data.source} from {data.location} (checksum {data.checksum[:16]}…), "
          f"{len(data.train_labels)} train / {len(data.test_labels)} test images")
    return data


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
    rows = analysis.stage_summary(model)
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
            f"final val accuracy: {result.history[-1]['val_acc']:.2%}")


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
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
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
    sentence saying what the measurement shows."""
    from .models import build_model

    torch.manual_seed(seed)
    model = build_model(model_name)
    x, y = normalised_batch(data, min(batch, len(data.test_labels)))
    with_sc = analysis.block_gradient_norms(model, x, y, use_shortcut=True)
    without = analysis.block_gradient_norms(model, x, y, use_shortcut=False)
    table = pd.DataFrame({"with shortcuts": with_sc, "shortcuts removed": without})
    table["ratio"] = table["with shortcuts"] / table["shortcuts removed"]
    return table, plots.gradient_norms(with_sc, without, f"{model_name}: gradient norm per block at initialisation")


def gradient_reading(table: pd.DataFrame) -> str:
    """What the with/without-shortcut gradient table shows, in words, from its numbers."""
    first, last = table.index[0], table.index[-1]
    lower = [name for name, r in table.ratio.items() if r < 1]
    return (f"At initialisation the shortcuts change the gradient norm of the first block ({first}) by "
            f"×{table.ratio.iloc[0]:.2f} and of the last ({last}) by ×{table.ratio.iloc[-1]:.2f}; "
            f"{len(lower)} of {len(table)} blocks get a smaller gradient with them than without. So at step 0 "
            f"the plain stack does not starve its early blocks: with BN after every convolution the gradient "
            f"does not vanish over 18 layers, and the identity additions let activations grow with depth, so "
            f"gradients flowing back through the later BN layers are divided by a larger scale. The usual "
            f"case for shortcuts (plain nets much deeper than 18 layers train worse over many steps) is not "
            f"what this one-batch measurement at initialisation tests.")


def densenet_memory_look(batch: int = 32):
    """Channel growth of densenet_cifar and its activation memory next to ResNet-18's."""
    from .models import build_model

    densenet = build_model("densenet_cifar")
    memory = {"densenet_cifar": analysis.activation_memory(densenet, batch),
              "densenet_cifar (memory-efficient)": analysis.activation_memory(
                  build_model("densenet_cifar", memory_efficient=True), batch),
              "resnet18": analysis.activation_memory(build_model("resnet18"), batch)}
    rows = analysis.densenet_channels(densenet)
    return pd.DataFrame(rows), memory, plots.densenet_growth(rows, memory, "densenet_cifar: channel growth and "
                                                                           "activation memory")


def excitation_look(model: nn.Module, data: Cifar10, count: int = 2000, title: str = "se_resnet18"):
    """Mean SE gates per class for the last block of each stage, on test images."""
    device = next(model.parameters()).device
    x, y = normalised_batch(data, min(count, len(data.test_labels)), device)
    gates = analysis.excitation_by_class(model, x, y, len(data.classes))
    last_blocks = {name: g for name, g in gates.items() if name.endswith(".1")}
    spread = pd.DataFrame({name: {"mean gate": g.mean().item(), "spread across classes": g.std(0).mean().item()}
                           for name, g in last_blocks.items()}).T
    return spread, plots.excitation_heatmaps(last_blocks, data.classes, f"{title}: SE excitation per class")


def architecture_look(model_name: str, model: nn.Module, data: Cifar10, run_name: str):
    """The look inside each architecture that its notebook shows: (figure name, figure, the table
    of numbers behind it or None)."""
    if model_name == "cnn":
        return "filters", plots.conv_filters(model.features[0].weight,
                                             f"{run_name}: first-layer filters (6 × 5×5×3)"), None
    if model_name == "resnet18":
        table, figure = resnet_gradient_look(model_name, data)
        return "gradient_norms", figure, table
    if model_name == "densenet_cifar":
        return "channels_memory", densenet_memory_look()[2], None
    return "excitation", excitation_look(model, data, title=run_name)[1], None


def densenet_benchmarks() -> pd.DataFrame:
    """Measured speed and peak memory of densenet_cifar, normal and memory-efficient, from every
    benchmark in results/benchmarks/ (python -m labkit.bench)."""
    from .compare import load_benchmarks

    rows = []
    for file, bench in load_benchmarks().items():
        for name in ("densenet_cifar", "densenet_cifar_memory_efficient"):
            if name in bench["models"]:
                fast = bench["models"][name]["fast"]
                rows.append({"benchmark": file, "batch": bench["settings"]["batch_size"], "model": name,
                             "img/s": fast["images_per_s"], "peak memory (MB)": fast["peak_memory_mb"]})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- 06_analysis

ANALYSIS_SMOKE_SIZES = dict(calibration_size=200, corruption_size=50, attack_size=20)


def model_of_run(run_name: str) -> str:
    """The model a run name stands for: 'resnet18' and 'resnet18-40ep' both mean resnet18."""
    for model in sorted(available_models(), key=len, reverse=True):
        if run_name == model or run_name.startswith(model + "-"):
            return model
    raise ValueError(f"run name {run_name!r} does not start with a model name ({', '.join(available_models())})")


def configure_analysis(runs: str, results_dir: str, epsilons: str, **settings):
    """Check the analysis notebook's parameters: (run names, results root or None, AnalysisSettings).
    `runs` is "longest" (each model's longest run) or run names, each of which must be in the results
    root. In smoke mode the subsets shrink, and a run that is not there (for "longest": a model with
    no run) is trained for one epoch on synthetic data first."""
    from .compare import load_every_run, longest_runs

    reject_unknown_parameters(["runs", "results_dir", "epsilons", "data", "save", *settings])
    root = Path(results_dir) if results_dir else None
    if root is not None and not root.is_dir():
        raise ValueError(f"results_dir {results_dir!r} is not a folder")
    try:
        budgets = tuple(float(e) for e in str(epsilons).split(",") if e.strip())
    except ValueError:
        raise ValueError(f"epsilons must be numbers separated by commas (in units of 1/255), got {epsilons!r}") from None
    config = AnalysisSettings(epsilons=budgets, **settings)
    if runs.strip() == "longest":
        names = [name for name, run in longest_runs(load_every_run(root)).items() if run is not None or SMOKE]
        if not names:
            raise ValueError(f"no saved run in {root or results_root()}; train one with a model notebook first")
    else:
        names = [name.strip() for name in runs.split(",") if name.strip()]
    if not names:
        raise ValueError("runs is empty; give 'longest' or run names separated by commas, e.g. 'cnn,resnet18'")
    if SMOKE:
        config = AnalysisSettings(**{**settings, **ANALYSIS_SMOKE_SIZES, "epsilons": budgets})
        print("LABKIT_SMOKE=1: smoke mode, small subsets; runs come from", root or results_root())
        for name in names:
            if not ((root or results_root()) / name / "metrics.json").is_file():
                save_run(fit(TrainConfig(model=model_of_run(name), run_name=name, progress=False, **SMOKE_SETTINGS)))
    missing = [name for name in names if not ((root or results_root()) / name / "metrics.json").is_file()]
    if missing:
        raise ValueError(f"no saved run {', '.join(missing)} in {root or results_root()}; runs there: "
                         f"{', '.join(list_runs(root)) or 'none'}")
    return names, root, config


def analysis_data(data: str) -> Cifar10:
    """The data set to analyse on: the one the runs trained on (synthetic in smoke mode)."""
    return load_cifar10("synthetic" if SMOKE else data)


def gradcam_figure(analyses: dict, data: Cifar10, picks: dict):
    """The picked test images, then each analysed run's Grad-CAM over them."""
    index = torch.tensor(picks["test_indices"], dtype=torch.long)
    captions = [f"{data.classes[int(data.test_labels[i])]}\n{kind}" for i, kind in zip(index.tolist(), picks["kinds"])]
    return plots.gradcam_overlays(data.test_images[index], {name: a.summary["gradcam"] for name, a in analyses.items()},
                                  captions)


def save_analyses(analyses: dict, data: Cifar10, picks: dict, root: Path | None = None) -> None:
    """Each run's analysis.json, and its Grad-CAM row as figures/gradcam.png, in its results folder."""
    for name, analysis in analyses.items():
        print("saved", save_analysis(analysis, root))
        fig = gradcam_figure({name: analysis}, data, picks)
        save_figure(fig, name, "gradcam", root=root)
        plt.close(fig)
