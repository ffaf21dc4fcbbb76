"""report.md from results/ alone: one function per section, each returning its lines, and
`build`, which puts them in order and writes the figures they embed to results/figures/.

Regenerating without new results gives an identical file: nothing in it depends on the time
or the machine that renders it.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from labkit import tune
from labkit.data import CLASSES
from labkit.evaluate import TTA_LEVELS
from labkit.models.inspect import class_reading, gate_reading, gradient_reading, last_blocks
from labkit.reporting import captions
from labkit.reporting.claims import (
    DEEP_MODELS,
    beyond_seed_noise,
    claims,
    claims_where_comparable,
    seed_noise,
    shortcuts_explain_the_gap,
)
from labkit.reporting.figures import (
    attack_curves,
    budget_figure,
    confusion_heatmap,
    corruption_heatmaps,
    curves_figure,
    gradcam_captions,
    gradcam_overlays,
    model_colour,
    pair_curves,
    per_class_bars,
    per_class_heatmap,
    reliability_diagrams,
    scatter_figure,
    training_curves,
)
from labkit.reporting.overview import (
    conclusions_section,
    contrast_findings,
    headline_groups,
    limitations_section,
    references_section,
    run_side,
    setup_section,
    summary_section,
    tta_levels_note,
)
from labkit.reporting.select import (
    DEFAULT_RUNS,
    budget_groups,
    first_runs,
    is_final_fit,
    load_benchmarks,
    load_every_run,
    longest_runs,
    on_common_data,
    present,
    recipe_difference,
    recipe_variants,
    runs_by_model,
    saved_gates,
    skip,
)
from labkit.reporting.stats import (accuracy_standard_error, compiled_fast_path, difference_noise, lead_over_next,
                                   machine_name, newest_per_machine, peak_ratios, seed_summary,
                                   typical_images_per_s)
from labkit.reporting.tables import (
    ACCURACY_COLUMNS,
    COST_COLUMNS,
    MODEL_TITLES,
    and_list,
    comparison_table,
    constant_columns,
    format_table,
    headline_table,
    is_missing,
    lab_report_table,
    latest_benchmarks,
    markdown_table,
    notebook_epochs,
    training_commits,
)
from labkit.robustness.corruptions import (CORRUPTIONS, GENERATOR_CHANGES, GENERATOR_VERSION,
                                          PARAMETER_MEANINGS, SEVERITIES)
from labkit.robustness.suite import (ANALYSIS_FILE, attack_table, calibration_table, corruption_table,
                                    corruptions_current, load_analysis, load_predictions, wall_time_table)
from labkit.runs.store import RunDataError
from labkit.training.checkpoint import saved_config
from labkit.training.config import TrainConfig

ARCHITECTURES = {
    "cnn": ("CNN (PyTorch tutorial net)",
            "Two 5×5 convolutions with max-pooling and three fully connected layers: the plain "
            "conv/pool/fc stack, 62,006 parameters, no normalisation and no shortcuts."),
    "resnet18": ("ResNet-18",
                 "A 3×3 stem and four stages of two BasicBlocks (64–512 channels). Each block learns a "
                 "residual F(x) and adds it to a shortcut: the identity, or a 1×1 projection where the "
                 "stride or width changes. Doing nothing is then the easy default for a block, which He et al. "
                 "credit for deep residual nets improving with depth where plain ones degrade."),
    "plain18": ("ResNet-18, no shortcuts (control)",
                "ResNet-18 with every shortcut removed, the 1×1 projections too: the same stem, stages, widths "
                "and batch norm, each block computing only F(x). It trains with the recipe and budget of the first "
                "ResNet-18 run, so the pair isolates what the shortcuts do, the lab report's residual claim. On "
                "ImageNet, He et al. (2016) found the two close at 18 layers (27.94 vs 27.88 % top-1 error, plain vs "
                "residual) and the shortcuts decisive at 34 (28.54 vs 25.03 %)."),
    "densenet_cifar": ("DenseNet (CIFAR, k = 12)",
                       "Four dense blocks of [6, 12, 24, 16] bottleneck layers; every layer reads the "
                       "concatenation of all earlier maps of its block and adds k = 12 channels. "
                       "Transitions halve channels and resolution. About 1 M parameters (Huang et al., 2017)."),
    "se_resnet18": ("SE-ResNet-18",
                    "ResNet-18 whose blocks squeeze each channel to its mean, pass the vector through "
                    "bias-free fc C→C/16→C with a sigmoid, and rescale the residual's channels before the add (Hu et al., "
                    "2018)."),
    "se_resnet18_imagenet_stem": ("SE-ResNet-18 with the ImageNet stem (ablation)",
                                  "The variant printed in the lab report: a 7×7 stride-2 stem and a "
                                  "stride-2 max-pool shrink 32×32 inputs to 8×8 before layer1."),
}
LOOKS = {"cnn": "filters", "resnet18": "gradient_norms", "densenet_cifar": "channels_memory",
         "se_resnet18": "excitation", "se_resnet18_imagenet_stem": "excitation"}


def save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def tta_note(metrics: dict) -> str:
    """'(TTA: flip; none 88.49 %, flip 89.08 %)': the level reported and every level measured."""
    level = int(metrics["test_tta"])
    by_level = metrics.get("test_accuracy_by_tta") or {"0": metrics["test_accuracy_no_tta"],
                                                       str(level): metrics["test_accuracy"]}
    measured = ", ".join(f"{TTA_LEVELS[int(k)]} {v:.2%}" for k, v in sorted(by_level.items()))
    return f"(TTA: {TTA_LEVELS[level]}; measured: {measured})"


def tuning_section(root: Path, problems: list[str] | None = None, every_run: dict | None = None) -> list[str]:
    """The recipe trials of results/tuning/: judged on val only, so they never saw the test split.
    `every_run` (from `load_every_run`) gives the runs whose recipes are matched to the trials."""
    every_run = load_every_run(root) if every_run is None else every_run
    logs = tune.load_logs(root, problems)
    matches = {stem: recipe_matches(log, every_run) for stem, log in logs.items()}
    # A run with one setting changed from a trial is named only where no trial of any log is its exact recipe.
    exact = {name for found in matches.values() for name, _, changed in found if not changed}
    lines = []
    order = list(DEFAULT_RUNS)      # the report's model order, then the shorter horizon first
    for stem, log in sorted(logs.items(), key=lambda item: (
            order.index(item[1]["model"]) if item[1]["model"] in order else len(order), item[1]["epochs"])):
        trials = log["trials"]
        val_images = trials[0]["config"]["val_size"]
        best = max(r["final_val_accuracy"] for r in trials)
        minutes = sum(r["training_wall_time_s"] for r in trials) / 60
        base = [saved_config(r["config"], TrainConfig) for r in trials if not r["overrides"]]
        recipe = f" ({', '.join(f'{key} {base[0][key]}' for key in tune.TUNABLE)})" if base else ""
        adopted = [(name, trial, changed) for name, trial, changed in matches[stem] if not changed or name not in exact]
        earlier = {name for name, _, _ in adopted if started_before_trials_ended(every_run[name], log)}
        full = format_table(tune.trials_table(log))
        table, _ = constant_columns(full)
        shared = "; ".join(constant_phrase(column, full[column].iloc[0]) for column in full.columns
                           if column not in table.columns)
        lines += [f"## Recipe tuning: {log['model']}, {log['epochs']}-epoch trials", "",
                  f"Each trial runs the whole schedule (warmup, then linear decay to zero) in {log['epochs']} "
                  f"epochs with some settings changed from the default recipe{recipe}, and is judged by its final "
                  f"accuracy on the {val_images:,} validation images; the test split is never evaluated. "
                  f"{len(trials)} trials, {minutes:.0f} min of training in all, one seed each "
                  f"(`results/tuning/{stem}.json`). The standard error of one val accuracy near {best:.1%} is "
                  f"±{accuracy_standard_error(best, val_images):.2%}; two trials count as different only when they "
                  f"differ by more than two standard errors of their difference, about "
                  f"{difference_noise((best, val_images), (best, val_images)) * 100:.1f} points.", "",
                  markdown_table(table), ""]
        lines += [shared[0].upper() + shared[1:] + ".", ""] if shared else []
        if len({bool(saved_config(r["config"], TrainConfig)["ema_decay"]) for r in trials}) > 1:
            lines += ["The val columns are measured on the weight average in the trials with an EMA and on the live "
                      "weights in the others; mid-schedule the average runs ahead of the live weights, so the "
                      "middle columns compare trials of one kind only.", ""]
        lines += [tuning_conclusion(log, adopted, earlier), ""] + trial_gate_lines(log)
    return lines


def trial_gate_lines(log: dict) -> list[str]:
    """The SE gates the trials recorded on val images: per block and trial, their mean and spreads, what
    each trial's gates say (`gate_reading`), and how much more the others' vary over images than the first's."""
    trials = tune.gate_trials(log)
    if not trials:
        return []
    statistics = ("mean gate", "sd over images", "sd over channels")
    rows = pd.DataFrame([{"trial": label, "statistic": name, **table[name].map("{:.3f}".format).to_dict()}
                         for label, (_, table) in trials.items() for name in statistics]).set_index("trial")
    lines = ["The SE gates after each trial. An SE block multiplies each channel of its residual by a gate between 0 "
             "and 1, the sigmoid of its excitation layers' output; weight decay that shrinks those layers' weights "
             "towards zero pulls every gate towards sigmoid(0) = 0.5, and a block whose gates all sit there only "
             "halves its residual, whatever the image. Per block, on "
             f"{tune.GATE_IMAGES:,} val images (as many of each class): the mean gate, the gates' standard deviation over images (per channel, "
             "then averaged over channels) and over channels (of the per-channel means):", "",
             markdown_table(rows), ""]
    for label, (_, table) in trials.items():
        lines += [f"With {label}: {gate_reading(table)}", ""]
    for c in tune.gate_contrasts(log):
        ratio = c["spread_ratio"]
        lines += [f"With {c['label']} the gates vary over images ×{ratio.min():.1f} to ×{ratio.max():.1f} as much as "
                  f"with {c['base_label']} (median ×{ratio.median():.1f}; more in {(ratio > 1).sum()} of {c['blocks']} "
                  f"blocks), and its final val accuracy differs by {c['gap'] * 100:+.2f} points, "
                  f"{'within' if c['within'] else 'beyond'} two standard errors of the difference "
                  f"({c['noise'] * 100:.2f}).", ""]
    return lines


