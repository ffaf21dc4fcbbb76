"""The lab report's claims, each judged by its own function from the runs (at most one per model),
with a verdict and the evidence in words, which names the models and where each number comes from.

An accuracy difference counts only beyond two standard errors of the difference; speed is judged
on a benchmark that measured both models alone where there is one, else on the runs' own epochs.
"""
from __future__ import annotations

from labkit.models.inspect import architecture_activation_mb, flat_blocks
from labkit.reporting.select import (budget_groups, is_final_fit, one_per_model, recipe_difference, runs_at_each_budget,
                                     runs_by_model, saved_gates)
from labkit.reporting.stats import (accuracy_standard_error, compiled_fast_path, difference_noise, machine_name,
                                    race_to, repeat_span, seed_summary, speeds_by_machine, training_speeds)
from labkit.training.checkpoint import saved_config
from labkit.training.config import TrainConfig

THRESHOLDS = (0.80, 0.85, 0.90)
# Test accuracies the lab report we replicate claims (it gives none for the CNN and the SE nets).
LAB_REPORT_ACCURACY = {"resnet18": 0.90, "densenet_cifar": 0.92}
DEEP_MODELS = ("resnet18", "se_resnet18", "densenet_cifar")
NOT_COMPARABLE, NOT_JUDGED = "not comparable yet", "not judged"   # verdicts another budget can settle


def claims(runs: dict, benchmarks: dict | None = None) -> list[dict]:
    """Every claim of the lab report, judged on `runs` (keyed by run name, one per model); each entry
    is {"claim", "topic" (a few words, for the summary), "verdict", "evidence"}."""
    by_model = one_per_model(runs)
    return [{"topic": topic, **judge(by_model, benchmarks or {})} for topic, judge in CLAIMS]


def claims_where_comparable(runs: dict, every_run: dict, benchmarks: dict | None = None) -> list[dict]:
    """`claims` on `runs` (each model's longest, say). A claim they cannot settle (budgets that differ,
    or a final fit without the val curves it needs) is judged instead on the longest budget at which its
    models all ran in `every_run`; that entry names the budget in "on" and keeps the first evidence in
    "longest". Where some recipe ran with several seeds, a verdict on a test gap under their
    seed-and-test noise says so (`beyond_seed_noise`)."""
    unsettled = (NOT_COMPARABLE, NOT_JUDGED)
    verdicts = claims(runs, benchmarks)
    for epochs, at_budget in runs_at_each_budget(every_run):
        if not any(c["verdict"] in unsettled for c in verdicts):
            break
        verdicts = [{**again, "on": f"the {epochs}-epoch runs, whose budgets match", "longest": c["evidence"]}
                    if c["verdict"] in unsettled and again["verdict"] not in ("missing", *unsettled) else c
                    for c, again in zip(verdicts, claims(at_budget, benchmarks))]
    return beyond_seed_noise(verdicts, every_run)


def beyond_seed_noise(verdicts: list[dict], every_run: dict) -> list[dict]:
    """`verdicts`, each qualified when it rests on a test gap beyond the test images' noise but under the
    difference two single-seed runs can show (`seed_noise` of `every_run`; unchanged without seeds)."""
    seeds = seed_noise(every_run)
    if seeds is None:
        return verdicts
    judged = ("supported", "contradicted", "not supported")
    return [{**c, "verdict": under_seed_noise(c, seeds["gap"])}
            if c.get("test_gap") is not None and abs(c["test_gap"]) < seeds["gap"] and c["verdict"].startswith(judged)
            else c for c in verdicts]


def under_seed_noise(claim: dict, seed_gap: float) -> str:
    """The verdict of a claim whose test gap is under `seed_gap`: 'not conclusive' where its val gap was
    within the val noise too (`val_noise`, set by the claim), so only the test noise is beaten; else the
    verdict, qualified."""
    noise = f"the seed-and-test noise of two single-seed runs ({seed_gap * 100:.1f} points)"
    if claim.get("val_noise") is not None:
        return (f"not conclusive: beyond the test noise only, within the val noise (2 SE = "
                f"{claim['val_noise'] * 100:.1f} points) and {noise}")
    return f"{claim['verdict']}, not beyond {noise}"


