"""Calibration, corruptions, attacks, Grad-CAM and the analysis files (notebooks/06_analysis)."""
import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

from labkit.data import DataError, synthetic_cifar10
from labkit.models import build_model
from labkit.notebook import params
from labkit.notebook.explorer import Explorer
from labkit.notebook.params import configure_analysis
from labkit.notebook.views import save_analyses
from labkit.reporting.markdown import build, gradcam_section
from labkit.robustness.adversarial import PixelModel, attack_accuracy
from labkit.robustness.calibration import BINS, calibrate, fit_temperature, reliability_bins, scores
from labkit.robustness.corruptions import CORRUPTIONS, SEVERITIES, corrupt, hsv_to_rgb, rgb_to_hsv
from labkit.robustness.gradcam import border, grad_cam, map_stride, place, target_layer
from labkit.robustness.suite import (
    ANALYSIS_FILE,
    PREDICTIONS_FILE,
    AnalysisSettings,
    RunAnalysis,
    add_gradcam,
    analyse_run,
    analyse_runs,
    load_analysis,
    load_predictions,
    pick_gradcam_images,
)
from labkit.runs.store import RunDataError, save_run
from labkit.storage import save_verified
from labkit.training.config import TrainConfig
from labkit.training.loop import fit
from tests.helpers import ece_from_bins

SMALL = dict(calibration_size=40, corruption_size=20, attack_size=10, epsilons=(1.0, 8.0))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A CNN trained for a few epochs on synthetic data, saved as run 'cnn' in its own results root."""
    root = tmp_path_factory.mktemp("results")
    data = synthetic_cifar10(train_per_class=40, test_per_class=10)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABKIT_RESULTS", str(root))
        patch.setenv("LABKIT_CHECKPOINTS", str(tmp_path_factory.mktemp("checkpoints")))
        save_run(fit(TrainConfig(model="cnn", run_name="cnn", epochs=4, batch_size=32, val_size=100, data="synthetic",
                                 progress=False, lr=0.05), data))
    return root, data


# ----------------------------------------------------------------------------- corruptions

@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_corruption_keeps_the_format_is_seeded_and_changes_the_images(name):
    images = synthetic_cifar10(train_per_class=1, test_per_class=2).test_images
    for severity in SEVERITIES:
        out = corrupt(images, name, severity, seed=3)
        assert out.dtype == torch.uint8 and out.shape == images.shape
        assert torch.equal(out, corrupt(images, name, severity, seed=3))
    mildest = (corrupt(images, name, 1).float() - images.float()).abs().mean()
    harshest = (corrupt(images, name, 5).float() - images.float()).abs().mean()
    assert harshest > 0.5 and harshest > 0.5 * mildest


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "gaussian_blur", "contrast", "jpeg_compression"])
def test_monotone_corruptions_get_worse_with_severity(name):
    images = synthetic_cifar10(train_per_class=1, test_per_class=5).test_images
    change = [(corrupt(images, name, s).float() - images.float()).abs().mean() for s in SEVERITIES]
    assert change == sorted(change)


def test_pixelate_is_cifar10c_s_pil_box_resize_down_and_up():
    """CIFAR-10-C pixelates with PIL's BOX filter, 32 → int(32·c) → 32 on 8-bit images; torch's "area"
    mode averages two pixels where PIL keeps one, so the mild severities blurred about as much as the harsh."""
    import numpy as np
    from PIL import Image

    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for severity, kept in zip(SEVERITIES, CORRUPTIONS["pixelate"][1]):
        side = int(32 * kept)
        expected = [np.asarray(Image.fromarray(image.permute(1, 2, 0).numpy()).resize((side, side), Image.BOX)
                               .resize((32, 32), Image.BOX)) for image in images]
        pixelated = corrupt(images, "pixelate", severity).permute(0, 2, 3, 1)
        assert torch.equal(pixelated, torch.from_numpy(np.stack(expected)))


def test_hsv_round_trip_and_bad_requests():
    x = torch.rand(4, 3, 8, 8)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    images = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severity must be one of"):
        corrupt(images, "contrast", 6)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(images.float(), "contrast", 1)


# ----------------------------------------------------------------------------- calibration

def sampled(n: int, temperature: float, seed: int = 0):
    """Labels drawn from softmax(z), returned with logits z · temperature: the NLL-optimal T is `temperature`."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 10, generator=g) * 3
    labels = torch.multinomial(z.softmax(1), 1, generator=g).flatten()
    return z * temperature, labels