def recipe_matches(log: dict, every_run: dict) -> list[tuple[str, str, dict]]:
    """(run, trial, {setting: the run's value where it differs from the trial's}) for each run of the log's
    model whose recipe (the tunable settings of its recorded config) is a trial's or one setting away from
    one; the nearest trial, the best on val among equals."""
    trials = sorted(log["trials"], key=lambda r: -r["final_val_accuracy"])
    trial_configs = [(tune.trial_label(trial), saved_config(trial["config"], TrainConfig)) for trial in trials]
    matches = []
    for name, run in every_run.items():
        if run is None:
            continue
        config = saved_config(run["metrics"].get("config", {}), TrainConfig)
        if config["model"] != log["model"]:
            continue
        differences = [({key: config[key] for key in tune.TUNABLE if config[key] != trial_config[key]}, label)
                       for label, trial_config in trial_configs]
        changed, trial = min(differences, key=lambda difference: len(difference[0]))
        if len(changed) <= 1:
            matches.append((name, trial, changed))
    return matches


def constant_phrase(column: str, value) -> str:
    """A column of the trials table that holds one value in every row, said in words."""
    if column == "within noise of the best":     # constant only when "yes": the best is always within
        return "every trial is within the noise of the best"
    if column == "train min":
        return f"each trial trained for {value} min"
    return f"{column} {value} in every trial"


def started_before_trials_ended(run: dict, log: dict) -> bool:
    """Whether the run started (its recorded end less its training time) before the log's last trial
    ended, so that its recipe was fixed before these trials could choose it; False without dates."""
    dates = [trial["date"] for trial in log["trials"] if trial.get("date")]
    end = run["metrics"].get("date")
    if not dates or not end:
        return False
    start = datetime.fromisoformat(end) - timedelta(seconds=run["metrics"].get("training_wall_time_s", 0))
    return start < max(datetime.fromisoformat(d) for d in dates)


def tuning_conclusion(log: dict, adopted: list[tuple[str, str, dict]], earlier: set[str] = frozenset()) -> str:
    """The best trial, how many the noise cannot tell from it (the table's column says which), which
    trial's recipe the runs in results/ use (`adopted`: from `recipe_matches`), grouped by trial, and,
    when that is not the best, why; runs in `earlier` started before the trials ended, so the trials
    check their recipe rather than choose it."""
    trials = sorted(log["trials"], key=lambda r: -r["final_val_accuracy"])
    best, images = trials[0], trials[0]["config"]["val_size"]
    close = [r for r in trials[1:] if best["final_val_accuracy"] - r["final_val_accuracy"]
             <= difference_noise((best["final_val_accuracy"], images), (r["final_val_accuracy"], images))]
    others = len(trials) - 1
    if not others:
        noise = "it is the only trial."
    elif not close:
        noise = (f"its lead over the other trial{'s' if others > 1 else ''} is beyond two standard errors of the "
                 "difference.")
    elif others == 1:
        noise = "the other trial is within two standard errors of it, so one seed does not tell the two apart."
    else:
        count = f"all {others} other trials are" if len(close) == others else \
            f"{len(close)} of the {others} other trials {'is' if len(close) == 1 else 'are'}"
        noise = f"{count} within two standard errors of it, so one seed does not tell those apart."
    text = f"Reading: the best final val accuracy is {tune.trial_label(best)} ({best['final_val_accuracy']:.2%}); {noise}"
    if adopted:
        by_trial: dict[str, list[str]] = {}
        for name, trial, changed in adopted:
            label = f"'{trial}'" + "".join(f" with {key} {value}" for key, value in changed.items())
            by_trial.setdefault(label, []).append(name + (" (started before these trials ended)" if name in earlier else ""))
        text += " Runs in results/ by the trial whose recipe they use: " + "; ".join(
            f"{label}: {', '.join(names)}" for label, names in by_trial.items()) + "."
        if all(name in earlier for name, _, _ in adopted):
            text += (" These trials check that run's recipe after the fact; they did not choose it." if len(adopted) == 1
                     else " These trials check those runs' recipes after the fact; they did not choose them.")
        labels = {trial for name, trial, _ in adopted if name not in earlier}
        kept = [r for r in close if tune.trial_label(r) in labels]
        if tune.trial_label(best) not in labels and kept:
            names = " and ".join(f"'{tune.trial_label(r)}' ({settings_changed(r)})" for r in kept)
            text += (f" The best trial ({settings_changed(best)}) was not adopted: its lead over {names} is within "
                     f"the noise, and a recipe already in use is kept unless another wins beyond the noise.")
        for used in (r for r in trials if tune.trial_label(r) in labels):
            simpler = [r for r in trials if r["final_val_accuracy"] > used["final_val_accuracy"]
                       and len(r["overrides"]) < len(used["overrides"])]
            if simpler:
                lead = simpler[0]["final_val_accuracy"] - used["final_val_accuracy"]
                within = lead <= difference_noise((simpler[0]["final_val_accuracy"], images),
                                                  (used["final_val_accuracy"], images))
                text += (f" '{tune.trial_label(used)}' scored {lead * 100:.2f} points below "
                         f"'{tune.trial_label(simpler[0])}', which changes fewer settings: "
                         + ("within the noise, so these trials neither support its extra settings nor reject them."
                            if within else "beyond the noise, so these trials speak against its extra settings."))
    return text


