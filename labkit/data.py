"""CIFAR-10 from three sources, decoded once into uint8 tensors, and a batch loader that
augments whole batches as tensors on the target device.

Every source yields the same `Cifar10`: uint8 images N×3×32×32, int64 labels, and the class
names in CIFAR-10 order.

    torchvision  the canonical pickled batches through `torchvision.datasets.CIFAR10`
                 (md5-checked by torchvision; downloads only with download=True)
    folder       an image tree train/<class>/* + test/<class>/* (PNG or JPEG), or a .tar,
                 .tar.gz or .zip of one, e.g. ../shared/datasets/cifar10-jpeg.tar.gz
    synthetic    small, deterministic and learnable class patterns for tests and smoke runs

`load_cifar10("auto")` resolves, in order: env LABKIT_DATA (any spec accepted by
`load_cifar10`), a canonical copy under <repo>/data/cifar-10-batches-py, the offline archive
../shared/datasets/cifar10-jpeg.tar.gz, and finally a torchvision download into <repo>/data.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
from torch import Tensor

from labkit.paths import REPO_ROOT, cache_dir
from labkit.storage import StorageError, load_verified, save_verified

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
IMAGE_SHAPE = (3, 32, 32)

CANONICAL_ROOT = REPO_ROOT / "data"
OFFLINE_ARCHIVE = REPO_ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
# Published checksums of archives we know; a mismatch means a damaged or different file.
KNOWN_SHA256 = {
    "cifar10-jpeg.tar.gz": "3e2aac62391cd8ae4e02f60c01e636033519ca50f9279d6e878c2aaaba49ff2c",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# torchvision 0.29 marks its image codecs deprecated in favour of torchcodec; they are the fast
# decoder here and the version is pinned.
warnings.filterwarnings("ignore", "The image decoding and encoding", DeprecationWarning)
CACHE_VERSION = 2   # 2: written behind a sha256 header (labkit.storage)


class DataError(ValueError):
    """Missing, corrupt or malformed data; the message names the file or folder."""


@dataclass
class Cifar10:
    train_images: Tensor  # uint8 N×3×32×32
    train_labels: Tensor  # int64 N
    test_images: Tensor
    test_labels: Tensor
    classes: tuple[str, ...]
    source: str           # "torchvision", "folder" or "synthetic"
    location: str         # where it came from
    checksum: str         # sha256 of the archive, or a fingerprint of the source


# ----------------------------------------------------------------------------- sources

def portable_location(location: str) -> str:
    """Where data came from, without this machine's layout: a path inside the repository's parent
    folder relative to the repository ('../shared/datasets/cifar10-jpeg.tar.gz'), any other path by
    its file name; names that are not paths ('synthetic') as they are."""
    path = Path(location)
    if not path.is_absolute():
        return location
    try:
        return os.path.relpath(path, REPO_ROOT) if path.is_relative_to(REPO_ROOT.parent) else path.name
    except ValueError:     # another drive on Windows
        return path.name


def data_path(spec: str) -> Path:
    """A data path as given; a relative one that is not under the current folder is read from the
    repository root, the form labkit writes (`portable_location`): a notebook kept in results/ and
    opened in JupyterLab runs there with '../shared/...' in its parameters."""
    path = Path(spec).expanduser()
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    return path


def check_data_spec(data: str) -> None:
    """Before any work: `data` is a known name or an existing path (named in the error otherwise)."""
    if str(data) not in ("auto", "synthetic", "torchvision") and not data_path(str(data)).exists():
        raise ValueError(f"data path {str(data)!r} does not exist (relative paths resolve from {Path.cwd()}, then "
                         f"from {REPO_ROOT}); pass 'auto', 'synthetic', 'torchvision', or an existing path")


def load_cifar10(data: str | os.PathLike = "auto", *, download: bool = False, use_cache: bool = True,
                 expected_sha256: str | None = None) -> Cifar10:
    """Load CIFAR-10. `data` is "auto", "synthetic", "torchvision" (canonical copy in
    <repo>/data), or a path: a folder holding cifar-10-batches-py, an image tree, or an archive."""
    spec = str(data)
    if spec == "auto":
        resolved = resolve_auto()
        if os.environ.get("LABKIT_DATA"):
            return load_from_environment(resolved, use_cache=use_cache)
        return load_cifar10(resolved, download=resolved == "torchvision", use_cache=use_cache)
    if spec == "synthetic":
        return synthetic_cifar10()
    if spec == "torchvision":
        return load_torchvision(CANONICAL_ROOT, download=download, use_cache=use_cache)
    path = data_path(spec)
    if not path.exists():
        raise DataError(f"data path {path} does not exist; pass 'auto', 'synthetic', 'torchvision', "
                        f"an image folder or a .tar/.tar.gz/.zip archive of one")
    if path.is_dir() and ((path / "cifar-10-batches-py").is_dir() or path.name == "cifar-10-batches-py"):
        return load_torchvision(path.parent if path.name == "cifar-10-batches-py" else path,
                                download=False, use_cache=use_cache)
    return load_folder(path, use_cache=use_cache, expected_sha256=expected_sha256)


def load_from_environment(spec: str, *, use_cache: bool) -> Cifar10:
    """`auto` as set by env LABKIT_DATA: errors say where the value came from."""
    if spec == "auto":
        raise DataError("LABKIT_DATA=auto refers to itself; set LABKIT_DATA to 'synthetic', 'torchvision' or a "
                        "data path, or unset it to let 'auto' search the usual places")
    try:
        return load_cifar10(spec, download=spec == "torchvision", use_cache=use_cache)
    except DataError as err:
        raise DataError(f"LABKIT_DATA={spec!r}: {err}") from err


def resolve_auto() -> str:
    """The spec that "auto" stands for here, in the documented order."""
    if os.environ.get("LABKIT_DATA"):
        return os.environ["LABKIT_DATA"]
    if (CANONICAL_ROOT / "cifar-10-batches-py").is_dir():
        return str(CANONICAL_ROOT)
    if OFFLINE_ARCHIVE.is_file():
        return str(OFFLINE_ARCHIVE)
    return "torchvision"


def load_torchvision(root: Path, *, download: bool = False, use_cache: bool = True) -> Cifar10:
    from torchvision.datasets import CIFAR10

    def read() -> Cifar10:
        splits = []
        for train in (True, False):
            try:
                ds = CIFAR10(str(root), train=train, download=download)
            except RuntimeError as err:  # torchvision's "not found or corrupted" (md5 mismatch)
                raise DataError(f"canonical CIFAR-10 under {root}/cifar-10-batches-py is missing or fails "
                                f"its md5 check ({err}); pass download=True (--download) to fetch it") from err
            splits += [torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                       torch.tensor(ds.targets, dtype=torch.int64)]
        return Cifar10(*splits, CLASSES, "torchvision", str(root), checksum)

    # torchvision verifies each batch file against its published md5, so those md5s identify the data.
    md5s = "".join(m for _, m in CIFAR10.train_list + CIFAR10.test_list)
    checksum = hashlib.sha256(md5s.encode()).hexdigest()
    if download:
        try:
            CIFAR10(str(root), train=True, download=True)
        except OSError as err:  # URLError, socket errors, a full disk
            raise DataError(f"could not download CIFAR-10 into {root} ({err}); without network, put the "
                            f"canonical copy in {root}/cifar-10-batches-py or pass the path of an offline "
                            f"copy (e.g. {OFFLINE_ARCHIVE.name})") from err
    if not (Path(root) / "cifar-10-batches-py").is_dir():
        raise DataError(f"no canonical CIFAR-10 in {root}/cifar-10-batches-py; pass download=True "
                        f"(--download) to fetch it, or give the offline archive's path")
    return cached(f"torchvision-{checksum[:16]}", checksum, read) if use_cache else read()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_fingerprint(root: Path) -> str:
    """sha256 over relative path, size and mtime of every file: cheap, and changes with the tree."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def load_folder(path: Path, *, use_cache: bool = True, expected_sha256: str | None = None) -> Cifar10:
    """An image tree train/<class>/*, test/<class>/* or a .tar/.tar.gz/.zip archive of one."""
    if path.is_dir():
        checksum = folder_fingerprint(path)
    else:
        checksum = sha256_file(path)
        expected = expected_sha256 or KNOWN_SHA256.get(path.name)
        if expected and checksum != expected:
            raise DataError(f"checksum mismatch for {path}: sha256 {checksum}, expected {expected}; "
                            f"the file is damaged or not the published copy")
    return cached(f"folder-{checksum[:16]}", checksum,
                  lambda: decode_image_tree(read_image_tree(path), path, checksum)) if use_cache \
        else decode_image_tree(read_image_tree(path), path, checksum)


