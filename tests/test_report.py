import pytest

from labkit.data import synthetic_cifar10
from labkit.report import main
from labkit.reporting import markdown
from labkit.reporting.markdown import build, save, tuning_section
from labkit.runs.store import save_run
from labkit.training.config import TrainConfig
from labkit.training.loop import fit


@pytest.fixture(scope="module")
def results_root(tmp_path_factory):
    import os
    root = tmp_path_factory.mktemp("results")
    old = {name: os.environ.get(name) for name in ("LABKIT_RESULTS", "LABKIT_CHECKPOINTS")}
    os.environ["LABKIT_RESULTS"] = str(root)
    os.environ["LABKIT_CHECKPOINTS"] = str(tmp_path_factory.mktemp("checkpoints"))
    data = synthetic_cifar10(train_per_class=20, test_per_class=5)
    for name in ("cnn", "resnet18"):
        save_run(fit(TrainConfig(model=name, run_name=name, epochs=2, batch_size=32, val_size=50,
                                 data="synthetic", progress=False), data))
    for name, value in old.items():
        if value is None:
            del os.environ[name]
        else:
            os.environ[name] = value
    return root


def test_report_is_built_from_results_and_reproducible(results_root, tmp_path):
    out = tmp_path / "report.md"
    first = build(results_root, out)
    figures = {p.name: p.read_bytes() for p in (results_root / "figures").glob("*.png")}
    second = build(results_root, out)
    assert first == second
    assert figures == {p.name: p.read_bytes() for p in (results_root / "figures").glob("*.png")}
    assert "- Runs not in `results/` yet, so not reported: plain18, densenet_cifar, se_resnet18, se_resnet18_imagenet_stem." in first
    assert ("final fit on all 50,000 training images (80 epochs, `scripts/real_runs.sh`) of resnet18 is not in "
            "`results/` yet: its headline number below is from the longest run on 45,000 images") in first
    assert "## Provenance" in first and "synthetic" in first
    assert "missing run(s): se_resnet18" in first          # claims needing absent runs say so
    for name in ("cnn_curves.png", "cnn_confusion.png", "comparison_scatter.png"):
        assert name in figures and f"figures/{name}" in first


def test_report_cli_writes_the_file(results_root, tmp_path, capsys):
    out = tmp_path / "r.md"
    assert main(["--results", str(results_root), "--output", str(out)]) == 0
    assert out.read_text().startswith("# CIFAR-10 with four architectures")


def test_a_report_of_other_results_goes_beside_them_not_over_the_committed_one(results_root, monkeypatch):
    """LABKIT_RESULTS (a scratch run's root) exported, then `python -m labkit.report`: the committed
    report.md and README tables stay as they are."""
    from labkit.paths import REPO_ROOT

    monkeypatch.setenv("LABKIT_RESULTS", str(results_root))
    committed = {path: path.read_bytes() for path in (REPO_ROOT / "report.md", REPO_ROOT / "README.md")}
    try:
        assert main([]) == 0
        assert (results_root / "report.md").read_text().startswith("# CIFAR-10 with four architectures")
        assert [path for path, content in committed.items() if path.read_bytes() != content] == []
    finally:
        for path, content in committed.items():
            path.write_bytes(content)


def test_speed_claims_use_the_newest_benchmark_that_measured_both_and_name_it():
    from labkit.reporting.stats import benchmark_speeds

    def bench(date, repeats, rates):
        return {"date": date, "settings": {"repeats": repeats},
                "models": {m: {"fast": {"images_per_s": r}} for m, r in rates.items()}}
    benchmarks = {"older": bench("2026-11-20", 5, {"densenet_cifar": 50.0, "resnet18": 90.0}),
                  "newer": bench("2026-11-28", 1, {"densenet_cifar": 108.0, "resnet18": 97.0}),
                  "newest, densenet only": bench("2026-11-30", 3, {"densenet_cifar": 1.0})}
    assert benchmark_speeds(benchmarks, ("densenet_cifar", "resnet18")) == ([108.0, 97.0], "newer")
    assert benchmark_speeds(benchmarks, ("cnn",)) is None


def test_a_speed_claim_holds_only_where_every_machine_benchmarked_agrees_and_names_each():
    from labkit.reporting.claims import densenet_is_smaller_but_costlier

    def bench(device, date, densenet, resnet, densenet_repeats=None, resnet_repeats=None):
        def fast(median, repeats):
            return {"fast": {"images_per_s": median, **({"runs_images_per_s": repeats} if repeats else {})}}
        return {"device": device, "date": date, "models": {"densenet_cifar": fast(densenet, densenet_repeats),
                                                             "resnet18": fast(resnet, resnet_repeats)}}
    runs = {m: {"metrics": {"model": m, "epochs": 15, "params": p, "flops_per_image": f}}
            for m, p, f in (("densenet_cifar", 1_000_618, 2.5e8), ("resnet18", 11_173_962, 1.1e9))}
    benchmarks = {"xeon": bench("CPU Xeon", "2026-12-02", 99.0, 163.0, [95.0, 99.0, 101.0], [160.0, 163.0, 170.0]),
                  "epyc-old": bench("CPU EPYC", "2026-11-28", 50.0, 90.0),   # that machine's older file: not used
                  "epyc": bench("CPU EPYC", "2026-12-01", 125.0, 110.0)}
    found = densenet_is_smaller_but_costlier(runs, benchmarks)
    assert found["verdict"] == ("partly (fewer parameters, more activation memory per image; not slower on every "
                                "machine measured)")
    assert ("99 vs 163 img/s training (fast path, not compiled) on CPU Xeon (repeats 95–101 vs 160–170, benchmark "
            "`xeon.json`: DenseNet slower); 125 vs 110 img/s training (fast path, not compiled) on CPU EPYC (repeats "
            "125–125 vs 110–110, benchmark `epyc.json`: DenseNet faster);") in found["evidence"]
    agreeing = {**benchmarks, "epyc": bench("CPU EPYC", "2026-12-01", 91.0, 110.0)}
    assert densenet_is_smaller_but_costlier(runs, agreeing)["verdict"] == "supported"
    # a lower median whose repeats overlap the other model's does not rank the two on that machine
    overlapping = {**benchmarks, "epyc": bench("CPU EPYC", "2026-12-01", 91.3, 91.4, [76.1, 91.3, 97.6], [88.0, 91.4, 95.0])}
    found = densenet_is_smaller_but_costlier(runs, overlapping)
    assert found["verdict"].endswith("not slower on every machine measured)")
    assert "(repeats 76–98 vs 88–95, benchmark `epyc.json`: a tie, the repeats overlap)" in found["evidence"]
    assert densenet_is_smaller_but_costlier(runs, {"xeon": benchmarks["xeon"]})["verdict"] == "supported"
    assert densenet_is_smaller_but_costlier(runs, {"epyc": benchmarks["epyc"]})["verdict"] == (
        "partly (fewer parameters, more activation memory per image; not slower)")     # one machine: no 'every'
    # one machine ranks by its repeats too: a lower median inside the other model's spread is no 'slower'
    found = densenet_is_smaller_but_costlier(runs, {"epyc": overlapping["epyc"]})
    assert found["verdict"].endswith("; not slower)") and "a tie, the repeats overlap" in found["evidence"]
    # where both models' compiled fast path was measured in the same file, its speeds are named too
    compiled = {"epyc": bench("CPU EPYC", "2026-12-04", 212.0, 210.0)}
    for model, speed in (("densenet_cifar", 253.0), ("resnet18", 207.0)):
        compiled["epyc"]["models"][model]["compiled"] = {"images_per_s": speed}
    assert "DenseNet faster; compiled, 253 vs 207)" in densenet_is_smaller_but_costlier(runs, compiled)["evidence"]


def test_speeds_in_claims_come_from_a_benchmark_when_one_measured_both_models():
    import pandas as pd

    from labkit.reporting.stats import training_speeds
    # runs from different days: the same FLOPs trained at 180 and 93 img/s
    runs = {"se_resnet18": {"history": pd.DataFrame({"images_per_s": [180.0]})},
            "resnet18": {"history": pd.DataFrame({"images_per_s": [93.0]})}}
    both = {"b": {"date": "2026-11-30", "settings": {"repeats": 3},
                  "models": {"se_resnet18": {"fast": {"images_per_s": 95.0}},
                             "resnet18": {"fast": {"images_per_s": 98.0}}}}}
    assert training_speeds(runs, both, ("se_resnet18", "resnet18")) == ([95.0, 98.0], "benchmark `b.json`, measured alone")
    assert training_speeds(runs, None, ("se_resnet18", "resnet18")) == ([180.0, 93.0], "training runs, median epoch, possibly on different machines")


def test_typical_speed_ignores_epochs_slowed_by_other_jobs():
    import pandas as pd

    from labkit.reporting.stats import typical_images_per_s
    history = pd.DataFrame({"images_per_s": [33.0, 35.0, 98.0, 104.0, 101.0]})
    assert typical_images_per_s({"history": history}) == 98.0


