"""The report's front and back matter, computed from the runs: the summary (headline table and
findings), the set-up (data, recipes, machines, compute), the conclusions, the limitations and the
references. Every number comes from results/; the sentences only arrange them."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pandas as pd

from labkit import tune
from labkit.models.inspect import GATE_SPREAD, flat_blocks
from labkit.reporting.captions import strongest_common_budget, within_noise
from labkit.reporting.claims import LAB_REPORT_ACCURACY, seed_noise
from labkit.reporting.select import (budget_groups, is_final_fit, present, recipe, recipe_variants, runs_by_model,
                                    saved_gates)
from labkit.reporting.stats import (accuracy_standard_error, difference_noise, lead_over_next, machine_name,
                                   seed_summary)
from labkit.reporting.tables import (MODEL_TITLES, and_list, budget, constant_columns, duration, headline_table,
                                    markdown_table)
from labkit.robustness.suite import load_analysis
from labkit.runs.store import RunDataError
from labkit.training.checkpoint import saved_config
from labkit.training.config import TrainConfig

REFERENCES = [
    "He, Zhang, Ren, Sun (2016). Deep residual learning for image recognition. CVPR.",
    "Huang, Liu, van der Maaten, Weinberger (2017). Densely connected convolutional networks. CVPR.",
    "Hu, Shen, Sun (2018). Squeeze-and-excitation networks. CVPR.",
    "Guo, Pleiss, Sun, Weinberger (2017). On calibration of modern neural networks. ICML.",
    "Hendrycks, Dietterich (2019). Benchmarking neural network robustness to common corruptions and "
    "perturbations. ICLR.",
    "Croce, Andriushchenko, Sehwag, Debenedetti, Flammarion, Chiang, Mittal, Hein (2021). RobustBench: a "
    "standardized adversarial robustness benchmark. NeurIPS Datasets and Benchmarks (its standardly trained "
    "WideResNet-28-10 on CIFAR-10-C).",
    "Madry, Makelov, Schmidt, Tsipras, Vladu (2018). Towards deep learning models resistant to adversarial "
    "attacks. ICLR.",
    "Selvaraju, Cogswell, Das, Vedantam, Parikh, Batra (2017). Grad-CAM: visual explanations from deep networks "
    "via gradient-based localization. ICCV.",
    "DeVries, Taylor (2017). Improved regularization of convolutional neural networks with cutout. arXiv:1708.04552.",
    "Szegedy, Vanhoucke, Ioffe, Shlens, Wojna (2016). Rethinking the Inception architecture (label smoothing). CVPR.",
    "Pleiss, Chen, Huang, Li, van der Maaten, Weinberger (2017). Memory-efficient implementation of DenseNets. "
    "arXiv:1707.06990.",
    "Kim (2020). Torchattacks: a PyTorch repository for adversarial attacks. arXiv:2010.01950 (the attacks' "
    "implementation).",
    "PyTorch tutorial 'Training a classifier' (pytorch.org/tutorials), the source of the CNN.",
    "Shafahi, Ghiasi, Huang, Goldstein (2019). Label smoothing and logit squeezing: a replacement for "
    "adversarial training? arXiv:1910.11585.",
    "Public CIFAR-10 speed-run recipes (batch 500, flip, 4-pixel translation, cutout 12), the recipe of one "
    "calibration point in `../shared/calibration.md` (beside the course's checkout, not in it).",
]


def final_fits_clause(final_fits: list[str]) -> str:
    """The end of the data paragraph's sentence on the val split: which runs trained on all the images."""
    if not final_fits:
        return "."
    several = len(final_fits) > 1
    return (f"; {'the final fits' if several else 'the final fit'} ({and_list(final_fits)}) "
            f"{'train' if several else 'trains'} on all 50,000, with the recipe chosen on val and the budget fixed "
            f"before {'they' if several else 'it'} started.")


def headline_groups(every_run: dict) -> dict[str, list[tuple[str, dict]]]:
    """{model: its headline runs (the longest budget, recipe chosen on val; several seeds possible)}."""
    return {model: budget_groups(entries)[-1][1] for model, entries in runs_by_model(every_run).items()}