def seed_noise(every_run: dict) -> dict | None:
    """The training noise the binomial rule leaves out, from the recipe that ran with the most seeds:
    its seeds' test-accuracy sd, the binomial SE at its accuracy, and `gap`, two standard deviations
    of the difference between two runs of one seed each with that spread (an upper bound: both are
    scored on the same test images). None when no recipe ran with several seeds."""
    seeded = [(model, epochs, group) for model, entries in runs_by_model(every_run).items()
              for epochs, group in budget_groups(entries) if seed_summary(group)[1] is not None]
    if not seeded:
        return None
    model, epochs, group = max(seeded, key=lambda found: len(found[2]))
    mean, sd = seed_summary(group)
    images = group[0][1]["metrics"].get("test_images")
    if not images:
        return None
    se = accuracy_standard_error(mean, images)
    return {"model": model, "epochs": epochs, "seeds": len(group), "mean": mean, "images": images, "sd": sd,
            "se": se, "gap": 2 * (2 * (se ** 2 + sd ** 2)) ** 0.5}


def missing(runs: dict, *models: str) -> dict | None:
    """The verdict 'missing' when a model has no run, 'not comparable yet' when the runs trained for
    different budgets (a schedule's length changes the whole curve, so only like is compared with like)."""
    absent = [m for m in models if runs.get(m) is None]
    if absent:
        return {"verdict": "missing", "evidence": f"missing run(s): {', '.join(absent)}"}
    epochs = [runs[m]["metrics"]["epochs"] for m in models]
    if len(set(epochs)) > 1:
        return {"verdict": NOT_COMPARABLE,
                "evidence": f"{' vs '.join(models)} trained for {' vs '.join(map(str, epochs))} epochs"}
    return None


def test_gap(runs: dict, first: str, second: str) -> tuple[float, float]:
    """(first's test accuracy minus second's, two standard errors of that difference)."""
    a, b = runs[first]["metrics"], runs[second]["metrics"]
    return (a["test_accuracy"] - b["test_accuracy"],
            difference_noise((a["test_accuracy"], a["test_images"]), (b["test_accuracy"], b["test_images"])))


def val_gap(runs: dict, first: str, second: str) -> tuple[float, float, float, float] | None:
    """(first's final val accuracy minus second's, two standard errors of that difference, the two
    accuracies), or None where either run has no val split."""
    a, b = runs[first]["metrics"], runs[second]["metrics"]
    if any(m.get(key) is None for m in (a, b) for key in ("final_val_accuracy", "val_images")):
        return None
    noise = difference_noise((a["final_val_accuracy"], a["val_images"]), (b["final_val_accuracy"], b["val_images"]))
    return a["final_val_accuracy"] - b["final_val_accuracy"], noise, a["final_val_accuracy"], b["final_val_accuracy"]


def run_label(runs: dict, model: str) -> str:
    """The run a model is judged on, by its folder's name ('cnn-60ep'); the model's name without one."""
    folder = runs[model].get("folder")
    return folder.name if folder is not None else model


def deep_models_beat_the_cnn(runs: dict, benchmarks: dict) -> dict:
    claim = "The deep networks (ResNet-18, SE-ResNet-18, DenseNet) beat the plain CNN"
    deep = [m for m in DEEP_MODELS if runs.get(m) is not None]
    if runs.get("cnn") is None or not deep:
        return {"claim": claim, **missing(runs, "cnn", *DEEP_MODELS)}
    gaps = {m: test_gap(runs, m, "cnn") for m in deep}
    cnn = runs["cnn"]["metrics"]["test_accuracy"]
    recipe = {m: {**saved_config(runs[m]["metrics"].get("config", {}), TrainConfig), "epochs": runs[m]["metrics"]["epochs"]}
              for m in ("cnn", *deep)}
    differing = [f"{key} {'/'.join(sorted({str(recipe[m][key]) for m in deep}))} vs {recipe['cnn'][key]}"
                 for key in ("epochs", "cutout", "ema_decay") if {recipe[m][key] for m in deep} != {recipe["cnn"][key]}]
    return {"claim": claim,
            "verdict": "supported" if all(gap > noise for gap, noise in gaps.values()) else "not supported",
            "evidence": "; ".join(f"{run_label(runs, m)} {runs[m]['metrics']['test_accuracy']:.2%} vs "
                                  f"{run_label(runs, 'cnn')} {cnn:.2%} ({gap * 100:+.1f} points, 2 SE = "
                                  f"{noise * 100:.1f})" for m, (gap, noise) in gaps.items())
                        + ". These networks differ from the CNN in depth, width, batch norm and shortcuts at once"
                        + (f", and these runs in recipe too ({', '.join(differing)})" if differing else "")
                        + ", so this says nothing about which of them matters; the claim on plain18 isolates the "
                          "shortcuts"}