def test_epochs_to_accuracy_counts_a_lead_only_beyond_val_noise():
    import pandas as pd

    from labkit.reporting.stats import race_to

    def curve(*accs):
        return pd.DataFrame({"epoch": range(1, len(accs) + 1), "val_acc": accs})
    se, plain = curve(0.80, 0.850), curve(0.79, 0.847)        # SE crosses 85% one epoch early, by 0.3 points
    assert race_to(0.85, se, plain, 5000)[0] == 0
    assert "within 2 SE" in race_to(0.85, se, plain, 5000)[1]
    assert race_to(0.85, curve(0.80, 0.86), curve(0.79, 0.80, 0.85), 5000)[0] == 1    # 6 points ahead
    assert race_to(0.85, curve(0.80, 0.80, 0.85), curve(0.80, 0.86), 5000)[0] == -1
    assert race_to(0.85, curve(0.80, 0.86), curve(0.80), 5000)[0] == 1        # the other stops short
    assert race_to(0.80, curve(0.80), curve(0.81), 5000) == (0, "val 80%: epoch 1 vs 1")
    assert race_to(0.90, se, plain, 5000) == (0, "val 90%: reached by neither")
    assert "(at epoch 2: ResNet ahead by 1.0 points" in race_to(0.85, curve(0.80, 0.84, 0.85), curve(0.80, 0.85),
                                                                 5000, ("SE", "ResNet"))[1]


def test_the_seed_spread_is_measured_where_a_recipe_ran_with_several_seeds():
    from labkit.reporting.claims import seed_noise
    assert seed_noise({"cnn": fake_run("cnn", 60, 0.75)}) is None
    runs = {f"cnn-60ep-seed{i}": fake_run("cnn", 60, accuracy, i) for i, accuracy in enumerate((0.750, 0.755, 0.760))}
    noise = seed_noise(runs)
    assert noise["seeds"] == 3 and noise["sd"] == pytest.approx(0.005)
    se = (0.755 * 0.245 / 10_000) ** 0.5
    assert noise["gap"] == pytest.approx(2 * (2 * (se ** 2 + 0.005 ** 2)) ** 0.5)
    assert f"a gap needs about {noise['gap'] * 100:.1f} points" in markdown.seed_noise_sentence(runs)


def analysed(curves: dict[str, list[float]]) -> dict:
    """A run's analysis summary with one accuracy per severity for each corruption in `curves`."""
    return {"settings": {"corruption_size": 1000},
            "corruptions": {"accuracy": {c: {str(i + 1): v for i, v in enumerate(a)} for c, a in curves.items()}}}


def test_a_severity_reversal_is_reported_when_every_model_shows_it_and_said_whether_beyond_the_noise():
    rising = [0.80, 0.70, 0.80, 0.70, 0.60]                     # severity 3 ten points above 2
    summaries = {"a": analysed({"saturate": rising}), "b": analysed({"saturate": [v - 0.05 for v in rising]})}
    text = markdown.severity_reversals(summaries)
    assert "(* beyond two standard errors for every model, the others not for each): saturate 3 over 2* (+10.0 to " \
        "+10.0 points) ((scale, shift) of the saturation" in text
    summaries["b"] = analysed({"saturate": [0.80, 0.70, 0.72, 0.70, 0.60]})   # +2 points: within the noise
    text = markdown.severity_reversals(summaries)
    assert "in these steps, though not beyond two standard errors for each: saturate 3 over 2 (+2.0 to +10.0" in text
    assert "twice" not in text                                  # no JPEG base recorded: no double compression
    summaries["b"] = analysed({"saturate": [0.80, 0.70, 0.69, 0.70, 0.60]})   # b gets worse: no reversal
    assert markdown.severity_reversals(summaries) == ""
    jpeg = {name: {**analysed({"jpeg_compression": [0.9, 0.85, 0.8, 0.7, 0.75]}), "data_location": "x-jpeg.tar.gz"}
            for name in "ab"}
    assert "so JPEG at another quality compresses them twice" in markdown.severity_reversals(jpeg)


def test_test_accuracy_claims_need_a_gap_beyond_two_standard_errors():
    from labkit.reporting.claims import claims

    def runs(**accs):
        return {n: {"metrics": {"model": n, "epochs": 15, "test_accuracy": a, "test_images": 10_000, "flops_per_image": 1e9}}
                for n, a in accs.items()}

    def verdict(claim_start, found):
        return next(c["verdict"] for c in found if c["claim"].startswith(claim_start))
    # 2 SE of the difference near 85 % on 10,000 test images is about 1.0 point
    assert verdict("The deep networks", claims(runs(cnn=0.72, resnet18=0.89))) == "supported"
    assert verdict("The deep networks", claims(runs(cnn=0.850, resnet18=0.855))) == "not supported"
    assert verdict("The ImageNet stem", claims(runs(se_resnet18_imagenet_stem=0.835, se_resnet18=0.89))) == "supported"
    assert verdict("The ImageNet stem", claims(runs(se_resnet18_imagenet_stem=0.885, se_resnet18=0.89))) \
        == "no difference beyond test noise"
    assert verdict("The ImageNet stem", claims(runs(se_resnet18_imagenet_stem=0.91, se_resnet18=0.89))) \
        == "not supported"
    # the shortcuts are judged on ResNet-18 against itself without them, not against the CNN
    assert verdict("Residual connections help", claims(runs(cnn=0.72, resnet18=0.89))) == "missing"
    assert verdict("Residual connections help", claims(runs(resnet18=0.89, plain18=0.86))) == "supported"
    assert verdict("Residual connections help", claims(runs(resnet18=0.89, plain18=0.893))) \
        == "no difference beyond test noise"


def test_broken_files_are_left_out_with_a_warning_naming_them(results_root, tmp_path):
    import shutil

    root = tmp_path / "results"
    shutil.copytree(results_root, root)
    metrics = root / "resnet18" / "metrics.json"
    metrics.write_text(metrics.read_text()[:50])
    for folder in ("benchmarks", "tuning"):
        (root / folder).mkdir(exist_ok=True)
        (root / folder / "cut.json").write_text('{"models": {"cnn": ')
    with pytest.warns(UserWarning, match="skipped"):
        text = build(root, tmp_path / "report.md")
    assert "**Left out, broken files**" in text
    assert f"run resnet18 skipped: {metrics} is not valid JSON" in text
    for folder in ("benchmarks", "tuning"):
        assert f"{root / folder / 'cut.json'} skipped: not valid JSON" in text
    assert "## CNN" in text and "## ResNet-18" not in text       # the intact run is still reported


def figure_title(fig) -> str:
    return " | ".join(filter(None, [fig._suptitle.get_text() if fig._suptitle else ""] +
                             [ax.get_title() for ax in fig.axes]))


def test_every_embedded_figure_exists_and_report_figures_have_distinct_titles(results_root, tmp_path, monkeypatch):
    import re

    titles = {}
    original = save
    monkeypatch.setattr(markdown, "save", lambda fig, path: titles.setdefault(path.name, figure_title(fig))
                        and original(fig, path))
    out = tmp_path / "report.md"
    text = build(results_root, out)
    embedded = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert embedded and all((out.parent / link).is_file() for link in embedded), embedded
    assert all(titles.values()) and len(set(titles.values())) == len(titles), titles


def test_the_report_opens_with_its_summary_and_has_every_section_in_order(results_root, tmp_path):
    import re

    text = build(results_root, tmp_path / "report.md")
    headings = re.findall(r"^#{1,2} (.+)$", text, flags=re.M)
    assert headings[1] == "Summary"
    order = ["Summary", "Set-up", "Comparison", "Discussion: the lab report's claims against these numbers",
             "Conclusions", "Limitations", "References", "Appendix", "Provenance"]
    positions = [next(i for i, h in enumerate(headings) if h.startswith(name)) for name in order]
    assert positions == sorted(positions), headings
    blocks = text.split("\n\n")
    figures = [i for i, block in enumerate(blocks) if block.startswith("![")]
    assert figures
    for i in figures:                            # every figure has a sentence under it saying what it shows
        assert not blocks[i + 1].startswith(("![", "#", "|")), blocks[i + 1]


def test_the_committed_report_has_no_table_cell_over_120_characters_and_its_figures_at_150_dpi():
    import re

    from PIL import Image

    from labkit.paths import REPO_ROOT

    text = (REPO_ROOT / "report.md").read_text()
    cells = [cell.strip() for line in text.splitlines() if line.startswith("|") for cell in line.strip("|").split("|")]
    figures = [REPO_ROOT / link for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)]
    assert cells and max(map(len, cells)) <= 120, max(cells, key=len)
    assert figures
    for path in figures:
        with Image.open(path) as image:
            dpi = image.info.get("dpi", (0, 0))[0]
        assert round(dpi) >= 150, f"{path} is at {dpi} dpi"


def test_activation_memory_per_image_does_not_depend_on_the_batch_size():
    from labkit.models import build_model
    from labkit.models.inspect import activation_memory

    for name in ("cnn", "resnet18"):
        sizes = [activation_memory(build_model(name), batch) for batch in (2, 8)]
        assert abs(sizes[0] - sizes[1]) < 0.01 * sizes[1], (name, sizes)


def fake_run(model: str, epochs: int, accuracy: float, seed: int = 0) -> dict:
    return {"metrics": {"model": model, "epochs": epochs, "test_accuracy": accuracy, "test_accuracy_no_tta": accuracy - 0.01,
                        "final_val_accuracy": accuracy - 0.005, "test_images": 10_000, "train_images": 45_000,
                        "config": {"seed": seed}}}


