"""The statistics the comparison judges by: means and spreads over seeds, binomial standard errors
of accuracies and of their differences, which val curve reaches a threshold first beyond noise,
and training speeds (a benchmark measured alone, else each run's median epoch)."""
from __future__ import annotations

import math

import pandas as pd


def seed_summary(group: list[tuple[str, dict]], key: str = "test_accuracy") -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None for one run) of `key` over a budget's runs that have it;
    (None, None) when none has (the val figures of a final fit on all training images)."""
    values = [run["metrics"].get(key) for _, run in group]
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else None
    return mean, sd


def typical_images_per_s(run: dict) -> float:
    """Median training img/s over the run's epochs. Unlike the whole-run mean it ignores the few
    epochs that shared the machine with other jobs."""
    return float(run["history"].images_per_s.median())


def first_epoch_reaching(history: pd.DataFrame, threshold: float) -> int | None:
    hit = history[history.val_acc >= threshold]
    return int(hit.epoch.iloc[0]) if len(hit) else None


def accuracy_standard_error(accuracy: float, images: int) -> float:
    """Binomial standard error of an accuracy measured on `images` images."""
    return math.sqrt(accuracy * (1 - accuracy) / images)


def difference_noise(*measured: tuple[float, int]) -> float:
    """Two standard errors of the difference between accuracies given as (accuracy, images)."""
    return 2 * math.hypot(*(accuracy_standard_error(accuracy, images) for accuracy, images in measured))


def lead_over_next(accuracies: dict[str, float], images: int) -> tuple[str, str | None, float, float]:
    """The best of `accuracies` (each measured on `images` images), the runner-up (None when alone), the
    gap between them and two standard errors of that gap."""
    order = sorted(accuracies, key=accuracies.get, reverse=True)
    if len(order) < 2:
        return order[0], None, 0.0, 0.0
    first, second = order[:2]
    return (first, second, accuracies[first] - accuracies[second],
            difference_noise((accuracies[first], images), (accuracies[second], images)))


def race_to(threshold: float, first: pd.DataFrame, second: pd.DataFrame, val_images: int,
            names: tuple[str, str] = ("the first", "the second")) -> tuple[int, str]:
    """Which val curve reaches `threshold` in fewer epochs: +1 first, -1 second, 0 neither beyond noise.
    A lead counts only if, at the epoch the leader crosses, it is ahead of the other curve by more than
    two standard errors of the difference; a one-epoch lead of a few tenths of a point is val noise.
    Returns the outcome and the evidence in words, naming the curves by `names`."""
    epochs = first_epoch_reaching(first, threshold), first_epoch_reaching(second, threshold)
    words = (f"val {threshold:.0%}: reached by neither" if epochs == (None, None) else
             f"val {threshold:.0%}: epoch {epochs[0] or 'never'} vs {epochs[1] or 'never'}")
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
    words += (f" (at epoch {at}: {names[lead]} ahead by {gap * 100:.1f} points, {'within' if within else 'beyond'} "
              f"2 SE = {noise * 100:.1f})")
    return (0 if within else (1, -1)[lead]), words


def machine_name(device: str) -> str:
    """A device as the report prints it: 'CPU Intel(R) Xeon(R) Processor (2 cores)' -> 'CPU Intel Xeon Processor (2 cores)'."""
    return device.replace("(R)", "")


def benchmark_speeds(benchmarks: dict, models: tuple[str, ...]) -> tuple[list[float], str] | None:
    """Fast-path training img/s of `models` from the newest benchmark file (by its date) that
    measured every one of them alone, with that file's name; None if no benchmark has them all."""
    found = speeds_by_machine(benchmarks, models)
    return (found[0][1], found[0][2]) if found else None


def newest_per_machine(benchmarks: dict, wanted) -> dict[str, str]:
    """{machine: file stem} of each machine's newest benchmark for which `wanted(bench)` holds, the
    newest machine first."""
    found: dict[str, str] = {}
    for stem, bench in sorted(benchmarks.items(), key=lambda item: item[1].get("date", ""), reverse=True):
        if wanted(bench):
            found.setdefault(machine_name(bench.get("device", "an unnamed machine")), stem)
    return found


def speeds_by_machine(benchmarks: dict, models: tuple[str, ...]) -> list[tuple[str, list[float], str]]:
    """(machine, fast-path training img/s of `models`, file name) from each machine's newest benchmark
    that measured every one of them alone, the newest first: how the models rank can change with the CPU."""
    found = newest_per_machine(benchmarks, lambda bench: all(model in bench.get("models", {}) for model in models))
    return [(machine, [benchmarks[stem]["models"][model]["fast"]["images_per_s"] for model in models], stem)
            for machine, stem in found.items()]


def repeat_span(bench: dict, model: str) -> tuple[float, float]:
    """The slowest and the fastest repeat of `model`'s fast-path training in one benchmark file: how far
    apart two models must be before that machine ranks them (its median alone where the file kept no
    repeats)."""
    fast = bench["models"][model]["fast"]
    repeats = fast.get("runs_images_per_s") or [fast["images_per_s"]]
    return min(repeats), max(repeats)


PEAK_KINDS = {"matmul": "matmul_peak_gflops", "convolution": "conv_peak_gflops"}


def peak_for(bench: dict, precision: str) -> float:
    """The peak GFLOP/s a benchmark file's `precision` rows are shared against: the faster of its matmul
    and its 3×3 convolution peak (files written before the convolution was measured: the matmul's);
    fp32's for a precision it did not measure."""
    peaks = [bench[key] for key in PEAK_KINDS.values() if key in bench]
    if not peaks:
        raise ValueError(f"a benchmark file of {bench.get('device', 'an unnamed device')} ({bench.get('date', 'undated')}) "
                         "has no matmul_peak_gflops: rerun python -m labkit.bench, which measures it")
    return max(p.get(precision, p.get("fp32", 0.0)) for p in peaks)


def peak_ratios(bench: dict) -> dict[str, float]:
    """bf16:fp32 peak ratio of each kind of peak the file measured ({"matmul": 4.5, "convolution": 2.0})."""
    return {kind: bench[key]["bf16"] / bench[key]["fp32"] for kind, key in PEAK_KINDS.items()
            if {"bf16", "fp32"} <= set(bench.get(key, {}))}


def compiled_fast_path(entry: dict) -> bool:
    """Whether a benchmark entry's compiled measurement compiled the fast path: in its precision. The
    oldest files compiled the fp32 reference pipeline instead, beside a bf16 fast path."""
    return "compiled" in entry and entry["compiled"].get("precision", "fp32") == entry["fast"].get("precision", "fp32")


def training_speeds(runs: dict, benchmarks: dict | None, models: tuple[str, ...]) -> tuple[list[float], str]:
    """Training img/s of `models` and where it comes from: the newest benchmark that measured them all
    alone (named), else each run's median epoch (runs from different days or machines can differ twofold)."""
    found = benchmark_speeds(benchmarks or {}, models)
    if found:
        speeds, stem = found
        return speeds, f"benchmark `{stem}.json`, measured alone"
    return [typical_images_per_s(runs[n]) for n in models], "training runs, median epoch, possibly on different machines"