def settings_changed(trial: dict) -> str:
    count = len(trial["overrides"])
    return "no setting changed" if not count else f"{count} setting{'s' if count > 1 else ''} changed"


def speed_section(benches: dict, root: Path, link) -> list[str]:
    """The newest measurement of every model and setting in one table, the older files listed."""
    table, older = latest_benchmarks(benches)
    if table.empty:
        return []
    stem, newest = max(((s, b) for s, b in benches.items() if "models" in b), key=lambda item: item[1]["date"])
    settings = newest["settings"]
    lines = ["## Training speed: labkit's fast path against the reference pipeline", "",
             f"Training throughput (images per second, median of alternating repeats of {settings['steps']} timed "
             "steps), the newest measurement of each model, batch size and pipeline across the benchmark files in "
             f"`results/benchmarks/`"
             + (f", all on {machine_name(newest['device'])}" if "device" not in table.columns else "")
             + ". '× reference' compares with the reference pipeline (fp32, PIL transforms in a DataLoader) "
             "measured in the same file. The share is of the best rate measured in the same run in the row's own "
             "precision (it varies between days on these shared machines): the faster of a large matmul and a 3×3 "
             "convolution ('peak from': matmul, conv), or the matmul alone in files from before the convolution was "
             "measured ('peak from': matmul); a convolution's FLOPs are counted as a direct convolution computes "
             "them, as the models' FLOP counts are.", "",
             markdown_table(format_table(table)), "",
             f"In the newest file (`{stem}.json`) the bf16:fp32 peak ratio is "
             + and_list([f"{ratio:.2f} for the {kind}" for kind, ratio in peak_ratios(newest).items()])
             + ". That bounds what bf16 alone can gain on compute-bound layers of that kind; the measured "
             "'× reference' also includes the faster data pipeline (batch tensor augmentation instead of PIL in "
             "worker processes) and channels-last layout, so it can exceed the ratio.", ""]
    figure = root / "benchmarks" / f"{stem}.png"
    if figure.is_file():
        lines += [f"![benchmark {stem}]({link(figure)})", ""]
    if older:
        lines += ["Older measurements, superseded by the table above: " + ", ".join(
            f"`{name}.json` ({benches[name]['date'][:10]}, commit {(benches[name].get('git_commit') or 'unknown')[:7]})"
            for name in sorted(older, key=lambda n: benches[n]["date"])) + ".", ""]
    return lines


def beyond_section(found: dict, root: Path, figures: Path, link, problems: list[str]) -> list[str]:
    """Calibration, corruption and adversarial robustness and Grad-CAM, from each run's analysis.json
    (written by notebooks/06_analysis.ipynb)."""
    summaries, unanalysed = {}, []
    for name in found:
        try:
            summary = load_analysis(name, root)
        except RunDataError as err:
            skip(str(err), problems)
            continue
        if summary is not None:
            summaries[name] = summary
        else:
            unanalysed.append(name)
    lines = ["## Beyond the lab report: calibration, robustness, Grad-CAM", ""]
    if not summaries:
        return lines + ["No analysis yet: run `notebooks/06_analysis.ipynb` (papermill) on the saved runs.", ""]
    if unanalysed:
        lines += [f"**Not analysed yet:** {', '.join(unanalysed)} (run `notebooks/06_analysis.ipynb` on them).", ""]
    first = next(iter(summaries.values()))
    sizes = first["settings"]
    stale = [name for name, s in summaries.items() if s["stale"]]
    commits = sorted({(s.get("git_commit") or "unknown")[:7] for s in summaries.values()})
    dates = sorted({s["date"][:10] for s in summaries.values()})
    devices = " and ".join(sorted({s["device"] for s in summaries.values()}))
    lines += [f"From `results/<run>/analysis.json`, written by `notebooks/06_analysis.ipynb` on "
              f"{devices} ({' to '.join(dict.fromkeys([dates[0], dates[-1]]))}; "
              f"commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}, each run's in the provenance "
              "appendix). Test "
              f"subsets are fixed, stratified and seeded (seed {sizes['seed']}): {sizes['calibration_size']:,} images "
              f"for calibration, {sizes['corruption_size']:,} for corruptions, {sizes['attack_size']:,} for attacks. "
              "No run saw these numbers while training; the temperature is fitted on each run's validation split"
              + (", and not at all for a final fit, which has none." if any(
                  not s["calibration"]["temperature"] for s in summaries.values()) else "."), ""]
    if stale:
        lines += [f"**Stale:** {', '.join(stale)} have been retrained since their analysis (their weights changed); "
                  "rerun the analysis notebook.", ""]
    older = {name: s["corruptions"].get("generator", 1) for name, s in summaries.items() if not corruptions_current(s)}
    if older:
        lines += [f"**Older corruption images:** the corruption figures of {and_list(list(older))} predate "
                  f"{generator_changes(min(older.values()))}; rerun the analysis notebook (`analyse = True`), which "
                  "redoes only those.", ""]
    smoothing = {name: saved_config(found[name]["metrics"].get("config", {}), TrainConfig)["label_smoothing"]
                 for name in summaries}
    return (lines + calibration_section(summaries, smoothing, figures, link)
            + corruption_section(summaries, figures, link)
            + attack_section(summaries, first, figures, link) + gradcam_section(summaries, root, figures, link, problems)
            + analysis_time_section(summaries))


def calibration_section(summaries: dict, smoothing: dict[str, float], figures: Path, link) -> list[str]:
    """ECE, NLL and Brier before and after temperature scaling, with reliability diagrams; `smoothing`
    is each run's label smoothing, which the caption reads the bins against."""
    table = calibration_table(summaries)
    scaled = {n: s["calibration"] for n, s in summaries.items() if s["calibration"]["temperature"]}
    improved = [n for n, c in scaled.items() if c["after"]["ece"] < c["before"]["ece"]]
    temperatures = ", ".join(f"{n} {c['temperature']:.2f}" for n, c in scaled.items())
    unscaled = [n for n in summaries if n not in scaled]
    lines = ["### Calibration", "",
              "Expected calibration error (15 equal-width bins), NLL and Brier score of the test probabilities without "
              "TTA, before and after temperature scaling. For scale: an uncalibrated CIFAR-10 ResNet-110 has ECE 4.6%, "
              "0.83% after temperature scaling (Guo et al., 2017). Our runs train with label smoothing, which pulls "
              "confidence down: a fitted T below 1 sharpens probabilities that were too cautious.", "",
              markdown_table(format_percent(table, ["ECE", "ECE (T)", "test acc (no TTA)"])), "",
              f"Temperature scaling lowers the test ECE for {len(improved)} of {len(scaled)} runs"
              f"{' (' + and_list(improved) + ')' if improved else ''}"
              + (f"; the fitted T is {temperatures}" if scaled else "") + "."
              + (f" {and_list(unscaled)} trained on all training images, so no T can be fitted without "
                 "looking at the test split: the (T) columns stay empty." if unscaled else ""), ""]
    path = figures / "analysis_reliability.png"
    save(reliability_diagrams(summaries), path)
    return lines + [f"![reliability diagrams]({link(path)})", "", captions.reliability_caption(summaries, smoothing),
                    ""]