def lab_report_findings(groups: dict, seeds: dict | None, jpeg: bool) -> list[str]:
    """Plain sentences per model the lab report gave a number for: ours with and without TTA, against it
    (without TTA, as the lab report's figure probably was), and which noise the gap is beyond."""
    lines = []
    for model, said in LAB_REPORT_ACCURACY.items():
        if model not in groups:
            continue
        m = groups[model][0][1]["metrics"]
        noise = 2 * accuracy_standard_error(m["test_accuracy_no_tta"], m["test_images"])
        gap = m["test_accuracy_no_tta"] - said
        verdict = "above" if gap > noise else "below" if gap < -noise else "level with"
        text = (f"{MODEL_TITLES[model]} reaches {m['test_accuracy']:.2%} after {budget(groups[model][0][1])}, "
                f"{m['test_accuracy_no_tta']:.2%} without TTA: {gap * 100:+.2f} points, {verdict} the lab report's "
                f"{said:.0%} (compared without TTA, as the lab report's figure probably was).")
        if abs(gap) <= noise:
            text += f" That is within the test noise (2 SE on {m['test_images']:,} images = {noise * 100:.2f} points)."
        elif seeds and abs(gap) < seeds["gap"]:
            text += (f" That is beyond the test noise (2 SE = {noise * 100:.2f} points) but within the "
                     f"{seeds['gap'] * 100:.1f} points by which two single-seed runs can differ (see the discussion).")
        else:
            text += f" That is beyond the test noise (2 SE = {noise * 100:.2f} points)."
        history = groups[model][0][1].get("history")
        best = history.val_acc.idxmax() if history is not None and history.val_acc.notna().any() else None
        if gap < -noise and best is not None and best == history.val_acc.last_valid_index():
            text += (f" Its val accuracy was still rising at its last epoch ({history.val_acc[best]:.2%} at epoch "
                     f"{int(history.epoch[best])}), so a longer budget may close part of the gap.")
        if gap < -noise and jpeg:
            text += (" Our data are a lossy JPEG copy, while the lab report presumably used the canonical lossless "
                     "set; we cannot measure what the compression costs (no lossless copy here, no published figure "
                     "for this copy), so the gap need not be the architecture's.")
        lines.append(text)
    return lines


def slowest_epoch(groups: dict) -> str:
    """', including epochs slowed by other work …' naming the headline run whose slowest epoch stands
    out most against its median, when one took over three times the median; else ''."""
    worst = None
    for group in groups.values():
        for name, run in group:
            times = run["history"].get("epoch_time_s") if "history" in run else None
            if times is None or not len(times.dropna()):
                continue
            median, slowest = times.median(), times.max()
            if slowest > 3 * median and (worst is None or slowest / median > worst[0]):
                worst = (slowest / median, name, int(run["history"]["epoch"][times.idxmax()]), slowest, median)
    if worst is None:
        return ""
    _, name, epoch, slowest, median = worst
    return (f", including epochs slowed by other work on the shared machine (the most, against its run's median: "
            f"{name}'s epoch {epoch}, "
            f"{duration(slowest)} against a median of {duration(median)})")


def tta_levels_note(groups: dict, sections: str = "report.md's model sections") -> str:
    """Under the headline table, where its runs differ in TTA level: ' Test acc (TTA) is at each run's own
    level, …: 2, except the <model title> row at 1.' The level most rows share (on a tie, the higher) is
    the rule; '' where all rows share one."""
    levels: dict[int, list[str]] = {}
    for model, group in groups.items():
        levels.setdefault(int(group[0][1]["metrics"]["test_tta"]), []).append(MODEL_TITLES.get(model, model))
    if len(levels) < 2:
        return ""
    usual = max(levels, key=lambda level: (len(levels[level]), level))
    others = "; ".join(" and ".join(f"the {title} row" for title in titles) + f" at {level}"
                       for level, titles in sorted(levels.items()) if level != usual)
    return (f" Test acc (TTA) is at each run's own level, chosen with its recipe: {usual}, except {others} ({sections} "
            "give every level each run measured).")


CONTROL_PHRASE = (", and, as the control for the lab report's residual claim, the same network with its shortcuts "
                  "removed (plain18, trained with the first ResNet-18 run's recipe and budget)")


