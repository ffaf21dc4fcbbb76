"""Beyond the lab report: calibration, corruption and adversarial robustness, and Grad-CAM for
the trained runs in results/, as `notebooks/06_analysis.ipynb` runs them.

    analyse_run(name, data, settings)   calibration, corruptions and attacks for one run
    analyse_runs(names, ..., reuse=True)  the same for several runs, reading instead each saved
                                        analysis made from the run's present weights, data and settings
    pick_gradcam_images(analyses)       the same 8 test images for every model: 4 that all get
                                        right, 4 that most get wrong
    add_gradcam(analysis, data, picks)  each model's Grad-CAM maps of its predicted class
    save_analysis(analysis)             results/<run>/analysis.json, with provenance

Every analysis uses fixed, stratified, seeded test subsets (sizes in `AnalysisSettings`), and
the temperature is fitted on the run's own validation split, the train images it held out.
The analysis records the sha256 of the weights it read, so a report can tell when a run has
been retrained since (the analysis is then stale: rerun the notebook). A change to what an analysis
measures bumps ANALYSIS_VERSION, which makes every saved analysis out of date; a change to the corrupted
images bumps corruptions.GENERATOR_VERSION, which redoes only the corruption figures of a saved analysis.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from labkit.data import Cifar10, DataError, portable_location, subset_indices, train_val_split
from labkit.device import device_name, resolve_device, resolve_precision
from labkit.evaluate import predict
from labkit.paths import results_root
from labkit.provenance import git_commit, utc_timestamp
from labkit.robustness.adversarial import EPSILONS, PGD_STEPS, attack_accuracy
from labkit.robustness.calibration import calibrate
from labkit.robustness.corruptions import CORRUPTIONS, GENERATOR_VERSION, SEVERITIES, corrupt
from labkit.robustness.gradcam import feature_map_stages, grad_cam, map_stride
from labkit.runs.store import RunDataError, load_model, read_metrics
from labkit.storage import IntegrityError, load_verified, save_verified, write_atomic
from labkit.training.config import finite_number, setting

ANALYSIS_FILE = "analysis.json"
PREDICTIONS_FILE = "test_probabilities.pt"   # the analysed test subset, the run's probabilities on it, the Grad-CAM images
ANALYSIS_VERSION = 1
GRADCAM_RIGHT = GRADCAM_WRONG = 4


@dataclass
class AnalysisSettings:
    calibration_size: int = setting(10_000, "test images for calibration (10000: the whole test split)")
    corruption_size: int = setting(1_000, "test images corrupted at each corruption and severity")
    attack_size: int = setting(1_000, "test images attacked at each ε")
    epsilons: tuple[float, ...] = setting(EPSILONS, "L∞ attack budgets in units of 1/255")
    seed: int = setting(0, "seeds the subsets and the random parts of corruptions and attacks")
    device: str = setting("auto", '"auto" (CUDA if present), "cpu", "cuda"')
    precision: str = setting("auto", '"auto" (bf16 where native), "bf16", "fp16", "fp32"')
    attack_precision: str = setting("fp32", "the attacks' gradients: bf16 ones are coarse and can weaken an attack")

    def __post_init__(self):
        self.epsilons = tuple(float(e) for e in self.epsilons)
        for name in ("calibration_size", "corruption_size", "attack_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 10:
                raise ValueError(f"{name} must be an integer ≥ 10 (one image per class at least), got {value!r}")
        if not self.epsilons or any(not finite_number(e) or e <= 0 for e in self.epsilons):
            raise ValueError(f"epsilons must be positive numbers (in units of 1/255), got {list(self.epsilons)}")
        for name in ("precision", "attack_precision"):
            if getattr(self, name) not in ("auto", "bf16", "fp16", "fp32"):
                raise ValueError(f"{name} must be one of auto, bf16, fp16, fp32, got {getattr(self, name)!r}")
        resolve_device(self.device)   # raises on an unknown or absent device


@dataclass
class RunAnalysis:
    run_name: str
    model: nn.Module
    test_index: Tensor          # the calibration subset of the test split
    probabilities: Tensor       # the model's probabilities on it (no TTA), N×C
    summary: dict = field(default_factory=dict)   # what analysis.json holds
    gradcam_images: Tensor | None = None          # uint8 N×3×32×32, the images Grad-CAM explained
    saved: bool = False                           # results/<run>/ holds exactly this analysis


def test_subset(labels: Tensor, size: int, seed: int) -> Tensor:
    """A stratified, seeded subset of test indices; the whole split when `size` covers it."""
    return torch.arange(len(labels)) if size >= len(labels) else subset_indices(labels, size, seed).sort().values


def weights_sha256(run_name: str, root: Path | None = None) -> str:
    path = (root or results_root()) / run_name / "model.pt"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as err:
        raise RunDataError(f"{path} cannot be read ({err}); the run's weights are missing") from err


def check_same_data(run_name: str, metrics: dict, data: Cifar10) -> None:
    """The validation split is only held out if the data set is the one the run trained on."""
    if metrics.get("data_checksum") != data.checksum:
        raise DataError(f"run {run_name!r} was trained on {metrics.get('data_source')} data from "
                        f"{metrics.get('data_location')} (checksum {str(metrics.get('data_checksum'))[:12]}…), but the "
                        f"data given is {data.source} from {data.location} (checksum {data.checksum[:12]}…); its "
                        "validation split would include images the run trained on. Pass the run's data set")


def analyse_runs(run_names: list[str], data: Cifar10, settings: AnalysisSettings | None = None,
                 root: Path | None = None, log=print, save: bool = False, reuse: bool = False
                 ) -> dict[str, RunAnalysis]:
    """`analyse_run` for each run, corrupting the images once for all of them. With `reuse`, a run whose
    saved analysis was made from its present weights, on `data`, with these settings is read instead
    (`reusable_analysis`): adding a run to the comparison costs that run's analysis only; one whose
    corruption figures come from an older generator gets those redone (`refresh_corruptions`). With `save`,
    each run's analysis.json is written as soon as it is done, so a later failure loses nothing; a run
    whose files are broken is skipped with a warning that names the file and what is wrong."""
    settings = settings or AnalysisSettings()
    saved = {name: reusable_analysis(name, data, settings, root) if reuse else None for name in run_names}
    read = [name for name, analysis in saved.items() if analysis and corruptions_current(analysis.summary)]
    if read:
        log(f"read, not redone (saved from the present weights, data and settings): {', '.join(read)}")
    if all(analysis and corruptions_current(analysis.summary) for analysis in saved.values()):
        return saved
    started = time.perf_counter()
    shared = corrupted_sets(data, settings)
    making = time.perf_counter() - started
    analyses = {}
    for name in run_names:
        if saved[name]:
            if not corruptions_current(saved[name].summary):
                refresh_corruptions(saved[name], shared, settings, log)
                if save:
                    log(f"[{name}] saved {save_analysis(saved[name], root)}")
            analyses[name] = saved[name]
            continue
        try:
            analysis = analyse_run(name, data, settings, root, log, corrupted=shared)
        except RunDataError as err:
            warnings.warn(f"run {name} skipped: {err}", stacklevel=2)
            continue
        analysis.summary["corrupted_sets_made_in_s"] = making   # made once for all the runs, in no run's total
        analyses[name] = analysis
        if save:
            log(f"[{name}] saved {save_analysis(analysis, root)}")
    return analyses


def reusable_analysis(run_name: str, data: Cifar10, settings: AnalysisSettings, root: Path | None = None
                      ) -> RunAnalysis | None:
    """The run's saved analysis if it was made from its present weights, on `data`, with `settings`, by
    this ANALYSIS_VERSION; None if it must be made (again)."""
    try:
        [analysis] = load_analyses([run_name], data, root, warn_older=False).values()   # the caller redoes those
    except RunDataError:
        return None
    return analysis if analysis.summary["settings"] == recorded_settings(settings) else None


def corruptions_current(summary: dict) -> bool:
    """Whether an analysis's corruption figures come from today's corrupted images (GENERATOR_VERSION;
    analyses that predate the record used generator 1)."""
    return summary["corruptions"].get("generator", 1) == GENERATOR_VERSION


def refresh_corruptions(analysis: RunAnalysis, sets: dict, settings: AnalysisSettings, log=print) -> None:
    """Redo the corruption figures of a saved analysis made with an older generator, keeping its
    calibration, attacks and Grad-CAM, which do not depend on it; "corruptions_redone" records the older
    generator, when, where, at which commit and how long it took."""
    device = resolve_device(settings.device)
    older = analysis.summary["corruptions"].get("generator", 1)
    log(f"[{analysis.run_name}] corruptions: made with generator {older}, redone with {GENERATOR_VERSION}")
    started = time.perf_counter()
    model = analysis.model.to(device, memory_format=torch.channels_last)
    analysis.summary["corruptions"] = corruption_accuracy(
        model, sets, dict(device=device, precision=resolve_precision(settings.precision, device)))
    analysis.summary["corruptions_redone"] = {
        "from_generator": older, "wall_time_s": time.perf_counter() - started, "device": device_name(device),
        **git_commit(), "date": utc_timestamp()}
    analysis.saved = False


def recorded_settings(settings: AnalysisSettings) -> dict:
    """The settings as analysis.json records them: device and precisions resolved, in JSON's types."""
    device = resolve_device(settings.device)
    return json.loads(json.dumps({**asdict(settings), "device": str(device),
                                  "precision": resolve_precision(settings.precision, device),
                                  "attack_precision": resolve_precision(settings.attack_precision, device)}))