@pytest.mark.parametrize("true_temperature", [0.5, 2.0])
def test_temperature_scaling_recovers_the_temperature_and_lowers_ece(true_temperature):
    logits, labels = sampled(20_000, true_temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    before, after = scores(logits, labels), scores(logits, labels, fitted)
    assert after["ece"] < before["ece"] / 2 and after["nll"] < before["nll"] and after["brier"] < before["brier"]


def test_reliability_bins_add_up_to_torchmetrics_ece():
    logits, labels = sampled(3000, 1.7, seed=1)
    bins = reliability_bins(logits, labels)
    assert sum(b["count"] for b in bins) == 3000 and len(bins) == BINS
    expected = multiclass_calibration_error(logits.softmax(1), labels, num_classes=10, n_bins=15, norm="l1")
    assert ece_from_bins(bins) == pytest.approx(float(expected), abs=1e-5)
    assert scores(logits, labels)["ece"] == pytest.approx(float(expected), abs=1e-6)


def test_calibrate_uses_log_probabilities_like_logits():
    logits, labels = sampled(4000, 0.5, seed=2)
    result = calibrate(logits[:2000].softmax(1), labels[:2000], logits[2000:].softmax(1), labels[2000:])
    assert result["temperature"] == pytest.approx(0.5, rel=0.1)
    assert result["after"]["ece"] < result["before"]["ece"]


# ----------------------------------------------------------------------------- attacks

def test_attacks_lower_accuracy_within_the_budget(trained):
    root, data = trained
    from labkit.runs.store import load_model
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABKIT_RESULTS", str(root))
        model = load_model("cnn")
    images, labels = data.test_images[:40], data.test_labels[:40]
    result = attack_accuracy(model, images, labels, epsilons=(0.001, 16.0))
    assert result["clean"] > 0.3
    assert result["fgsm"]["0.001"] == pytest.approx(result["clean"])      # too small to flip anything
    assert result["pgd"]["16"] < result["clean"] and result["pgd"]["16"] <= result["fgsm"]["16"] + 0.05
    with pytest.raises(ValueError, match="every ε must be > 0"):
        attack_accuracy(model, images, labels, epsilons=(0.0,))


def test_pgd_stays_inside_the_epsilon_ball():
    import torchattacks
    model = PixelModel(build_model("cnn").eval(), torch.device("cpu"))
    x = torch.rand(6, 3, 32, 32)
    y = torch.randint(0, 10, (6,))
    adv = torchattacks.PGD(model, eps=4 / 255, alpha=1 / 255, steps=3)(x, y)
    assert (adv - x).abs().max() <= 4 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


# ----------------------------------------------------------------------------- Grad-CAM

@pytest.mark.parametrize("name, layer, side", [("cnn", "features.3", 10), ("resnet18", "layer4", 4),
                                               ("densenet_cifar", "features.7", 4),
                                               ("se_resnet18_imagenet_stem", "layer2", 4)])
def test_gradcam_uses_the_deepest_stage_with_maps_of_at_least_4x4(name, layer, side):
    model = build_model(name).eval()
    assert target_layer(model)[0::2] == (layer, side)
    images = synthetic_cifar10(train_per_class=1, test_per_class=1).test_images[:3]
    maps, used, map_side = grad_cam(model, images, torch.tensor([0, 1, 2]))
    assert used == layer and map_side == side and maps.shape == (3, side, side) and maps.min() >= 0
    peaks = maps.flatten(1).max(1).values
    assert all(abs(p - 1) < 1e-6 or p == 0 for p in peaks.tolist())   # each map scaled to 1, or no evidence at all
    assert place(maps, map_stride(model)).shape == (3, 32, 32)


def test_gradcam_cells_are_drawn_over_the_pixels_they_see():
    """The CNN's unpadded convolutions: conv2's first cell sees pixels 0–13 (the gradient says so), its
    cells lie 2 pixels apart, so the drawn map of its first cell alone peaks there, not over the
    first 3.2 pixels an even resize would give it, and the 6-pixel border outside every cell's tile is
    left uncoloured. The padded ResNet's 4×4 map tiles the image: placing it is the usual bilinear resize."""
    cnn = build_model("cnn").eval()
    assert map_stride(cnn) == 2 and map_stride(build_model("resnet18")) == 8
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    cnn.features[:4](x)[:, :, 0, 0].sum().backward()                    # random images: every max-pool path
    seen = x.grad.abs().sum((0, 1, 2)).nonzero().flatten()
    assert (seen.min(), seen.max()) == (0, 13)                          # centre 6.5, the drawn cell's
    first = torch.zeros(1, 10, 10)
    first[0, 0, 0] = 1.0
    drawn = place(first, 2.0)[0]
    assert drawn[:6].isnan().all() and drawn[:, :6].isnan().all() and border(10, 2.0) == 6   # outside every tile
    nan = float("nan")
    assert torch.allclose(drawn[6], torch.tensor([nan] * 6 + [1.0, 0.75, 0.25] + [0.0] * 17 + [nan] * 6), equal_nan=True)
    maps = torch.rand(3, 4, 4)
    resized = torch.nn.functional.interpolate(maps[:, None], (32, 32), mode="bilinear")[:, 0]
    assert torch.allclose(place(maps, 8.0), resized, atol=1e-6) and border(4, 8.0) == 0


def test_gradcam_finds_the_evidence_where_it_is():
    """Two channels, red and green intensity; class 0 scores red only. An image with a red square
    top-left and a green one bottom-right: class 0's map must light the red square only."""
    class RedScorer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1))
            self.classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 32 * 32, 2))
            with torch.no_grad():
                self.features[0].weight.zero_(), self.features[0].bias.zero_()
                self.features[0].weight[0, 0] = self.features[0].weight[1, 1] = 1.0
                weight = torch.zeros(2, 2, 32, 32)
                weight[0, 0] = 1.0
                self.classifier[1].weight.copy_(weight.flatten(1)), self.classifier[1].bias.zero_()

        def forward(self, x):
            return self.classifier(self.features(x))

    images = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    images[0, 0, :16, :16] = 255
    images[0, 1, 16:, 16:] = 255
    maps, _, _ = grad_cam(RedScorer(), images, torch.tensor([0]))
    assert maps[0, :16, :16].min() > 0.99 and maps[0, 16:, :].max() == 0 and maps[0, :, 16:].max() == 0