def read_image_tree(path: Path) -> dict[str, dict[str, list[tuple[str, bytes]]]]:
    """{split: {class: [(file name, encoded bytes), ...]}} from a folder or an archive.
    The tree may sit under one top-level folder (e.g. cifar10/train/cat/0001.jpg)."""
    tree: dict[str, dict[str, list[tuple[str, bytes]]]] = {}

    def add(name: str, read) -> None:
        parts = PurePosixPath(name).parts
        if any(part.startswith(".") or part == "__MACOSX" for part in parts):
            return   # macOS resource forks (__MACOSX/…/._0000.jpg) and other hidden files
        if len(parts) >= 3 and parts[-3] in ("train", "test") and parts[-1].lower().endswith(IMAGE_SUFFIXES):
            tree.setdefault(parts[-3], {}).setdefault(parts[-2], []).append((name, read()))

    if path.is_dir():
        for file in sorted(path.rglob("*")):
            if file.is_file():
                add(file.relative_to(path).as_posix(), file.read_bytes)
        for split in ("train", "test"):
            if not (path / split).is_dir():
                raise DataError(f"missing split folder {path / split}: expected train/<class>/* and test/<class>/*")
    elif zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if not info.is_dir():
                        add(info.filename, lambda info=info: archive.read(info))
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise DataError(f"corrupt zip archive {path}: {err}") from err
    else:
        try:
            with tarfile.open(path) as archive:
                for member in archive:
                    if member.isfile():
                        add(member.name, lambda m=member: archive.extractfile(m).read())
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataError(f"corrupt or unreadable archive {path}: {err}; expected a .tar, .tar.gz or "
                            f".zip of train/<class>/* and test/<class>/*") from err
    return tree