def analyse_run(run_name: str, data: Cifar10, settings: AnalysisSettings | None = None, root: Path | None = None,
                log=print, corrupted: dict | None = None) -> RunAnalysis:
    """Calibration, corruption robustness and adversarial robustness of a saved run.
    `corrupted`: the output of `corrupted_sets` for these settings, to share it between runs."""
    settings = settings or AnalysisSettings()
    metrics = read_metrics((root or results_root()) / run_name)
    check_same_data(run_name, metrics, data)
    config = metrics["config"]
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    model = load_model(run_name, root).to(device, memory_format=torch.channels_last)
    options = dict(device=device, precision=precision)
    attack_precision = resolve_precision(settings.attack_precision, device)
    timings, started = {}, time.perf_counter()

    test_idx = test_subset(data.test_labels, settings.calibration_size, settings.seed)
    if config.get("val_size"):
        log(f"[{run_name}] calibration: val split, then {settings.calibration_size:,} test images")
        _, val_idx = train_val_split(data.train_labels, config["val_size"], config["seed"])
        val_p, val_labels = predict(model, data.train_images[val_idx], **options), data.train_labels[val_idx]
    else:   # a final fit: no temperature can be fitted without the test split
        log(f"[{run_name}] calibration: no val split (a final fit), so no temperature; {settings.calibration_size:,} "
            "test images scored as they are")
        val_idx, val_p, val_labels = [], None, None
    test_p = predict(model, data.test_images[test_idx], **options)
    calibrated = calibrate(val_p, val_labels, test_p, data.test_labels[test_idx])
    timings["calibration_s"] = time.perf_counter() - started

    log(f"[{run_name}] corruptions: {len(CORRUPTIONS)} × {len(SEVERITIES)} severities on "
        f"{settings.corruption_size:,} images")
    mark = time.perf_counter()
    robust = corruption_accuracy(model, corrupted or corrupted_sets(data, settings), options)
    timings["corruptions_s"] = time.perf_counter() - mark

    log(f"[{run_name}] FGSM and PGD-{PGD_STEPS} at ε = {', '.join(f'{e:g}' for e in settings.epsilons)}/255 "
        f"on {settings.attack_size:,} images")
    mark = time.perf_counter()
    attack_idx = test_subset(data.test_labels, settings.attack_size, settings.seed + 2)
    attacks = attack_accuracy(model, data.test_images[attack_idx], data.test_labels[attack_idx],
                              epsilons=settings.epsilons, seed=settings.seed, device=device, precision=attack_precision)
    timings["attacks_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started

    summary = {"version": ANALYSIS_VERSION, "run_name": run_name, "model": metrics["model"],
               "calibration": calibrated, "corruptions": robust, "attacks": attacks,
               "settings": recorded_settings(settings),
               "val_images": len(val_idx), "wall_time_s": timings, "device": device_name(device),
               "data_source": data.source, "data_location": portable_location(data.location), "data_checksum": data.checksum,
               "weights_sha256": weights_sha256(run_name, root), "torch_version": torch.__version__,
               "libraries": library_versions(), **git_commit(),
               "date": utc_timestamp()}
    scaled = (f" → {calibrated['after']['ece']:.2%} (T = {calibrated['temperature']:.2f})"
              if calibrated["temperature"] else " (no val split: no temperature)")
    log(f"[{run_name}] ECE {calibrated['before']['ece']:.2%}{scaled}; mean corruption accuracy {robust['mean_accuracy']:.2%} (clean "
        f"{robust['clean_accuracy']:.2%}); PGD at {max(settings.epsilons):g}/255 {attacks['pgd'][f'{max(settings.epsilons):g}']:.2%}; "
        f"{timings['total_s'] / 60:.1f} min")
    return RunAnalysis(run_name, model, test_idx, test_p, summary)


def corrupted_sets(data: Cifar10, settings: AnalysisSettings) -> dict:
    """The corruption subset of the test split, clean and at every corruption and severity:
    {"labels": …, "clean": uint8 images, (name, severity): uint8 images}."""
    index = test_subset(data.test_labels, settings.corruption_size, settings.seed + 1)
    images = data.test_images[index]
    sets = {"labels": data.test_labels[index], "clean": images}
    for name in CORRUPTIONS:
        for severity in SEVERITIES:
            sets[name, severity] = corrupt(images, name, severity, settings.seed)
    return sets


def corruption_accuracy(model: nn.Module, sets: dict, options: dict) -> dict:
    """{"images", "clean_accuracy", "accuracy": {corruption: {severity: acc}}, "mean_accuracy"}."""
    def accuracy(batch: Tensor) -> float:
        return float((predict(model, batch, **options).argmax(1) == sets["labels"]).float().mean())

    table = {name: {str(s): accuracy(sets[name, s]) for s in SEVERITIES} for name in CORRUPTIONS}
    every = [acc for row in table.values() for acc in row.values()]
    return {"images": len(sets["labels"]), "clean_accuracy": accuracy(sets["clean"]), "accuracy": table,
            "mean_accuracy": sum(every) / len(every), "generator": GENERATOR_VERSION}


def library_versions() -> dict:
    from importlib.metadata import version
    return {name: version(name) for name in ("torchvision", "torchmetrics", "torchattacks", "captum")}


def pick_gradcam_images(analyses: list[RunAnalysis], labels: Tensor, seed: int = 0) -> dict:
    """The same test images for every model: 4 that every model gets right, and 4 that the most
    models get wrong (ties broken by a seeded shuffle). Returns {"test_indices", "kinds"}."""
    index = analyses[0].test_index
    if any(not torch.equal(a.test_index, index) for a in analyses):
        raise ValueError("the analyses used different test subsets; run them with the same settings")
    truth = labels[index]
    wrong = torch.stack([a.probabilities.argmax(1) != truth for a in analyses]).sum(0)   # models wrong, per image
    order = torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))
    right = order[wrong[order] == 0][:GRADCAM_RIGHT]
    by_wrong = order[torch.argsort(wrong[order], descending=True, stable=True)]
    mistaken = by_wrong[wrong[by_wrong] > 0][:GRADCAM_WRONG]
    chosen = torch.cat([right, mistaken])
    return {"test_indices": index[chosen].tolist(),
            "kinds": ["right for every model"] * len(right) +
                     [f"wrong for {int(wrong[i])} of {len(analyses)} models" for i in mistaken]}