def corruption_section(summaries: dict, figures: Path, link) -> list[str]:
    """Accuracy under the generated corruptions, by corruption and severity."""
    table = corruption_table(summaries)
    means = {n: s["corruptions"]["mean_accuracy"] for n, s in summaries.items()}
    lines = ["### Corruption robustness", "",
              f"{len(CORRUPTIONS)} corruptions in the manner of CIFAR-10-C (Hendrycks & Dietterich, 2019; "
              f"{', '.join(c.replace('_', ' ') for c in CORRUPTIONS)}; "
              "CIFAR-10-C's frost overlays photographs we do not have, its snow needs ImageMagick's motion blur and its "
              "fog a plasma-fractal generator, which we did not reimplement, so speckle noise, Gaussian blur "
              "and saturate, CIFAR-10-C's extra set, stand in for the three), severities 1–5 with CIFAR-10-C's "
              "parameters, generated here from our JPEG copy by "
              "`labkit.robustness.corruptions`.", "",
              "**These numbers are not comparable to published CIFAR-10-C figures** (a "
              "different base image set, our own generation); they compare our models with each other on the same "
              "corrupted images. For a loose scale only (another corruption set, another network): RobustBench's "
              "standardly trained WideResNet-28-10 keeps 73.5% mean accuracy on CIFAR-10-C at 94.8% clean (Croce et "
              "al., 2021). Rows: each corruption's mean over its five severities." + redone_corruptions(summaries), "",
              markdown_table(format_percent(table, list(table.columns))), "",
              robustness_ranking(means, summaries), ""]
    reversals = severity_reversals(summaries)
    if reversals:
        lines += [reversals, ""]
    path = figures / "analysis_corruptions.png"
    save(corruption_heatmaps(summaries), path)
    return lines + [f"![corruption heatmaps]({link(path)})", "", captions.corruption_caption(summaries), ""]


def redone_corruptions(summaries: dict) -> str:
    """' The corruption figures of <runs> were redone …' for analyses whose corruption part was remade with a
    newer generator (`suite.refresh_corruptions`): when, at which commit and what the generator changed;
    '' where none was."""
    redone = {name: s["corruptions_redone"] for name, s in summaries.items() if "corruptions_redone" in s}
    if not redone:
        return ""
    commits = sorted({(r.get("git_commit") or "unknown")[:7] for r in redone.values()})
    dates = sorted({r["date"][:10] for r in redone.values()})
    when = " to ".join(dict.fromkeys([dates[0], dates[-1]]))
    runs = f"all {len(redone)} runs" if len(redone) == len(summaries) > 1 else and_list(list(redone))
    return (f" The corruption accuracies of {runs} were redone ({when}, "
            f"commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}) with "
            f"{generator_changes(min(r['from_generator'] for r in redone.values()))}; their calibration and "
            "attacks are from the first analysis.")


def generator_changes(older: int) -> str:
    """What the corruption generator changed since version `older`, in words."""
    return "; ".join(GENERATOR_CHANGES[version] for version in range(older + 1, GENERATOR_VERSION + 1))


def severity_reversals(summaries: dict) -> str:
    """Where a higher severity is easier for every analysed model (marked where beyond two standard errors
    for each): a property of CIFAR-10-C's parameters on these images, not of any model, all the runs
    being scored on the same corrupted images."""
    images = next(iter(summaries.values()))["settings"]["corruption_size"]
    found, any_beyond = [], False
    for corruption, (_, parameters) in CORRUPTIONS.items():
        curves = [s["corruptions"]["accuracy"].get(corruption) for s in summaries.values()]
        if any(curve is None for curve in curves):
            continue
        steps = []
        for lower, higher in zip(SEVERITIES, SEVERITIES[1:]):
            rises = [(c[str(higher)] - c[str(lower)], difference_noise((c[str(lower)], images), (c[str(higher)], images)))
                     for c in curves]
            if all(rise > 0 for rise, _ in rises):
                gains = [rise * 100 for rise, _ in rises]
                beyond = all(rise > noise for rise, noise in rises)
                any_beyond |= beyond
                steps.append(f"{higher} over {lower}{'*' if beyond else ''} "
                             f"({min(gains):+.1f} to {max(gains):+.1f} points)")
        if steps:
            meaning = PARAMETER_MEANINGS.get(corruption, "parameters")
            found.append(f"{corruption.replace('_', ' ')} {and_list(steps)} ({meaning} at severities 1–5: "
                         f"{', '.join(map(str, parameters))})")
    if not found:
        return ""
    named = " ".join(found)
    jpeg_base = all("jpeg" in str(s.get("data_location", "")).lower() for s in summaries.values())
    return ("Higher severity is not always harder at CIFAR-10-C's parameters. Every analysed model is more accurate "
            "at the higher severity in "
            + ("these steps (* beyond two standard errors for every model, the others not for each): " if any_beyond
               else "these steps, though not beyond two standard errors for each: ")
            + "; ".join(found) + ".\n\nA reversal shared by every model is a property of those settings on these "
            "images (one set of corrupted images, scored by every model), not of a model, so these numbers compare "
            "models at each severity, not severities with each other."
            + (" Saturate's severities 1–2 scale the saturation towards grey, its severity 3 raises it." if "saturate"
               in named else "")
            + (" Our images are JPEG already, so JPEG at another quality compresses them twice, and what that costs "
               "depends on how the two quantisation tables line up, not only on the new quality: a likely reason for "
               "its reversal, not measured here." if jpeg_base and "jpeg" in named else ""))


def robustness_ranking(means: dict[str, float], summaries: dict) -> str:
    """Highest and lowest mean corruption accuracy, with whether the gap between the two best clears
    two standard errors on the corruption subset (the report's rule), and what each run keeps of its
    clean accuracy."""
    images = next(iter(summaries.values()))["settings"]["corruption_size"]
    first, second, gap, noise = lead_over_next(means, images)
    lowest = min(means, key=means.get)
    text = f"Highest mean corruption accuracy: {first} ({means[first]:.1%}); lowest: {lowest} ({means[lowest]:.1%})."
    if second is not None:
        text += (f" The lead over {second} ({gap * 100:+.{1 if gap >= 0.0005 else 2}f} points) is "
                 f"{'beyond' if gap > noise else 'within'} 2 SE = {noise * 100:.1f} on {images:,} images"
                 f"{'' if gap > noise else ', so the two are not ranked'}.")
    kept = {n: s["corruptions"]["mean_accuracy"] / s["corruptions"]["clean_accuracy"] for n, s in summaries.items()}
    best, least = max(kept, key=kept.get), min(kept, key=kept.get)
    noise = difference_noise((means[best], images), (means[best], images))
    shares = ", ".join(f"{n} {v:.0%}" for n, v in kept.items())
    if kept[best] - kept[least] <= noise:
        text += (f" Relative to its clean accuracy on the same images, each run keeps {kept[least]:.0%} to "
                 f"{kept[best]:.0%} ({shares}): all within two standard errors on {images:,} images (about "
                 f"{noise * 100:.0f} points) of each other, so not ranked.")
    else:
        text += (f" Relative to its clean accuracy on the same images, {best} keeps the most ({shares}; two standard "
                 f"errors on {images:,} images are about {noise * 100:.0f} points).")
    return text + standing_out(first, summaries, images)


def standing_out(leader: str, summaries: dict, images: int) -> str:
    """The corruptions on which another run beats the run with the best mean by more than two standard
    errors: where the ranking by the mean hides a difference."""
    found = []
    for corruption in summaries[leader]["corruptions"]["accuracy"]:
        per_run = {n: float(np.mean(list(s["corruptions"]["accuracy"][corruption].values()))) for n, s in summaries.items()}
        top = max(per_run, key=per_run.get)
        noise = difference_noise((per_run[top], images), (per_run[leader], images))
        if top != leader and per_run[top] - per_run[leader] > noise:
            found.append(f"{corruption.replace('_', ' ')} ({top} {per_run[top]:.1%} against {per_run[leader]:.1%})")
    if not found:
        return f" No other run beats {leader} on any single corruption beyond two standard errors."
    return f" Beyond two standard errors, other runs beat {leader} on: {'; '.join(found)}."


def attack_section(summaries: dict, first: dict, figures: Path, link) -> list[str]:
    """Accuracy under FGSM and PGD-10 against the budget ε."""
    sizes = first["settings"]
    lines = ["### Adversarial robustness", "",
              f"Accuracy under FGSM and PGD-10 (Madry et al., 2018; L∞, step 2.5·ε/10, random start; torchattacks "
              f"{first['libraries']['torchattacks']}) on {sizes['attack_size']:,} test images (a seeded subset other than "
              f"the corruptions', so the clean column differs from theirs); ε in grey levels of 255. "
              "None of these models was trained against attacks. An attack's accuracy is an upper bound on the "
              "robust accuracy: a stronger attack can only lower it. The attacks' gradients were computed in "
              f"{first['settings'].get('attack_precision', first['settings']['precision'])}. Our models trained "
              "with label smoothing, which can make gradient attacks weaker without making a model robust (Shafahi "
              "et al., 2019), so a few percent left at 8/255 need not mean robustness.", "",
              markdown_table(format_percent(attack_table(summaries), None)), ""]
    path = figures / "analysis_attacks.png"
    save(attack_curves(summaries), path)
    return lines + [f"![adversarial accuracy]({link(path)})", "", captions.attack_caption(summaries), ""]