# ----------------------------------------------------------------------------- whole analyses

def test_analysis_of_a_saved_run_is_saved_with_provenance_and_goes_stale_when_retrained(trained, monkeypatch,
                                                                                       tmp_path):
    root, data = trained
    monkeypatch.setenv("LABKIT_RESULTS", str(root))
    settings = AnalysisSettings(**SMALL)
    [analysis] = analyse_runs(["cnn"], data, settings).values()
    s = analysis.summary
    assert s["calibration"]["temperature"] > 0 and 0 <= s["calibration"]["before"]["ece"] <= 1
    assert set(s["corruptions"]["accuracy"]) == set(CORRUPTIONS) and s["corruptions"]["images"] == 20
    assert set(s["attacks"]["pgd"]) == {"1", "8"} and s["attacks"]["images"] == 10
    assert s["val_images"] == 100 and s["data_checksum"] == data.checksum and s["libraries"]["torchattacks"]
    picks = pick_gradcam_images([analysis], data.test_labels, seed=0)
    add_gradcam(analysis, data, picks)
    assert len(s["gradcam"]["maps"]) == len(picks["test_indices"]) <= 8
    assert list(s["wall_time_s"])[-1] == "total_s"

    save_analyses({"cnn": analysis}, data)
    loaded = load_analysis("cnn")
    assert loaded["stale"] is False and loaded["calibration"] == json.loads(json.dumps(s["calibration"]))
    text = build(root, tmp_path / "report.md")
    assert "### Calibration" in text and "| cnn |" in text and "**Stale:**" not in text
    assert (root / "cnn" / "figures" / "gradcam.png").is_file()
    # the report draws Grad-CAM itself, over the images the analysis saved beside its probabilities
    saved = load_predictions("cnn")
    assert torch.equal(saved["gradcam_images"], data.test_images[picks["test_indices"]])
    assert (root / "figures" / "analysis_gradcam.png").is_file() and "figures/analysis_gradcam.png" in text
    assert "cnn/figures/gradcam.png" not in text
    assert (root / "figures" / "analysis_corruptions.png").is_file()
    # an analysis from before the images were saved, or a damaged file: the run's own Grad-CAM figure instead
    save_verified(root / "cnn" / PREDICTIONS_FILE, {k: v for k, v in saved.items() if k != "gradcam_images"})
    problems = []
    section = "\n".join(gradcam_section({"cnn": loaded}, root, tmp_path / "figures", str, problems))
    assert "cnn/figures/gradcam.png" in section and "analysis_gradcam" not in section and not problems
    (root / "cnn" / PREDICTIONS_FILE).write_bytes((root / "cnn" / PREDICTIONS_FILE).read_bytes()[:-100])
    with pytest.raises(RunDataError, match=rf"{root / 'cnn' / PREDICTIONS_FILE} cannot be read .*damaged"):
        load_predictions("cnn")
    assert "cnn/figures/gradcam.png" in "\n".join(gradcam_section({"cnn": loaded}, root, tmp_path, str, problems))
    assert "damaged" in problems[0]
    (root / "cnn" / "model.pt").write_bytes((root / "cnn" / "model.pt").read_bytes() + b"retrained")
    assert load_analysis("cnn")["stale"] is True
    assert "**Stale:** cnn" in build(root, tmp_path / "report.md")
    (root / "cnn" / "analysis.json").write_text('{"version": 1, "calib')
    with pytest.raises(RunDataError, match="analysis.json is not valid JSON"):
        load_analysis("cnn")
    (root / "cnn" / "analysis.json").unlink()
    assert load_analysis("cnn") is None