def test_the_lab_report_table_takes_the_longest_budget_and_the_mean_over_its_seeds():
    from labkit.reporting.figures import budget_figure
    from labkit.reporting.tables import lab_report_table
    runs = {"resnet18": fake_run("resnet18", 15, 0.89), "resnet18-40ep": fake_run("resnet18", 40, 0.93),
            "cnn-60ep": fake_run("cnn", 60, 0.75), "cnn-60ep-seed1": fake_run("cnn", 60, 0.77, 1),
            "cnn-60ep-seed2": fake_run("cnn", 60, 0.76, 2), "cnn": fake_run("cnn", 30, 0.72)}
    table = lab_report_table(runs)
    assert list(table.index) == ["cnn", "resnet18"]             # the report's model order, not the runs' order
    assert table.loc["resnet18", "run"] == "resnet18-40ep" and table.loc["resnet18", "seeds"] == 1
    assert table.loc["resnet18", "train images"] == "45,000"
    assert table.loc["resnet18", "verdict"] == "ours higher by 2.00 points without TTA"   # 0.92 without TTA against 0.90
    assert table.loc["cnn", "our test acc"] == pytest.approx(0.76) and table.loc["cnn", "seeds"] == 3
    assert table.loc["cnn", "test acc sd over seeds"] == pytest.approx(0.01)
    assert table.loc["cnn", "verdict"] == "no claim to check"
    lines = budget_figure(runs).axes[0].lines
    no_tta = sorted(round(float(line.get_ydata()[0]), 4) for line in lines if line.get_marker() == "v" and len(line.get_ydata()))
    assert no_tta == [0.71, 0.75, 0.88, 0.92]      # each budget's accuracy without TTA, the seeds' mean for the CNN's 60


def test_a_budget_with_several_recipes_is_represented_by_the_best_on_val_not_on_test():
    from labkit.reporting.markdown import recipes_line
    from labkit.reporting.select import budget_groups, longest_runs, recipe_variants, runs_by_model
    plain = fake_run("resnet18", 40, 0.915)
    cutout = fake_run("resnet18", 40, 0.910)          # worse on test, better on val: val decides
    cutout["metrics"]["config"]["cutout"] = 12
    cutout["metrics"]["final_val_accuracy"] = 0.915
    seed1 = fake_run("resnet18", 40, 0.92, seed=1)    # plain recipe, another seed: same recipe group
    runs = {"resnet18-40ep": plain, "resnet18-40ep-seed1": seed1, "resnet18-40ep-cutout12": cutout,
            "resnet18": fake_run("resnet18", 15, 0.89)}
    entries = runs_by_model(runs)["resnet18"]
    _, (epochs, recipes) = recipe_variants(entries)
    assert epochs == 40 and [[n for n, _ in g] for g in recipes] == [["resnet18-40ep", "resnet18-40ep-seed1"],
                                                                     ["resnet18-40ep-cutout12"]]
    assert [n for n, _ in budget_groups(entries)[-1][1]] == ["resnet18-40ep-cutout12"]
    assert "resnet18-40ep-cutout12" in longest_runs(runs)
    line = recipes_line("resnet18-40ep-cutout12", cutout, runs)
    assert line == ["- recipe chosen on val among the runs at 40 epochs; the other recipes: resnet18-40ep, "
                    "resnet18-40ep-seed1 (cutout 0): val 91.25%, test 91.75%"]
    assert recipes_line("resnet18", runs["resnet18"], runs) == []


def test_the_tuning_section_names_the_trial_each_run_took_its_recipe_from(tmp_path):
    import json

    def trial(val_accuracy, **overrides):
        return {"overrides": overrides, "config": {"model": "resnet18", "val_size": 5000, **overrides},
                "final_val_accuracy": val_accuracy, "val_accuracy_by_epoch": [val_accuracy],
                "training_wall_time_s": 60.0, "images_per_s": 100.0}

    (tmp_path / "tuning").mkdir()
    for stem, trials in (("resnet18-4ep", [trial(0.82), trial(0.83, lr=0.05)]),
                         ("resnet18-10ep", [trial(0.87), trial(0.88, ema_decay=0.997)])):
        epochs = int(stem.split("-")[1][:-2])
        (tmp_path / "tuning" / f"{stem}.json").write_text(json.dumps({"model": "resnet18", "epochs": epochs,
                                                                      "trials": trials}))

    def run(model="resnet18", **settings):
        return {"metrics": {"config": {"model": model, "val_size": 5000, **settings}}}
    every_run = {"cnn": run("cnn"), "resnet18": run(), "resnet18-40ep": run(ema_decay=0.997),
                 "resnet18-40ep-cutout12": run(ema_decay=0.997, cutout=12),
                 "resnet18-far": run(ema_decay=0.997, cutout=12, lr=0.2), "broken": None}
    section = "\n".join(tuning_section(tmp_path, every_run=every_run))
    short, long = section.split("## Recipe tuning: resnet18, 10-epoch trials")       # shorter horizon first
    assert "## Recipe tuning: resnet18, 4-epoch trials" in short
    # a run one setting away from a 4-epoch trial but exactly a 10-epoch trial's recipe is named only there
    assert "Runs in results/ by the trial whose recipe they use: 'base recipe': resnet18." in short
    assert "the other trial is within two standard errors of it, so one seed does not tell the two apart" in short
    assert long.rstrip().endswith(
        "Runs in results/ by the trial whose recipe they use: 'base recipe': resnet18; 'ema_decay 0.997': "
        "resnet18-40ep; 'ema_decay 0.997' with cutout 12: resnet18-40ep-cutout12.")


def test_the_speed_table_keeps_the_newest_measurement_of_each_setting_and_lists_older_files():
    from labkit.reporting.tables import latest_benchmarks

    def bench(date, batch, speeds):
        return {"device": "CPU", "date": date, "settings": {"batch_size": batch, "steps": 5},
                "matmul_peak_gflops": {"fp32": 100.0, "bf16": 250.0},
                "models": {m: {"reference": {"images_per_s": r}, "fast": {"images_per_s": f}} for m, (r, f) in speeds.items()}}
    benches = {"old": bench("2026-11-01", 128, {"resnet18": (30.0, 60.0), "cnn": (1000.0, 2000.0)}),
               "new": bench("2026-11-20", 128, {"resnet18": (40.0, 100.0)}),
               "big": bench("2026-11-10", 256, {"resnet18": (35.0, 90.0)})}
    table, older = latest_benchmarks(benches)
    assert table.loc[("resnet18", 128, "fast"), "img/s"] == "100"
    assert table.loc[("resnet18", 128, "fast"), "× reference"] == "×2.50"
    assert table.loc[("resnet18", 256, "fast"), "file"] == "big.json"
    assert table.loc[("cnn", 128, "fast"), "file"] == "old.json"     # only the old file measured it
    assert older == [] and len(table) == 6
    del benches["old"]["models"]["cnn"]
    assert latest_benchmarks(benches)[1] == ["old"]
    # a file that measured the convolution too shares each row against the faster peak, and says so
    benches["new"]["conv_peak_gflops"] = {"fp32": 200.0, "bf16": 300.0}
    benches["new"]["models"]["resnet18"]["fast"].update(achieved_gflops=150.0, precision="bf16")
    table, _ = latest_benchmarks(benches)
    assert table.loc[("resnet18", 128, "fast"), "share of its peak"] == pytest.approx(0.5)
    assert table.loc[("resnet18", 128, "fast"), "peak from"] == "matmul, conv"
    assert table.loc[("resnet18", 256, "fast"), "peak from"] == "matmul"


def test_each_model_is_represented_by_its_longest_run_and_the_notebook_run_among_seeds(tmp_path):
    from labkit.reporting.select import longest_runs
    runs = {"resnet18": fake_run("resnet18", 15, 0.89), "resnet18-40ep": fake_run("resnet18", 40, 0.93),
            "cnn": fake_run("cnn", 30, 0.72), "cnn-60ep-seed1": fake_run("cnn", 60, 0.77, 1),
            "cnn-60ep": fake_run("cnn", 60, 0.75), "densenet_cifar": None}
    (tmp_path / "cnn-60ep").mkdir()
    (tmp_path / "cnn-60ep" / "notebook.ipynb").write_text("{}")
    runs["cnn-60ep"]["folder"] = tmp_path / "cnn-60ep"
    chosen = longest_runs(runs)
    assert list(chosen) == ["cnn-60ep", "resnet18-40ep", "plain18", "densenet_cifar", "se_resnet18",
                            "se_resnet18_imagenet_stem"]
    assert chosen["densenet_cifar"] is None and chosen["resnet18-40ep"]["metrics"]["epochs"] == 40
    del runs["cnn-60ep"]["folder"]        # no notebook run among the seeds: the first by name
    assert "cnn-60ep" in longest_runs(runs)