def decode_image_tree(tree: dict, origin: Path, checksum: str) -> Cifar10:
    from torchvision.io import ImageReadMode, decode_image

    tensors = []
    for split in ("train", "test"):
        classes = tree.get(split, {})
        if not classes or not any(classes.values()):
            raise DataError(f"empty split: no images found under {origin}/{split}/<class>/")
        unknown = sorted(set(classes) - set(CLASSES))
        if unknown:
            raise DataError(f"unknown class folder(s) {unknown} in {origin}/{split}; expected {list(CLASSES)}")
        images, labels = [], []
        for label, name in enumerate(CLASSES):
            files = sorted(classes.get(name, []))
            if not files:
                raise DataError(f"missing class folder {origin}/{split}/{name}: every split needs all 10 classes")
            for file_name, payload in files:
                if not payload:
                    raise DataError(f"unreadable image {origin}/{file_name}: an empty (0-byte) file; replace or "
                                    f"remove it")
                try:
                    image = decode_image(torch.frombuffer(bytearray(payload), dtype=torch.uint8), ImageReadMode.RGB)
                except (RuntimeError, ValueError) as err:
                    raise DataError(f"unreadable image {origin}/{file_name}: {err}") from err
                if tuple(image.shape) != IMAGE_SHAPE:
                    raise DataError(f"wrong image size in {origin}/{file_name}: {tuple(image.shape[1:])}, "
                                    f"expected 32×32")
                images.append(image)
                labels.append(label)
        tensors += [torch.stack(images), torch.tensor(labels, dtype=torch.int64)]
    return Cifar10(*tensors, CLASSES, "folder", str(origin), checksum)