def gradcam_section(summaries: dict, root: Path, figures: Path, link, problems: list[str]) -> list[str]:
    """Every model's Grad-CAM maps over the same test images, in one figure when the analyses saved
    those images (else each run's own row, as its analysis drew it)."""
    shown = {name: s["gradcam"] for name, s in summaries.items() if s.get("gradcam")}
    if not shown:
        return []
    lines = ["### Grad-CAM: what each model looks at", "",
             f"The same {len(next(iter(shown.values()))['test_indices'])} test images for every model: 4 that every "
             "analysed model gets right and the 4 that the most models get wrong (drawn, seeded, from the calibration "
             "subset; how many models miss each is written under it). Each is overlaid with the Grad-CAM map "
             "(Selvaraju et al., 2017) of the "
             "model's own prediction at its deepest stage with maps of at least 4×4; wrong predictions in red.", ""]
    notes = []
    for name, g in shown.items():
        sides = g["stage_map_sizes"]
        last = list(sides)[-1]
        if sides[last] < g["map_size"]:
            notes.append(f"**{name}**'s stages have maps of {', '.join(f'{side}×{side}' for side in sides.values())} "
                         f"({', '.join(sides)}). Its last stage ({last}, {sides[last]}×{sides[last]}) cannot localise "
                         f"anything, so its maps come from {g['layer']}, earlier in the network.")
    images = shared_gradcam_images(shown, root, problems)
    if images is not None:
        first = next(iter(shown.values()))
        path = figures / "analysis_gradcam.png"
        save(gradcam_overlays(images, shown, gradcam_captions(first["true"], first["kinds"])), path)
        return lines + [f"![Grad-CAM of every analysed model]({link(path)})", "",
                        captions.gradcam_caption(shown), ""] + [line for note in notes for line in (note, "")]
    for name, g in shown.items():
        path = root / name / "figures" / "gradcam.png"
        if path.is_file():
            lines += [f"![{name} Grad-CAM]({link(path)})", "", f"**{name}**: {g['layer']} ({g['map_size']}×"
                      f"{g['map_size']} maps).", ""]
    return lines + [line for note in notes for line in (note, "")]


def shared_gradcam_images(gradcams: dict, root: Path, problems: list[str]):
    """The images every analysis explained, from the first run's saved predictions, or None when the
    runs explained different images or the analysis predates saving them."""
    first_name, first = next(iter(gradcams.items()))
    if any(g["test_indices"] != first["test_indices"] for g in gradcams.values()):
        return None
    try:
        images = load_predictions(first_name, root).get("gradcam_images")
    except RunDataError as err:
        skip(str(err), problems)
        return None
    return images if images is not None and len(images) == len(first["test_indices"]) else None


def analysis_sizes(found: dict, root: Path) -> dict | None:
    """The subset sizes of the first readable analysis of the runs shown, or None."""
    for name in found:
        try:
            summary = load_analysis(name, root)
        except RunDataError:
            continue
        if summary:
            return summary["settings"]
    return None


def analysis_time_section(summaries: dict) -> list[str]:
    """What each analysis cost, per run, as recorded when it ran."""
    making = sorted({round(s["corrupted_sets_made_in_s"]) for s in summaries.values()
                     if s.get("corrupted_sets_made_in_s")})
    redone = " (the corruptions column from the first analysis, where its figures were redone since)" if any(
        "corruptions_redone" in s for s in summaries.values()) else ""
    return ["### Analysis time", "", f"Wall time in seconds per analysis and run, as recorded when each ran{redone}"
              + (f"; making the corrupted images, once per analysis session for the runs it analysed, took "
                 f"{and_list([f'{m} s' for m in making])} more" if making else "")
              + ":", "", markdown_table(wall_time_table(summaries)), ""] + analysis_time_reading(summaries)


def analysis_time_reading(summaries: dict) -> list[str]:
    """Which part of the analyses costs most, and whether their times compare across machines."""
    times = [s["wall_time_s"] for s in summaries.values() if s["wall_time_s"].get("total_s")]
    shares = [t["attacks_s"] / t["total_s"] for t in times if "attacks_s" in t]
    machines = sorted({s["device"] for s in summaries.values()})
    if not shares:
        return []
    precision = next(iter(summaries.values()))["settings"].get("attack_precision", "fp32")
    return [f"The attacks (a gradient step for FGSM and ten for PGD-10 at each ε, in {precision}) take "
            f"{captions.span(shares, '.0%')} of each analysis."
            + (f" The analyses ran on {and_list(machines)}, whose speeds differ, so compare times within one machine."
               if len(machines) > 1 else ""), ""]


def same_budget(run: dict, every_run: dict) -> list[tuple[str, dict]]:
    """The runs in `every_run` of `run`'s model and budget (its seeds, where several ran), `run` among them."""
    return dict(budget_groups(runs_by_model(every_run)[run["metrics"]["model"]]))[run["metrics"]["epochs"]]


def seeds_line(name: str, run: dict, every_run: dict) -> list[str]:
    """'- over 5 seeds at 60 epochs (...): 75.1 % ± 0.4': where other seeds ran at this run's budget."""
    same = same_budget(run, every_run)
    if len(same) < 2:
        return []
    mean, sd = seed_summary(same)
    no_tta, _ = seed_summary(same, "test_accuracy_no_tta")
    return [f"- over {len(same)} seeds at {run['metrics']['epochs']} epochs ({', '.join(n for n, _ in same)}): test "
            f"accuracy {mean:.2%} ± {sd:.2%} (mean ± sd; {no_tta:.2%} without TTA); the figures below are `{name}`'s"]


def seed_notes(runs: dict, every_run: dict) -> list[str]:
    """Under a table of single runs: which of them are one seed of several, with the seeds' mean, the
    figure the summary and conclusions give."""
    notes = []
    for name, run in present(runs).items():
        same = same_budget(run, every_run)
        if len(same) > 1:
            mean, sd = seed_summary(same)
            notes.append(f"`{name}` is one of {len(same)} seeds at its budget; their mean, which the summary and "
                         f"conclusions give, is {mean:.2%} ± {sd:.2%}.")
    return [" ".join(notes), ""] if notes else []


def recipes_line(name: str, run: dict, every_run: dict) -> list[str]:
    """Where other recipes ran at this run's budget: each one's val and test accuracy, and that the
    shown run's recipe was chosen on val."""
    budgets = dict(recipe_variants(runs_by_model(every_run)[run["metrics"]["model"]]))
    recipes = budgets[run["metrics"]["epochs"]]
    if len(recipes) < 2:
        return []
    chosen = next(group for group in recipes if name in [n for n, _ in group])
    others = []
    for group in recipes:
        if group is chosen:
            continue
        val, _ = seed_summary(group, "final_val_accuracy")
        test, _ = seed_summary(group)
        shown_val = "no val split (final fit)" if val is None else f"val {val:.2%}"
        mine, images = seed_summary(chosen, "final_val_accuracy")[0], chosen[0][1]["metrics"].get("val_images")
        if val is not None and mine is not None and images:
            noise = difference_noise((mine, images), (val, images))
            shown_val += (f" ({(mine - val) * 100:+.2f} points for the chosen recipe, "
                          f"{'beyond' if mine - val > noise else 'within'} 2 SE = {noise * 100:.2f}"
                          f"{'' if mine - val > noise else ': the choice is not supported beyond the noise'})")
        others.append(f"{', '.join(n for n, _ in group)} ({recipe_difference(group, chosen)}): "
                      f"{shown_val}, test {test:.2%}")
    return [f"- recipe chosen on val among the runs at {run['metrics']['epochs']} epochs; the other recipes: "
            + "; ".join(others)]