def test_claims_take_one_run_per_model_and_compare_only_equal_budgets():
    from labkit.reporting.claims import claims

    def run(model, epochs, accuracy):
        return {"metrics": {**fake_run(model, epochs, accuracy)["metrics"], "flops_per_image": 1e9}}

    def verdict(claim_start, found):
        return next(c for c in found if c["claim"].startswith(claim_start))
    found = claims({"cnn-60ep": run("cnn", 60, 0.75), "resnet18-40ep": run("resnet18", 40, 0.93),
                    "se_resnet18_imagenet_stem-40ep": run("se_resnet18_imagenet_stem", 40, 0.87),
                    "se_resnet18": run("se_resnet18", 15, 0.89)})
    assert verdict("The deep networks", found)["verdict"] == "supported"
    assert "resnet18 93.00% vs cnn 75.00%" in verdict("The deep networks", found)["evidence"]
    stem = verdict("The ImageNet stem", found)
    assert stem["verdict"] == "not comparable yet"
    assert stem["evidence"] == "se_resnet18_imagenet_stem vs se_resnet18 trained for 40 vs 15 epochs"
    with pytest.raises(ValueError, match="resnet18 has two: resnet18 and resnet18-40ep"):
        claims({"resnet18": run("resnet18", 15, 0.89), "resnet18-40ep": run("resnet18", 40, 0.93)})


def test_a_claim_the_longest_runs_cannot_settle_is_judged_at_the_longest_budget_its_models_share():
    from labkit.reporting.claims import claims_where_comparable
    from labkit.reporting.markdown import control_line
    from labkit.reporting.select import longest_runs

    def run(model, epochs, accuracy, **config):
        metrics = fake_run(model, epochs, accuracy)["metrics"]
        return {"metrics": {**metrics, "flops_per_image": 1e9, "config": {**metrics["config"], **config}}}

    def verdict(every_run, claim="Residual connections help"):
        found = claims_where_comparable(longest_runs(every_run), every_run)
        return next(c for c in found if c["claim"].startswith(claim))
    every_run = {"resnet18": run("resnet18", 15, 0.89), "plain18": run("plain18", 15, 0.86),
                 "resnet18-40ep": run("resnet18", 40, 0.93)}
    judged = verdict(every_run)
    assert judged["verdict"] == "supported" and judged["on"] == "the 15-epoch runs, whose budgets match"
    assert judged["longest"] == "resnet18 vs plain18 trained for 40 vs 15 epochs"
    assert judged["evidence"] == ("test 89.00% with shortcuts vs 86.00% without (+3.0 points, 2 SE = 0.9); one seed "
                                  "each; same widths, batch norm and budget, and the same recipe")
    # the longest shared budget, not the first: the stem claim at 40 epochs although both models ran 15 too
    stems = {"se_resnet18_imagenet_stem": run("se_resnet18_imagenet_stem", 15, 0.80),
             "se_resnet18": run("se_resnet18", 15, 0.89), "se_resnet18_imagenet_stem-40ep":
             run("se_resnet18_imagenet_stem", 40, 0.86), "se_resnet18-40ep": run("se_resnet18", 40, 0.92),
             "se_resnet18-80ep-final": {"metrics": {**run("se_resnet18", 80, 0.94)["metrics"],
                                                    "final_val_accuracy": None}}}
    stem = verdict(stems, "The ImageNet stem")
    assert stem["on"] == "the 40-epoch runs, whose budgets match" and "86.00%" in stem["evidence"]
    unsettled = verdict({"resnet18-40ep": every_run["resnet18-40ep"], "plain18": every_run["plain18"]})
    assert unsettled["verdict"] == "not comparable yet" and "on" not in unsettled
    assert "on" not in verdict({"resnet18": every_run["resnet18"], "plain18": every_run["plain18"]})

    assert control_line(every_run["plain18"], every_run) == [
        "- against `resnet18`, the same network with its shortcuts: supported; test 89.00% with shortcuts vs 86.00% "
        "without (+3.0 points, 2 SE = 0.9); one seed each; same widths, batch norm and budget, and the same recipe"]
    assert control_line(every_run["resnet18"], every_run) == []
    with_val = {m: {"metrics": {**r["metrics"], "val_images": 5000}} for m, r in every_run.items()}
    line = control_line(with_val["plain18"], with_val)[0]        # val 88.50 vs 85.50 %: beyond its noise too
    assert ": supported; " in line and "final val 88.50% vs 85.50% (+3.0, 2 SE = 1.3)" in line
    elsewhere = {**every_run, "plain18": {"metrics": {**every_run["plain18"]["metrics"], "device": "CPU Intel Xeon (2 cores)"}}}
    assert control_line(elsewhere["plain18"], elsewhere)[0].endswith(
        "and the same recipe; trained on an unnamed machine and CPU Intel Xeon (2 cores)")
    with_val["plain18"]["metrics"]["final_val_accuracy"] = 0.882
    assert ": supported on test only (val within its noise); " in control_line(with_val["plain18"], with_val)[0]
    other = {**every_run, "plain18": run("plain18", 15, 0.86, cutout=12)}
    assert control_line(other["plain18"], other)[0].endswith("but not the same recipe (plain18: cutout 12)")

    # a test gap beyond the test images' noise but under the seeds' spread is qualified, wherever it is shown
    def with_cnn_seeds(accuracies):
        return {**every_run, **{f"cnn-60ep-seed{i}": fake_run("cnn", 60, a, i) for i, a in enumerate(accuracies)}}
    spread = with_cnn_seeds((0.70, 0.72, 0.74))                   # sd 2 points: two single runs may differ by 5.8
    qualified = "supported, not beyond the seed-and-test noise of two single-seed runs (5.8 points)"
    assert verdict(spread)["verdict"] == qualified
    assert f": {qualified}; test 89.00%" in control_line(spread["plain18"], spread)[0]
    assert verdict(with_cnn_seeds((0.750, 0.751, 0.752)))["verdict"] == "supported"    # 3.0 points beyond 1.2
    # beyond the test noise only, neither the val noise nor the seeds': not conclusive either way
    close_val = {"plain18": {"metrics": {**with_val["plain18"]["metrics"], "final_val_accuracy": 0.882}}}
    spread_val = {**with_val, **close_val, **{n: r for n, r in spread.items() if n.startswith("cnn-60ep-seed")}}
    assert verdict(spread_val)["verdict"] == ("not conclusive: beyond the test noise only, within the val noise "
                                              "(2 SE = 1.3 points) and the seed-and-test noise of two single-seed "
                                              "runs (5.8 points)")


def test_the_report_shows_each_models_longest_run_its_seeds_and_the_claims_at_both_budgets(results_root, tmp_path):
    import json
    import re
    import shutil

    root = tmp_path / "results"
    shutil.copytree(results_root, root)
    build(root, tmp_path / "report.md")
    assert (root / "figures" / "cnn_curves.png").is_file()
    for name, seed, shift in (("cnn-60ep", 0, 0.0), ("cnn-60ep-seed1", 1, 0.02)):
        shutil.copytree(root / "cnn", root / name)        # stand-ins for longer runs: only the budget differs
        metrics = json.loads((root / name / "metrics.json").read_text())
        metrics.update(epochs=60, test_accuracy=metrics["test_accuracy"] + shift,
                       config={**metrics["config"], "seed": seed})
        (root / name / "metrics.json").write_text(json.dumps(metrics))
    (root / "cnn-60ep" / "notebook.ipynb").write_text("{}")
    text = build(root, tmp_path / "report.md")
    cnn_section = text.split("## CNN")[1].split("\n## ")[0]
    assert "Run `cnn-60ep`:" in cnn_section and "over 2 seeds at 60 epochs (cnn-60ep, cnn-60ep-seed1)" in cnn_section
    comparison = text.split("## Comparison")[1].split("\n## ")[0]
    assert "`cnn-60ep` is one of 2 seeds at its budget; their mean, which the summary and conclusions give, is " \
           in comparison and "`resnet18` is one of" not in comparison
    assert re.search(r"### On each model's longest run \((\w[^;]*; )?epochs: cnn-60ep 60, resnet18 2\)", text)
    assert re.search(r"### On the first runs \((\w[^;]*; )?epochs: cnn 2, resnet18 2\)", text)
    assert "figures/cnn-60ep_curves.png" in text and "figures/cnn_curves.png" not in text
    figures = {p.name for p in (root / "figures").glob("*.png")}      # the shorter run's figures are gone
    assert "cnn-60ep_curves.png" in figures and not {n for n in figures if n.startswith("cnn_")}

    # the control, at the first ResNet-18 run's budget, while ResNet-18's longest run is longer
    for name, model, epochs in (("plain18", "plain18", 2), ("resnet18-4ep", "resnet18", 4)):
        shutil.copytree(root / "resnet18", root / name)
        metrics = json.loads((root / name / "metrics.json").read_text())
        metrics.update(model=model, epochs=epochs, config={**metrics["config"], "model": model})
        (root / name / "metrics.json").write_text(json.dumps(metrics))
    text = build(root, tmp_path / "report.md")
    assert "Six networks trained from scratch" in text and "the same network with its shortcuts removed (plain18" in text
    control = text.split("## ResNet-18, no shortcuts (control)")[1].split("\n## ")[0]
    assert "- against `resnet18`, the same network with its shortcuts: " in control
    assert "plain18_vs_resnet18.png)" in control and (root / "figures" / "plain18_vs_resnet18.png").is_file()
    assert "`resnet18` has the lower train loss in 0 of 2 epochs and the higher val accuracy in 0." in control  # copies
    conclusions = text.split("## Conclusions")[1].split("\n## ")[0]
    assert "ResNet-18, no shortcuts" in conclusions and "(4 epochs)" in conclusions
    assert "(60 epochs, mean of 2 seeds)" in conclusions
    assert re.search(r"without its shortcuts \(plain18\): \*\*[^*]+\*\* \(on the 2-epoch runs, whose budgets match\)",
                     conclusions)
    assert "; judged on the 2-epoch runs, whose budgets match (on the longest runs: resnet18 vs plain18 trained for 4 " \
           "vs 2 epochs)" in text.split("## Discussion")[1]