def synthetic_cifar10(train_per_class: int = 100, test_per_class: int = 20, seed: int = 0) -> Cifar10:
    """Deterministic, learnable stand-in: each class is a colour plus an oriented stripe
    pattern, with random shifts and noise. Same format as the real data."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")

    def make(per_class: int) -> tuple[Tensor, Tensor]:
        labels = torch.arange(10).repeat_interleave(per_class)
        angle = labels.float()[:, None, None] * torch.pi / 10
        phase = torch.rand(len(labels), 1, 1, generator=g) * 2 * torch.pi
        stripes = torch.sin((xx * torch.cos(angle) + yy * torch.sin(angle)) * 0.6 + phase)
        hue = labels.float()[:, None] / 10 + torch.tensor([0.0, 1 / 3, 2 / 3])      # a colour wheel
        colour = 0.5 + 0.5 * torch.cos(2 * torch.pi * hue)
        images = 0.6 * colour[:, :, None, None] + 0.15 * stripes[:, None] + 0.2
        images = images + 0.05 * torch.randn(images.shape, generator=g)
        return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels

    train_images, train_labels = make(train_per_class)
    test_images, test_labels = make(test_per_class)
    checksum = f"synthetic-{train_per_class}-{test_per_class}-{seed}"
    return Cifar10(train_images, train_labels, test_images, test_labels, CLASSES, "synthetic", "generated", checksum)




# ----------------------------------------------------------------------------- cache

def cached(key: str, checksum: str, build) -> Cifar10:
    """Return the decoded tensors from cache_dir()/cifar10-<key>.pt, rebuilding the file when it
    is missing, damaged (its sha256 does not match), stale or malformed. A cache that cannot be
    written is skipped with a warning: the run carries on with the freshly decoded tensors."""
    path = cache_dir() / f"cifar10-{key}.pt"
    if path.is_file():
        try:
            blob, _ = load_verified(path)
            if blob["version"] == CACHE_VERSION and blob["checksum"] == checksum:
                data = Cifar10(blob["train_images"], blob["train_labels"], blob["test_images"],
                               blob["test_labels"], tuple(blob["classes"]), blob["source"], blob["location"],
                               checksum)
                check_tensors(data)
                return data
        except Exception:  # noqa: BLE001 - any unreadable or damaged cache is rebuilt, never trusted
            pass
    data = build()
    check_tensors(data)
    blob = dict(version=CACHE_VERSION, checksum=checksum, classes=list(data.classes), source=data.source,
                location=data.location, train_images=data.train_images, train_labels=data.train_labels,
                test_images=data.test_images, test_labels=data.test_labels)
    try:
        save_verified(path, blob)
    except StorageError as err:
        warnings.warn(f"data cache not written, carrying on without it: {err.strerror}. Set LABKIT_CACHE to a "
                      f"writable folder to decode the data only once", stacklevel=2)
    return data


def check_tensors(data: Cifar10) -> None:
    for images, labels in ((data.train_images, data.train_labels), (data.test_images, data.test_labels)):
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
            raise DataError(f"images must be uint8 N×3×32×32, got {images.dtype} {tuple(images.shape)}")
        if labels.dtype != torch.int64 or labels.shape != images.shape[:1] or len(labels) == 0:
            raise DataError(f"labels must be int64 with one per image, got {labels.dtype} {tuple(labels.shape)}")
        if labels.min() < 0 or labels.max() >= len(data.classes):
            raise DataError("labels out of range for the class list")


# ----------------------------------------------------------------------------- splits

def train_val_split(labels: Tensor, val_size: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Stratified, seeded split of train indices into (train, val). val_size=0 is allowed."""
    num_classes = int(labels.max()) + 1
    if not 0 <= val_size < len(labels):
        raise ValueError(f"val_size must be in [0, {len(labels) - 1}], got {val_size}")
    g = torch.Generator().manual_seed(seed)
    train_parts, val_parts = [], []
    for c in range(num_classes):
        members = (labels == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=g)]
        quota = val_size // num_classes + (1 if c < val_size % num_classes else 0)
        if quota >= len(members) and quota > 0:
            raise ValueError(f"val_size {val_size} leaves no training images of class {c}")
        val_parts.append(members[:quota])
        train_parts.append(members[quota:])
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values


def subset_indices(labels: Tensor, size: int, seed: int = 0) -> Tensor:
    """A stratified, seeded subset of `size` indices (for quick trials and smoke runs)."""
    return train_val_split(labels, size, seed + 1)[1]


# ----------------------------------------------------------------------------- batches

