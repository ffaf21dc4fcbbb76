"""Figures shared by the notebooks and the report. Each function returns a matplotlib Figure.
Every model keeps one colour in every figure (`model_colour`)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from labkit.reporting.claims import LAB_REPORT_ACCURACY
from labkit.reporting.select import budget_groups, present, runs_by_model
from labkit.reporting.stats import seed_summary
from labkit.robustness.gradcam import upsample

MODEL_COLOURS = {"cnn": "tab:gray", "resnet18": "tab:blue", "densenet_cifar": "tab:green",
                 "densenet_cifar_memory_efficient": "yellowgreen", "se_resnet18": "tab:orange",
                 "se_resnet18_imagenet_stem": "tab:red"}


def model_colour(name: str) -> str:
    """The model's colour; a run name like 'resnet18-40ep' takes its model's colour."""
    for model in sorted(MODEL_COLOURS, key=len, reverse=True):
        if name == model or name.startswith(model + "-") or name.startswith(model + " "):
            return MODEL_COLOURS[model]
    return "tab:purple"


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
    ratio_ax.bar(x, ratio, color=["tab:blue" if r >= 1 else "tab:orange" for r in ratio])   # readable without red-green
    ratio_ax.axhline(1, color="black", lw=0.8)
    ratio_ax.bar_label(ratio_ax.containers[0], labels=[f"{r:.2f}" for r in ratio], fontsize=7)
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
    """One panel per stage: mean SE gate per channel (x) for each class (rows)."""
    names = list(excitations)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes.flat, names):
        image = ax.imshow(excitations[name].numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1,
                          interpolation="nearest")
        ax.set(title=name, xlabel="channel")
        ax.set_yticks(range(len(classes)), classes if ax is axes.flat[0] else [""] * len(classes), fontsize=7)
    fig.colorbar(image, ax=list(axes.flat), shrink=0.8, label="mean gate")
    fig.suptitle(f"{title} (last block of each stage)", y=1.04)
    return fig


def reliability_diagrams(summaries: dict[str, dict]):
    """Per run: accuracy against confidence in 15 bins, before and after temperature scaling;
    bars below the diagonal are over-confident, above it under-confident."""
    fig, axes = plt.subplots(1, len(summaries), figsize=(3.2 * len(summaries), 3.4), squeeze=False)
    for ax, (name, s) in zip(axes[0], summaries.items()):
        c = s["calibration"]
        for key, label, style in (("bins_before", f"T = 1: ECE {c['before']['ece']:.1%}", dict(alpha=0.45)),
                                  ("bins_after", f"T = {c['temperature']:.2f}: ECE {c['after']['ece']:.1%}",
                                   dict(fill=False, edgecolor="black"))):
            bins = [b for b in c[key] if b["count"]]
            ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=1 / len(c[key]), align="edge",
                   color=model_colour(name), label=label, **style)
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", title=name)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("accuracy in the bin")
    fig.tight_layout()
    return fig


def corruption_heatmaps(summaries: dict[str, dict]):
    """Per run: accuracy for each corruption (rows) at severities 1–5 (columns)."""
    fig, axes = plt.subplots(1, len(summaries), figsize=(2.6 * len(summaries) + 1.5, 5.2), squeeze=False,
                             sharey=True)
    for ax, (name, s) in zip(axes[0], summaries.items()):
        table = s["corruptions"]["accuracy"]
        values = np.array([[row[k] for k in sorted(row, key=int)] for row in table.values()])
        image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (r, col), v in np.ndenumerate(values):
            ax.text(col, r, f"{v:.0%}", ha="center", va="center", fontsize=6, color="white" if v < 0.6 else "black")
        ax.set_xticks(range(values.shape[1]), [str(k) for k in range(1, values.shape[1] + 1)])
        ax.set_yticks(range(len(table)), list(table))
        ax.set(xlabel="severity", title=f"{name}\nmean {s['corruptions']['mean_accuracy']:.1%}, "
                                        f"clean {s['corruptions']['clean_accuracy']:.1%}")
        ax.title.set_fontsize(8)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.7, label="accuracy")
    return fig


def attack_curves(summaries: dict[str, dict]):
    """Accuracy against the L∞ budget ε, FGSM dashed and PGD-10 solid, one colour per run."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, s in summaries.items():
        a = s["attacks"]
        eps = [0.0] + [float(e) for e in a["pgd"]]
        for attack, style in (("fgsm", "--"), ("pgd", "-")):
            ax.plot(eps, [a["clean"]] + list(a[attack].values()), style, marker="o", color=model_colour(name),
                    label=f"{name} {attack.upper()}")
    ax.set(xscale="symlog", xlabel="ε (× 1/255), 0 = clean", ylabel="accuracy", ylim=(0, 1),
           title="adversarial accuracy: FGSM (dashed), PGD-10 (solid)")
    ax.set_xticks([0.0] + [float(e) for e in next(iter(summaries.values()))["attacks"]["pgd"]])
    ax.get_xaxis().set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.grid(alpha=0.3), ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def gradcam_overlays(images: torch.Tensor, rows: dict[str, dict], captions: list[str]):
    """The images (first row, with `captions`), then per run (a row each) its Grad-CAM maps over
    them, titled with the prediction and its confidence; wrong predictions in red.
    rows: run -> {"maps": N×s×s, "predicted": [...], "confidence": [...], "true": [...], "layer", "map_size"}."""
    columns = len(images)
    fig, axes = plt.subplots(len(rows) + 1, columns, figsize=(1.45 * columns, 1.65 * (len(rows) + 1)), squeeze=False)
    pictures = images.permute(0, 2, 3, 1).cpu().numpy()
    for ax, picture, caption in zip(axes[0], pictures, captions):
        ax.imshow(picture)
        ax.set_title(caption, fontsize=6)
    for r, (name, row) in enumerate(rows.items(), start=1):
        maps = upsample(torch.as_tensor(row["maps"], dtype=torch.float32)).numpy()
        for c, ax in enumerate(axes[r]):
            ax.imshow(pictures[c])
            ax.imshow(maps[c], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            wrong = row["predicted"][c] != row["true"][c]
            ax.set_title(f"{row['predicted'][c]} {row['confidence'][c]:.0%}", fontsize=6,
                         color="crimson" if wrong else "black")
        axes[r][0].set_ylabel(f"{name}\n{row['layer']} ({row['map_size']}×{row['map_size']})", fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def budget_figure(runs: dict):
    """Test accuracy against the epoch budget, one line per model across its runs (the mean, with
    the seeds' standard deviation as an error bar, where several seeds ran at one budget). The marker
    says the recipe: circles the base recipe, squares with an EMA of the weights (and cutout where the
    legend says), open markers final fits on all training images; models are offset a little sideways
    so none hides another."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    grouped = runs_by_model(runs)
    for i, (model, entries) in enumerate(grouped.items()):
        groups = budget_groups(entries)
        offset = (i - (len(grouped) - 1) / 2) * 0.4
        xs = [epochs + offset for epochs, _ in groups]
        means = [seed_summary(group)[0] for _, group in groups]
        colour = model_colour(model)
        ax.plot(xs, means, "-", color=colour, lw=1, label=model)
        for x, (epochs, group), mean in zip(xs, groups, means):
            sd = seed_summary(group)[1]
            config = group[0][1]["metrics"].get("config", {})
            marker = "s" if config.get("ema_decay") else "o"
            face = "white" if not group[0][1]["metrics"].get("val_images", 1) else colour
            ax.errorbar([x], [mean], yerr=[sd or 0.0], fmt=marker, color=colour, mfc=face, capsize=3, ms=6)
        if model in LAB_REPORT_ACCURACY:
            ax.axhline(LAB_REPORT_ACCURACY[model], color=colour, ls=":", lw=1)
    ax.plot([], [], "ko", label="base recipe (the first runs: 15 epochs, the CNN 30)")
    ax.plot([], [], "ks", label="EMA 0.997, TTA 2 (+ cutout 12 where chosen)")
    if any(not run["metrics"].get("val_images", 1) for run in present(runs).values()):
        ax.plot([], [], "ks", mfc="white", label="final fit on all 50,000 training images")
    ax.set(xlabel="training epochs (the whole schedule)", ylabel="final test accuracy",
           title="test accuracy against training budget; the recipe changed with the budget (dotted: lab report)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))   # outside: points span the whole plot
    fig.tight_layout()
    return fig


def curves_figure(runs: dict):
    """Val accuracy and loss, against epoch and against training compute (PFLOP: 3 × forward FLOPs ×
    images seen), which unlike wall-clock does not depend on the machine that ran each epoch."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for name, run in present(runs).items():
        h = run["history"]
        if h.val_acc.isna().all():
            continue
        colour = model_colour(name)
        for row, column in enumerate(("val_acc", "val_loss")):
            axes[row, 0].plot(h.epoch, h[column], ".-", label=name if row == 0 else None, color=colour)
            axes[row, 1].plot(training_pflop(run, h.epoch), h[column], ".-", color=colour)
    for row, label in enumerate(("val accuracy", "val loss")):
        axes[row, 0].set(xlabel="epoch", ylabel=label)
        axes[row, 1].set(xlabel="training compute (PFLOP, log)", ylabel=label, xscale="log")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle(f"validation curves of each model's headline run ({len(present(runs))} runs)")
    fig.legend(loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def per_class_heatmap(runs: dict):
    import seaborn as sns

    table = pd.DataFrame({name: run["metrics"]["test_per_class_accuracy"] for name, run in present(runs).items()}).T
    fig, ax = plt.subplots(figsize=(11, 0.6 * len(table) + 2))
    sns.heatmap(table, annot=True, fmt=".1%", cmap="viridis", vmin=0.5, vmax=1.0, ax=ax, cbar=False,
                annot_kws={"fontsize": 8})
    ax.set(title=f"per-class test accuracy of each model's headline run ({len(table)} runs)", xlabel="", ylabel="")
    ax.tick_params(axis="x", rotation=30)
    ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    return fig


def training_pflop(run: dict, epochs):
    """Training compute after `epochs` epochs: 3 × forward FLOPs per image × training images × epochs."""
    m = run["metrics"]
    return 3 * m["flops_per_image"] * m["train_images"] * epochs / 1e15


def scatter_figure(runs: dict):
    """Test accuracy against parameters and against training compute (not wall-clock, which depends on
    the machine); runs are told apart by colour and marker in one legend, so no label overprints another."""
    fig, (by_params, by_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = "osD^vP*X"
    for i, (name, run) in enumerate(present(runs).items()):
        m = run["metrics"]
        style = dict(color=model_colour(name), marker=markers[i % len(markers)], s=50)
        by_params.scatter(m["params"] / 1e6, m["test_accuracy"], label=name, **style)
        by_time.scatter(training_pflop(run, m["epochs"]), m["test_accuracy"], **style)
    by_params.set(xscale="log", xlabel="parameters (millions, log)", ylabel="test accuracy", title="accuracy vs size")
    by_time.set(xscale="log", xlabel="training compute (PFLOP, log)", ylabel="test accuracy",
                title="accuracy vs training compute")
    for ax in (by_params, by_time):
        ax.grid(alpha=0.3)
        ax.margins(0.15)
    fig.suptitle(f"final test accuracy of each model's headline run ({len(present(runs))} runs)")
    fig.legend(loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