def test_a_final_fit_without_a_val_split_is_read_reported_and_stands_for_its_budget(tmp_path, monkeypatch):
    """Issue 29: a run on all training images (val_size 0) has no val figures; every reader copes,
    and at its budget it stands before a run of another recipe that has val."""
    import shutil

    from labkit.reporting.select import load_every_run, longest_runs
    from labkit.reporting.tables import comparison_table, headline_table, lab_report_table
    from labkit.robustness.suite import AnalysisSettings, analyse_runs

    root = tmp_path / "results"
    monkeypatch.setenv("LABKIT_RESULTS", str(root))
    data = synthetic_cifar10(train_per_class=20, test_per_class=5)
    common = dict(model="cnn", epochs=2, batch_size=32, data="synthetic", progress=False)
    save_run(fit(TrainConfig(run_name="cnn-final", val_size=0, **common), data))
    save_run(fit(TrainConfig(run_name="cnn-val", val_size=50, cutout=4, **common), data))
    every_run = load_every_run(root)
    final = every_run["cnn-final"]["metrics"]
    assert final["final_val_accuracy"] is None and final["val_images"] == 0 and final["train_images"] == 200
    assert list(longest_runs(every_run))[0] == "cnn-final"
    for table in (comparison_table(every_run), lab_report_table(every_run), headline_table(every_run)):
        assert len(table)
    text = build(root, tmp_path / "report.md")
    assert "trained on all 200 training images (no validation split)" in text
    assert "cnn-val (cutout 4): val" in text                      # the other recipe at that budget, by its val
    # the analysis of a final fit: no val split, so no temperature is fitted (never on test); the rest runs
    settings = AnalysisSettings(calibration_size=50, corruption_size=20, attack_size=10, epsilons=(1.0,))
    [analysis] = analyse_runs(["cnn-final"], data, settings, save=True).values()
    calibration = analysis.summary["calibration"]
    assert calibration["temperature"] is None and calibration["after"] is None and calibration["bins_before"]
    assert analysis.summary["val_images"] == 0 and analysis.summary["corruptions"]["accuracy"]
    text = build(root, tmp_path / "report.md")
    assert "cnn-final trained on all training images, so no T can be fitted" in text
    shutil.rmtree(root)


@pytest.mark.skipif(not __import__("shutil").which("chromium"), reason="Chromium is not installed (apt-get install chromium)")
def test_the_report_prints_to_a_pdf_with_its_figures(results_root, tmp_path):
    out = tmp_path / "report.md"
    assert main(["--results", str(results_root), "--output", str(out), "--pdf"]) == 0
    pdf = out.with_suffix(".pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 50_000          # text alone would be a few kB: figures are in
    assert not list(tmp_path.glob(".*.html"))                      # the page it printed is cleaned up


def test_a_leader_is_named_only_beyond_the_noise_and_findings_say_which_noise_a_gap_clears():
    import pandas as pd

    from labkit.reporting.overview import lab_report_findings, leader

    assert leader({"a": 0.80, "b": 0.70}, 1000) == "highest: a, 10.0 points ahead of b (2 SE = 3.8)"
    assert leader({"a": 0.112, "b": 0.085}, 1000) == "highest: a, 2.70 points ahead of b (2 SE = 2.66)"
    assert leader({"a": 0.775, "b": 0.768}, 1000) == "a is the best, not ahead of b beyond the noise (2 SE = 3.8 points)"
    assert leader({"a": 0.5}, 1000) == "highest: a"

    def group(tta, no_tta):
        return [("run", {"metrics": {"test_accuracy": tta, "test_accuracy_no_tta": no_tta, "test_images": 10_000,
                                     "epochs": 40}})]
    seeds = {"gap": 0.017}
    above, below = lab_report_findings({"resnet18": group(0.918, 0.9092), "densenet_cifar": group(0.906, 0.9006)},
                                       seeds, jpeg=True)
    assert "90.92% without TTA: +0.92 points, above the lab report's 90%" in above
    assert "beyond the test noise (2 SE = 0.57 points) but within the 1.7 points" in above
    final = [("run", {"metrics": {**group(0.9237, 0.9185)[0][1]["metrics"], "epochs": 80, "train_images": 50_000,
                                  "val_images": 0}})]
    [level] = lab_report_findings({"densenet_cifar": final}, seeds, jpeg=True)
    assert level.startswith("DenseNet (k=12) reaches 92.37% after 80 epochs on all 50,000 training images, 91.85% "
                            "without TTA: -0.15 points, level with the lab report's 92%")
    assert level.endswith("within the test noise (2 SE on 10,000 images = 0.55 points).")
    assert "-1.94 points, below the lab report's 92%" in below and below.endswith("need not be the architecture's.")
    rising = pd.DataFrame({"epoch": [1, 2, 3], "val_acc": [0.80, 0.88, 0.89]})
    densenet = [("run", {**group(0.906, 0.9006)[0][1], "history": rising})]
    [below] = lab_report_findings({"densenet_cifar": densenet}, seeds, jpeg=False)
    assert below.endswith("Its val accuracy was still rising at its last epoch (89.00% at epoch 3), so a longer "
                          "budget may close part of the gap.")
    densenet[0][1]["history"] = rising.assign(val_acc=[0.80, 0.90, 0.89])    # peaked before the end
    assert "still rising" not in lab_report_findings({"densenet_cifar": densenet}, seeds, jpeg=False)[0]
    [level] = lab_report_findings({"resnet18": group(0.905, 0.9020)}, seeds, jpeg=False)
    assert "level with the lab report's 90%" in level and level.endswith("= 0.59 points).")


def test_trials_that_ended_after_a_run_started_check_its_recipe_rather_than_choose_it():
    from labkit.reporting.markdown import started_before_trials_ended, tuning_conclusion

    def trial(val, **overrides):
        return {"overrides": overrides, "final_val_accuracy": val, "config": {"val_size": 5000},
                "date": "2026-12-01T12:00:00+00:00"}
    log = {"trials": [trial(0.83, cutout=12, exempt=True), trial(0.82, cutout=12)]}

    def run(end, hours):
        return {"metrics": {"date": end, "training_wall_time_s": hours * 3600}}
    assert started_before_trials_ended(run("2026-11-30T12:00:00+00:00", 3), log)
    assert started_before_trials_ended(run("2026-12-01T14:00:00+00:00", 3), log)     # started at 11:00
    assert not started_before_trials_ended(run("2026-12-01T20:00:00+00:00", 3), log)
    assert not started_before_trials_ended({"metrics": {}}, log)
    adopted = [("old-run", "cutout 12", {})]
    text = tuning_conclusion(log, adopted, {"old-run"})
    assert "old-run (started before these trials ended)" in text and "did not choose it." in text
    assert "not adopted" not in text
    text = tuning_conclusion(log, adopted, set())
    assert "The best trial (2 settings changed) was not adopted" in text and "did not choose" not in text
    assert "a recipe already in use is kept unless another wins beyond the noise" in text


def test_the_tuning_reading_says_why_a_recipe_within_the_noise_stays_and_when_a_simpler_one_leads_beyond_it():
    from labkit.reporting.markdown import tuning_conclusion

    def trial(val, **overrides):
        return {"overrides": overrides, "final_val_accuracy": val, "config": {"val_size": 5000}}
    # the recipe in use changes more settings than the best, within the noise: it stays, for the same reason
    log = {"trials": [trial(0.83, lr=0.2), trial(0.825, lr=0.2, cutout=12)]}
    assert ("The best trial (1 setting changed) was not adopted: its lead over 'cutout 12, lr 0.2' (2 settings "
            "changed) is within the noise, and a recipe already in use is kept unless another wins beyond the noise") in \
        tuning_conclusion(log, [("run", "cutout 12, lr 0.2", {})])
    # a simpler trial well ahead of the adopted one: beyond the noise, said so
    log = {"trials": [trial(0.80), trial(0.70, cutout=12)]}
    text = tuning_conclusion(log, [("run", "cutout 12", {})])
    assert "scored 10.00 points below 'base recipe'" in text and "beyond the noise" in text
    log = {"trials": [trial(0.80), trial(0.795, cutout=12)]}
    assert "within the noise, so these trials neither support" in tuning_conclusion(log, [("run", "cutout 12", {})])


def test_labels_of_points_that_coincide_are_moved_apart_and_joined_to_their_points():
    import matplotlib.pyplot as plt

    from labkit.reporting.figures import label_points

    # room on both sides of the pair (below is preferred: its line then crosses no label), the pair at the
    # bottom of the axes, the pair at the top
    for cnn, others, where in ((0.5, [1.5], "below"), (1.5, [], "above"), (0.5, [], "below")):
        fig, ax = plt.subplots()
        ax.scatter([1, 1.01, 5] + [8] * len(others), [0.918, 0.9183, cnn] + others)
        label_points(ax, [(1, 0.918, "resnet", "tab:blue"), (1.01, 0.9183, "se", "tab:orange"), (5, cnn, "cnn", "k")])
        texts = {t.get_text(): t for t in ax.texts}
        (_, y_se), (_, y_resnet) = texts["se"].get_position(), texts["resnet"].get_position()
        moved = y_resnet - y_se if where == "above" else y_se - y_resnet
        assert moved >= 0.075 - 1e-9, where     # the lower point's label moved a line away from the other's
        assert texts["resnet"].arrow_patch is not None and texts["se"].arrow_patch is None
        assert texts["cnn"].arrow_patch is None         # far from the others: left where it is
        plt.close(fig)


def test_the_pair_caption_counts_the_epochs_each_run_leads_on_the_epochs_both_ran():
    import pandas as pd

    from labkit.reporting.captions import pair_caption
    with_shortcuts = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.5, 1.0, 0.7], "val_acc": [0.60, 0.70, 0.80]})
    without = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.6, 0.9], "val_acc": [0.55, 0.72]})
    assert pair_caption({"resnet18": with_shortcuts, "plain18": without}) == (
        "`resnet18` has the lower train loss in 1 of 2 epochs and the higher val accuracy in 1. At the last epoch: "
        "train loss 1.000 against 0.900, val accuracy 70.00% against 72.00% (one seed each).")