def normalize(images: Tensor, max_value: float = 255.0) -> Tensor:
    """Images N×3×H×W with pixel values in [0, max_value] (uint8 0–255 by default; floats in [0, 1]
    with max_value=1) as float32, standardised per channel with CIFAR-10's MEAN and STD. The one
    normalisation of training, evaluation, Grad-CAM and the attacks; it keeps the memory format."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1) * max_value
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1) * max_value
    return (images.float() - mean) / std


class BatchLoader:
    """Yields (images, labels) batches on `device`: float, normalised, channels_last.

    For training, each epoch shuffles with a generator seeded by (seed, epoch), so a resumed
    run sees exactly the batches of an uninterrupted one, and augments the whole batch at once:
    random 32×32 crop of the 4-pixel reflect-padded image, then a random horizontal flip, both
    done as one gather on the uint8 tensor; with `cutout` > 0, a random cutout×cutout square
    inside each image is then set to the data set's mean colour (0 after normalisation).

    Under data-parallel training (`world_size` > 1) every rank draws the same shuffled order and
    takes its own `batch_size` slice of each global batch of batch_size × world_size images; rank
    0 augments with the same random stream as a single process, the others with their own.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, *, train: bool,
                 device: str | torch.device = "cpu", seed: int = 0, channels_last: bool = True,
                 cutout: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        if not 0 <= cutout <= IMAGE_SHAPE[-1]:
            raise ValueError(f"cutout must be in [0, {IMAGE_SHAPE[-1]}], got {cutout}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size, self.train, self.seed, self.cutout = batch_size, train, seed, cutout
        self.rank, self.world_size = rank, world_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.epoch = 0
        # index i of the padded axis reads pixel reflect_index[i] of the original axis
        self.reflect_index = torch.tensor(list(range(4, 0, -1)) + list(range(32)) + list(range(30, 26, -1)),
                                          device=self.device)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // (self.batch_size * self.world_size) if self.train else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=g).to(self.device) if self.train else None
        augment_g = g if self.rank == 0 else \
            torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 1_009 + self.rank)
        for b in range(len(self)):
            start = (b * self.world_size + self.rank) * self.batch_size if self.train else b * self.batch_size
            sl = slice(start, start + self.batch_size)
            idx = order[sl] if self.train else torch.arange(n, device=self.device)[sl]
            x = self.augment(self.images[idx], augment_g) if self.train else self.images[idx]
            x = normalize(x.contiguous(memory_format=self.memory_format))
            if self.train and self.cutout:
                x = self.cut_out(x, augment_g)
            yield x, self.labels[idx]

    def augment(self, x: Tensor, g: torch.Generator) -> Tensor:
        n = len(x)
        offsets = torch.randint(0, 9, (n, 2), generator=g).to(self.device)
        flips = (torch.rand(n, generator=g) < 0.5).to(self.device)
        span = torch.arange(32, device=self.device)
        rows = self.reflect_index[offsets[:, :1] + span]                  # n×32
        cols = self.reflect_index[offsets[:, 1:] + span]                  # n×32
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        picked = x[torch.arange(n, device=self.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        return picked.permute(0, 3, 1, 2)                                 # n×3×32×32, NHWC in memory

    def cut_out(self, x: Tensor, g: torch.Generator) -> Tensor:
        """Zero a cutout×cutout square per image, placed wholly inside it (after the crop and
        flip draws, so runs without cutout see the same random stream as before)."""
        n, size = len(x), x.shape[-1]
        corners = torch.randint(0, size - self.cutout + 1, (n, 2), generator=g).to(self.device)
        span = torch.arange(size, device=self.device)
        inside_rows = (span >= corners[:, :1]) & (span < corners[:, :1] + self.cutout)   # n×32
        inside_cols = (span >= corners[:, 1:]) & (span < corners[:, 1:] + self.cutout)
        return x.masked_fill_(inside_rows[:, None, :, None] & inside_cols[:, None, None, :], 0.0)  # keeps the layout


def reference_loader(images: Tensor, labels: Tensor, batch_size: int, *, train: bool,
                     num_workers: int = 2, seed: int = 0):
    """The reference pipeline most CIFAR tutorials use: PIL images, torchvision transforms
    per image, a DataLoader with worker processes, fp32 NCHW. Used by the benchmark."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    steps = [transforms.RandomCrop(32, padding=4, padding_mode="reflect"), transforms.RandomHorizontalFlip()] \
        if train else []
    transform = transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    arrays = images.permute(0, 2, 3, 1).numpy()

    class PILImages(Dataset):
        def __len__(self):
            return len(arrays)

        def __getitem__(self, i):
            return transform(Image.fromarray(arrays[i])), int(labels[i])

    return DataLoader(PILImages(), batch_size=batch_size, shuffle=train, num_workers=num_workers,
                      drop_last=train, generator=torch.Generator().manual_seed(seed),
                      persistent_workers=num_workers > 0)