def summary_section(every_run: dict, verdicts: list[dict]) -> list[str]:
    """What was trained on what, the headline table, and the findings in plain sentences."""
    groups = headline_groups(every_run)
    if not groups:
        return ["## Summary", "", "No runs in results/ yet.", ""]
    devices = sorted({machine_name(run["metrics"]["device"]) for group in groups.values() for _, run in group})
    table = headline_table(every_run).drop(columns=["run"])
    control = "plain18" in groups
    lines = ["## Summary", "",
             f"{'Six' if control else 'Five'} networks trained from scratch on CIFAR-10 (the offline JPEG copy), on "
             f"{' and '.join(devices)}:", "",
             "- the PyTorch tutorial CNN;",
             f"- ResNet-18{CONTROL_PHRASE if control else ''};",
             "- DenseNet-BC with growth rate k = 12: bottlenecks and 0.5 compression in the four-block "
             "[6, 12, 24, 16] layout of DenseNet-121, 1.0 M parameters (not the paper's 100-layer three-block "
             "CIFAR model);",
             "- SE-ResNet-18 twice: with ResNet-18's CIFAR stem, and as the lab report printed it, with the "
             "ImageNet stem (7×7 stride-2 convolution and max-pool), the ablation of the stem.", "",
             "No choice was made on the test split. Recipes were compared on validation splits, most on "
             "ResNet-18's, and carried over to the other models; several rest on gains within the val noise, or on "
             "published practice rather than a trial of their own (the appendix gives every trial). Each run's "
             "test accuracy was computed once, after its last epoch, at every TTA level; the analyses evaluate "
             "the test split again afterwards.", "",
             markdown_table(table), "",
             "Times are as run, on the machine named: these shared CPUs differed about twofold in speed between "
             "sessions, even under one name, so compare times only within one benchmark run (the appendix's "
             "benchmark measures the models side by side). Time/epoch is the median epoch, training and validation "
             f"(a final fit has no validation); train time sums every epoch{slowest_epoch(groups)}."
             f"{tta_levels_note(groups, 'the model sections below')}", "", "Findings:", ""]
    jpeg = any("jpeg" in run["metrics"].get("data_location", "") for group in groups.values() for _, run in group)
    lines += [f"- {sentence}" for sentence in lab_report_findings(groups, seed_noise(every_run), jpeg)]
    lines += claim_tally(verdicts)
    return lines + [""]


def claim_tally(verdicts: list[dict]) -> list[str]:
    """The summary's line on the lab report's claims: how many got each verdict, by its first words (the
    conclusions give it whole), naming the claims."""
    judged = [c for c in verdicts if c["verdict"] != "missing"]
    if not judged:
        return []
    by_verdict = {}
    for c in judged:
        by_verdict.setdefault(c["verdict"].split(":")[0].split(" (")[0], []).append(c["topic"])
    waiting = len(verdicts) - len(judged)
    elsewhere = sum("on" in c for c in verdicts)
    return [f"- Of the lab report's {len(verdicts)} claims, {len(judged)} could be checked"
            + (f" ({elsewhere} at a shorter budget, where the runs compared match)" if elsewhere else "") + ": "
            + ", ".join(f"{len(topics)} {verdict} ({'; '.join(topics)})"
                        for verdict, topics in sorted(by_verdict.items(), key=lambda item: -len(item[1])))
            + (f"; {waiting} waits for a run not trained yet" if waiting == 1 else
               f"; {waiting} wait for runs not trained yet" if waiting else "")
            + ". The conclusions give each verdict in full; the discussion gives the evidence."]


def recipe_row(name: str, run: dict) -> dict:
    config = saved_config(run["metrics"].get("config", {}), TrainConfig)
    m = run["metrics"]
    return {"run": name, "epochs": m["epochs"], "train images": f"{m['train_images']:,}",
            "batch": config["batch_size"], "peak lr": f"{config['lr']:g}",
            "warmup": f"{config['warmup_epochs']:g} epoch{'' if config['warmup_epochs'] == 1 else 's'} from "
                      + (f"{config['warmup_start_factor']:g}× the peak" if config["warmup_start_factor"] else "zero"),
            "weight decay": f"{config['weight_decay']:g}", "label smoothing": f"{config['label_smoothing']:g}",
            "cutout": config["cutout"] or "—", "EMA": f"{config['ema_decay']:g}" if config["ema_decay"] else "—",
            "TTA": int(m["test_tta"]),     # the first runs recorded flip TTA as True: level 1
            "precision": m["precision"], "machine": machine_name(m["device"]).removeprefix("CPU ")}


