"""Comparison across runs: the table, overlaid curves, per-class heatmap, scatter plots, and
the lab report's claims checked against the numbers. A missing run is reported as missing."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import plots
from .analysis import architecture_activation_mb
from .checkpoint import saved_config
from .results import RunDataError, list_runs, load_run, results_root
from .train import RECIPE_FIELDS, TrainConfig

# The models in report order; each one's first run (15 epochs, the CNN's 30) is named after it.
DEFAULT_RUNS = ("cnn", "resnet18", "densenet_cifar", "se_resnet18", "se_resnet18_imagenet_stem")
THRESHOLDS = (0.80, 0.85, 0.90)
# Test accuracies the lab report we replicate claims (it gives none for the CNN and the SE nets).
LAB_REPORT_ACCURACY = {"resnet18": 0.90, "densenet_cifar": 0.92}


def load_runs(names=DEFAULT_RUNS, root: Path | None = None, problems: list[str] | None = None
              ) -> dict[str, dict | None]:
    """{name: run dict from `load_run`, or None where results/<name>/ does not exist or is broken}.
    A broken run is skipped with a warning that names the file, also appended to `problems`."""
    runs = {}
    for name in names:
        try:
            runs[name] = load_run(name, root)
        except FileNotFoundError:
            runs[name] = None
        except RunDataError as err:
            runs[name] = None
            skip(f"run {name} skipped: {err}", problems)
    return runs


def load_every_run(root: Path | None = None, problems: list[str] | None = None) -> dict[str, dict | None]:
    """Every run in the results root (None for a broken one, with a warning), by run name."""
    return load_runs(list_runs(root), root, problems)


def longest_runs(every_run: dict) -> dict[str, dict | None]:
    """Each model's run at its longest epoch budget (of the recipe chosen on val, `budget_groups`), keyed
    by run name, in DEFAULT_RUNS order then any other model. Where several seeds ran at that budget,
    the notebook's run (the one with results/<run>/notebook.ipynb) stands for them, else the first by
    name. A model of DEFAULT_RUNS with no readable run maps its own name to None, so it is reported as
    missing."""
    grouped = runs_by_model(every_run)
    chosen: dict[str, dict | None] = {}
    for model in list(DEFAULT_RUNS) + sorted(set(grouped) - set(DEFAULT_RUNS)):
        if model not in grouped:
            chosen[model] = None
            continue
        _, group = budget_groups(grouped[model])[-1]
        name, run = min(group, key=lambda entry: (not is_notebook_run(entry[1]), entry[0]))
        chosen[name] = run
    return chosen


def is_notebook_run(run: dict) -> bool:
    folder = run.get("folder")
    return folder is not None and (folder / "notebook.ipynb").is_file()


def select_runs(runs: str, root: Path | None = None, problems: list[str] | None = None) -> dict[str, dict | None]:
    """The runs a comparison or analysis names: "longest" is each model's longest run (`longest_runs`),
    anything else a comma-separated list of run names."""
    if runs.strip() == "longest":
        return longest_runs(load_every_run(root, problems))
    names = [name.strip() for name in runs.split(",") if name.strip()]
    if not names:
        raise ValueError("runs is empty; give 'longest' or run names separated by commas, e.g. 'cnn,resnet18'")
    return load_runs(names, root, problems)


def skip(message: str, problems: list[str] | None) -> None:
    warnings.warn(message, stacklevel=3)
    if problems is not None:
        problems.append(message)


def load_json_files(folder: Path, problems: list[str] | None = None) -> dict[str, dict]:
    """{file stem: content} for folder/*.json; a truncated or damaged file is skipped with a warning."""
    loaded = {}
    for path in sorted(folder.glob("*.json")):
        try:
            loaded[path.stem] = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            skip(f"{path} skipped: not valid JSON ({err}); it is truncated or damaged", problems)
    return loaded


def runs_by_model(runs: dict) -> dict[str, list[tuple[str, dict]]]:
    """{model: [(run name, run), ...] ordered by epochs}: one model trained at several budgets. Models
    come in DEFAULT_RUNS order, then any others by name."""
    grouped: dict[str, list[tuple[str, dict]]] = {}
    for name, run in present(runs).items():
        grouped.setdefault(run["metrics"]["model"], []).append((name, run))
    order = {model: i for i, model in enumerate(DEFAULT_RUNS)}
    return {model: sorted(grouped[model], key=lambda e: e[1]["metrics"]["epochs"])
            for model in sorted(grouped, key=lambda m: (order.get(m, len(order)), m))}


def budget_groups(entries: list[tuple[str, dict]]) -> list[tuple[int, list[tuple[str, dict]]]]:
    """One model's runs grouped by epoch budget, shortest first. Runs of one recipe at a budget are
    seeds; where several recipes ran at a budget, the one with the best mean final val accuracy stands
    for it (recipes are chosen on val, never on test)."""
    return [(epochs, max(recipes, key=lambda group: seed_summary(group, "final_val_accuracy")[0]))
            for epochs, recipes in recipe_variants(entries)]


def recipe_variants(entries: list[tuple[str, dict]]) -> list[tuple[int, list[list[tuple[str, dict]]]]]:
    """One model's runs by epoch budget, shortest first, each budget's runs split by recipe (the seeds
    of one recipe together), recipes in order of their first run."""
    budgets: dict[int, dict[tuple, list[tuple[str, dict]]]] = {}
    for name, run in entries:
        budgets.setdefault(run["metrics"]["epochs"], {}).setdefault(tuple(recipe(run).items()), []).append((name, run))
    return [(epochs, list(recipes.values())) for epochs, recipes in sorted(budgets.items())]


def recipe(run: dict) -> dict:
    """The run's RECIPE_FIELDS settings, with TrainConfig's defaults for fields older runs predate."""
    config = saved_config(run["metrics"].get("config", {}), TrainConfig)
    return {name: config[name] for name in RECIPE_FIELDS}


def recipe_difference(group: list[tuple[str, dict]], other: list[tuple[str, dict]]) -> str:
    """'cutout 12': the settings where `group`'s recipe differs from `other`'s."""
    mine, theirs = recipe(group[0][1]), recipe(other[0][1])
    return ", ".join(f"{name} {value}" for name, value in mine.items() if value != theirs[name])


def seed_summary(group: list[tuple[str, dict]], key: str = "test_accuracy") -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one run) of `key` over a budget's runs."""
    values = [run["metrics"][key] for _, run in group]
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else None
    return mean, sd


def lab_report_table(runs: dict) -> pd.DataFrame:
    """Per model: what the lab report said, and what its longest budget measures (test accuracy at
    its TTA level and without TTA; the mean ± sd when several seeds ran at that budget), with the gap
    judged against two standard errors: the test set's binomial one and, over seeds, the seeds' spread."""
    rows = []
    for model, entries in runs_by_model(runs).items():
        epochs, group = budget_groups(entries)[-1]
        mean, sd = seed_summary(group)
        m = group[0][1]["metrics"]
        said = LAB_REPORT_ACCURACY.get(model)
        row = {"model": model, "lab report's test acc": said, "our test acc": mean,
               "our test acc (no TTA)": seed_summary(group, "test_accuracy_no_tta")[0],
               "seeds": len(group), "test acc sd over seeds": sd, "run": ", ".join(name for name, _ in group),
               "epochs": epochs, "verdict": "no claim to check"}
        if said is not None:
            variance = accuracy_standard_error(mean, m["test_images"]) ** 2 + (sd ** 2 / len(group) if sd else 0.0)
            noise = 2 * variance ** 0.5
            gap = mean - said
            row["verdict"] = (f"beaten by {gap * 100:.2f} points" if gap > noise else
                              f"short by {-gap * 100:.2f} points" if gap < -noise else
                              f"within noise ({gap * 100:+.2f} points, 2 SE = {noise * 100:.2f})")
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def budget_figure(runs: dict):
    """Test accuracy against the epoch budget, one line per model across its runs (the mean, with
    the seeds' standard deviation as an error bar, where several seeds ran at one budget)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for model, entries in runs_by_model(runs).items():
        groups = budget_groups(entries)
        summaries = [seed_summary(group) for _, group in groups]
        ax.errorbar([epochs for epochs, _ in groups], [mean for mean, _ in summaries],
                    yerr=[sd or 0.0 for _, sd in summaries], fmt="o-", capsize=3, color=plots.model_colour(model),
                    label=model)
        if model in LAB_REPORT_ACCURACY:
            ax.axhline(LAB_REPORT_ACCURACY[model], color=plots.model_colour(model), ls=":", lw=1)
    ax.set(xlabel="training epochs (the whole schedule)", ylabel="final test accuracy",
           title="accuracy against training budget (dotted: the lab report's claims)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))   # outside: points span the whole plot
    fig.tight_layout()
    return fig


def present(runs: dict) -> dict:
    return {name: run for name, run in runs.items() if run is not None}


def typical_images_per_s(run: dict) -> float:
    """Median training img/s over the run's epochs. Unlike the whole-run mean it ignores the few
    epochs that shared the machine with other jobs."""
    return float(run["history"].images_per_s.median())


ACCURACY_COLUMNS = ["params", "MFLOPs/img", "test acc", "test acc (no TTA)", "final val acc", "epochs"]
COST_COLUMNS = ["train min (as run)", "train min (median pace)", "img/s", "median epoch img/s", "act. MB/img",
                "peak mem (MB)"]


def comparison_table(runs: dict) -> pd.DataFrame:
    """One row per run: ACCURACY_COLUMNS then COST_COLUMNS (the report shows them as two tables)."""
    rows = []
    for name, run in runs.items():
        if run is None:
            rows.append({"run": name, "status": "missing"})
            continue
        m = run["metrics"]
        rows.append({
            "run": name, "status": "ok", "params": m["params"], "MFLOPs/img": m["flops_per_image"] / 1e6,
            "test acc": m["test_accuracy"], "test acc (no TTA)": m["test_accuracy_no_tta"],
            "final val acc": m["final_val_accuracy"], "epochs": m["epochs"],
            "train min (as run)": m["training_wall_time_s"] / 60,
            "train min (median pace)": paced_minutes(run["history"]).iloc[-1],
            "img/s": m["images_per_s"], "median epoch img/s": typical_images_per_s(run),
            "act. MB/img": architecture_activation_mb(m["model"]), "peak mem (MB)": m["peak_memory_mb"],
        })
    return pd.DataFrame(rows).set_index("run")


def training_commits(history: pd.DataFrame) -> str:
    """'abc1234 (epochs 1–6), def5678 (epochs 7–15)': the code that trained each stretch of epochs,
    from the history's git_commit column; epochs trained before labkit recorded it say so."""
    commits = history.get("git_commit", pd.Series([None] * len(history))).fillna("").astype(str)
    stretches, start = [], 0
    for i in range(1, len(history) + 1):
        if i == len(history) or commits.iloc[i] != commits.iloc[start]:
            first, last = int(history.epoch.iloc[start]), int(history.epoch.iloc[i - 1])
            span = f"epoch {first}" if first == last else f"epochs {first}–{last}"
            stretches.append(f"{commits.iloc[start][:7] or 'not recorded'} ({span})")
            start = i
    return ", ".join(stretches)


def paced_minutes(history: pd.DataFrame) -> pd.Series:
    """Training time after each epoch at the run's median epoch time. Wall-clock as it happened
    counts epochs slowed by other jobs on a shared machine; the median pace does not."""
    return history.epoch * history.epoch_time_s.median() / 60


def curves_figure(runs: dict):
    """Val accuracy and loss, against epoch and against training time at the median epoch pace."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for name, run in present(runs).items():
        h = run["history"]
        if h.val_acc.isna().all():
            continue
        colour = plots.model_colour(name)
        for row, column in enumerate(("val_acc", "val_loss")):
            axes[row, 0].plot(h.epoch, h[column], ".-", label=name if row == 0 else None, color=colour)
            axes[row, 1].plot(paced_minutes(h), h[column], ".-", color=colour)
    for row, label in enumerate(("val accuracy", "val loss")):
        axes[row, 0].set(xlabel="epoch", ylabel=label)
        axes[row, 1].set(xlabel="training time at the median epoch pace (min)", ylabel=label)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle("validation curves of every run")
    fig.legend(loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def per_class_heatmap(runs: dict):
    import seaborn as sns

    table = pd.DataFrame({name: run["metrics"]["test_per_class_accuracy"] for name, run in present(runs).items()}).T
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(table) + 1.5))
    sns.heatmap(table, annot=True, fmt=".2f", cmap="RdYlGn", vmin=0.4, vmax=1.0, ax=ax, cbar=False)
    ax.set(title="per-class test accuracy of every run", xlabel="", ylabel="")
    fig.tight_layout()
    return fig


def scatter_figure(runs: dict):
    """Test accuracy against parameters and against training time (median epoch pace × epochs);
    runs are told apart by colour and marker in one legend, so no label overprints another."""
    fig, (by_params, by_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = "osD^vP*X"
    for i, (name, run) in enumerate(present(runs).items()):
        m = run["metrics"]
        style = dict(color=plots.model_colour(name), marker=markers[i % len(markers)], s=50)
        by_params.scatter(m["params"] / 1e6, m["test_accuracy"], label=name, **style)
        by_time.scatter(paced_minutes(run["history"]).iloc[-1], m["test_accuracy"], **style)
    by_params.set(xscale="log", xlabel="parameters (millions, log)", ylabel="test accuracy", title="accuracy vs size")
    by_time.set(xlabel="training time at the median epoch pace (min)", ylabel="test accuracy",
                title="accuracy vs training time")
    for ax in (by_params, by_time):
        ax.grid(alpha=0.3)
        ax.margins(0.15)
    fig.suptitle("final test accuracy of every run")
    fig.legend(loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def first_epoch_reaching(history: pd.DataFrame, threshold: float) -> int | None:
    hit = history[history.val_acc >= threshold]
    return int(hit.epoch.iloc[0]) if len(hit) else None


def accuracy_standard_error(accuracy: float, images: int) -> float:
    """Binomial standard error of an accuracy measured on `images` images."""
    return math.sqrt(accuracy * (1 - accuracy) / images)


def difference_noise(*measured: tuple[float, int]) -> float:
    """Two standard errors of the difference between accuracies given as (accuracy, images)."""
    return 2 * math.hypot(*(accuracy_standard_error(accuracy, images) for accuracy, images in measured))


def race_to(threshold: float, first: pd.DataFrame, second: pd.DataFrame, val_images: int) -> tuple[int, str]:
    """Which val curve reaches `threshold` in fewer epochs: +1 first, -1 second, 0 neither beyond noise.
    A lead counts only if, at the epoch the leader crosses, it is ahead of the other curve by more than
    two standard errors of the difference; a one-epoch lead of a few tenths of a point is val noise.
    Returns the outcome and the evidence in words."""
    epochs = first_epoch_reaching(first, threshold), first_epoch_reaching(second, threshold)
    words = f"val {threshold:.0%}: epoch {epochs[0] or 'never'} vs {epochs[1] or 'never'}"
    if epochs[0] == epochs[1]:
        return 0, words
    lead = 0 if epochs[1] is None or (epochs[0] is not None and epochs[0] < epochs[1]) else 1
    at = epochs[lead]
    accs = [h.set_index("epoch").val_acc.get(at) for h in (first, second)]
    if accs[1 - lead] is None:       # the other curve stops before the leader crosses
        return (1, -1)[lead], words
    gap = accs[lead] - accs[1 - lead]
    noise = difference_noise(*((a, val_images) for a in accs))
    within = gap <= noise
    words += f" (at epoch {at}: {gap * 100:+.1f} points, {'within' if within else 'beyond'} 2 SE = {noise * 100:.1f})"
    return (0 if within else (1, -1)[lead]), words


def benchmark_speeds(benchmarks: dict, models: tuple[str, ...]) -> list[float] | None:
    """Fast-path training img/s of `models`, all from the one benchmark with the most repeats
    that measured every one of them alone; None if no benchmark has them all."""
    for bench in sorted(benchmarks.values(), key=lambda b: -b["settings"]["repeats"]):
        if all(model in bench["models"] for model in models):
            return [bench["models"][model]["fast"]["images_per_s"] for model in models]
    return None


def training_speeds(runs: dict, benchmarks: dict | None, models: tuple[str, ...]) -> tuple[list[float], str]:
    """Training img/s of `models` and where it comes from: a benchmark that measured them all alone,
    else each run's median epoch (runs from different days or machines can differ twofold)."""
    speeds = benchmark_speeds(benchmarks or {}, models)
    if speeds:
        return speeds, "benchmark, measured alone"
    return [typical_images_per_s(runs[n]) for n in models], "training runs, median epoch"


def claims(runs: dict, benchmarks: dict | None = None) -> list[dict]:
    """Each claim of the lab report with a verdict computed from the runs (at most one per model,
    keyed by run name), and the evidence, which names the models. Speed is judged on `benchmarks`
    (each pipeline measured alone) where they cover both models, else on the runs' own throughput."""
    runs = one_per_model(runs)
    out = []

    def need(*names):
        missing = [n for n in names if runs.get(n) is None]
        return f"missing run(s): {', '.join(missing)}" if missing else None

    def unjudgeable(*names):
        """(verdict, evidence) when the runs are missing or trained for different budgets (a
        schedule's length changes the whole curve, so only like is compared with like), else None."""
        problem = need(*names)
        if problem:
            return "missing", problem
        epochs = [m(n)["epochs"] for n in names]
        if len(set(epochs)) > 1:
            return "not comparable yet", f"{' vs '.join(names)} trained for {' vs '.join(map(str, epochs))} epochs"
        return None

    def m(name):
        return runs[name]["metrics"]

    def test_noise(*names):
        return difference_noise(*((m(n)["test_accuracy"], m(n)["test_images"]) for n in names))

    claim = "Residual models beat the plain CNN"
    residual = [n for n in ("resnet18", "se_resnet18", "densenet_cifar") if runs.get(n) is not None]
    if runs.get("cnn") is None or not residual:
        out.append({"claim": claim, "verdict": "missing", "evidence": need("cnn", "resnet18", "se_resnet18")})
    else:
        gaps = {n: m(n)["test_accuracy"] - m("cnn")["test_accuracy"] for n in residual}
        noise = {n: test_noise(n, "cnn") for n in residual}
        out.append({"claim": claim,
                    "verdict": "supported" if all(gaps[n] > noise[n] for n in residual) else "not supported",
                    "evidence": "; ".join(f"{n} {m(n)['test_accuracy']:.2%} vs cnn {m('cnn')['test_accuracy']:.2%} "
                                          f"({gaps[n] * 100:+.1f} points, 2 SE = {noise[n] * 100:.1f})"
                                          for n in residual)})

    claim = "DenseNet has fewer parameters but is slower and uses more memory per image than ResNet-18"
    problem = need("densenet_cifar", "resnet18")
    if problem:
        out.append({"claim": claim, "verdict": "missing", "evidence": problem})
    else:
        d, r = m("densenet_cifar"), m("resnet18")
        speeds, source = training_speeds(runs, benchmarks, ("densenet_cifar", "resnet18"))
        memory = [architecture_activation_mb(n) for n in ("densenet_cifar", "resnet18")]
        parts = {"fewer parameters": d["params"] < r["params"], "slower": speeds[0] < speeds[1],
                 "more activation memory per image": memory[0] > memory[1]}
        held = [k for k, v in parts.items() if v]
        verdict = "supported" if len(held) == len(parts) else f"partly ({', '.join(held)})" if held else "not supported"
        out.append({"claim": claim, "verdict": verdict,
                    "evidence": f"params {d['params']:,} vs {r['params']:,}; {speeds[0]:.0f} vs "
                                f"{speeds[1]:.0f} img/s training ({source}); activations {memory[0]:.1f}"
                                f" vs {memory[1]:.1f} MB/img; FLOPs/img "
                                f"{d['flops_per_image'] / 1e6:.0f}M vs {r['flops_per_image'] / 1e6:.0f}M"})

    claim = "SE-ResNet-18 reaches a given accuracy in fewer epochs than ResNet-18"
    problem = unjudgeable("se_resnet18", "resnet18")
    if problem:
        out.append({"claim": claim, "verdict": problem[0], "evidence": problem[1]})
    else:
        val_images = min(m(n)["val_images"] for n in ("se_resnet18", "resnet18"))
        races = [race_to(t, runs["se_resnet18"]["history"], runs["resnet18"]["history"], val_images)
                 for t in THRESHOLDS]
        score = sum(outcome for outcome, _ in races)
        verdict = "supported" if score > 0 else "not supported" if score < 0 else "no difference beyond val noise"
        gap = m("se_resnet18")["test_accuracy"] - m("resnet18")["test_accuracy"]
        speeds, source = training_speeds(runs, benchmarks, ("se_resnet18", "resnet18"))
        out.append({"claim": claim, "verdict": verdict,
                    "evidence": "first epoch at val accuracy, SE vs ResNet: " + "; ".join(words for _, words in races)
                                + f"; final test {gap * 100:+.2f} points for SE, at {speeds[0]:.0f} vs "
                                f"{speeds[1]:.0f} img/s training ({source})"})

    claim = "The ImageNet stem (7×7/2 conv + max-pool) costs accuracy on 32×32 images"
    problem = unjudgeable("se_resnet18_imagenet_stem", "se_resnet18")
    if problem:
        out.append({"claim": claim, "verdict": problem[0], "evidence": problem[1]})
    else:
        a, b = m("se_resnet18_imagenet_stem"), m("se_resnet18")
        gap = a["test_accuracy"] - b["test_accuracy"]
        noise = test_noise("se_resnet18_imagenet_stem", "se_resnet18")
        verdict = "supported" if gap < -noise else "not supported" if gap > noise else "no difference beyond test noise"
        out.append({"claim": claim, "verdict": verdict,
                    "evidence": f"test {a['test_accuracy']:.2%} with the ImageNet stem vs {b['test_accuracy']:.2%} "
                                f"({gap * 100:+.1f} points, 2 SE = {noise * 100:.1f}), at {a['flops_per_image'] / 1e6:.0f}M vs "
                                f"{b['flops_per_image'] / 1e6:.0f}M FLOPs/img"})
    return out


def one_per_model(runs: dict) -> dict[str, dict]:
    """{model: run} for the present runs; two runs of one model are an error, not a silent pick."""
    names: dict[str, str] = {}
    for name, run in present(runs).items():
        model = run["metrics"]["model"]
        if model in names:
            raise ValueError(f"the claims compare one run per model, but {model} has two: {names[model]} and {name}")
        names[model] = name
    return {model: runs[name] for model, name in names.items()}


def load_benchmarks(root: Path | None = None, problems: list[str] | None = None) -> dict[str, dict]:
    return load_json_files((root or results_root()) / "benchmarks", problems)


def benchmark_table(bench: dict) -> pd.DataFrame:
    rows = []
    for model, entry in bench["models"].items():
        rows.append({"model": model, "reference img/s": entry.get("reference", {}).get("images_per_s"),
                     "fast img/s": entry["fast"]["images_per_s"], "speed-up": entry.get("speedup"),
                     "reference share of its matmul peak": entry.get("reference", {}).get("peak_share"),
                     "fast share of its matmul peak": entry["fast"].get("peak_share"),
                     "fast peak mem (MB)": entry["fast"].get("peak_memory_mb"),
                     "compiled img/s": entry.get("compiled", {}).get("images_per_s"),
                     "compile time (s)": entry.get("compiled", {}).get("warmup_s")})
    return pd.DataFrame(rows).set_index("model")


PIPELINES = ("reference", "fast", "compiled")


def latest_benchmarks(benchmarks: dict[str, dict]) -> tuple[pd.DataFrame, list[str]]:
    """One row per device, model and setting (batch size, pipeline): the newest measurement of it
    across the benchmark files. Also returns the files none of whose measurements is the newest."""
    newest: dict[tuple, tuple[str, str, dict, dict]] = {}
    for stem, bench in benchmarks.items():
        for model, entry in bench.get("models", {}).items():
            for pipeline in PIPELINES:
                if pipeline in entry:
                    key = (bench["device"], model, bench["settings"]["batch_size"], pipeline)
                    if key not in newest or bench["date"] > newest[key][0]:
                        newest[key] = (bench["date"], stem, bench, entry)
    rows = []
    for (device, model, batch, pipeline), (date, stem, bench, entry) in sorted(newest.items()):
        measured = entry[pipeline]
        reference = entry.get("reference", {}).get("images_per_s")
        rows.append({"device": device, "model": model, "batch": batch, "pipeline": pipeline,
                     "precision": measured.get("precision", ""), "img/s": measured["images_per_s"],
                     "× reference": measured["images_per_s"] / reference if reference and pipeline != "reference" else None,
                     "share of matmul peak": measured.get("peak_share"), "peak mem (MB)": measured.get("peak_memory_mb"),
                     "bf16 matmul peak (GFLOP/s)": bench["matmul_peak_gflops"]["bf16"],
                     "file": f"{stem}.json", "date": date[:10]})
    used = {row["file"] for row in rows}
    older = [stem for stem in benchmarks if "models" in benchmarks[stem] and f"{stem}.json" not in used]
    return pd.DataFrame(rows).set_index(["model", "batch", "pipeline"]) if rows else pd.DataFrame(), older


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Human formatting for display (percentages, thousands separators)."""
    shown = table.copy()
    for column in shown.columns:
        if "acc" in column or "share" in column:
            shown[column] = shown[column].map(lambda v: f"{v:.2%}" if isinstance(v, float) and not np.isnan(v) else v)
    return shown