def test_an_analysis_on_other_data_than_the_run_trained_on_is_refused(trained, monkeypatch):
    root, _ = trained
    monkeypatch.setenv("LABKIT_RESULTS", str(root))
    with pytest.raises(DataError, match="validation split would include images the run trained on"):
        analyse_run("cnn", synthetic_cifar10(seed=5), AnalysisSettings(**SMALL))


@pytest.mark.parametrize("settings, message", [
    (dict(attack_size=5), "attack_size must be an integer ≥ 10"),
    (dict(epsilons=(1.0, -2.0)), "epsilons must be positive"),
    (dict(epsilons=(float("nan"),)), "epsilons must be positive"),
    (dict(precision="fp8"), "precision must be one of"),
])
def test_bad_analysis_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        AnalysisSettings(**settings)


def fake_analysis(name: str, predictions: list[int], labels: torch.Tensor) -> RunAnalysis:
    probabilities = F.one_hot(torch.tensor(predictions), 10).float() * 0.9 + 0.01
    return RunAnalysis(name, build_model("cnn").eval(), torch.arange(len(predictions)), probabilities)


def test_gradcam_picks_four_images_all_get_right_and_four_most_get_wrong():
    labels = torch.arange(20) % 10
    first = labels.tolist()
    second = labels.tolist()
    for i in (3, 4, 5, 6, 7):            # first model wrong on 3–7, second on 5–7 and 12
        first[i] = (first[i] + 1) % 10
    for i in (5, 6, 7, 12):
        second[i] = (second[i] + 1) % 10
    picks = pick_gradcam_images([fake_analysis("a", first, labels), fake_analysis("b", second, labels)], labels)
    right, wrong = picks["test_indices"][:4], picks["test_indices"][4:]
    assert not set(right) & {3, 4, 5, 6, 7, 12}
    assert set(wrong[:3]) == {5, 6, 7} and wrong[3] in (3, 4, 12)
    assert picks["kinds"][4] == "wrong for 2 of 2 models"