def tta_records(every_run: dict) -> str:
    """Which TTA levels the runs recorded: all record none and their own; the runs before the per-level
    record existed only those two."""
    runs = present(every_run)
    own_level_only = [name for name, run in runs.items() if "test_accuracy_by_tta" not in run["metrics"]]
    if not own_level_only:
        return "Every run records its test accuracy at each level."
    if len(own_level_only) == len(runs):
        return "Every run records its test accuracy without TTA and at its own level."
    return (f"Every run records its test accuracy at each level, except {', '.join(own_level_only)}: without TTA "
            "and at its own level only.")


def setup_section(found: dict, every_run: dict, root: Path) -> list[str]:
    """The data, every shown run's recipe in one table, the machines and the compute spent."""
    training = sum(run["metrics"]["training_wall_time_s"] for run in present(every_run).values()) / 3600
    trials = [t for log in tune.load_logs(root).values() for t in log["trials"]]
    tuning = sum(t["training_wall_time_s"] for t in trials) / 3600
    final_fits = [name for name, run in found.items() if is_final_fit(run)]
    shown = [entry for entries in runs_by_model(every_run).values() for entry in entries]   # by model, then budget
    recipes, shared = constant_columns(pd.DataFrame([recipe_row(n, r) for n, r in shown]).set_index("run"))
    lines = ["## Set-up", "",
             "**Data.** CIFAR-10 as individual JPEG files (quality about 75, chroma subsampled, as "
             "the archive's README, `../shared/datasets/README.md` beside the course's checkout, describes it): 50,000 training and "
             "10,000 test images. The compression loses detail that the canonical lossless set keeps, so accuracies "
             "may run below published figures, which are on that set; we have no lossless copy to measure by how much, "
             "and found no published measurement for this copy. Unless a run says otherwise, 5,000 training images "
             "(500 per class, seeded) are held out as the validation split that curves and every recipe choice use, "
             "and the model trains on the other 45,000"
             + final_fits_clause(final_fits), "",
             "**Recipe.** SGD with Nesterov momentum 0.9, weight decay on conv and linear weights only, a linear "
             "warmup then linear decay of the learning rate to zero, stepped every batch; bf16 autocast and "
             "channels-last on CPUs with native bf16; random crops with 4-pixel reflection padding and horizontal "
             f"flips.{' Every run in `results/`: ' + shared + '; by run:' if shared else ' The recipe of every run in `results/`:'}", "",
             markdown_table(recipes), "",
             "- *Label smoothing* 0.1 trains against a target of 0.91 on the true class and 0.01 on each of the "
             "other nine, which keeps the network from becoming over-confident (Szegedy et al., 2016).",
             "- *Cutout* blanks one square (here 12×12 pixels) at a random place in each training image (DeVries & "
             "Taylor, 2017).",
             "- *EMA* keeps an exponential moving average of the weights (decay 0.997 per step, about 330 steps); "
             "validation and test use the average.",
             "- *TTA* (test-time augmentation) averages predictions over several views of each test image: level 1 "
             "the image and its mirror, level 2 also two copies shifted one pixel diagonally, each with its "
             "mirror. The first runs (the shortest of each model) report level 1, the setting when they trained; "
             "level 2 was chosen on the validation split before the longer runs started, and so before their "
             "test split was read. " + tta_records(every_run), "",
             f"**Compute.** {training:.0f} h of training for the {len(present(every_run))} runs in `results/`, plus "
             f"{tuning:.0f} h for {len(trials)} recipe trials, on shared 2-core CPUs whose speed varied between "
             f"sessions (see the machine column); no GPU was available.", ""]
    return lines