def test_the_comparison_captions_qualify_a_lead_within_the_noise_and_say_which_weights_each_curve_shows():
    import pandas as pd

    from labkit.reporting.captions import comparison_curves_caption, scatter_caption

    def run(val, test, ema_decay):
        history = pd.DataFrame({"epoch": [1, 2], "val_acc": [val - 0.05, val]})
        return {"history": history, "metrics": {"val_images": 5000, "test_images": 10_000, "test_accuracy": test,
                                                "params": 1e6, "config": {"ema_decay": ema_decay}}}
    runs = {"a": run(0.915, 0.918, 0.997), "b": run(0.913, 0.880, 0.0)}
    text = comparison_curves_caption(runs)
    assert "Highest final val accuracy: a, 91.50%, not ahead of b beyond the val noise (2 SE = 1.1 points)." in text
    assert "the EMA of the weights for 1 of the 2 runs, the trained weights themselves for b." in text
    assert "not ahead" not in scatter_caption(runs)             # 3.8 test points: beyond 2 SE = 0.9
    runs["b"]["metrics"]["test_accuracy"] = 0.915
    assert "Highest: a, 91.80% with 1.0 M parameters, not ahead of b beyond the test noise (2 SE = 0.8 points)" \
        in scatter_caption(runs)
    assert "Each curve is measured" not in comparison_curves_caption({"a": runs["a"]})
    final = run(0.0, 0.92, 0.997)
    final["history"]["val_acc"] = float("nan")                  # a final fit: no val split
    assert comparison_curves_caption({**runs, "f": final}).endswith(
        " Not drawn: f (a final fit on all training images, so no val curve).")
    assert "(final fits on all training images" in comparison_curves_caption({**runs, "f": final, "g": final})


def test_the_summary_names_the_headline_runs_whose_tta_level_differs_from_the_rest():
    from labkit.reporting.overview import tta_levels_note

    def group(name, level):
        return [(name, {"metrics": {"test_tta": level}})]
    groups = {"cnn": group("cnn-60ep", 2), "resnet18": group("resnet18-40ep", 2), "plain18": group("plain18", 1)}
    assert tta_levels_note(groups) == (" Test acc (TTA) is at each run's own level, chosen with its recipe: 2, except "
                                       "the ResNet-18, no shortcuts row at 1 (report.md's model sections give every "
                                       "level each run measured).")
    groups["plain18"] = group("plain18", True)           # the first runs recorded flip TTA as True: level 1
    assert "except the ResNet-18, no shortcuts row at 1 " in tta_levels_note(groups)
    assert "2, except the CNN (tutorial) row at 1 " in tta_levels_note({"cnn": group("cnn", 1), "resnet18": group("r", 2)})
    assert tta_levels_note({"cnn": group("cnn-60ep", 2)}) == ""


def test_the_set_up_names_the_runs_that_recorded_only_their_own_tta_level():
    from labkit.reporting.overview import tta_records
    every_level = {"metrics": {"test_accuracy_by_tta": {"0": 0.9, "1": 0.91, "2": 0.92}}}
    runs = {"resnet18": {"metrics": {}}, "cnn": {"metrics": {}}, "plain18": every_level}
    assert tta_records(runs) == ("Every run records its test accuracy at each level, except resnet18, cnn: without "
                                 "TTA and at its own level only.")
    assert tta_records({"plain18": every_level}) == "Every run records its test accuracy at each level."
    assert tta_records({"cnn": {"metrics": {}}}) == "Every run records its test accuracy without TTA and at its own level."


def test_a_final_fit_s_val_curve_is_its_model_s_longest_run_with_a_val_split():
    import matplotlib.pyplot as plt
    import pandas as pd

    from labkit.reporting.captions import comparison_curves_caption
    from labkit.reporting.figures import curves_figure
    from labkit.reporting.select import val_stand_ins

    def run(model, epochs, val_acc, cutout, val_images=5000):
        history = pd.DataFrame({"epoch": range(1, epochs + 1), "val_acc": val_acc, "val_loss": 1 - val_acc,
                                "images_seen": 45_000})
        metrics = fake_run(model, epochs, 0.9)["metrics"]
        metrics.update(val_images=val_images, train_images=50_000 - val_images, config={"cutout": cutout},
                       flops_per_image=1e8)
        return {"history": history, "metrics": metrics}
    final = run("densenet_cifar", 80, float("nan"), 12, val_images=0)
    every_run = {"densenet_cifar": run("densenet_cifar", 15, 0.85, 0),
                 "densenet_cifar-40ep": run("densenet_cifar", 40, 0.90, 12),
                 "densenet_cifar-80ep-final": final, "cnn": run("cnn", 30, 0.70, 0)}
    headline = {"cnn": every_run["cnn"], "densenet_cifar-80ep-final": final}
    assert val_stand_ins(headline, every_run) == {"densenet_cifar-80ep-final": "densenet_cifar-40ep"}
    assert val_stand_ins({"cnn": every_run["cnn"]}, every_run) == {}
    both = {**headline, "densenet_cifar-40ep": every_run["densenet_cifar-40ep"]}   # the stand-in drawn as itself
    assert val_stand_ins(both, every_run) == {}
    assert "drawn in its place" not in comparison_curves_caption(both, every_run)
    text = comparison_curves_caption(headline, every_run)
    assert ("The final fit densenet_cifar-80ep-final trained on all training images and has no val curve; drawn in its "
            "place: densenet_cifar-40ep (40 epochs on 45,000 images, the same recipe), its model's longest run with a val "
            "split.") in text
    assert "Not drawn" not in text
    two = {**headline, "resnet18-80ep-final": run("resnet18", 80, float("nan"), 12, val_images=0)}
    every_run.update({"resnet18-80ep-final": two["resnet18-80ep-final"], "resnet18-40ep": run("resnet18", 40, 0.9, 12)})
    assert ("The final fits densenet_cifar-80ep-final and resnet18-80ep-final trained on all training images and have "
            "no val curve; drawn in their places, each model's longest run with a val split: densenet_cifar-40ep (40 "
            "epochs on 45,000 images, the same recipe) and resnet18-40ep (40 epochs on 45,000 images, the same "
            "recipe).") in comparison_curves_caption(two, every_run)
    every_run["densenet_cifar-40ep"]["metrics"]["config"]["cutout"] = 8
    assert "(40 epochs on 45,000 images, recipe: cutout 8)" in comparison_curves_caption(headline, every_run)
    fig = curves_figure(headline, every_run)
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["cnn", "densenet_cifar-40ep (for densenet_cifar-80ep-final)"]
    assert [line.get_label() for line in curves_figure(headline).axes[0].lines] == ["cnn"]   # without every_run
    plt.close("all")
    del every_run["densenet_cifar-40ep"], every_run["densenet_cifar"]      # no run with val: not drawn, said so
    assert comparison_curves_caption(headline, every_run).endswith(
        " Not drawn: densenet_cifar-80ep-final (a final fit on all training images, so no val curve).")


def test_the_reliability_caption_names_middle_over_confidence_before_scaling_and_the_run_without_a_temperature():
    from labkit.reporting.captions import reliability_caption

    def bins(gaps):       # ten bins of 100 images, accuracy = confidence + gap
        return [{"low": i / 10, "high": (i + 1) / 10, "confidence": i / 10 + 0.05, "accuracy": i / 10 + 0.05 + gap,
                 "count": 100} for i, gap in enumerate(gaps)]
    under = bins([0.05] * 10)
    middle_over = bins([0.05] * 5 + [-0.03] * 3 + [0.2] * 2)    # above overall, below at 0.5–0.8
    summaries = {"a": {"calibration": {"bins_before": under, "bins_after": bins([-0.02] * 10), "temperature": 0.8,
                                       "before": {"ece": 0.05}}},
                 "f": {"calibration": {"bins_before": middle_over, "bins_after": [], "temperature": None,
                                       "before": {"ece": 0.07}}}}
    text = reliability_caption(summaries)
    assert text.startswith("Before scaling (filled bars) every run is under-confident overall (weighted by images, its "
                           "bars lie above the diagonal), though f's bars at confidences of about 0.5–0.9 sit mostly "
                           "below the diagonal (over-confident there);")
    assert "\n\nNo temperature was fitted for f: it held out no val split." in text
    assert "for 1 of 1 scaled runs" in text
    summaries["f"]["calibration"]["bins_before"] = under
    assert "though" not in reliability_caption(summaries)
    del summaries["f"]
    assert "No temperature" not in reliability_caption(summaries)