def shortcuts_explain_the_gap(runs: dict, benchmarks: dict) -> dict:
    claim = "Residual connections help: ResNet-18 beats the same network without its shortcuts (plain18)"
    problem = missing(runs, "resnet18", "plain18")
    if problem:
        return {"claim": claim, **problem}
    gap, noise = test_gap(runs, "resnet18", "plain18")
    verdict = "supported" if gap > noise else "contradicted" if gap < -noise else "no difference beyond test noise"
    val = val_gap(runs, "resnet18", "plain18")
    val_noise = None          # set where only the test noise is beaten: `under_seed_noise` reads it
    if val is not None and verdict != "no difference beyond test noise" and abs(val[0]) <= val[1]:
        verdict += " on test only (val within its noise)"
        val_noise = val[1]
    differ = recipe_difference([("plain18", runs["plain18"])], [("resnet18", runs["resnet18"])])
    # the same bf16 recipe can round differently on another CPU: say where each of the pair trained
    machines = [machine_name(runs[m]["metrics"].get("device", "an unnamed machine")) for m in ("resnet18", "plain18")]
    where = f"; trained on {machines[0]} and {machines[1]}" if machines[0] != machines[1] else ""
    return {"claim": claim, "verdict": verdict, "test_gap": gap, "val_noise": val_noise,
            "evidence": f"test {runs['resnet18']['metrics']['test_accuracy']:.2%} with shortcuts vs "
                        f"{runs['plain18']['metrics']['test_accuracy']:.2%} without ({gap * 100:+.1f} points, "
                        f"2 SE = {noise * 100:.1f})"
                        + (f", final val {val[2]:.2%} vs {val[3]:.2%} ({val[0] * 100:+.1f}, 2 SE = {val[1] * 100:.1f})"
                           if val is not None else "")
                        + "; one seed each; same widths, batch norm and budget, "
                        + (f"but not the same recipe (plain18: {differ})" if differ else "and the same recipe") + where}


def densenet_is_smaller_but_costlier(runs: dict, benchmarks: dict) -> dict:
    claim = "DenseNet has fewer parameters but is slower and uses more memory per image than ResNet-18"
    problem = missing(runs, "densenet_cifar", "resnet18")
    if problem and problem["verdict"] == "missing":
        return {"claim": claim, **problem}
    d, r = runs["densenet_cifar"]["metrics"], runs["resnet18"]["metrics"]
    models = ("densenet_cifar", "resnet18")
    machines = speeds_by_machine(benchmarks, models)
    # The speed ranking is the CPU's as much as the model's: every machine must agree, each beyond the
    # spread of its benchmark's repeats (the median alone where a file kept none); with no benchmark,
    # the runs' median epochs.
    measured = []
    for machine, speeds, stem in machines:
        (d_low, d_high), (r_low, r_high) = (repeat_span(benchmarks[stem], m) for m in models)
        ranking = ("DenseNet slower" if d_high < r_low else "DenseNet faster" if d_low > r_high
                   else "a tie, the repeats overlap")
        entries = [benchmarks[stem]["models"][m] for m in models]
        compiled = (f"; compiled, {entries[0]['compiled']['images_per_s']:.0f} vs "
                    f"{entries[1]['compiled']['images_per_s']:.0f}" if all(map(compiled_fast_path, entries)) else "")
        measured.append((ranking == "DenseNet slower", f"{speeds[0]:.0f} vs {speeds[1]:.0f} img/s training (fast "
                         f"path, not compiled) on {machine} (repeats {d_low:.0f}–{d_high:.0f} vs {r_low:.0f}–"
                         f"{r_high:.0f}, benchmark `{stem}.json`: {ranking}{compiled})"))
    if not measured:
        speeds, source = training_speeds(runs, benchmarks, models)
        measured = [(speeds[0] < speeds[1], f"{speeds[0]:.0f} vs {speeds[1]:.0f} img/s training ({source})")]
    speed = "; ".join(words for _, words in measured)
    memory = [architecture_activation_mb(m) for m in models]
    parts = {"fewer parameters": d["params"] < r["params"], "slower": all(slower for slower, _ in measured),
             "more activation memory per image": memory[0] > memory[1]}
    held = [k for k, v in parts.items() if v]
    where = {"slower": "slower on every machine measured" if len(measured) > 1 else "slower"}
    failed = [where.get(k, k) for k, v in parts.items() if not v]
    verdict = ("supported" if not failed else f"partly ({', '.join(held)}; not {', '.join(failed)})" if held
               else "not supported")
    return {"claim": claim, "verdict": verdict,
            "evidence": f"params {d['params']:,} vs {r['params']:,}; {speed}; activations {memory[0]:.1f} vs "
                        f"{memory[1]:.1f} MB/img; MFLOPs/img {d['flops_per_image'] / 1e6:,.1f} vs "
                        f"{r['flops_per_image'] / 1e6:,.1f}"}