def conclusions_section(every_run: dict, verdicts: list[dict], root: Path) -> list[str]:
    """The ranking (seeds averaged), the claims' verdicts in one line each (their evidence is in the
    discussion), and what the analyses found, in sentences computed from analysis.json."""
    groups = headline_groups(every_run)
    ranked = sorted(groups.items(), key=lambda item: -seed_summary(item[1])[0])
    lines = ["## Conclusions", ""]
    if ranked:
        order = ", ".join(f"{MODEL_TITLES.get(model, model)} {seed_summary(group)[0]:.2%} "
                          f"({budget(group[0][1])}"
                          f"{f', mean of {len(group)} seeds' if len(group) > 1 else ''})" for model, group in ranked)
        seeds = seed_noise(every_run)
        lines += [f"- Ranked by headline test accuracy: {order}; "
                  + (f"differences under about {seeds['gap'] * 100:.1f} points between single-seed runs may be seed and "
                     f"test noise ({seeds['model']}'s {seeds['seeds']} seeds; see the discussion)." if seeds else
                     "differences within two binomial standard errors of the test accuracy are not a ranking.")]
        lines += [f"- {sentence}" for sentence in [matched_budget_ranking(every_run, ranked)] if sentence]
    judged = [c for c in verdicts if c["verdict"] != "missing"]
    if judged:
        lines += ["- The lab report's claims (evidence in the discussion): "
                  + "; ".join(f"{c['claim'].rstrip('.')}: **{c['verdict']}**"
                              + (f" (on {c['on']})" if "on" in c else "") for c in judged) + "."]
    waiting = [c["claim"] for c in verdicts if c["verdict"] == "missing"]
    if waiting:
        lines += [f"- Not judged yet, a run they need is missing: {'; '.join(waiting)}."]
    lines += [f"- {sentence}" for sentence in gate_findings(root, groups)]
    lines += [f"- {sentence}" for sentence in analysis_findings(list(present(
        {name: group[0][1] for name, group in groups.items()})), groups, root)]
    return lines + [""]


def matched_budget_ranking(every_run: dict, ranked: list[tuple[str, list]]) -> str:
    """Where the headline runs differ in budget: the models in order at each budget (epochs, training images,
    recipe and TTA level all shared) at which two or more of them ran, longest first, neighbours joined
    by '≈' where their gap is within the noise of two single-seed runs (the binomial test noise where no
    recipe ran several seeds), by '>' where beyond it; '' otherwise."""
    if len({(group[0][1]["metrics"]["epochs"], group[0][1]["metrics"]["train_images"]) for _, group in ranked}) < 2:
        return ""
    shared: dict[tuple, dict[str, list]] = {}
    for model, entries in runs_by_model(every_run).items():
        for epochs, recipes in recipe_variants(entries):
            for group in recipes:
                metrics = group[0][1]["metrics"]
                key = (epochs, metrics["train_images"], tuple(recipe(group[0][1]).items()), metrics.get("test_tta"))
                shared.setdefault(key, {})[model] = group
    seeds = seed_noise(every_run)
    orders = []
    for (epochs, images, _, _), groups in sorted(shared.items(), key=lambda item: item[0][:2], reverse=True):
        if len(groups) < 2:
            continue
        accuracy = {model: seed_summary(group)[0] for model, group in groups.items()}
        order = sorted(accuracy, key=accuracy.get, reverse=True)
        text = f"{MODEL_TITLES.get(order[0], order[0])} {accuracy[order[0]]:.2%}"
        for better, model in zip(order, order[1:]):
            tested = groups[model][0][1]["metrics"]["test_images"]
            noise = seeds["gap"] if seeds else difference_noise((accuracy[better], tested), (accuracy[model], tested))
            text += f" {'≈' if accuracy[better] - accuracy[model] <= noise else '>'} " \
                    f"{MODEL_TITLES.get(model, model)} {accuracy[model]:.2%}"
        orders.append(f"{epochs} epochs on {images:,} images, {text}")
    if not orders:
        return ""
    noise = (f"{seeds['gap'] * 100:.1f} points, twice the estimated sd of the difference between two single-seed "
             "runs" if seeds else "two standard errors of the test accuracy")
    return ("The headline ranking mixes budgets; where two or more models share one (epochs, images, recipe and "
            f"TTA level), they rank ('≈': within {noise}): " + "; ".join(orders) + ".")


def sides(contrast: dict) -> tuple[str, str]:
    """The two sides of a gate contrast in words, the changed trial's first: ('exempt_excitation_decay True',
    'False'), or with several settings changed ('lr 0.2, cutout 12', 'lr 0.1, cutout 0')."""
    changed = contrast["changed"]
    trial = ", ".join(f"{key} {values[1]}" for key, values in changed.items())
    base = ", ".join(f"{key} {values[0]}" for key, values in changed.items())
    return trial, (str(next(iter(changed.values()))[0]) if len(changed) == 1 else base)


def meanings(keys) -> str:
    """'exempt_excitation_decay: no weight decay on the SE excitation layers' weights', from each
    setting's own help text in TrainConfig."""
    helps = {f.name: f.metadata["help"] for f in fields(TrainConfig)}
    return "; ".join(f"{key}: {helps[key]}" for key in keys if key in helps)