def test_explorer_finds_the_cells_of_the_confusion_matrix_and_pages_through_them():
    from matplotlib.figure import Figure

    data = synthetic_cifar10(train_per_class=1, test_per_class=20)
    labels = data.test_labels
    predictions = labels.tolist()
    for i in (labels == 3).nonzero().flatten().tolist():    # every cat called a dog: 20 images, 2 pages
        predictions[i] = 5
    analysis = fake_analysis("cnn", predictions, labels)
    explorer = Explorer({"cnn": analysis}, data)
    assert explorer.most_confused("cnn") == (3, 5)
    assert len(explorer.matching("cnn", 3, 5)) == 20 and len(explorer.matching("cnn", 3, 3)) == 0
    assert explorer.top3("cnn", int(explorer.matching("cnn", 3, 5)[0])).startswith("dog 91%")
    assert isinstance(explorer.gallery_figure("cnn", 3, 5), Figure)          # not a pyplot figure
    assert isinstance(explorer.detail_figure(0), Figure)                        # each model's Grad-CAM, placed
    box = explorer.widget()
    model_box, true_box, predicted_box = box.children[0].children
    previous, following, page_label = box.children[1].children
    gallery, image_box, note, detail = box.children[2], box.children[4], box.children[5], box.children[6]
    assert (model_box.value, true_box.value, predicted_box.value) == ("cnn", 3, 5)
    assert page_label.value == "images 1–16 of 20" and previous.disabled and not following.disabled
    assert len(image_box.options) == 16 and bytes(gallery.value).startswith(b"\x89PNG") and detail.value
    following.click()
    assert page_label.value == "images 17–20 of 20" and following.disabled and len(image_box.options) == 4
    true_box.value = 4                  # no deer mistaken for a dog: an empty cell, back to page 1
    assert image_box.options == () and image_box.value is None and page_label.value == "no images"
    assert "No test image" in note.value and detail.layout.display == "none"


