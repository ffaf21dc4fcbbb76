"""Figures shared by the notebooks and the report. Each function returns a matplotlib Figure.
Every model keeps one colour in every figure (`model_colour`)."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import PercentFormatter
from matplotlib.lines import Line2D
import numpy as np
import pandas as pd
import torch

from labkit.reporting.claims import LAB_REPORT_ACCURACY
from labkit.reporting.select import budget_groups, is_final_fit, present, runs_by_model, val_stand_ins
from labkit.reporting.stats import seed_summary
from labkit.reporting.tables import MODEL_TITLES
from labkit.robustness.gradcam import drawn_maps

MODEL_COLOURS = {"cnn": "tab:gray", "resnet18": "tab:blue", "densenet_cifar": "tab:green",
                 "densenet_cifar_memory_efficient": "yellowgreen", "se_resnet18": "tab:orange",
                 "se_resnet18_imagenet_stem": "tab:red"}
MIN_BIN_IMAGES = 20   # reliability bins with fewer images are too noisy to draw (1 image: accuracy 0 or 1)


def model_of(name: str, models) -> str | None:
    """The model of `models` a run name or label stands for ('resnet18-40ep' → 'resnet18'), or None."""
    return next((model for model in sorted(models, key=len, reverse=True)
                 if name == model or name.startswith(model + "-") or name.startswith(model + " ")), None)


def model_colour(name: str) -> str:
    """The model's colour; a run name like 'resnet18-40ep' takes its model's colour."""
    return MODEL_COLOURS.get(model_of(name, MODEL_COLOURS), "tab:purple")


def image_grid(images: torch.Tensor, titles: list[str], columns: int = 8, mistakes: list[bool] | None = None,
               title: str = ""):
    """uint8 N×3×32×32 images with a caption each; captions of mistakes in red."""
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.35, rows * 1.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, image) in enumerate(zip(axes.flat, images)):
        ax.imshow(image.permute(1, 2, 0).cpu().numpy())
        wrong = bool(mistakes and mistakes[i])
        ax.set_title(titles[i], fontsize=7, color="crimson" if wrong else "black")
        if wrong:
            ax.axis("on")
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("crimson"), spine.set_linewidth(2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def training_curves(history, title: str = ""):
    """Loss and accuracy per epoch, train vs val. `history`: list of dicts or a DataFrame. With a weight
    average (EMA) val is measured on the averaged weights (solid) and the live ones (dashed); a final fit
    on all training images has no val line, and the title says so."""
    h = pd.DataFrame(history)
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_ax.plot(h.epoch, h.train_loss, "o-", ms=3, label="train (smoothed labels, augmented)")
    acc_ax.plot(h.epoch, h.train_acc, "o-", ms=3, label="train (augmented, live weights)")
    has_val = "val_acc" in h and h.val_acc.notna().any()
    has_ema = "val_acc_no_ema" in h and h.val_acc_no_ema.notna().any()
    if has_val:
        label = "val, averaged weights (EMA)" if has_ema else "val"
        loss_ax.plot(h.epoch, h.val_loss, "s-", ms=3, label=label)
        acc_ax.plot(h.epoch, h.val_acc, "s-", ms=3, label=label)
    if has_ema:
        acc_ax.plot(h.epoch, h.val_acc_no_ema, "s--", ms=3, label="val, live weights")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3), ax.legend(fontsize=8)
    if title or not has_val:
        fig.suptitle(title + ("" if has_val else " (final fit on all training images: no val split)"))
    fig.tight_layout()
    return fig


def pair_curves(runs: dict, title: str):
    """Two runs of one recipe and budget epoch by epoch (`runs`: name -> history): train loss, val accuracy
    and val loss, each run in its model's colour, so a control shows where the pair parts."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for (name, history), marker in zip(runs.items(), "os"):
        h = pd.DataFrame(history)
        for ax, column in zip(axes, ("train_loss", "val_acc", "val_loss")):
            ax.plot(h.epoch, h[column], marker + "-", ms=3, color=model_colour(name), label=name)
    for ax, label in zip(axes, ("train loss (smoothed labels, augmented)", "val accuracy", "val loss")):
        ax.set(xlabel="epoch", title=label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def per_class_bars(per_class: dict[str, float], title: str = "per-class test accuracy", colour: str = "steelblue"):
    """Bars from 0 (an axis cut off below would exaggerate the differences), each labelled."""
    fig, ax = plt.subplots(figsize=(8, 3))
    names, values = list(per_class), list(per_class.values())
    bars = ax.bar(names, values, color=colour)
    ax.bar_label(bars, labels=[f"{v:.1%}" for v in values], fontsize=8)
    ax.set(ylim=(0, 1.1), ylabel="test accuracy", title=title)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def confusion_heatmap(confusion, classes, title: str = "confusion"):
    """Counts of test images by true (rows) and predicted class; the title says so."""
    import seaborn as sns

    matrix = np.asarray(confusion)
    per_class = int(matrix.sum(1).max())
    title = f"{title}\ntest split: counts of {per_class:,} images per true class (rows)"
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", xticklabels=classes, yticklabels=classes,
                cbar=False, ax=ax, annot_kws={"fontsize": 7})
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def conv_filters(weight: torch.Tensor, title: str = "first-layer filters"):
    """Out×3×k×k filters shown as RGB patches, each scaled to its own range."""
    w = weight.detach().float().cpu()
    w = (w - w.amin((1, 2, 3), keepdim=True)) / (w.amax((1, 2, 3), keepdim=True) - w.amin((1, 2, 3), keepdim=True) + 1e-8)
    columns = min(8, len(w))
    rows = -(-len(w) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(max(4.5, columns * 1.5), rows * 1.5 + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, f in zip(axes.flat, w):
        ax.imshow(f.permute(1, 2, 0).numpy(), interpolation="nearest")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def gradient_norms(with_shortcuts: dict[str, float], without: dict[str, float], title: str):
    """Per block: the two gradient norms side by side (linear, from 0) and their ratio."""
    names = list(with_shortcuts)
    ratio = [with_shortcuts[n] / without[n] for n in names]
    x = np.arange(len(names))
    fig, (ax, ratio_ax) = plt.subplots(1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    ax.bar(x - 0.2, [with_shortcuts[n] for n in names], 0.4, label="with shortcuts", color="tab:blue")
    ax.bar(x + 0.2, [without[n] for n in names], 0.4, label="shortcuts removed", color="tab:gray")
    ax.set_xticks(x, names, rotation=30)
    ax.set(ylabel="‖∂loss/∂θ‖", title="gradient norm per residual block")
    ax.legend(fontsize=8)
    ratio_ax.bar(x, ratio, color="tab:purple")    # one colour: the line at 1 and the labels say which side
    ratio_ax.axhline(1, color="black", lw=0.8)
    ratio_ax.bar_label(ratio_ax.containers[0], labels=[f"{r:.2f}" for r in ratio], fontsize=7)
    ratio_ax.margins(y=0.12)                      # room for the labels above the tallest bar
    ratio_ax.set_xticks(x, names, rotation=30)
    ratio_ax.set(ylabel="with / without shortcuts", title="ratio (above 1: shortcuts raise it)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def densenet_growth(rows: list[dict], memory: dict[str, float], title: str = "densenet_cifar"):
    fig, (ax, mem_ax) = plt.subplots(1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    layers = [r for r in rows if r["kind"] == "dense layer"]
    ax.plot(range(len(layers)), [r["in_channels"] for r in layers], ".-", color=MODEL_COLOURS["densenet_cifar"])
    ax.set(xlabel="bottleneck layer (in forward order)", ylabel="input channels",
           title="channels seen by each dense layer (transitions halve them)")
    ax.grid(alpha=0.3)
    names = list(memory)
    bars = mem_ax.barh(names, [memory[n] for n in names],
                       color=[model_colour(n.replace(" (memory-efficient)", "_memory_efficient")) for n in names])
    mem_ax.bar_label(bars, fmt="%.1f MB", fontsize=8)
    mem_ax.invert_yaxis()
    mem_ax.set(xlabel="MB per image", title="activation memory kept for backward")
    mem_ax.set_xlim(0, max(memory.values()) * 1.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def excitation_heatmaps(excitations: dict[str, torch.Tensor], classes, title: str = "SE excitation per class"):
    """One panel per stage: mean SE gate per channel (x) for each class (rows); the colour scale is
    the gate's whole range, 0 to 1, so gates stuck near 0.5 read as one flat colour."""
    names = list(excitations)
    # two panels a row: the figure prints at page width with 9 pt labels
    fig, axes = panel_grid(len(names), 2, 4.5, 3.2, layout="constrained")
    for i, (ax, name) in enumerate(zip(axes, names)):
        image = ax.imshow(excitations[name].numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1,
                          interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("channel", fontsize=9)
        ax.set_yticks(range(len(classes)), classes if i % 2 == 0 else [""] * len(classes), fontsize=9)
    fig.colorbar(image, ax=list(axes), shrink=0.9, label="mean gate over the class's images")
    fig.suptitle(f"{title} (last block of each stage)", fontsize=11)
    return fig


def panel_title(name: str) -> str:
    """A run name over two lines, the model then its variant, so narrow panels' titles do not collide."""
    model, _, variant = name.partition("-")
    return f"{model}\n{variant}" if variant else name


def panel_grid(count: int, columns: int, width: float, height: float, **options):
    """A grid of `count` panels, `columns` wide, with the unused ones removed."""
    rows = -(-count // columns)
    columns = min(columns, count)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False, **options)
    for ax in axes.flat[count:]:
        ax.remove()
    return fig, axes.flat[:count]


def reliability_diagrams(summaries: dict[str, dict]):
    """Per run: accuracy against confidence in 15 bins, before and after temperature scaling, with
    each drawn bin's image count under the axis; bars below the diagonal are over-confident, above it
    under-confident. Bins of fewer than MIN_BIN_IMAGES images are not drawn."""
    fig, axes = panel_grid(len(summaries), 3, 3.3, 3.3)
    for ax, (name, s) in zip(axes, summaries.items()):
        c = s["calibration"]
        width = 1 / len(c["bins_before"])
        drawn = [("bins_before", f"T = 1: ECE {c['before']['ece']:.1%}", dict(alpha=0.45))]
        if c["temperature"]:    # a final fit has no val split, so no temperature
            drawn.append(("bins_after", f"T = {c['temperature']:.2f}: ECE {c['after']['ece']:.1%}",
                          dict(fill=False, edgecolor="black")))
        else:
            ax.plot([], [], " ", label="no val split: no T fitted")
        for key, label, style in drawn:
            bins = [b for b in c[key] if b["count"] >= MIN_BIN_IMAGES]
            ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=width, align="edge",
                   color=model_colour(name), label=label, **style)
        shown = [b for b in c["bins_before"] if b["count"] >= MIN_BIN_IMAGES]
        for b in shown:   # images per bin (before scaling), small, inside the bar's foot
            ax.text(b["low"] + width / 2, 0.02, f"{b['count']:,}", rotation=90, ha="center", va="bottom", fontsize=8)
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
        ax.set_xlabel("confidence", fontsize=9), ax.set_ylabel("accuracy in the bin", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_title(panel_title(name), fontsize=9)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"reliability on the test split (no TTA); numbers: images per bin before scaling;\nbins under "
                 f"{MIN_BIN_IMAGES} images not drawn", fontsize=10)
    fig.tight_layout()
    return fig


def corruption_scale_floor(summaries: dict[str, dict]) -> float:
    """Where the corruption heatmaps' colour scale starts: the lowest accuracy shown, rounded down to 10 %."""
    low = min(v for s in summaries.values() for row in s["corruptions"]["accuracy"].values() for v in row.values())
    return float(np.floor(low * 10) / 10)


def corruption_heatmaps(summaries: dict[str, dict]):
    """One heatmap: a row per corruption, and per run a group of five columns, its severities 1–5, so
    the runs compare along a row at each severity. The colour scale starts at the lowest accuracy shown
    (rounded down to 10 %), not at 0, so the differences between 50 and 90 % stay visible."""
    tables = {name: s["corruptions"]["accuracy"] for name, s in summaries.items()}
    corruptions = list(next(iter(tables.values())))
    severities = sorted(next(iter(tables.values()))[corruptions[0]], key=int)
    low = corruption_scale_floor(summaries)
    values = np.array([[tables[name][c][k] for name in tables for k in severities] for c in corruptions])
    group = len(severities)
    fig, ax = plt.subplots(figsize=(1.3 + 0.27 * values.shape[1], 1.4 + 0.27 * len(corruptions)), layout="constrained")
    image = ax.imshow(values, vmin=low, vmax=1, cmap="viridis", aspect="auto")
    for (r, col), v in np.ndenumerate(values):
        ax.text(col, r, f"{v * 100:.0f}", ha="center", va="center", fontsize=7,
                color="white" if v < low + (1 - low) * 0.55 else "black")
    for edge in range(group, values.shape[1], group):      # white gaps between the runs' groups
        ax.axvline(edge - 0.5, color="white", lw=3)
    ax.set_xticks(range(values.shape[1]), [str(k) for _ in tables for k in severities], fontsize=7)
    ax.set_yticks(range(len(corruptions)), [c.replace("_", " ") for c in corruptions], fontsize=8)
    ax.set_xlabel("severity, per run", fontsize=8)
    top = ax.secondary_xaxis("top")
    top.set_xticks([i * group + (group - 1) / 2 for i in range(len(tables))],
                   [f"{header}\nmean {summaries[name]['corruptions']['mean_accuracy']:.1%}\nclean "
                    f"{summaries[name]['corruptions']['clean_accuracy']:.1%}"
                    for name, header in zip(tables, gradcam_headers(list(tables)))], fontsize=7)
    top.tick_params(length=0)
    bar = fig.colorbar(image, ax=ax, shrink=0.7, aspect=30, pad=0.01)
    bar.set_label("accuracy", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    bar.ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    return fig


def attack_curves(summaries: dict[str, dict]):
    """Accuracy against the L∞ budget ε: FGSM and PGD-10 in two panels, one colour and marker per
    run, so runs with near-equal curves stay told apart; the legend sits below, outside the axes."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.8), sharey=True)
    markers = "osD^vP*X"
    for i, (name, s) in enumerate(summaries.items()):
        a = s["attacks"]
        eps = [0.0] + [float(e) for e in a["pgd"]]
        for ax, attack in zip(axes, ("fgsm", "pgd")):
            ax.plot(eps, [a["clean"]] + list(a[attack].values()), "-", marker=markers[i % len(markers)],
                    mfc="none", ms=7, lw=1.2, color=model_colour(name), label=name if attack == "fgsm" else None)
    ticks = [0.0] + [float(e) for e in next(iter(summaries.values()))["attacks"]["pgd"]]
    for ax, title in zip(axes, ("FGSM (one step)", "PGD, 10 steps")):
        ax.set(xscale="symlog", xlabel="ε (grey levels of 255, symlog scale; 0 = clean)", title=title,
               xlim=(-0.2, ticks[-1] * 1.3), ylim=(-0.03, 1.03))     # room for the markers at the edges
        ax.set_xticks(ticks)
        ax.get_xaxis().set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on the attacked images")
    fig.legend(loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.045 * -(-len(summaries) // 2), 1, 1))
    return fig


def gradcam_captions(classes: list[str], kinds: list[str]) -> list[str]:
    """The line under each Grad-CAM image: its true class, and how many models miss it, in words
    short enough for a narrow panel ("right for every model" -> "right for all")."""
    short = [kind.replace("right for every model", "right for all").replace("wrong for", "missed by")
             .removesuffix(" models") for kind in kinds]
    return [f"{true}\n{kind}" for true, kind in zip(classes, short)]


def gradcam_headers(names: list[str]) -> list[str]:
    """Column headers: each run's model title over two lines; the run names where two runs share a model."""
    titles = [MODEL_TITLES.get(model_of(name, MODEL_TITLES), name).replace(", ", "\n") for name in names]
    return titles if len(set(titles)) == len(titles) else [panel_title(name) for name in names]


def gradcam_overlays(images: torch.Tensor, rows: dict[str, dict], captions: list[str], max_columns: int = 6):
    """Each image beside every run's Grad-CAM map over it: one row per image (its caption below it),
    one column per run (headed by its model and layer), each map with the run's prediction and its
    confidence below, red where wrong. A model's maps read down a column; the models compare along a
    row. With few runs several images share a row, so no figure is wider than `max_columns` panels
    (about 7 in, legible at page width).
    Each map is placed over its image by `drawn_maps`.
    rows: run -> {"maps": N×s×s, "predicted": [...], "confidence": [...], "true": [...], "layer", "map_size",
    "map_stride" (optional)}."""
    block = len(rows) + 1                                  # the image, then one map per run
    per_line = max(1, min(len(images), max_columns // block))
    lines = -(-len(images) // per_line)
    fig, axes = plt.subplots(lines, block * per_line, figsize=(1.12 * block * per_line + 0.2, 1.3 * lines + 1.2),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    for ax in axes.flat[len(images) * block:]:
        ax.axis("off")
    headers = gradcam_headers(list(rows))
    for first in range(per_line):
        top = axes[0][first * block:(first + 1) * block]
        top[0].set_title("test image", fontsize=8)
        for ax, header, row in zip(top[1:], headers, rows.values()):
            ax.set_title(f"{header}\n{row['layer']} {row['map_size']}×{row['map_size']}", fontsize=8)
    pictures = images.permute(0, 2, 3, 1).cpu().numpy()
    maps = {name: drawn_maps(row).numpy() for name, row in rows.items()}
    heat = None
    for i, (picture, caption) in enumerate(zip(pictures, captions)):
        line, first = divmod(i, per_line)
        panels = axes[line][first * block:(first + 1) * block]
        panels[0].imshow(picture)
        panels[0].set_xlabel(caption, fontsize=8)
        for ax, (name, row) in zip(panels[1:], rows.items()):
            ax.imshow(picture)
            heat = ax.imshow(maps[name][i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_xlabel(f"{row['predicted'][i]} {row['confidence'][i]:.0%}", fontsize=8,
                          color="crimson" if row["predicted"][i] != row["true"][i] else "black")
    if heat is not None:
        bar = fig.colorbar(heat, ax=axes.ravel().tolist(), orientation="horizontal", shrink=0.6, aspect=40)
        bar.set_label("Grad-CAM, each map scaled to its own maximum (0–1)", fontsize=8)
        bar.ax.tick_params(labelsize=8)
    return fig


def budget_offset(index: int, models: int) -> float:
    """How far sideways (in epochs) the budget figure draws the `index`-th of `models` models."""
    return (index - (models - 1) / 2) * 1.2


def budget_figure(runs: dict):
    """Test accuracy against the epoch budget, one line per model across its runs (the mean, with
    the seeds' standard deviation as an error bar, where several seeds ran at one budget). The marker
    says the recipe: circles the base recipe, squares with an EMA of the weights (and cutout where the
    legend says), open markers final fits on all training images; a small triangle below each marker is
    the same run without TTA; models are offset a little sideways so none hides another."""
    fig, ax = plt.subplots(figsize=(9, 6.4))
    grouped = runs_by_model(runs)
    for i, (model, entries) in enumerate(grouped.items()):
        groups = budget_groups(entries)
        offset = budget_offset(i, len(grouped))
        xs = [epochs + offset for epochs, _ in groups]
        means = [seed_summary(group)[0] for _, group in groups]
        colour = model_colour(model)
        ax.plot(xs, means, "-", color=colour, lw=1, label=model)
        for x, (epochs, group), mean in zip(xs, groups, means):
            sd = seed_summary(group)[1]
            no_tta = seed_summary(group, "test_accuracy_no_tta")[0]
            if no_tta is not None:   # the lab report's figures are probably without TTA: its lines compare with these
                ax.plot([x, x], [no_tta, mean], color=colour, lw=0.8, alpha=0.6)
                ax.plot([x], [no_tta], "v", color=colour, ms=4.5)   # not a dash: errorbar caps are dashes
            config = group[0][1]["metrics"].get("config", {})
            marker = "s" if config.get("ema_decay") else "o"
            face = "white" if is_final_fit(group[0][1]) else colour
            ax.errorbar([x], [mean], yerr=[sd or 0.0], fmt=marker, color=colour, mfc=face, capsize=3, ms=6)
        if model in LAB_REPORT_ACCURACY:
            said = LAB_REPORT_ACCURACY[model]
            ax.axhline(said, color=colour, ls=":", lw=1)
            ax.annotate(f"lab report:\n{model} {said:.0%}", (1.01, said), xycoords=("axes fraction", "data"),
                        va="center", fontsize=8, color=colour)   # beside the axes: no line crosses it there
    models = ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(len(grouped), 4))
    ax.add_artist(models)   # kept: the markers' legend below would replace it otherwise
    markers = [Line2D([], [], color="k", marker="o", ls="",
                      label="base recipe, TTA 1 (the first runs: 15 epochs, the CNN 30)"),
               Line2D([], [], color="k", marker="s", ls="", label="EMA 0.997, TTA 2 (+ cutout 12 where chosen)"),
               Line2D([], [], color="k", marker="v", ms=4.5, ls="",
                      label="the same run without TTA (compare these with the dotted lines)")]
    if any(is_final_fit(run) for run in present(runs).values()):
        markers.append(Line2D([], [], color="k", marker="s", mfc="white", ls="",
                              label="final fit on all 50,000 training images"))
    ax.legend(handles=markers, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.27), ncol=2)
    ax.set(xlabel="training epochs (the whole schedule; models side by side)", ylabel="final test accuracy",
           title="test accuracy against training budget (dotted: the lab report's numbers)")
    ax.yaxis.set_major_locator(plt.MultipleLocator(0.02))
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def curve_runs(runs: dict, every_run: dict | None = None) -> dict[str, tuple[dict, str | None]]:
    """The runs whose val curves a comparison draws, {name: (run, the final fit it stands for, or None)}:
    each run with a val split and, given `every_run`, in place of a final fit (no val split) the run that
    stands for it (`select.val_stand_ins`)."""
    stand_ins = val_stand_ins(runs, every_run) if every_run is not None else {}
    drawn = {}
    for name, run in present(runs).items():
        if name in stand_ins:
            drawn[stand_ins[name]] = (every_run[stand_ins[name]], name)
        elif not run["history"].val_acc.isna().all():
            drawn[name] = (run, None)
    return drawn


def curves_figure(runs: dict, every_run: dict | None = None):
    """Val accuracy and loss, against epoch and against training compute (PFLOP: 3 × forward FLOPs ×
    images seen), which unlike wall-clock does not depend on the machine that ran each epoch. A final
    fit has no val curve: given `every_run`, its model's longest run with a val split is drawn instead."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    styles = ["-", "--", "-.", ":"]    # with the colour, so a curve under another still shows
    drawn = curve_runs(runs, every_run)
    stands_in = any(final for _, final in drawn.values())
    for i, (name, (run, final)) in enumerate(drawn.items()):
        h = run["history"]
        label = f"{name} (for {final})" if final else name
        style = dict(color=model_colour(name), ls=styles[i % len(styles)], lw=1.6)
        for row, column in enumerate(("val_acc", "val_loss")):
            axes[row, 0].plot(h.epoch, h[column], label=label if row == 0 else None, **style)
            axes[row, 1].plot(training_pflop(run, h.epoch), h[column], **style)
    for row, label in enumerate(("val accuracy", "val loss")):
        axes[row, 0].set(xlabel="epoch", ylabel=label)
        axes[row, 1].set(xlabel="training compute (PFLOP, log)", ylabel=label, xscale="log")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    title = f"validation curves of the headline runs ({len(drawn)} of {len(present(runs))})"
    if stands_in:
        title = ("validation curves of the headline runs; for a final fit, its model's longest run with a val split "
                 f"({len(drawn)} of {len(present(runs))})")
    fig.suptitle(title)
    if drawn:
        fig.legend(loc="lower center", ncol=3 if stands_in else 5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07 if stands_in else 0.05, 1, 1))
    return fig


def per_class_heatmap(runs: dict):
    import seaborn as sns

    table = pd.DataFrame({name: run["metrics"]["test_per_class_accuracy"] for name, run in present(runs).items()}).T
    fig, ax = plt.subplots(figsize=(11, 0.6 * len(table) + 2))
    sns.heatmap(table, annot=True, fmt=".1%", cmap="viridis", vmin=0.5, vmax=1.0, ax=ax, annot_kws={"fontsize": 8},
                cbar_kws={"label": "test accuracy (darkest: 50% or less)", "format": plt.FuncFormatter(
                    lambda v, _: f"{v:.0%}")})
    ax.set(title=f"per-class test accuracy of each model's headline run ({len(table)} runs)", xlabel="", ylabel="")
    ax.tick_params(axis="x", rotation=30)
    ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    return fig


def training_pflop(run: dict, epochs):
    """Training compute after `epochs` epochs: 3 × forward FLOPs per image × training images × epochs."""
    m = run["metrics"]
    return 3 * m["flops_per_image"] * m["train_images"] * epochs / 1e15


def label_points(ax, points: list[tuple[float, float, str, str]], gap: float = 0.075):
    """Writes each label beside its point (x, y, label, colour) in data coordinates: left of points in the
    right half of the axes, right of the others. A label that would overprint one already placed on the
    same side goes below the labels there (points come highest first, so its line crosses no label), or
    above them where the axes end, and is joined to its point by a line, so two runs at nearly the same
    point (ResNet-18 and SE) are both named."""
    ax.autoscale_view()
    to_axes = ax.transData + ax.transAxes.inverted()
    placed: list[tuple[bool, float, float]] = []   # (left side, x, label y) in axes fractions
    for (x, y, label, colour) in sorted(points, key=lambda p: -p[1]):
        px, py = to_axes.transform((x, y))
        left = px > 0.55
        near = [oy for side, ox, oy in placed if side == left and abs(ox - px) < 0.15]
        ty = py
        if any(abs(oy - py) < gap for oy in near):
            below = min(near) - gap
            ty = below if below > 0.03 else max(near) + gap
        placed.append((left, px, ty))
        moved = abs(ty - py) > 1e-9
        ax.annotate(label, (x, y), xytext=(px + (-0.04 if left else 0.04), ty), textcoords="axes fraction",
                    ha="right" if left else "left", va="center", fontsize=8, color=colour,
                    arrowprops=dict(arrowstyle="-", color=colour, lw=0.8, shrinkB=6) if moved else None)


def scatter_figure(runs: dict):
    """Test accuracy against parameters and against training compute (not wall-clock, which depends on
    the machine). Runs are told apart by colour and hollow marker in one legend, and each point carries
    its accuracy in its run's colour (`label_points`), so a run on top of another (ResNet-18 and SE)
    hides neither its marker nor its number."""
    fig, (by_params, by_time) = plt.subplots(1, 2, figsize=(11, 4.4))
    markers = "osD^vP*X"
    axes = {by_params: (lambda run: run["metrics"]["params"] / 1e6,
                        dict(xlabel="parameters (millions, log)", title="accuracy vs size")),
            by_time: (lambda run: training_pflop(run, run["metrics"]["epochs"]),
                      dict(xlabel="training compute (PFLOP, log)", title="accuracy vs training compute"))}
    for ax, (x, labels) in axes.items():
        points = []
        for i, (name, run) in enumerate(present(runs).items()):
            accuracy, colour = run["metrics"]["test_accuracy"], model_colour(name)
            ax.scatter(x(run), accuracy, label=name if ax is by_params else None, edgecolors=colour,
                       facecolors="none", linewidths=1.8, marker=markers[i % len(markers)], s=80)
            points.append((x(run), accuracy, f"{accuracy:.2%}", colour))
        ax.set(xscale="log", ylabel="test accuracy", **labels)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
        ax.grid(alpha=0.3)
        ax.margins(0.15)
        label_points(ax, points)
    fig.suptitle(f"final test accuracy of each model's headline run ({len(present(runs))} runs)")
    fig.legend(loc="lower center", ncol=3, fontsize=8, frameon=False)   # 3 columns: no run alone on a row of 6
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig
