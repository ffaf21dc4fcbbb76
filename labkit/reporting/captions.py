"""The sentence under each figure of the report: what it shows and what to read from it, computed
from the numbers the figure draws, so a caption cannot disagree with its figure."""
from __future__ import annotations

import pandas as pd
import torch

from labkit.reporting.figures import MIN_BIN_IMAGES, budget_offset, corruption_scale_floor, curve_runs
from labkit.reporting.select import budget_groups, is_final_fit, present, recipe_difference, runs_by_model
from labkit.reporting.stats import lead_over_next
from labkit.reporting.tables import and_list, budget
from labkit.robustness.gradcam import border, cell_offsets, drawn_maps, place, saved_stride

LOOK_CAPTIONS = {
    "predictions": "The same 24 seeded random test images for every model, titled true → predicted; mistakes in red.",
    "filters": "The CNN's six first-layer 5×5 filters, each scaled to its own range: the colour and edge patterns "
               "its first layer responds to.",
    "channels_memory": "Left: the input channels of each bottleneck layer, growing by k = 12 per layer inside a "
                       "block and halved by each transition. Right: the activation memory each model keeps per "
                       "image for the backward pass (the numbers on the bars): with a tenth of ResNet-18's parameters, "
                       "DenseNet keeps more, because every concatenation is a new tensor; the memory-efficient variant "
                       "(Pleiss et al., 2017) recomputes the concatenations in the backward pass instead of keeping them.",
    "gradient_norms": "Gradient norm of each residual block of a freshly initialised ResNet-18 on one batch, with "
                      "its shortcuts and with them removed (left), and the ratio (right).",
    "excitation": "Mean SE gate per channel (x) for the test images of each class (rows) at the last block of each "
                  "stage, on a 0–1 scale: a panel of one even colour means gates stuck at one value; vertical "
                  "stripes that run unchanged through every row mean gates that vary by channel but not by class; "
                  "only differences between rows show gates that recalibrate by class.",
}


def curves_caption(history: pd.DataFrame) -> str:
    h = history
    if h.val_acc.isna().all():
        return ("Loss and accuracy on the augmented training images per epoch. A final fit on all training images "
                "has no validation split: its test accuracy, read once after the last epoch, is its held-out figure.")
    best = h.loc[h.val_acc.idxmax()]
    last = h.iloc[-1]
    if int(best.epoch) == int(last.epoch):
        earlier = h.iloc[max(0, round(len(h) * 0.8) - 1)]      # where the last fifth of the schedule starts
        span = int(last.epoch - earlier.epoch)
        peak = (f"Val accuracy was highest at the last epoch ({last.val_acc:.2%} at epoch {int(last.epoch)}), as a "
                "learning rate decaying to zero tends to make it"
                + (f"; it gained {(last.val_acc - earlier.val_acc) * 100:.1f} points over the last "
                   f"{span} epoch{'s' if span > 1 else ''}, the last fifth of the schedule" if span else ""))
    else:
        peak = f"Val accuracy peaked at epoch {int(best.epoch)} ({best.val_acc:.2%}) and ended at {last.val_acc:.2%}"
    text = f"{peak}; train accuracy ended at {last.train_acc:.2%}."
    if "val_acc_no_ema" in h and h.val_acc_no_ema.notna().any():
        text += (f" Val is measured on the weight average (EMA, solid) and on the live weights (dashed): "
                 f"{last.val_acc:.2%} against {last.val_acc_no_ema:.2%} at the end.")
    below = int((h.train_acc < h.val_acc).sum())
    if below > len(h) / 2:
        text += (f" Train accuracy sits below val for {below} of {len(h)} epochs because it is measured on augmented "
                 "images with the live weights while they train, not a sign of a bug.")
    return text


def pair_caption(runs: dict) -> str:
    """Where two runs of one recipe part: the epochs in which the first has the lower train loss and the
    higher val accuracy, and the last epoch's figures (`runs`: name -> history, the reference first)."""
    (first, a), (second, b) = ((name, pd.DataFrame(h).set_index("epoch")) for name, h in runs.items())
    epochs = a.index.intersection(b.index)
    a, b = a.loc[epochs], b.loc[epochs]
    fits, leads, last = int((a.train_loss < b.train_loss).sum()), int((a.val_acc > b.val_acc).sum()), epochs[-1]
    return (f"`{first}` has the lower train loss in {fits} of {len(epochs)} epochs and the higher val accuracy in "
            f"{leads}. At the last epoch: train loss {a.train_loss[last]:.3f} against {b.train_loss[last]:.3f}, "
            f"val accuracy {a.val_acc[last]:.2%} against {b.val_acc[last]:.2%} (one seed each).")


def per_class_caption(per_class: dict[str, float]) -> str:
    order = sorted(per_class, key=per_class.get)
    return (f"Hardest classes: {order[0]} {per_class[order[0]]:.1%} and {order[1]} {per_class[order[1]]:.1%}; "
            f"easiest: {order[-1]} {per_class[order[-1]]:.1%}. The bars start at 0.")


def confusion_caption(confusion: pd.DataFrame) -> str:
    """The two most frequent mistakes, out of the true class's images."""
    pairs = [(int(confusion.loc[t, p]), t, p) for t in confusion.index for p in confusion.columns if t != p]
    pairs.sort(reverse=True)
    (n1, t1, p1), (n2, t2, p2) = pairs[:2]
    return (f"Rows are the true class, columns the prediction. Most frequent mistakes: {t1} taken for {p1} "
            f"({n1} of {int(confusion.loc[t1].sum()):,}), then {t2} for {p2} ({n2}).")


def comparison_curves_caption(runs: dict, every_run: dict | None = None) -> str:
    drawn = curve_runs(runs, every_run)
    shown = {name: run for name, (run, _) in drawn.items()}
    stand_ins = {final: name for name, (_, final) in drawn.items() if final}
    left_out = [n for n in present(runs) if n not in shown and n not in stand_ins]
    text = ("Val accuracy and loss per epoch (left) and against training compute, 3 × forward FLOPs × images "
            "seen (right), which does not depend on the machine.")
    described = []
    for final, stand_in in stand_ins.items():
        run, final_run = every_run[stand_in], runs[final]
        differs = recipe_difference([(stand_in, run)], [(final, final_run)])
        described.append(f"{stand_in} ({run['metrics']['epochs']} epochs on {run['metrics']['train_images']:,} images, "
                         + (f"recipe: {differs}" if differs else "the same recipe") + ")")
    if len(described) == 1:
        text += (f" The final fit {next(iter(stand_ins))} trained on all training images and has no val curve; drawn "
                 f"in its place: {described[0]}, its model's longest run with a val split.")
    elif described:
        text += (f" The final fits {and_list(list(stand_ins))} trained on all training images and have no val curve; "
                 f"drawn in their places, each model's longest run with a val split: {and_list(described)}.")
    averaged = [n for n, r in shown.items() if r["metrics"].get("config", {}).get("ema_decay")]
    if averaged and len(averaged) < len(shown):   # the weights each run's test uses: its EMA where it keeps one
        text += (f" Each curve is measured on the weights its test used: the EMA of the weights for {len(averaged)} "
                 f"of the {len(shown)} runs, the trained weights themselves for "
                 f"{', '.join(n for n in shown if n not in averaged)}.")
    if shown:
        final_val = {n: float(r["history"].val_acc.iloc[-1]) for n, r in shown.items()}
        best = max(final_val, key=final_val.get)
        text += (f" Highest final val accuracy: {best}, {final_val[best]:.2%}"
                 + within_noise(final_val, min(r["metrics"]["val_images"] for r in shown.values()), "val") + ".")
    if left_out:
        what = "a final fit" if len(left_out) == 1 else "final fits"
        text += f" Not drawn: {', '.join(left_out)} ({what} on all training images, so no val curve)."
    return text


def per_class_heatmap_caption(runs: dict) -> str:
    hardest = {n: min(r["metrics"]["test_per_class_accuracy"].items(), key=lambda kv: kv[1])
               for n, r in present(runs).items()}
    classes = {c for c, _ in hardest.values()}
    if len(classes) == 1:
        values = [v for _, v in hardest.values()]
        return (f"{next(iter(classes)).capitalize()} is the hardest class for every run ({min(values):.1%} to "
                f"{max(values):.1%}); the colour scale runs from 50% (darkest) to 100%, and each cell prints its value.")
    return ("Hardest class per run: " + "; ".join(f"{n} {c} {v:.1%}" for n, (c, v) in hardest.items())
            + ". The colour scale runs from 50% (darkest) to 100%, and each cell prints its value.")


def scatter_caption(runs: dict) -> str:
    found = present(runs)
    best = max(found, key=lambda n: found[n]["metrics"]["test_accuracy"])
    smallest = min(found, key=lambda n: found[n]["metrics"]["params"])
    m, s = found[best]["metrics"], found[smallest]["metrics"]
    accuracies = {n: r["metrics"]["test_accuracy"] for n, r in found.items()}
    return (f"Final test accuracy against parameters (left) and training compute (right), both log scale. Highest: "
            f"{best}, {m['test_accuracy']:.2%} with {m['params'] / 1e6:.1f} M parameters"
            + (f" (a final fit: {budget(found[best])})" if is_final_fit(found[best]) else "") +
            f"{within_noise(accuracies, m['test_images'], 'test')}; smallest: {smallest}, "
            f"{s['test_accuracy']:.2%} with {s['params'] / 1e6:.2f} M.")


def within_noise(accuracies: dict[str, float], images: int, split: str = "") -> str:
    """', not ahead of <next> beyond the [<split>] noise (2 SE = x points)' when the best of `accuracies`
    (each on `images` images) does not lead the runner-up by more than two standard errors of the
    difference, else ''."""
    _, second, gap, noise = lead_over_next(accuracies, images)
    if second is None or gap > noise:
        return ""
    return f", not ahead of {second} beyond the {split + ' ' if split else ''}noise (2 SE = {noise * 100:.1f} points)"


def budget_caption(runs: dict) -> str:
    final_fits = any(is_final_fit(run) for run in present(runs).values())
    models = len(runs_by_model(runs))
    return ("Each point is a model's run(s) at one epoch budget (several seeds: the mean, with their standard "
            f"deviation as a bar), moved up to {budget_offset(models - 1, models):.1f} epochs sideways so that no "
            "model hides another; the marker says "
            "the recipe and TTA level, which changed with the budget, so a step along a line mixes the longer "
            "schedule with the recipe; "
            + ("open markers are final fits on all 50,000 training images, so a step to one also adds the 5,000 "
               "val images to the training set; " if final_fits else "")
            + "a small triangle joined to a marker is the same run's accuracy without TTA (the seeds' mean where there "
              "are several), to compare with the lab report's numbers, the dotted lines." + undrawn_runs(runs))


def undrawn_runs(runs: dict) -> str:
    """' Not drawn: <run> (<its recipe>: …)' for each run the budget figure leaves out, another recipe of its
    model at a budget where another run stands for it (`budget_groups`): a final fit, or the run with the
    better final val accuracy; '' where none is left out."""
    notes = []
    for entries in runs_by_model(runs).values():
        drawn = dict(budget_groups(entries))
        for name, run in entries:
            group = drawn[run["metrics"]["epochs"]]
            if name in {n for n, _ in group}:
                continue
            kept, kept_run = group[0]
            own = recipe_difference([(name, run)], group) or "another recipe"
            if is_final_fit(kept_run):
                notes.append(f"{name} ({own}; the final fit {kept} stands for that budget)")
            else:
                notes.append(f"{name} ({own}: final val {run['metrics']['final_val_accuracy']:.2%} against "
                             f"{kept_run['metrics']['final_val_accuracy']:.2%} for {kept}, drawn)")
    return f" Not drawn (the set-up lists every run): {'; '.join(notes)}." if notes else ""


def reliability_caption(summaries: dict[str, dict], smoothing: dict[str, float] | None = None) -> str:
    """Whether each run is over- or under-confident before scaling, from its bins' weighted gap, which
    runs are over-confident at middle confidences all the same, and where the under-confidence sits
    (`heaviest_bin_reading`, with each run's label smoothing in `smoothing`)."""
    under = []
    for name, s in summaries.items():
        bins = [b for b in s["calibration"]["bins_before"] if b["count"]]
        gap = sum((b["accuracy"] - b["confidence"]) * b["count"] for b in bins) / sum(b["count"] for b in bins)
        if gap > 0:
            under.append(name)
    kind = ("every run is under-confident overall (weighted by images, its bars lie above the diagonal)"
            if len(under) == len(summaries) else
            f"{len(under)} of {len(summaries)} runs are under-confident ({', '.join(under) or 'none'}), the others "
            "over-confident")
    middle_over = [name for name in under if over_confident_in_middle(summaries[name]["calibration"]["bins_before"])]
    if middle_over:
        owners = and_list(middle_over) + ("'s" if len(middle_over) == 1 else "'")
        kind += (f", though {owners} bars at confidences of about 0.5–0.9 sit mostly below the diagonal "
                 "(over-confident there)")
    scaled = {name: s["calibration"] for name, s in summaries.items() if s["calibration"]["temperature"]}
    unscaled = [name for name in summaries if name not in scaled]
    drawn = (f"Before scaling (filled bars) {kind}"
             + ("; the outlined bars are after temperature scaling, each image binned by its scaled confidence, so "
                "a bin holds other images than the filled bar at the same place" if scaled else "")
             + ". The numbers at the foot of the bars are the images in each bin before scaling.")
    after = ((f" No temperature was fitted for {and_list(unscaled)}: "
              + ("it held" if len(unscaled) == 1 else "they held") + " out no val split." if scaled and unscaled else "")
             + (after_scaling_reading(scaled) if scaled else ""))
    # three paragraphs: what is drawn, where the under-confidence sits, what scaling did
    return "\n\n".join(part.strip() for part in (drawn, heaviest_bin_reading(summaries, smoothing or {}), after)
                       if part.strip())


def heaviest_bin_reading(summaries: dict[str, dict], smoothing: dict[str, float]) -> str:
    """Where every run's most populated bin before scaling is the same and under-confident: for the runs
    that put most of their images there, that bin's share of the images and of the ECE and, when they
    share one label smoothing whose target for the true class lies in that bin, that the smoothing puts
    them there; the other runs named apart; else ''."""
    heaviest = {}
    for name, s in summaries.items():
        bins = s["calibration"]["bins_before"]
        top = max(bins, key=lambda b: b["count"])
        heaviest[name] = (top, sum(b["count"] for b in bins), s["calibration"]["before"]["ece"])
    if len({(top["low"], top["high"]) for top, _, _ in heaviest.values()}) != 1 or any(
            top["accuracy"] <= top["confidence"] for top, _, _ in heaviest.values()):
        return ""
    low, high = next(iter(heaviest.values()))[0]["low"], next(iter(heaviest.values()))[0]["high"]
    share = {name: top["count"] / images for name, (top, images, _) in heaviest.items()}
    most = [name for name in heaviest if share[name] > 0.5]
    spread = [name for name in heaviest if share[name] <= 0.5]
    if not most:
        return ""
    gaps = [(heaviest[n][0]["accuracy"] - heaviest[n][0]["confidence"]) * 100 for n in most]
    of_ece = [share[n] * (heaviest[n][0]["accuracy"] - heaviest[n][0]["confidence"]) / heaviest[n][2] for n in most]
    text = (f" Every run's most populated bin is the one at confidences {low:.2f}–{high:.2f}. "
            + (f"For {and_list(most)} it holds most of the images" if spread else "It holds most of every run's images")
            + f" ({span([share[n] for n in most], '.0%')}), is {span(gaps, '.1f')} points more accurate than "
            f"confident, and makes {span(of_ece, '.0%')} of the ECE.")
    values = {smoothing.get(name) for name in most}
    if len(values) == 1 and (value := values.pop()):
        target = 1 - value + value / 10        # the true class's share of the smoothed target, 10 classes
        if low <= target <= high:
            text += (f" Label smoothing {value:g} trains the true class's probability toward {target:.2f}, inside "
                     "that bin: a network that fits its targets stops there even on images it gets right nearly "
                     "every time.")
    if spread:
        def under_elsewhere(name: str) -> bool:      # most images in bins more accurate than confident
            bins = summaries[name]["calibration"]["bins_before"]
            under = sum(b["count"] for b in bins if b["count"] and b["accuracy"] > b["confidence"])
            return under > heaviest[name][1] / 2
        text += (f" {and_list(spread)} put{'s' if len(spread) == 1 else ''} only "
                 f"{span([share[n] for n in spread], '.0%')} of the images there"
                 + (f": {'its' if len(spread) == 1 else 'their'} under-confidence is spread over the bins."
                    if all(under_elsewhere(n) for n in spread) else "."))
    return text


def span(values: list[float], spec: str) -> str:
    """'62% to 86%', or one value where both ends print alike."""
    low, high = format(min(values), spec), format(max(values), spec)
    return low if low == high else f"{low} to {high}"


def over_confident_in_middle(bins: list[dict]) -> bool:
    """Whether most images in the drawn bins within confidences 0.5–0.9 lie in bins below the diagonal."""
    middle = [b for b in bins if b["count"] >= MIN_BIN_IMAGES and 0.5 <= b["low"] and b["high"] <= 0.9 + 1e-9]
    weight = sum(b["count"] for b in middle)
    return bool(weight) and sum(b["count"] for b in middle if b["accuracy"] < b["confidence"]) > weight / 2


def after_scaling_reading(calibrations: dict[str, dict]) -> str:
    """Where the scaled runs are over-confident (middle confidences), and how much of the test split
    the top bin holds, its weight in the ECE after scaling."""
    over = [name for name, c in calibrations.items() if over_confident_in_middle(c["bins_after"])]
    top = [c["bins_after"][-1]["count"] / sum(b["count"] for b in c["bins_after"]) for c in calibrations.values()]
    top_before = [c["bins_before"][-1]["count"] / sum(b["count"] for b in c["bins_before"])
                  for c in calibrations.values()]
    return (f" After scaling, the bars at confidences of about 0.5–0.9 sit mostly below the diagonal (over-confident there) for "
            f"{len(over)} of {len(calibrations)} scaled runs; the top bin then holds {min(top):.0%} to {max(top):.0%} "
            f"of the images ({min(top_before):.0%} to {max(top_before):.0%} before scaling, as the printed counts "
            "show), and each bin counts in the ECE in proportion to its images.")


def corruption_caption(summaries: dict[str, dict]) -> str:
    worst = {}
    for name, s in summaries.items():
        table = s["corruptions"]["accuracy"]
        corruption = min(table, key=lambda c: table[c][max(table[c], key=int)])
        worst[name] = (corruption, table[corruption][max(table[corruption], key=int)])
    kinds = {c for c, _ in worst.values()}
    if len(kinds) == 1:
        values = [v for _, v in worst.values()]
        return (f"Accuracy in % per corruption and severity. {next(iter(kinds)).replace('_', ' ').capitalize()} at "
                f"severity 5 is the hardest set for every run ({min(values):.0%} to {max(values):.0%}); the colour scale starts at "
                f"{corruption_scale_floor(summaries):.0%}.")
    return ("Accuracy in % per corruption and severity. Hardest set at severity 5: "
            + "; ".join(f"{n} {c.replace('_', ' ')} {v:.0%}" for n, (c, v) in worst.items()) + ".")


def strongest_common_budget(summaries: dict[str, dict]) -> str | None:
    """The largest attack budget ε every analysis measured (their keys, e.g. '8'), or None."""
    budgets = set.intersection(*(set(s["attacks"]["pgd"]) for s in summaries.values()))
    return max(budgets, key=float) if budgets else None


def attack_caption(summaries: dict[str, dict]) -> str:
    strongest = strongest_common_budget(summaries)
    if strongest is None:
        return "Accuracy against the attack budget ε for FGSM (left) and PGD-10 (right)."
    pgd = {n: s["attacks"]["pgd"][strongest] for n, s in summaries.items()}
    fgsm = {n: s["attacks"]["fgsm"][strongest] for n, s in summaries.items()}
    text = (f"At ε = {strongest}/255, PGD-10 leaves {min(pgd.values()):.1%} to {max(pgd.values()):.1%} and FGSM "
            f"{min(fgsm.values()):.1%} to {max(fgsm.values()):.1%}")
    weaker = all(fgsm[n] > pgd[n] for n in summaries)
    return text + (": for every run one step is a weaker attack than ten." if weaker else ".")


def gradcam_caption(gradcams: dict[str, dict]) -> str:
    """What the Grad-CAM figure shows and what its maps can and cannot say."""
    first = next(iter(gradcams.values()))
    hard = [i for i, kind in enumerate(first["kinds"]) if not kind.startswith("right")]
    right_on_hard = {name: sum(g["predicted"][i] == g["true"][i] for i in hard) for name, g in gradcams.items()}
    sides = sorted({g["map_size"] for g in gradcams.values()})
    text = ("One row per test image (its true class and how many models miss it below it), one column per model "
            "(its layer and map side above). Red marks the evidence for the predicted class; that class and its "
            "softmax confidence (no TTA, no temperature scaling) are written under each map, in red where wrong. "
            "Each map is scaled to its own maximum, so a map of a 35% prediction looks as red as one of 95%")
    text += (f", and the maps' sides differ ({', '.join(f'{s}×{s}' for s in sides)}), so blob size follows the "
             "map's resolution, not the model's attention." if len(sides) > 1 else ".")
    for name, g in gradcams.items():
        stride = saved_stride(g)
        if stride and border(g["map_size"], stride):
            text += (f" {name}'s unpadded convolutions centre its cells {stride:g} px apart, so its map is drawn with "
                     f"each cell over the pixels it sees and its outer {border(g['map_size'], stride):g}-pixel border "
                     "uncoloured; the others are the usual even resize.")
    if hard and max(right_on_hard.values()) > 0:
        best = max(right_on_hard.values())
        leaders = [name for name, right in right_on_hard.items() if right == best]
        text += (f" On the {len(hard)} hard images, {', '.join(leaders)} get{'s' if len(leaders) == 1 else ''} "
                 f"{best} of {len(hard)} right.")
    return text + centre_share_reading(gradcams)


def centre_share_reading(gradcams: dict[str, dict]) -> str:
    """How much of each model's map weight falls on the central 16×16 pixels, a quarter of the image,
    where CIFAR-10's photos mostly put their object: the mean over the explained images, maps placed
    over the 32×32 image as the figure draws them (`drawn_maps`), grouped by map geometry with what an
    even map and a map wholly on its central cells score in it. Maps of unknown geometry are left out."""
    groups, blank, unknown = {}, [], []
    for name, g in gradcams.items():
        side, stride = g["map_size"], saved_stride(g)
        if stride is None:
            unknown.append(name)
            continue
        maps = drawn_maps(g).nan_to_num(0).clamp(min=0)       # uncoloured pixels weigh nothing
        share = centre_share(maps[maps.sum((1, 2)) > 0]).tolist()
        groups.setdefault((side, stride), {})[name] = share
        blank += [name] if len(share) < len(maps) else []
    images = max((len(share) for group in groups.values() for share in group.values()), default=0)
    if not images:
        return ""
    readings = []
    for (side, stride), shares in groups.items():
        central = (cell_offsets(side, stride).abs() < 8).float()             # the cells centred on the middle
        even, middle = centre_share(place(torch.stack([torch.ones(side, side), central[:, None] * central[None]]),
                                          stride).nan_to_num(0)).tolist()
        readings.append(f"{side}×{side} maps with cells {stride:g} px apart (an even map {even:.0%}, one wholly on "
                        f"the cells centred there {middle:.0%}): "
                        + ", ".join(f"{name} {sum(share) / len(share):.0%}" if share else f"{name} –"
                                    for name, share in shares.items()))
    return (" The share of each map's weight on the central 16×16 pixels, a quarter of the image, where CIFAR-10's "
            "photos mostly put the object, as drawn and averaged over the images explained, for "
            + "; for ".join(readings)
            + (f" (all-zero maps of {and_list(blank)} left out)" if blank else "")
            + (f"; {and_list(unknown)} left out: analysed before the map's cell spacing was recorded (rerun the "
               "analysis notebook to record it)" if unknown else "")
            + f". {images} {'image is' if images == 1 else 'images are'} a glimpse of where each model looks, not a "
            "measurement of it.")


def centre_share(maps: torch.Tensor) -> torch.Tensor:
    """Each 32×32 map's share of its weight on the central 16×16 pixels."""
    return maps[:, 8:24, 8:24].sum((1, 2)) / maps.sum((1, 2))