def run_side(contrast: dict, run: dict) -> str | None:
    """The settings of a gate contrast as `run` recorded them ('exempt_excitation_decay False'), or None
    when they match neither side."""
    config = saved_config(run["metrics"].get("config", {}), TrainConfig)
    values = tuple(config[key] for key in contrast["changed"])
    if values not in [tuple(v[side] for v in contrast["changed"].values()) for side in (0, 1)]:
        return None
    return ", ".join(f"{key} {config[key]}" for key in contrast["changed"])


def contrast_findings(contrast: dict) -> str:
    """What one gate contrast measured, in words: the spread of the gates, the flat blocks, the val gap."""
    c, (trial, base) = contrast, sides(contrast)
    return (f"with {trial} against {base} ({meanings(c['changed'])}) the gates vary ×{c['spread_ratio'].median():.1f} "
            f"as much between images (median over blocks), and {c['flat']} of {c['blocks']} blocks are flat against "
            f"{c['base_flat']} of {c['blocks']} (flat: mean gate within {GATE_SPREAD} of 0.5 and sd under "
            f"{GATE_SPREAD} over images and over channels, so the block halves its residual whatever the image); "
            f"final val accuracy {c['gap'] * 100:+.2f} points, {'within' if c['within'] else 'beyond'} the noise "
            f"(2 SE = {c['noise'] * 100:.2f} points)")


def gate_findings(root: Path, groups: dict | None = None) -> list[str]:
    """What the SE gate trials of results/tuning/ found (`tune.gate_contrasts`), a sentence per contrast,
    followed by the side the model's headline run (from `groups`, as `headline_groups` gives them)
    trained with and how its own gates came out (`headline_gates`)."""
    sentences = []
    for log in tune.load_logs(root).values():
        headline = (groups or {}).get(log["model"])
        for c in tune.gate_contrasts(log):
            livelier = c["within"] and c["spread_ratio"].median() > 1
            sentences.append(
                f"SE's gates ({log['epochs']}-epoch {log['model']} trials, appendix): {contrast_findings(c)}"
                + (": the gates respond more to the image, the accuracy does not measurably improve at this "
                   "horizon." if livelier else ".")
                + (" " + headline_gates(c, *headline[0]) if headline else ""))
    return sentences


def headline_gates(contrast: dict, name: str, run: dict) -> str:
    """Which side of a gate contrast (`tune.gate_contrasts`) the run `name` trained with, and how many of
    its blocks' gates are flat (`inspect.flat_blocks`) in the table its notebook saved; '' when the
    run's settings match neither side."""
    side = run_side(contrast, run)
    if side is None:
        return ""
    text = f"The headline run {name} ({budget(run)}) trained with {side}"
    gates = saved_gates(run)
    if gates is not None:
        flat = flat_blocks(gates)
        text += (f"; on its test images {len(flat)} of its {len(gates)} blocks "
                 f"{'is' if len(flat) == 1 else 'are'} flat" + (f", {and_list(flat)}," if flat else "")
                 + f" after {run['metrics']['epochs']} epochs rather than the trials' {contrast['epochs']}")
    return text + "."