def test_the_reliability_caption_says_where_the_under_confidence_sits_and_what_label_smoothing_has_to_do_with_it():
    from labkit.reporting.captions import reliability_caption

    def bins(heavy, gap):     # 15 bins; `heavy` images in the 0.867–0.933 bin, `gap` more accurate than confident
        return [{"low": i / 15, "high": (i + 1) / 15, "confidence": (i + 0.5) / 15,
                 "accuracy": (i + 0.5) / 15 + (gap if i == 13 else 0.0), "count": heavy if i == 13 else 10}
                for i in range(15)]
    summaries = {name: {"calibration": {"bins_before": bins(heavy, 0.07), "bins_after": [], "temperature": None,
                                        "before": {"ece": ece}}}
                 for name, heavy, ece in (("a", 860, 0.07), ("b", 1140, 0.1))}   # 86% and 89% of the images
    text = reliability_caption(summaries, {"a": 0.1, "b": 0.1})
    assert text.endswith("before scaling.\n\nEvery run's most populated bin is the one at confidences 0.87–0.93. "
                         "It holds most of every run's images (86% to 89%), is 7.0 points more accurate than confident, and makes 62% "
                         "to 86% of the ECE. Label smoothing 0.1 trains the true class's probability toward 0.91, "
                         "inside that bin: a network that fits its targets stops there even on images it gets right "
                         "nearly every time.")
    assert reliability_caption(summaries, {"a": 0.1, "b": 0.0}).endswith("of the ECE.")   # no shared smoothing
    spread = bins(50, 0.07)                            # 50 of 190 images there, the other bins under-confident too
    for b in spread[:13]:
        b["accuracy"] += 0.03
    spread[0].update(count=0, accuracy=None, confidence=None)    # an empty bin, as analysis.json writes it
    summaries["c"] = {"calibration": {"bins_before": spread, "bins_after": [], "temperature": None,
                                      "before": {"ece": 0.05}}}
    assert ("For a and b it holds most of the images (86% to 89%)" in reliability_caption(summaries, {})
            and reliability_caption(summaries, {}).endswith(
                " c puts only 28% of the images there: its under-confidence is spread over the bins."))
    del summaries["c"]
    summaries["b"]["calibration"]["bins_before"] = bins(1140, -0.07)      # over-confident there: no such reading
    assert "most populated" not in reliability_caption(summaries, {"a": 0.1, "b": 0.1})


def test_a_final_fit_is_named_as_such_in_the_scatter_and_budget_captions_the_ranking_and_the_data_paragraph():
    import pandas as pd

    from labkit.reporting.captions import budget_caption, scatter_caption
    from labkit.reporting.overview import final_fits_clause
    from labkit.reporting.tables import budget

    def run(test, final=False):
        metrics = {"model": "densenet_cifar", "val_images": 0 if final else 5000, "test_images": 10_000,
                   "test_accuracy": test, "params": 1e6, "epochs": 80 if final else 40,
                   "train_images": 50_000 if final else 45_000, "final_val_accuracy": None if final else 0.9}
        return {"metrics": metrics, "history": pd.DataFrame({"epoch": [1], "val_acc": [float("nan") if final else 0.9]})}
    runs = {"d-40ep": run(0.906), "d-80ep-final": run(0.9237, final=True)}
    assert ("Highest: d-80ep-final, 92.37% with 1.0 M parameters (a final fit: 80 epochs on all 50,000 training "
            "images)") in scatter_caption(runs)
    assert "(a final fit" not in scatter_caption({"d-40ep": runs["d-40ep"]})
    assert "so a step to one also adds the 5,000 val images" in budget_caption(runs)
    assert "open markers" not in budget_caption({"d-40ep": runs["d-40ep"]})
    other = run(0.915)                                # another recipe at 40 epochs, worse on val: left out, said so
    other["metrics"].update(config={"cutout": 12}, final_val_accuracy=0.85)
    assert budget_caption({**runs, "d-40ep-cutout": other}).endswith(
        " Not drawn (the set-up lists every run): d-40ep-cutout (cutout 12: final val 85.00% against 90.00% for "
        "d-40ep, drawn).")
    assert "Not drawn" not in budget_caption(runs)
    beside_final = run(0.92)                          # 80 epochs with val, beside the final fit: the final fit stands
    beside_final["metrics"].update(epochs=80, config={"cutout": 12})
    assert budget_caption({**runs, "d-80ep": beside_final}).endswith(
        " Not drawn (the set-up lists every run): d-80ep (cutout 12; the final fit d-80ep-final stands for that "
        "budget).")
    assert budget(runs["d-80ep-final"]) == "80 epochs on all 50,000 training images"
    assert budget(runs["d-40ep"]) == "40 epochs"
    assert final_fits_clause([]) == "."
    assert final_fits_clause(["a"]) == ("; the final fit (a) trains on all 50,000, with the recipe chosen on val and "
                                        "the budget fixed before it started.")
    assert final_fits_clause(["a", "b", "c"]).startswith("; the final fits (a, b and c) train on all 50,000")


def test_the_pending_list_names_each_model_without_its_final_fit_in_number(tmp_path):
    def run(model, val_images):
        return {"metrics": {"model": model, "val_images": val_images}}
    def pending(found):
        return "\n".join(markdown.pending_lines({}, found, tmp_path))
    two = pending({"a": run("resnet18", 5000), "b": run("se_resnet18", 5000)})
    one = pending({"a": run("resnet18", 0), "b": run("se_resnet18", 5000)})
    assert "final fits on all 50,000 training images" in two
    assert "of resnet18 and se_resnet18 are not in `results/` yet: their headline numbers below are" in two
    assert "final fit on all 50,000 training images" in one
    assert "of se_resnet18 is not in `results/` yet: its headline number below is" in one
    assert pending({"a": run("resnet18", 0), "b": run("cnn", 5000)}) == ""


def test_a_corruption_lead_too_small_for_one_decimal_is_printed_with_two():
    def summary(mean):
        return {"settings": {"corruption_size": 1000},
                "corruptions": {"mean_accuracy": mean, "clean_accuracy": 0.9, "accuracy": {"contrast": {"1": mean}}}}
    close = markdown.robustness_ranking({"a": 0.78355, "b": 0.78332}, {"a": summary(0.78355), "b": summary(0.78332)})
    clear = markdown.robustness_ranking({"a": 0.80, "b": 0.78}, {"a": summary(0.80), "b": summary(0.78)})
    assert "The lead over b (+0.02 points) is within" in close and "not ranked" in close
    assert "The lead over b (+2.0 points)" in clear


def test_a_curve_best_at_its_last_epoch_is_read_against_the_schedule_not_as_still_rising():
    import pandas as pd

    from labkit.reporting.captions import curves_caption

    history = pd.DataFrame({"epoch": range(1, 11), "train_acc": [0.5 + 0.04 * e for e in range(1, 11)],
                            "val_acc": [0.5 + 0.03 * e for e in range(1, 11)]})
    text = curves_caption(history)
    assert text.startswith("Val accuracy was highest at the last epoch (80.00% at epoch 10), as a learning rate "
                           "decaying to zero tends to make it; it gained 6.0 points over the last 2 epochs, the last "
                           "fifth of the schedule;")
    assert curves_caption(history.iloc[:2]).startswith("Val accuracy was highest at the last epoch (56.00% at epoch "
                                                       "2), as a learning rate decaying to zero tends to make it;")
    assert "over the last 1 epoch, the last fifth" in curves_caption(history.iloc[:4])
    history.loc[9, "val_acc"] = 0.7
    assert curves_caption(history).startswith("Val accuracy peaked at epoch 9 (77.00%) and ended at 70.00%")


def test_the_conclusions_rank_the_models_again_where_they_share_a_budget():
    from labkit.reporting.overview import matched_budget_ranking

    def run(model, epochs, accuracy, images=45_000, cutout=12):
        return {"metrics": {"model": model, "epochs": epochs, "train_images": images, "test_accuracy": accuracy,
                            "final_val_accuracy": accuracy, "test_images": 10_000, "test_tta": 2,
                            "config": {"model": model, "cutout": cutout}}}
    every_run = {"resnet18-80ep-final": run("resnet18", 80, 0.93, 50_000), "resnet18-40ep": run("resnet18", 40, 0.918),
                 "resnet18-40ep-nocutout": run("resnet18", 40, 0.925, cutout=0),   # better on val: still ranked below
                 "se_resnet18-40ep": run("se_resnet18", 40, 0.919),
                 "densenet_cifar-40ep": run("densenet_cifar", 40, 0.906)}
    ranked = [("resnet18", [("resnet18-80ep-final", every_run["resnet18-80ep-final"])]),
              ("se_resnet18", [("se_resnet18-40ep", every_run["se_resnet18-40ep"])]),
              ("densenet_cifar", [("densenet_cifar-40ep", every_run["densenet_cifar-40ep"])])]
    assert matched_budget_ranking(every_run, ranked) == (
        "The headline ranking mixes budgets; where two or more models share one (epochs, images, recipe and TTA "
        "level), they rank ('≈': within two standard errors of the test accuracy): 40 epochs on 45,000 images, "
        "SE-ResNet-18 91.90% ≈ ResNet-18 91.80% > DenseNet (k=12) 90.60%.")
    every_run["densenet_cifar-40ep"]["metrics"]["test_tta"] = 1       # another TTA level: not the same budget
    assert matched_budget_ranking(every_run, ranked).endswith(
        "40 epochs on 45,000 images, SE-ResNet-18 91.90% ≈ ResNet-18 91.80%.")
    del every_run["se_resnet18-40ep"]                                  # one model at each budget: no ranking
    assert matched_budget_ranking(every_run, ranked) == ""
    same = {name: r for name, r in every_run.items() if name != "resnet18-80ep-final"}
    assert matched_budget_ranking(same, ranked[1:2] + [("resnet18", [("resnet18-40ep", same["resnet18-40ep"])])]) == ""