def add_gradcam(analysis: RunAnalysis, data: Cifar10, picks: dict) -> dict:
    """Grad-CAM of the model's predicted class on the picked images, kept in the summary with the map's
    cell spacing in pixels (`map_stride`, how the figures place it) and when and by which commit the maps
    were made; a saved analysis that already explains these images keeps its maps
    (only the captions' counts of models are brought up to date)."""
    done = analysis.summary.get("gradcam") or {}
    if analysis.gradcam_images is not None and done.get("test_indices") == picks["test_indices"]:
        if done["kinds"] != picks["kinds"]:
            done["kinds"], analysis.saved = picks["kinds"], False
        if "map_stride" not in done:   # saved before it was recorded: the maps stay, drawn where their cells look
            done["map_stride"], analysis.saved = map_stride(analysis.model), False
        return done
    started = time.perf_counter()
    chosen = torch.tensor(picks["test_indices"], dtype=torch.long)
    position = {int(t): i for i, t in enumerate(analysis.test_index.tolist())}
    probabilities = analysis.probabilities[[position[int(t)] for t in chosen]]
    predicted = probabilities.argmax(1)
    analysis.gradcam_images = data.test_images[chosen]
    maps, layer, side = grad_cam(analysis.model, analysis.gradcam_images, predicted)
    sides = {stage: side for stage, _, side in feature_map_stages(analysis.model)}
    analysis.summary["gradcam"] = {
        "layer": layer, "map_size": side, "map_stride": map_stride(analysis.model), "stage_map_sizes": sides, **picks,
        "true": [data.classes[int(c)] for c in data.test_labels[chosen]],
        "predicted": [data.classes[int(c)] for c in predicted],
        "confidence": [round(float(p), 4) for p in probabilities.max(1).values],
        "maps": [[[round(float(v), 3) for v in row] for row in m] for m in maps],
        "date": utc_timestamp(), **git_commit()}
    elapsed, timings = time.perf_counter() - started, analysis.summary["wall_time_s"]
    total = timings.pop("total_s") - timings.pop("gradcam_s", 0.0) + elapsed   # maps made anew replace older ones
    timings.update(gradcam_s=elapsed, total_s=total)   # total stays last
    analysis.saved = False
    return analysis.summary["gradcam"]


