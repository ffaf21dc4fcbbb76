"""Checks on the real offline CIFAR-10 copy and on the committed runs; skipped without the data."""
import json

import pytest

from labkit.data import CLASSES, KNOWN_SHA256, REPO_ROOT, load_cifar10
from labkit.evaluate import evaluate
from labkit.runs.store import load_model

from .conftest import real_archive, real_data

pytestmark = real_data


@pytest.fixture(scope="module")
def cifar():
    return load_cifar10(real_archive())


def test_offline_archive_has_the_published_layout(cifar):
    assert cifar.checksum == KNOWN_SHA256["cifar10-jpeg.tar.gz"]
    assert cifar.train_images.shape == (50_000, 3, 32, 32) and cifar.test_images.shape == (10_000, 3, 32, 32)
    assert cifar.train_labels.bincount().tolist() == [5000] * 10
    assert cifar.test_labels.bincount().tolist() == [1000] * 10
    assert cifar.classes == CLASSES


def committed_runs():
    return sorted(p.parent.name for p in (REPO_ROOT / "results").glob("*/metrics.json"))


@pytest.mark.parametrize("run", committed_runs())
def test_committed_weights_reproduce_the_recorded_test_accuracy_without_tta(cifar, run):
    metrics = json.loads((REPO_ROOT / "results" / run / "metrics.json").read_text())
    if metrics["data_checksum"] != cifar.checksum:
        pytest.skip(f"{run} was trained on other data ({metrics['data_source']})")
    model = load_model(run, REPO_ROOT / "results")
    # Without TTA: one pass over the test set instead of up to three proves the weights just as well
    # (the TTA code is tested on synthetic data), and keeps this test cheap as long runs accumulate.
    result = evaluate(model, cifar.test_images, cifar.test_labels, cifar.classes,
                      precision=metrics["precision"], tta=0)
    recorded = metrics["test_accuracy_no_tta"]
    assert abs(result.accuracy - recorded) <= 0.001, (result.accuracy, recorded)