def se_learns_in_fewer_epochs(runs: dict, benchmarks: dict) -> dict:
    claim = "SE-ResNet-18 reaches a given accuracy in fewer epochs than ResNet-18"
    problem = missing(runs, "se_resnet18", "resnet18")
    if problem:
        return {"claim": claim, **problem}
    se, plain = runs["se_resnet18"], runs["resnet18"]
    if is_final_fit(se) or is_final_fit(plain):
        return {"claim": claim, "verdict": NOT_JUDGED,
                "evidence": "a run trained on all 50,000 images has no val curve to race on"}
    val_images = min(se["metrics"]["val_images"], plain["metrics"]["val_images"])
    races = [race_to(t, se["history"], plain["history"], val_images, ("SE", "ResNet")) for t in THRESHOLDS]
    score = sum(outcome for outcome, _ in races)
    verdict = "supported" if score > 0 else "not supported" if score < 0 else "no difference beyond val noise"
    gap, _ = test_gap(runs, "se_resnet18", "resnet18")
    speeds, source = training_speeds(runs, benchmarks, ("se_resnet18", "resnet18"))
    return {"claim": claim, "verdict": verdict,
            "evidence": "first epoch at val accuracy, SE vs ResNet: " + "; ".join(words for _, words in races)
                        + f"; final test {gap * 100:+.2f} points for SE, at {speeds[0]:.0f} vs {speeds[1]:.0f} img/s "
                          f"training ({source})" + decayed_gates(se)}


def decayed_gates(se: dict) -> str:
    """For an SE run whose excitation weights were under weight decay: how many of its blocks' gates
    its notebook found flat, the blocks that barely recalibrate ('' for a run that exempted them)."""
    if saved_config(se["metrics"].get("config", {}), TrainConfig)["exempt_excitation_decay"]:
        return ""
    gates = saved_gates(se)
    if gates is None:
        return ("; the SE run's excitation weights were under weight decay, which can hold the gates near 0.5, so "
                "this SE net may recalibrate little")
    flat = flat_blocks(gates)
    return (f"; the SE run's excitation weights were under weight decay, and by its own gate table {len(flat)} of "
            f"{len(gates)} blocks have flat gates" + (f" ({', '.join(flat)}), which halve their residual whatever the "
                                                      "image" if flat else ""))


def imagenet_stem_costs_accuracy(runs: dict, benchmarks: dict) -> dict:
    claim = "The ImageNet stem (7×7/2 conv + max-pool) costs accuracy on 32×32 images"
    problem = missing(runs, "se_resnet18_imagenet_stem", "se_resnet18")
    if problem:
        return {"claim": claim, **problem}
    a, b = runs["se_resnet18_imagenet_stem"]["metrics"], runs["se_resnet18"]["metrics"]
    gap, noise = test_gap(runs, "se_resnet18_imagenet_stem", "se_resnet18")
    verdict = "supported" if gap < -noise else "not supported" if gap > noise else "no difference beyond test noise"
    return {"claim": claim, "verdict": verdict, "test_gap": gap,
            "evidence": f"test {a['test_accuracy']:.2%} with the ImageNet stem vs {b['test_accuracy']:.2%} "
                        f"({gap * 100:+.1f} points, 2 SE = {noise * 100:.1f}), at {a['flops_per_image'] / 1e6:,.1f} vs "
                        f"{b['flops_per_image'] / 1e6:,.1f} MFLOPs/img"}


CLAIMS = (("the deep networks beat the CNN", deep_models_beat_the_cnn),
          ("residual connections help", shortcuts_explain_the_gap),
          ("DenseNet is smaller but costlier", densenet_is_smaller_but_costlier),
          ("SE learns in fewer epochs", se_learns_in_fewer_epochs),
          ("the ImageNet stem costs accuracy", imagenet_stem_costs_accuracy))