def save_analysis(analysis: RunAnalysis, root: Path | None = None) -> Path:
    """results/<run>/analysis.json, and the test probabilities behind it (float16, about 200 kB for the
    whole test split), which the explorer starts from without recomputing anything, with the images
    Grad-CAM explained (24 kB), which the report draws the maps over without the data set."""
    folder = (root or results_root()) / analysis.run_name
    predictions = {"test_index": analysis.test_index.to(torch.int32),
                   "probabilities": analysis.probabilities.to(torch.float16)}
    if analysis.gradcam_images is not None:
        predictions["gradcam_images"] = analysis.gradcam_images.to(torch.uint8)
    save_verified(folder / PREDICTIONS_FILE, predictions)
    path = folder / ANALYSIS_FILE
    summary = {key: value for key, value in analysis.summary.items() if key != "stale"}   # load_analysis derives it
    write_atomic(path, (json.dumps(summary, indent=1) + "\n").encode())
    analysis.saved = True
    return path


def load_analyses(run_names: list[str], data: Cifar10, root: Path | None = None, warn_older: bool = True
                  ) -> dict[str, RunAnalysis]:
    """What the last analysis of each run saved: its summary, its test probabilities and the model
    (for Grad-CAM), in seconds instead of the analysis's minutes. Raises RunDataError, naming the file
    and what to do, when a run has no saved analysis, a damaged one, one made from other weights or on
    other data than `data`, or test subsets that differ between the runs. Corruption figures from an older
    generator are read with a warning (`warn_older`), since `analyse_runs` redoes them."""
    analyses = {}
    for name in run_names:
        folder = (root or results_root()) / name
        summary = load_analysis(name, root)
        if summary is None or not (folder / PREDICTIONS_FILE).is_file():
            missing = folder / (ANALYSIS_FILE if summary is None else PREDICTIONS_FILE)
            raise RunDataError(f"{missing} does not exist: run {name!r} has no saved analysis to read; "
                               "run this notebook with analyse = True first")
        if summary["stale"]:
            raise RunDataError(f"{folder / ANALYSIS_FILE} was made from other weights than {folder / 'model.pt'} "
                               "(the run was retrained since); run this notebook with analyse = True")
        if summary.get("data_checksum") != data.checksum:
            raise RunDataError(f"{folder / ANALYSIS_FILE} was made on other data (checksum "
                               f"{str(summary.get('data_checksum'))[:12]}…) than the data given ({data.checksum[:12]}…); "
                               "pass the data set the run trained on")
        if warn_older and not corruptions_current(summary):
            warnings.warn(f"{folder / ANALYSIS_FILE}: its corruption figures come from an older corruption generator "
                          f"({summary['corruptions'].get('generator', 1)}, now {GENERATOR_VERSION}); run this notebook "
                          "with analyse = True to redo them", stacklevel=2)
        saved = load_predictions(name, root)
        index, probabilities = saved["test_index"].long(), saved["probabilities"].float()
        first = next(iter(analyses.values()), None)
        if first is not None and not torch.equal(first.test_index, index):
            raise RunDataError(f"the saved analyses of {first.run_name} and {name} used different test subsets; "
                               "analyse them together (analyse = True) with the same settings")
        analyses[name] = RunAnalysis(name, load_model(name, root), index, probabilities, summary,
                                     saved.get("gradcam_images"), saved=True)
    return analyses


