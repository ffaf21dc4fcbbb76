"""Helpers the tests share: fixtures in the real on-disk formats, and reference computations."""
from __future__ import annotations

from pathlib import Path

from torchvision.io import encode_jpeg, encode_png

from labkit.data import Cifar10

FIXTURES = Path(__file__).parent / "fixtures"   # files written by earlier labkit versions


def export_image_folder(data: Cifar10, root: Path, fmt: str = "png") -> Path:
    """Write `data` as train/<class>/NNNN.<fmt> + test/<class>/NNNN.<fmt> (the on-disk layout
    `load_folder` reads); used to make realistic test fixtures."""
    encode = encode_png if fmt == "png" else encode_jpeg
    for split, images, labels in (("train", data.train_images, data.train_labels),
                                  ("test", data.test_images, data.test_labels)):
        for i, (image, label) in enumerate(zip(images, labels.tolist())):
            folder = root / split / data.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:04d}.{fmt}").write_bytes(encode(image).numpy().tobytes())
    return root


def ece_from_bins(rows: list[dict]) -> float:
    """ECE from reliability bins (count, accuracy, confidence): the count-weighted mean gap."""
    total = sum(r["count"] for r in rows)
    return sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows if r["count"]) / total