def test_the_gradcam_caption_says_how_much_of_each_map_lies_on_the_centre_of_the_image():
    from labkit.reporting.captions import centre_share_reading, gradcam_caption

    centre = [[0.0] * 4, [0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0] * 4]       # all weight on the middle cells
    even = [[1.0] * 4 for _ in range(4)]
    def g(*maps, **stride):
        return {"maps": list(maps), "map_size": len(maps[0]), **stride}
    corner = [[1.0] + [0.0] * 9] + [[0.0] * 10 for _ in range(9)]   # the CNN's first cell sees pixels 0–13
    text = centre_share_reading({"a": g(centre, centre), "b": g(even, even), "cnn": g(corner, map_stride=2.0)})
    assert text == (" The share of each map's weight on the central 16×16 pixels, a quarter of the image, where "
                    "CIFAR-10's photos mostly put the object, as drawn and averaged over the images explained, for 4×4 "
                    "maps with cells 8 px apart (an even map 25%, one wholly on the cells centred there 77%): a 77%, "
                    "b 25%; for 10×10 maps with cells 2 px apart (an even map 64%, one wholly on the cells centred "
                    "there 94%): cnn 2%. 2 images are a glimpse of where each model looks, not a measurement of it.")
    second = [[0.0] * 10, [0.0, 1.0] + [0.0] * 8] + [[0.0] * 10 for _ in range(8)]   # centred on pixel 8.5
    assert "cnn 77%" in centre_share_reading({"cnn": g(second, map_stride=2.0)})
    unknown = centre_share_reading({"a": g(centre), "cnn": g(second)})   # saved before map_stride: no geometry
    assert "a 77%" in unknown and "cnn left out: analysed before the map's cell spacing was recorded" in unknown
    assert unknown.endswith(". 1 image is a glimpse of where each model looks, not a measurement of it.")
    labels = {"kinds": ["right for every model"], "predicted": ["cat"], "true": ["cat"]}
    caption = gradcam_caption({"a": {**g(centre), **labels}, "cnn": {**g(second, map_stride=2.0), **labels}})
    assert ("cnn's unpadded convolutions centre its cells 2 px apart, so its map is drawn with each cell over the "
            "pixels it sees and its outer 6-pixel border uncoloured; the others are the usual even resize.") in caption
    assert "uncoloured" not in gradcam_caption({"a": {**g(centre), **labels}})
    zero = [[0.0] * 4 for _ in range(4)]                                   # Grad-CAM's ReLU can leave nothing
    text = centre_share_reading({"a": g(centre, zero), "b": g(zero, zero)})
    assert "b –" in text and "(all-zero maps of a and b left out)" in text and "nan" not in text

def test_the_pgd_conclusion_is_no_ranking_when_the_leader_at_the_largest_budget_trails_at_a_smaller_one(tmp_path):
    import json

    from labkit.reporting.overview import analysis_findings

    def summary(name, pgd):
        return {"version": 1, "run_name": name, "weights_sha256": "", "settings": {"corruption_size": 1000,
                "attack_size": 1000}, "attacks": {"pgd": pgd},
                "calibration": {"before": {"ece": 0.05}, "temperature": None},
                "corruptions": {"mean_accuracy": 0.7, "clean_accuracy": 0.9, "generator": 2}}
    found = {"a": {"8": 0.112, "4": 0.21, "2": 0.34}, "b": {"8": 0.085, "4": 0.28, "2": 0.50}}
    for name, pgd in found.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "analysis.json").write_text(json.dumps(summary(name, pgd)))
        (tmp_path / name / "model.pt").write_bytes(b"")
    groups = {name: [(name, {"metrics": {}})] for name in found}
    [pgd] = [line for line in analysis_findings(list(found), groups, tmp_path) if line.startswith("PGD")]
    assert pgd == ("PGD-10 at ε = 8/255 leaves 8.5% to 11.2% of the attacked images correct; highest: a, 2.70 points "
                   "ahead of b (2 SE = 2.66), but not at every smaller ε (at 4/255 b leads), so this is no robustness "
                   "ranking. None of these models was trained against attacks.")


def test_the_analysis_times_say_what_costs_most_and_that_machines_differ():
    from labkit.reporting.markdown import analysis_time_reading

    def summary(attacks, total, device):
        return {"wall_time_s": {"attacks_s": attacks, "total_s": total}, "device": device,
                "settings": {"attack_precision": "fp32"}}
    [text, _] = analysis_time_reading({"a": summary(50, 100, "CPU A"), "b": summary(80, 100, "CPU B")})
    assert text == ("The attacks (a gradient step for FGSM and ten for PGD-10 at each ε, in fp32) take 50% to 80% of "
                    "each analysis. The analyses ran on CPU A and CPU B, whose speeds differ, so compare times within "
                    "one machine.")
    assert analysis_time_reading({"a": summary(50, 100, "CPU A")})[0].endswith("take 50% of each analysis.")


def test_the_summary_names_the_claims_behind_each_verdict():
    from labkit.reporting.overview import claim_tally

    def claim(topic, verdict, **more):
        return {"topic": topic, "verdict": verdict, **more}
    [line] = claim_tally([claim("a holds", "supported"), claim("b holds", "partly (x, y; z)"),
                          claim("c holds", "supported", on="the 40-epoch runs"),
                          claim("d holds", "not conclusive: beyond the test noise only"), claim("e holds", "missing")])
    assert line == ("- Of the lab report's 5 claims, 4 could be checked (1 at a shorter budget, where the runs compared "
                    "match): 2 supported (a holds; c holds), 1 partly (b holds), 1 not conclusive (d holds); 1 waits "
                    "for a run not trained yet. The conclusions give each verdict in full; the discussion gives the "
                    "evidence.")
    assert claim_tally([claim("e holds", "missing")]) == []


def test_the_readme_says_what_compile_gained_from_each_machines_newest_benchmark_of_the_fast_path():
    from labkit.reporting.markdown import readme_compile

    def bench(device, date, precision, **speeds):
        return {"device": device, "date": date, "settings": {"steps": 5}, "models": {
            model: {"fast": {"images_per_s": fast, "precision": "bf16"},
                    "compiled": {"images_per_s": compiled, "precision": precision, "warmup_s": warmup}}
            for model, (fast, compiled, warmup) in speeds.items()}}
    benchmarks = {"epyc-fp32": bench("CPU EPYC", "2026-11-28", "fp32", densenet_cifar=(90.0, 30.0, 235.0)),
                  "epyc-old": bench("CPU EPYC", "2026-12-01", "bf16", densenet_cifar=(100.0, 110.0, 188.0)),
                  "epyc": bench("CPU EPYC", "2026-12-04", "bf16", densenet_cifar=(200.0, 240.0, 6.0),
                                resnet18=(200.0, 200.0, 3.0)),
                  "xeon": bench("CPU Xeon", "2026-12-03", "bf16", densenet_cifar=(100.0, 145.0, 8.0),
                                resnet18=(170.0, 187.0, 3.0), densenet_cifar_memory_efficient=(90.0, 120.0, 9.0))}
    text = readme_compile(benchmarks)
    # the newest bf16 file per machine: epyc's 1.20 and xeon's 1.45; the fp32-compiled file is no fast path
    assert text.startswith("Compiled, the fast path trained DenseNet (k=12) 1.20–1.45× and ResNet-18 1.00–1.10× "
                           "as fast as uncompiled, in benchmarks of 5 timed steps (the range over 2 machines")
    assert "`results/benchmarks/epyc.json` on the CPU EPYC and `results/benchmarks/xeon.json` on the CPU Xeon" in text
    assert "from 6 s (`epyc.json`) to 188 s (`epyc-old.json`)" in text and "235" not in text
    assert "memory_efficient" not in text
    assert readme_compile({"epyc-fp32": benchmarks["epyc-fp32"]}).startswith("Not measured yet")
    one = readme_compile({"xeon": benchmarks["xeon"]})       # one machine, one compile: no ranges
    assert one.startswith("Compiled, the fast path trained DenseNet (k=12) 1.45× and ResNet-18 1.10× as fast as "
                          "uncompiled, in benchmarks of 5 timed steps (benchmark `results/benchmarks/xeon.json` on "
                          "the CPU Xeon).")
    assert "for DenseNet (k=12) 8 s (`xeon.json`)" in one