def load_predictions(run_name: str, root: Path | None = None) -> dict:
    """What save_analysis kept beside analysis.json: "test_index", "probabilities" and, from analyses
    made since the report draws Grad-CAM itself, "gradcam_images". Raises RunDataError, naming the
    file, when it is missing or damaged."""
    path = (root or results_root()) / run_name / PREDICTIONS_FILE
    try:
        saved, _ = load_verified(path)
        if not {"test_index", "probabilities"} <= set(saved):
            raise KeyError(f"it holds {sorted(saved)}, not test_index and probabilities")
    except (IntegrityError, OSError, RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError) as err:
        raise RunDataError(f"{path} cannot be read ({err}); run notebooks/06_analysis.ipynb on {run_name} "
                           "with analyse = True") from err
    return saved


def load_analysis(run_name: str, root: Path | None = None) -> dict | None:
    """A run's analysis.json, or None if it has none; a broken file raises RunDataError."""
    path = (root or results_root()) / run_name / ANALYSIS_FILE
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunDataError(f"{path} is not valid JSON ({err}); it is truncated or damaged") from err
    if not isinstance(summary, dict) or summary.get("version") != ANALYSIS_VERSION:
        raise RunDataError(f"{path} is not a version-{ANALYSIS_VERSION} analysis; rerun notebooks/06_analysis.ipynb")
    summary["stale"] = summary["weights_sha256"] != weights_sha256(run_name, root)
    return summary