def test_a_current_saved_analysis_is_read_not_redone_and_other_weights_or_settings_redo_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path))
    monkeypatch.setenv("LABKIT_CHECKPOINTS", str(tmp_path / "checkpoints"))
    data = synthetic_cifar10(train_per_class=10, test_per_class=6)

    def train(name, seed=0):
        save_run(fit(TrainConfig(model="cnn", run_name=name, epochs=1, batch_size=16, val_size=20, data="synthetic",
                                 seed=seed, overwrite=True, progress=False), data))

    def analyse(names, settings=AnalysisSettings(**SMALL)):
        said = []
        return analyse_runs(names, data, settings, log=said.append, reuse=True), said

    def analysed(said):
        return [line.split("]")[0][1:] for line in said if line.endswith("test images") and "calibration" in line]
    train("cnn"), train("cnn-b")
    [first] = analyse(["cnn"])[0].values()
    alone = pick_gradcam_images([first], data.test_labels)
    add_gradcam(first, data, alone)
    save_analyses({"cnn": first}, data)
    saved = (tmp_path / "cnn" / ANALYSIS_FILE).read_bytes()
    assert "stale" not in json.loads(saved) and first.summary["gradcam"]["git_commit"] == first.summary["git_commit"]
    assert json.loads(saved)["gradcam"]["map_stride"] == 2      # the CNN's cells lie 2 pixels apart

    both, said = analyse(["cnn", "cnn-b"])
    assert list(both) == ["cnn", "cnn-b"] and analysed(said) == ["cnn-b"]
    assert said[0] == "read, not redone (saved from the present weights, data and settings): cnn"
    assert both["cnn"].saved and both["cnn"].summary["date"] == first.summary["date"]
    assert torch.allclose(both["cnn"].probabilities, first.probabilities, atol=1e-3)

    kept = dict(both["cnn"].summary["wall_time_s"])
    add_gradcam(both["cnn"], data, alone)               # the images it explains already: nothing redone
    assert both["cnn"].saved and both["cnn"].summary["wall_time_s"] == kept
    recounted = {**alone, "kinds": [f"{kind}, recounted" for kind in alone["kinds"]]}
    add_gradcam(both["cnn"], data, recounted)           # the same images, other captions: the maps stay
    assert not both["cnn"].saved and both["cnn"].summary["wall_time_s"] == kept
    assert both["cnn"].summary["gradcam"]["kinds"] == recounted["kinds"]
    both["cnn"].saved = True
    del both["cnn"].summary["gradcam"]["map_stride"]    # saved before it was recorded: filled in, the maps stay
    maps = both["cnn"].summary["gradcam"]["maps"]
    add_gradcam(both["cnn"], data, recounted)
    assert both["cnn"].summary["gradcam"]["map_stride"] == 2 and not both["cnn"].saved
    assert both["cnn"].summary["gradcam"]["maps"] is maps and both["cnn"].summary["wall_time_s"] == kept
    others = {"test_indices": alone["test_indices"][::-1], "kinds": alone["kinds"][::-1]}
    for analysis in both.values():                      # other images: the maps are made anew, timed once
        add_gradcam(analysis, data, others)
    times = both["cnn"].summary["wall_time_s"]
    assert both["cnn"].summary["gradcam"]["test_indices"] == others["test_indices"]
    assert times["total_s"] == pytest.approx(kept["total_s"] - kept["gradcam_s"] + times["gradcam_s"])
    save_analyses(both, data)
    assert json.loads((tmp_path / "cnn" / ANALYSIS_FILE).read_text())["gradcam"]["test_indices"] == others["test_indices"]

    again, said = analyse(["cnn", "cnn-b"])
    assert analysed(said) == [] and all(a.saved for a in again.values())
    written = (tmp_path / "cnn" / ANALYSIS_FILE).stat().st_mtime_ns
    save_analyses(again, data)                          # nothing changed: nothing written
    assert (tmp_path / "cnn" / ANALYSIS_FILE).stat().st_mtime_ns == written
    train("cnn-b", seed=1)                              # retrained: other weights
    _, said = analyse(["cnn", "cnn-b"])
    assert analysed(said) == ["cnn-b"]
    [redone], said = analyse(["cnn"], AnalysisSettings(**{**SMALL, "attack_size": 20}))
    assert analysed(said) == ["cnn"] and said[-1].startswith("[cnn] ECE")
    (tmp_path / "cnn-b" / "model.pt").unlink()          # weights gone: skipped with a warning, not a crash
    with pytest.warns(UserWarning, match="run cnn-b skipped: .*model.pt"):
        assert list(analyse(["cnn", "cnn-b"])[0]) == ["cnn"]