def discussion_section(runs: dict, every_run: dict, verdicts: list[dict], benches: dict) -> list[str]:
    """The lab report's claims judged on each model's longest run (`verdicts`, from
    `claims_where_comparable`: a claim those runs cannot settle is judged at the longest budget its
    models share) and, where they differ, again on the first runs (named after their models), so a
    verdict that changes with the budget shows."""
    lines = ["## Discussion: the lab report's claims against these numbers", "",
             "An accuracy difference counts only beyond two standard errors (binomial, from the val or test "
             "set size): each large model is one training run (one seed); the CNN has five seeds."
             + seed_noise_sentence(every_run), ""]
    first = first_runs(every_run)
    budgets = [("each model's longest run", runs)]
    if set(present(first)) != set(present(runs)):
        budgets.append(("the first runs", first))
    shown = set()
    for label, chosen in budgets:
        if len(budgets) > 1:
            epochs = ", ".join(f"{n} {r['metrics']['epochs']}" for n, r in present(chosen).items())
            lines += [f"### On {label} ({recipe_phrase(chosen)}epochs: {epochs or 'none'})", ""]
        found = verdicts if chosen is runs else claims(chosen, benches)
        lines += [f"- **{c['claim']}** — {c['verdict']}"
                  + (f"; judged on {c['on']} (on the longest runs: {c['longest']})" if "on" in c else "")
                  + f". {c['evidence']}" for c in found if (c["claim"], c["evidence"]) not in shown]
        same = [c["claim"] for c in found if (c["claim"], c["evidence"]) in shown]
        if same:
            lines += [f"- The same runs and evidence as above for: {'; '.join(same)}."]
        shown |= {(c["claim"], c["evidence"]) for c in found}
        lines += [""]
    return lines


def seed_noise_sentence(every_run: dict) -> str:
    """What the binomial rule leaves out, where a recipe ran with several seeds: the spread between
    seeds, which adds to the test set's noise when two single-seed runs are compared."""
    noise = seed_noise(every_run)
    if noise is None:
        return ""
    se, sd, gap = noise["se"] * 100, noise["sd"] * 100, noise["gap"] * 100
    return (f" That rule counts the noise of the test images only; training adds its own. The recipe run with the "
            f"most seeds, {noise['model']}'s at {noise['epochs']} epochs, spread by sd {sd:.2f} points over its "
            f"{noise['seeds']} seeds, against a binomial SE of {se:.2f} from its {noise['images']:,} test images alone. "
            f"Between two runs of one seed each, a gap needs about {gap:.1f} points to count (twice the sd of "
            f"their difference, 2·√(2·({se:.2f}² + {sd:.2f}²)); an upper bound, since both runs are scored on the "
            f"same test images, and {noise['seeds']} seeds fix that sd only roughly). The large models ran one seed "
            f"each, so their spread is unmeasured and {noise['model']}'s stands in for it: a verdict below on a gap "
            f"under {gap:.1f} points is beyond the test noise, not necessarily beyond the seed-and-test noise.")


def recipe_phrase(runs: dict) -> str:
    """The runs' shared recipe in words (cutout, EMA, TTA level) and '; ', or nothing when they differ."""
    recipes = {(r["metrics"]["config"].get("cutout", 0), r["metrics"]["config"].get("ema_decay", 0.0),
                r["metrics"]["test_tta"]) for r in present(runs).values()}
    if len(recipes) != 1:
        return ""
    cutout, ema, tta = next(iter(recipes))
    return (f"{'cutout ' + str(cutout) if cutout else 'no cutout'}, {'EMA ' + format(ema, 'g') if ema else 'no EMA'}, "
            f"TTA level {int(tta)}; ")   # the first runs recorded TTA as True: flip, level 1


def format_percent(table: pd.DataFrame, columns: list[str] | None) -> pd.DataFrame:
    """The given columns (all when None) as percentages with one decimal."""
    shown = table.copy().astype(object)
    for column in (shown.columns if columns is None else columns):
        shown[column] = table[column].map(lambda v: "" if is_missing(v) else f"{v:.1%}")
    return shown


def build(root: Path, output: Path) -> str:
    """Write the report. A run, tuning log or benchmark whose files are broken is left out, with a
    warning at the top of the report naming the file and what is wrong with it."""
    figures = root / "figures"
    link = lambda p: os.path.relpath(p, output.parent)  # noqa: E731
    problems: list[str] = []
    every_run, other_data = on_common_data(load_every_run(root, problems))
    runs = longest_runs(every_run)
    found = present(runs)
    benches = load_benchmarks(root, problems)
    verdicts = claims_where_comparable(runs, every_run, benches)
    lines = header_section("plain18" in found)
    if other_data:
        lines += [f"**Left out:** {', '.join(other_data)}, trained on another data set than the other runs "
                  f"(a quick run on synthetic data, say).", ""]
    header_end = len(lines)
    lines += summary_section(every_run, verdicts) + pending_lines(runs, found, root) + setup_section(found, every_run, root)
    logs = tune.load_logs(root)
    for name, run in found.items():
        lines += model_section(name, run, every_run, figures, link, logs)
    lines += comparison_section(runs, every_run, figures, link)
    lines += discussion_section(runs, every_run, verdicts, benches)
    lines += beyond_section(found, root, figures, link, problems)
    lines += conclusions_section(every_run, verdicts, root) + limitations_section(found, analysis_sizes(found, root), every_run)
    lines += references_section()
    lines += ["# Appendix", ""] + tuning_section(root, problems, every_run) + speed_section(benches, root, link)
    lines += provenance_section(every_run, root)
    if problems:
        lines[header_end:header_end] = ["**Left out, broken files** (repair or remove them, then rebuild):", "",
                                        *[f"- {problem}" for problem in problems], ""]
    text = "\n".join(lines)
    remove_unshown_figures(figures, text, link)
    output.write_text(text)
    return text