def analyses_current(run_names: list[str], root: Path | None = None) -> bool:
    """Whether every run has an analysis made from its present weights, its corruption figures from
    today's corrupted images."""
    for name in run_names:
        try:
            summary = load_analysis(name, root)
        except RunDataError:
            return False
        if summary is None or summary["stale"] or not corruptions_current(summary):
            return False
    return True


# ----------------------------------------------------------------------------- tables

def calibration_table(summaries: dict[str, dict]):
    rows = {}
    for name, s in summaries.items():
        c = s["calibration"]
        after = c["after"] or {}     # None for a final fit: no val split to fit T on
        rows[name] = {"T": c["temperature"], "ECE": c["before"]["ece"], "ECE (T)": after.get("ece"),
                      "NLL": c["before"]["nll"], "NLL (T)": after.get("nll"),
                      "Brier": c["before"]["brier"], "Brier (T)": after.get("brier"),
                      "test acc (no TTA)": c["before"]["accuracy"]}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("run")


def corruption_table(summaries: dict[str, dict]):
    """Rows: each corruption's mean over severities, then clean and mean corruption accuracy; columns: runs."""
    table = pd.DataFrame({name: {c: sum(row.values()) / len(row) for c, row in s["corruptions"]["accuracy"].items()}
                          for name, s in summaries.items()})
    table.loc["clean (same images)"] = [s["corruptions"]["clean_accuracy"] for s in summaries.values()]
    table.loc["mean corruption accuracy"] = [s["corruptions"]["mean_accuracy"] for s in summaries.values()]
    return table.rename_axis("corruption")


def attack_table(summaries: dict[str, dict]):
    rows = {}
    for name, s in summaries.items():
        a = s["attacks"]
        rows[name] = {"clean": a["clean"], **{f"FGSM {e}/255": v for e, v in a["fgsm"].items()},
                      **{f"PGD {e}/255": v for e, v in a["pgd"].items()}}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("run")


def wall_time_table(summaries: dict[str, dict]):
    """Wall time in seconds per analysis and run."""
    return pd.DataFrame.from_dict({name: {k.removesuffix("_s") + " s": v for k, v in s["wall_time_s"].items()}
                                   for name, s in summaries.items()}, orient="index").rename_axis("run")