def test_an_analysis_from_an_older_corruption_generator_gets_only_its_corruption_figures_redone(tmp_path,
                                                                                                monkeypatch):
    from labkit.robustness.corruptions import GENERATOR_VERSION
    from labkit.robustness.suite import analyses_current, load_analyses

    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path))
    monkeypatch.setenv("LABKIT_CHECKPOINTS", str(tmp_path / "checkpoints"))
    data = synthetic_cifar10(train_per_class=10, test_per_class=6)
    save_run(fit(TrainConfig(model="cnn", run_name="cnn", epochs=1, batch_size=16, val_size=20, data="synthetic",
                             progress=False), data))
    [made] = analyse_runs(["cnn"], data, AnalysisSettings(**SMALL), save=True).values()
    assert made.summary["corruptions"]["generator"] == GENERATOR_VERSION and analyses_current(["cnn"])
    path = tmp_path / "cnn" / ANALYSIS_FILE
    older = json.loads(path.read_text())          # as an analysis made before the generator was recorded
    del older["corruptions"]["generator"]
    older["corruptions"]["accuracy"]["pixelate"] = {str(s): 0.0 for s in SEVERITIES}
    path.write_text(json.dumps(older))
    assert not analyses_current(["cnn"])
    with pytest.warns(UserWarning, match=r"cnn/analysis.json: its corruption figures come from an older corruption"):
        load_analyses(["cnn"], data)                # read as it is (analyse = False), with a warning
    assert ("**Older corruption images:** the corruption figures of cnn predate pixelate resized with PIL's box "
            "filter") in build(tmp_path, tmp_path / "report.md")
    said = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        analyse_runs(["cnn"], data, AnalysisSettings(**SMALL), log=said.append, save=True, reuse=True)
    assert not [w for w in caught if "older corruption" in str(w.message)]         # redone, so no warning
    assert said == [f"[cnn] corruptions: made with generator 1, redone with {GENERATOR_VERSION}",
                    f"[cnn] saved {path}"]                                          # nothing else is redone
    saved = json.loads(path.read_text())
    assert saved["corruptions"] == made.summary["corruptions"]
    assert {key: saved[key] for key in ("calibration", "attacks", "date", "git_commit")} == \
        {key: older[key] for key in ("calibration", "attacks", "date", "git_commit")}
    assert saved["corruptions_redone"]["from_generator"] == 1 and saved["corruptions_redone"]["date"]
    assert (f"The corruption accuracies of cnn were redone ({saved['corruptions_redone']['date'][:10]}, commit "
            f"{(saved['corruptions_redone']['git_commit'] or 'unknown')[:7]}) with pixelate resized with PIL's box "
            "filter") in \
        build(tmp_path, tmp_path / "report.md")
    assert analyses_current(["cnn"])
    said.clear()
    analyse_runs(["cnn"], data, AnalysisSettings(**SMALL), log=said.append, reuse=True)
    assert not any("corruptions" in line for line in said)                         # current now: only read


def test_the_explorer_starts_from_a_saved_analysis_without_recomputing(tmp_path, monkeypatch):
    from labkit.robustness.corruptions import GENERATOR_VERSION
    from labkit.robustness.suite import load_analyses, save_analysis, weights_sha256

    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path))
    data = synthetic_cifar10(train_per_class=2, test_per_class=3)
    save_run(fit(TrainConfig(model="cnn", run_name="cnn", epochs=1, batch_size=8, val_size=10, data="synthetic",
                             progress=False), data))
    with pytest.raises(RunDataError, match="analysis.json does not exist.*analyse = True"):
        load_analyses(["cnn"], data)
    analysis = fake_analysis("cnn", data.test_labels.tolist(), data.test_labels)
    analysis.summary = {"version": 1, "weights_sha256": weights_sha256("cnn"), "data_checksum": data.checksum,
                        "corruptions": {"generator": GENERATOR_VERSION}}
    save_analysis(analysis)
    [loaded] = load_analyses(["cnn"], data).values()
    assert torch.equal(loaded.test_index, analysis.test_index)
    assert torch.allclose(loaded.probabilities, analysis.probabilities, atol=1e-3)
    assert Explorer({"cnn": loaded}, data).widget()
    (tmp_path / "cnn" / "model.pt").write_bytes((tmp_path / "cnn" / "model.pt").read_bytes() + b"retrained")
    with pytest.raises(RunDataError, match="other weights.*analyse = True"):
        load_analyses(["cnn"], data)


def test_the_analysis_takes_each_models_longest_run_by_default(tmp_path, monkeypatch):
    from labkit.runs.store import save_run
    from labkit.training.config import TrainConfig
    from labkit.training.loop import fit

    monkeypatch.setattr(params, "SMOKE", False)
    with pytest.raises(ValueError, match="no saved run in"):
        configure_analysis(runs="longest", results_dir=str(tmp_path), epsilons="1")
    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path))
    for name, epochs in (("cnn", 1), ("cnn-2ep", 2)):
        save_run(fit(TrainConfig(model="cnn", run_name=name, epochs=epochs, batch_size=64, val_size=100,
                                 data="synthetic", progress=False)))
    names, root, _ = configure_analysis(runs="longest", results_dir=str(tmp_path), epsilons="1")
    assert names == ["cnn-2ep"] and root == tmp_path