def analysis_findings(models: list[str], groups: dict, root: Path) -> list[str]:
    """Calibration, corruption and attack results of the headline runs that were analysed."""
    summaries = {}
    for model in models:
        name = groups[model][0][0]
        try:
            summary = load_analysis(name, root)
        except RunDataError:
            summary = None
        if summary:
            summaries[name] = summary
    if not summaries:
        return []
    calibration = [s["calibration"] for s in summaries.values()]
    before = [c["before"]["ece"] for c in calibration]
    scaled = [c for c in calibration if c["temperature"]]
    text = [f"Before any scaling the analysed runs' test ECE is {min(before):.1%} to {max(before):.1%}."]
    if scaled:
        temperatures = [c["temperature"] for c in scaled]
        text[0] += (f" Temperature scaling fitted on val (T {min(temperatures):.2f} to {max(temperatures):.2f}"
                    + ("; below 1 for every run with a val split: the label-smoothed models are under-confident"
                       if max(temperatures) < 1 else "")
                    + f") brings it to {min(c['after']['ece'] for c in scaled):.1%} to "
                    f"{max(c['after']['ece'] for c in scaled):.1%}.")
    means = {n: s["corruptions"]["mean_accuracy"] for n, s in summaries.items()}
    clean = {n: s["corruptions"]["clean_accuracy"] for n, s in summaries.items()}
    same_order = sorted(means, key=means.get) == sorted(clean, key=clean.get)
    images = next(iter(summaries.values()))["settings"]["corruption_size"]
    text.append(f"Under the 15 generated corruptions the mean accuracy ranges from {min(means.values()):.1%} to "
                f"{max(means.values()):.1%}; {leader(means, images)}"
                + ("; in the same order as clean accuracy." if same_order else "."))
    strongest = strongest_common_budget(summaries)
    if strongest is not None:
        pgd = {n: s["attacks"]["pgd"][strongest] for n, s in summaries.items()}
        attacked = next(iter(summaries.values()))["settings"]["attack_size"]
        best = max(pgd, key=pgd.get)
        overtaken = [(eps, max(summaries, key=lambda n: summaries[n]["attacks"]["pgd"][eps]))
                     for eps in next(iter(summaries.values()))["attacks"]["pgd"]
                     if all(eps in s["attacks"]["pgd"] for s in summaries.values())]
        overtaken = sorted(((eps, other) for eps, other in overtaken if other != best), key=lambda o: float(o[0]))
        text.append(f"PGD-10 at ε = {strongest}/255 leaves {min(pgd.values()):.1%} to {max(pgd.values()):.1%} "
                    f"of the attacked images correct; {leader(pgd, attacked)}"
                    + (f", but not at every smaller ε (at {overtaken[-1][0]}/255 {overtaken[-1][1]} leads), so this "
                       "is no robustness ranking" if overtaken and len(pgd) > 1 else "")
                    + ". None of these models was trained against attacks.")
    return text


def leader(accuracies: dict[str, float], images: int) -> str:
    """'highest: <run>, x points ahead of <next> (2 SE = y)' when the best leads the next beyond two
    standard errors of the difference on `images` images, else '<run> is the best, not ahead of <next>
    beyond the noise (2 SE = …)'."""
    best, second, gap, noise = lead_over_next(accuracies, images)
    if second is None:
        return f"highest: {best}"
    if gap <= noise:
        return f"{best} is the best{within_noise(accuracies, images)}"
    digits = next(d for d in (1, 2, 3, 4) if f"{gap * 100:.{d}f}" != f"{noise * 100:.{d}f}" or d == 4)
    return f"highest: {best}, {gap * 100:.{digits}f} points ahead of {second} (2 SE = {noise * 100:.{digits}f})"


def limitations_section(found: dict, analysis_sizes: dict | None, every_run: dict) -> list[str]:
    epochs = sorted({run["metrics"]["epochs"] for run in found.values()})
    noise = seed_noise(every_run)
    seeds = ("one seed each for the large models, whose seed spread is therefore unmeasured"
             + (f"; with the spread of {noise['model']}'s {noise['seeds']} seeds, a difference under about "
                f"{noise['gap'] * 100:.1f} points between two single-seed runs is not a ranking" if noise else ""))
    robust = (f"robustness measured on subsets of the test split ({analysis_sizes['corruption_size']:,} images per "
              f"corruption, {analysis_sizes['attack_size']:,} attacked; 1 SE ≈ 1.3–1.4 points)"
              if analysis_sizes else "robustness not analysed yet")
    return ["## Limitations", "",
            f"- {seeds}.",
            "- JPEG data: absolute accuracies may be below what the same recipes reach on the canonical lossless "
            "set, by an amount we could not measure here (no lossless copy).",
            f"- Short schedules: {', '.join(map(str, epochs))} epochs against the 200–300 of the papers; DenseNet in "
            "particular is known to keep gaining long after our budget.",
            "- CPU only: training times are from shared 2-core machines whose speed varied about twofold between "
            "sessions; compare speeds only inside one benchmark.",
            f"- {robust}; the corruptions follow CIFAR-10-C's recipes but are generated here, not the published set.",
            ""]


def references_section() -> list[str]:
    said = ", ".join(f"{MODEL_TITLES.get(model, model)} {accuracy:.0%}" for model, accuracy in LAB_REPORT_ACCURACY.items())
    lab_report = ("The lab report checked here: a student's report for the course 'Deep Learning and Applications', "
                  f"assignment 2 (unpublished, not in this repository). Its test accuracies ({said}) are entered in "
                  "`labkit/reporting/claims.py` (`LAB_REPORT_ACCURACY`); its claims are the ones the discussion checks.")
    return ["## References", "", *[f"{i}. {ref}" for i, ref in enumerate([lab_report, *REFERENCES], 1)], ""]