def pending_lines(runs: dict, found: dict, root: Path) -> list[str]:
    """What the report still lacks, said before any result: runs not trained, models whose headline is
    not yet a final fit on all 50,000 images, attacks with bf16 gradients."""
    items = []
    missing = [n for n, r in runs.items() if r is None and not (root / n / "metrics.json").is_file()]
    if missing:
        items.append(f"runs not in `results/` yet, so not reported: {', '.join(missing)}")
    without_final_fit = [r["metrics"]["model"] for r in found.values()
                         if r["metrics"]["model"] in DEEP_MODELS and not is_final_fit(r)]
    if without_final_fit:
        one = len(without_final_fit) == 1
        items.append(f"the final fit{'' if one else 's'} on all 50,000 training images (80 epochs, "
                     f"`scripts/real_runs.sh`) of {and_list(without_final_fit)} "
                     f"{'is' if one else 'are'} not in `results/` yet: "
                     f"{'its headline number below is' if one else 'their headline numbers below are'} "
                     f"from the longest run on 45,000 images")
    coarse = []
    for name in found:
        try:
            settings = json.loads((root / name / ANALYSIS_FILE).read_text())["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            continue       # no analysis, or a broken one, which the analysis section names
        if settings.get("attack_precision", settings.get("precision")) != "fp32":
            coarse.append(name)
    if coarse:
        items.append(f"the attacks on {', '.join(coarse)} ran with bf16 gradients, which can weaken an attack; "
                     f"`06_analysis` now attacks in fp32 and replaces them when rerun")
    return ["**Pending.**", "", *[f"- {item[0].upper() + item[1:]}." for item in items], ""] if items else []


def header_section(control: bool) -> list[str]:
    """The title (naming the control, plain18, where it ran), and how the report was made and how to read it."""
    lines = [f"# CIFAR-10 with four architectures, an ablation{' and a control' if control else ''}: results", "",
             "Generated by `python -m labkit.report` from `results/` alone: every measured number below comes from "
             "the runs, tuning trials and benchmarks there, with their provenance in the appendix, except the "
             "activation memory per image, a property of each architecture measured in fp32 as the report is "
             "built; the lab report's and published figures are cited. The summary and the set-up come first, "
             "then one section per model, the comparison, the lab report's claims checked, what the lab report "
             "did not ask (calibration, robustness, Grad-CAM), conclusions, limitations and references; recipe "
             "tuning, speed and provenance are in the appendix.", ""]
    return lines


def model_section(name: str, run: dict, every_run: dict, figures: Path, link, logs: dict) -> list[str]:
    """One model on its longest run: the architecture, accuracy and cost, the gate trials of its model
    among the tuning `logs` (`gate_trial_lines`), curves, per-class results and the look inside it that
    its notebook saved."""
    m = run["metrics"]
    title, description = ARCHITECTURES.get(m["model"], (m["model"], ""))
    val = (f"- final validation accuracy: {m['final_val_accuracy']:.2%} on {m['val_images']:,} held-out train images"
           if m.get("final_val_accuracy") is not None else
           f"- trained on all {m['train_images']:,} training images (no validation split)")
    compiled = ", compiled with torch.compile" if m.get("config", {}).get("compile") else ""
    lines = [f"## {title}", "", description, "", f"Run `{name}`:", "",
             f"- final test accuracy: **{m['test_accuracy']:.2%}** {tta_note(m)}", val,
             f"- {m['params']:,} parameters, {m['flops_per_image'] / 1e6:,.1f} MFLOPs per image, "
             f"{m['epochs']} epochs in {m['training_wall_time_s'] / 60:.1f} min with evaluation on "
             f"{machine_name(m['device'])}{compiled}; the training steps alone: {m['images_per_s']:,.0f} img/s overall, "
             f"{typical_images_per_s(run):,.0f} in the median epoch"]
    lines += seeds_line(name, run, every_run) + recipes_line(name, run, every_run) + control_line(run, every_run)
    lines += gate_trial_lines(run, logs) + [""]
    curves = figures / f"{name}_curves.png"
    save(training_curves(run["history"], title=name), curves)
    bars = figures / f"{name}_per_class.png"
    save(per_class_bars(m["test_per_class_accuracy"], title=f"{name}: per-class test accuracy",
                        colour=model_colour(name)), bars)
    heat = figures / f"{name}_confusion.png"
    save(confusion_heatmap(run["confusion"].to_numpy(), list(CLASSES), title=name), heat)
    lines += control_figure(name, run, every_run, figures, link)
    lines += [f"![{name} curves]({link(curves)})", "", captions.curves_caption(run["history"]), "",
              f"![{name} per-class]({link(bars)})", "", captions.per_class_caption(m["test_per_class_accuracy"]), "",
              f"![{name} confusion]({link(heat)})", "", captions.confusion_caption(run["confusion"]), ""]
    for extra in filter(None, ("predictions", LOOKS.get(m["model"]))):
        path = run["folder"] / "figures" / f"{extra}.png"
        numbers = path.with_suffix(".csv")
        gates = saved_gates(run) if extra == "excitation" else None
        if path.is_file():
            caption = captions.LOOK_CAPTIONS[extra]
            if gates is not None and "class split" in gates:   # tables saved before the split was measured lack it
                caption += " " + class_reading(gates, last_blocks(gates.index))
            lines += [f"![{name} {extra}]({link(path)})", "", caption, ""]
        if extra == "gradient_norms" and numbers.is_file():
            lines += [gradient_reading(pd.read_csv(numbers, index_col=0)), ""]
        if gates is not None:
            shown = gates.drop(columns=["class split", "split share"], errors="ignore")
            lines += ["SE gates per block on 2,000 test images (mean, and their spread over images, channels and "
                      "class means):", "", markdown_table(shown.map("{:.3f}".format)), "", gate_reading(gates), ""]
    return lines


def gate_trial_lines(run: dict, logs: dict) -> list[str]:
    """For a model whose recipe trials compared SE gates (`tune.gate_contrasts`): which side of each
    contrast this run trained with, and what the trials measured of the two."""
    lines = []
    for log in logs.values():
        if log["model"] != run["metrics"]["model"]:
            continue
        for c in tune.gate_contrasts(log):
            side = run_side(c, run)
            lines.append((f"- trained with {side}. " if side else "- ") + f"In the {log['epochs']}-epoch val trials "
                         f"(appendix), {contrast_findings(c)}. This run's own gates are in the table below")
    return lines


def control_line(run: dict, every_run: dict) -> list[str]:
    """For plain18, the control: its verdict against the first ResNet-18 run, as the discussion judges it."""
    pair = control_pair(run, every_run)
    if pair is None:
        return []
    [c] = beyond_seed_noise([shortcuts_explain_the_gap(pair, {})], every_run)
    return [f"- against `resnet18`, the same network with its shortcuts: {c['verdict']}; {c['evidence']}"]


def control_pair(run: dict, every_run: dict) -> dict | None:
    """{"resnet18": the first ResNet-18 run, "plain18": `run`} when `run` is the control and its pair ran."""
    if run["metrics"]["model"] != "plain18" or every_run.get("resnet18") is None:
        return None
    return {"resnet18": every_run["resnet18"], "plain18": run}


def control_figure(name: str, run: dict, every_run: dict, figures: Path, link) -> list[str]:
    """For plain18, its curves beside the first ResNet-18 run's, the pair its control line judges."""
    if control_pair(run, every_run) is None:
        return []
    pair = {"resnet18": every_run["resnet18"]["history"], name: run["history"]}
    path = figures / f"{name}_vs_resnet18.png"
    save(pair_curves(pair, title=f"{name} against resnet18: one recipe and budget, with and without shortcuts"), path)
    return [f"![{name} against resnet18]({link(path)})", "", captions.pair_caption(pair), ""]


def comparison_section(runs: dict, every_run: dict, figures: Path, link) -> list[str]:
    """The longest runs side by side, their figures, and the lab report's numbers against ours."""
    if not present(runs):
        return []
    table = format_table(comparison_table(runs))
    lines = ["## Comparison", "", "Each model's longest run. Accuracy and size:", "",
             markdown_table(table.reindex(columns=["status", *ACCURACY_COLUMNS])), "", *seed_notes(runs, every_run),
             "Cost, on the machine each run used (speeds differed about twofold between sessions, even under "
             "one machine name, so compare wall-clock only within one benchmark run, as the appendix's benchmark "
             "measures the models side by side): training time as it ran, the median epoch's throughput, activation memory per "
             "image kept for backward (a property of the architecture, measured in fp32 when the report is built; the first "
             "runs' own metrics.json hold an earlier measure that also counted the weights autograd saves) and the "
             "process's peak memory:", "",
             markdown_table(table.reindex(columns=["status", *COST_COLUMNS])), ""]
    for key, fig, caption in (
            ("curves", curves_figure(runs, every_run), captions.comparison_curves_caption(runs, every_run)),
            ("per_class", per_class_heatmap(runs), captions.per_class_heatmap_caption(runs)),
            ("scatter", scatter_figure(runs), captions.scatter_caption(runs))):
        path = figures / f"comparison_{key}.png"
        save(fig, path)
        lines += [f"![comparison {key}]({link(path)})", "", caption, ""]
    lines += ["## The lab report said, we measure", "",
              "For each model, its longest run in `results/`; a gap counts only beyond two standard errors of "
              "the test accuracy. The train images column shows which runs are final fits (all 50,000 training "
              "images) and which held out the val split.", "",
              markdown_table(format_table(lab_report_table(every_run))), ""]
    path = figures / "accuracy_vs_budget.png"
    save(budget_figure(every_run), path)
    return lines + [f"![accuracy against budget]({link(path)})", "", captions.budget_caption(every_run), ""]


def provenance_section(every_run: dict, root: Path) -> list[str]:
    """Data, device, precision and code of every run in results/ (not only the ones shown), and the
    commit of each run's analysis; what is the same for every run is said once, above the table."""
    runs = present(every_run)
    if not runs:
        return []
    shared = {"data": lambda m: f"{m['data_source']}: {Path(m['data_location']).name}",
              "checksum": lambda m: m["data_checksum"][:12], "precision": lambda m: m["precision"],
              "torch": lambda m: m["torch_version"]}
    common = {key: {read(r["metrics"]) for r in runs.values()} for key, read in shared.items()}
    same = {key: next(iter(values)) for key, values in common.items() if len(values) == 1}
    varying = [key for key in shared if key not in same]
    lines = ["## Provenance", "",
             f"All {len(runs)} runs in `results/`. Training times are wall-clock as they happened. On the shared "
             "2-core machine other jobs sometimes ran beside a training run and slowed it; the benchmark section "
             "above measures each pipeline alone. 'Trained by' lists the commit of the code that trained each "
             "stretch of epochs (a run resumed across sessions may span several); 'saved by' is the commit at "
             "save time; 'notebook ran', the epochs its kept notebook (`results/<run>/notebook.ipynb`) trained, the others having run in earlier sessions before an interruption; 'analysed by', the commit of its `analysis.json` where it has one. '(dirty)' marks a commit whose working tree had uncommitted changes at the time.", ""]
    if same:
        lines += ["Every run: " + "; ".join(f"{key} {value}" for key, value in same.items()) + ".", ""]
    columns = ["run", *varying, "device", "epochs", "notebook ran", "train time", "trained by", "saved by",
               "analysed by", "date"]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, run in runs.items():
        m = run["metrics"]
        commit = (m.get("git_commit") or "unknown")[:7] + (" (dirty)" if m.get("git_dirty") else "")
        try:
            analysis = load_analysis(name, root)
        except RunDataError:
            analysis = None
        analysed = ((analysis.get("git_commit") or "unknown")[:7] + (" (dirty)" if analysis.get("git_dirty") else "")
                    if analysis else "–")
        cells = [name, *(shared[key](m) for key in varying), machine_name(m["device"]), str(m["epochs"]),
                 notebook_epochs(run["folder"], m["epochs"]), f"{m['training_wall_time_s'] / 60:,.1f} min",
                 training_commits(run["history"]), commit, analysed,
                 m["date"][:10]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def remove_unshown_figures(figures: Path, text: str, link) -> None:
    """results/figures holds the report's figures and nothing else: one the new report no longer
    embeds (a run's figures once a longer run represents its model, say) is removed, not left stale."""
    for path in sorted(figures.glob("*.png")):
        if f"]({link(path)})" not in text:
            path.unlink()
            print(f"removed {path}: the report no longer shows it")


def replace_generated(text: str, name: str, body: str) -> str:
    """`text` with the block between '<!-- generated: NAME -->' and '<!-- end: NAME -->' replaced by
    `body` (README sections that code writes, so they cannot drift from what they describe)."""
    start, end = f"<!-- generated: {name} -->", f"<!-- end: {name} -->"
    if start not in text or end not in text:
        raise ValueError(f"the markers {start} … {end} are missing")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    return f"{before}{start}\n{body.strip()}\n{end}{after}"


def readme_results(every_run: dict) -> str:
    """The README's results table: each model's headline run (from `tables.headline_table`)."""
    table = headline_table(every_run).drop(columns=["run", "time/epoch"])
    return (markdown_table(table) + "\n\nTest accuracy at the final epoch, read once after training, on the "
            "lossy JPEG copy of CIFAR-10 (published figures, probably the lab report's too, use the lossless "
            "set). TTA (test-time augmentation) averages the predictions over flipped and 1-px-shifted copies of "
            "each test image, at the level chosen on val (2: flip and two shifts)."
            + tta_levels_note(headline_groups(every_run)) + " The lab report's numbers are probably without "
            "TTA. Details, runs and provenance: [report.md](report.md).")


def readme_compile(benchmarks: dict) -> str:
    """What torch.compile gained over the uncompiled fast path, per model: its range over each machine's
    newest benchmark that compiled the fast path (`stats.compiled_fast_path`), and how long compiling
    held up the first steps of the model it helped most, over every file that measured it."""
    newest = newest_per_machine(benchmarks, lambda bench: any(map(compiled_fast_path,
                                                                     bench.get("models", {}).values())))
    ratios: dict[str, list[float]] = {}
    for stem in newest.values():
        for model, entry in benchmarks[stem]["models"].items():
            if compiled_fast_path(entry):
                ratios.setdefault(model, []).append(entry["compiled"]["images_per_s"] / entry["fast"]["images_per_s"])
    shown = sorted((model for model in ratios if model in MODEL_TITLES), key=lambda model: -max(ratios[model]))
    if not shown:
        return ("Not measured yet: `python -m labkit.bench --compile` measures it against the uncompiled fast path.")
    spans = [f"{MODEL_TITLES[model]} {min(ratios[model]):.2f}" + (
        f"–{max(ratios[model]):.2f}×" if f"{min(ratios[model]):.2f}" != f"{max(ratios[model]):.2f}" else "×")
        for model in shown]
    files = and_list([f"`results/benchmarks/{stem}.json` on the {machine}" for machine, stem in newest.items()])
    source = (f"the range over {len(newest)} machines, each one's newest benchmark of it: {files}" if len(newest) > 1
              else f"benchmark {files}")
    entries = {stem: bench.get("models", {}).get(shown[0], {}) for stem, bench in benchmarks.items()}
    compiles = sorted((entry["compiled"]["warmup_s"], stem) for stem, entry in entries.items()
                      if compiled_fast_path(entry) and "warmup_s" in entry["compiled"])
    (fastest, warm), (slowest, cold) = compiles[0], compiles[-1]
    held = (f"{fastest:.0f} s (`{warm}.json`)" if warm == cold else
            f"from {fastest:.0f} s (`{warm}.json`) to {slowest:.0f} s (`{cold}.json`)")
    steps = and_list(sorted({str(benchmarks[stem]["settings"]["steps"]) for stem in newest.values()}))
    return (f"Compiled, the fast path trained {and_list(spans)} as fast as uncompiled, in benchmarks of {steps} "
            f"timed steps ({source}). Compiling holds up the first steps: for {MODEL_TITLES[shown[0]]} {held}, "
            "shorter when inductor's on-disk cache holds the graphs from an earlier run.")


def readme_times(every_run: dict, root: Path) -> str:
    """Time per epoch as measured for each model (on the CPUs that trained it), and the compute behind
    every committed run and tuning trial."""
    table = headline_table(every_run)[["time/epoch", "train images", "machine"]]
    training = sum(run["metrics"]["training_wall_time_s"] for run in present(every_run).values()) / 3600
    tuning = sum(trial["training_wall_time_s"] for log in tune.load_logs(root).values()
                 for trial in log["trials"]) / 3600
    gpus = sorted({bench["device"] for bench in load_benchmarks(root).values()
                   if bench.get("environment", {}).get("device_type") == "cuda"})
    gpu = (f"On a GPU: measured by `python -m labkit.doctor` on {', '.join(gpus)}, in report.md's speed appendix."
           if gpus else "On a GPU: not measured yet (no GPU was available to this project; `python -m labkit.doctor` "
                        "measures it).")
    return (markdown_table(table.rename(columns={"time/epoch": "time per epoch (median, as trained)"})) + "\n\n"
            "A time per epoch covers training and validation (a final fit has none), on shared CPUs whose speed "
            "differed about twofold between sessions; a run's train time sums its epochs, slowed ones included, so "
            f"it is not epochs × this time. {gpu} Reproducing every committed run took {training:.0f} h of training "
            f"on these 2-core CPUs, plus {tuning:.0f} h of recipe trials; a single headline run costs its train time "
            "in the results table above.")
