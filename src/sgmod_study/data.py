"""Image datasets as in-memory tensors, one Lightning data module for all of them.

``data`` config: ``name`` (fashion_mnist | digits | mnist | cifar10) plus loader options.
Every dataset here fits in memory many times over, so each split is a normalised float
tensor and augmentation runs batch-wise on the training device. With ``on_device=true`` the
splits themselves are moved to the training device and batches are sliced out of them there
(``DeviceBatches``): no DataLoader, no per-sample indexing, no host-to-device copies.

Fashion-MNIST is looked up in this order: ``data.data_dir`` (raw IDX files, gzipped or not,
directly there or in torchvision's ``FashionMNIST/raw`` layout), the system copy from
Debian's ``dataset-fashion-mnist`` (``data.system_dir``), then a torchvision download into
``data.data_dir``.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from sgmod_study.errors import ConfigError, check_bool, check_choice, check_positive

SYSTEM_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
SCALINGS = ("standardize", "symmetric")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# uint8 images (N, C, H, W) and int64 labels, for the train and test sets.
Splits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (the MNIST family's format), gzipped or not; its size must match its header."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise ConfigError(f"{path} is not an IDX file: it holds {len(data)} bytes, fewer than the 4-byte header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ConfigError(f"{path} is not an unsigned-byte IDX file (header {data[:4].hex()})")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ConfigError(f"{path} is truncated: its IDX header needs {offset} bytes, the file holds {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:offset])
    expected = offset + int(np.prod(shape))
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "longer than its header says"
        raise ConfigError(
            f"{path} is {kind}: its IDX header says shape {'x'.join(map(str, shape))} ({expected} bytes"
            f"{' uncompressed' if path.suffix == '.gz' else ''}), the file holds {len(data)} bytes; replace it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as err:  # a cut-off download, a damaged or non-gzip file
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"{path} is not a readable gzip file ({reason}); replace it") from None


def _idx_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_fashion_mnist(directory: str | Path) -> Path | None:
    """The folder under ``directory`` holding all four Fashion-MNIST IDX files, if any."""
    root = Path(directory).expanduser()
    for folder in (root, root / "FashionMNIST" / "raw"):
        if all(_idx_file(folder, name) for name in FASHION_MNIST_FILES):
            return folder
    return None


def locate_fashion_mnist(data_dir: str, system_dir: str, download: bool) -> Path:
    """Apply the lookup order; download into ``data_dir`` when allowed and needed."""
    for directory in (data_dir, system_dir):
        found = find_fashion_mnist(directory)
        if found is not None:
            return found
    reason = "download disabled (data.download=false)"
    if download:
        try:
            from torchvision.datasets import FashionMNIST

            for train in (True, False):
                FashionMNIST(root=data_dir, train=train, download=True)
            found = find_fashion_mnist(data_dir)
            if found is not None:
                return found
            reason = f"the download finished but left no IDX files in {data_dir}"
        except Exception as err:  # any network / filesystem failure ends in the same advice
            reason = f"download failed: {type(err).__name__}: {err}".splitlines()[0]
    raise ConfigError(
        f"Fashion-MNIST not found. Looked in (1) data.data_dir={data_dir} (put the four IDX files there), "
        f"(2) the system copy {system_dir} (apt-get install dataset-fashion-mnist), "
        f"(3) a torchvision download into data.data_dir: {reason}"
    )


def load_fashion_mnist(data_dir: str, system_dir: str = SYSTEM_FASHION_MNIST, download: bool = True) -> Splits:
    folder = locate_fashion_mnist(data_dir, system_dir, download)
    paths = [_idx_file(folder, name) for name in FASHION_MNIST_FILES]
    arrays = [read_idx(path) for path in paths]
    _check_images_and_labels(paths[0], arrays[0], paths[1], arrays[1])
    _check_images_and_labels(paths[2], arrays[2], paths[3], arrays[3])
    train_x, train_y, test_x, test_y = (torch.from_numpy(a.copy()) for a in arrays)
    return train_x.unsqueeze(1), train_y.long(), test_x.unsqueeze(1), test_y.long()


def _check_images_and_labels(images_path: Path, images: np.ndarray, labels_path: Path, labels: np.ndarray) -> None:
    """A labels file that does not belong to its images file would silently train on a part of it."""
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ConfigError(f"{images_path} holds images of shape {'x'.join(map(str, images.shape))}, expected Nx28x28")
    if labels.ndim != 1:
        raise ConfigError(f"{labels_path} holds labels of shape {'x'.join(map(str, labels.shape))}, expected N")
    if len(images) != len(labels):
        raise ConfigError(
            f"{labels_path} holds {len(labels)} labels but {images_path} holds {len(images)} images: "
            "the two files must come from the same copy of the data"
        )
    if len(labels) and labels.max() > 9:
        raise ConfigError(f"{labels_path} holds label {labels.max()}, Fashion-MNIST's labels are 0..9")


def fashion_mnist_source(data_dir: str, system_dir: str = SYSTEM_FASHION_MNIST, **_) -> str:
    """The folder the data were read from (called after loading, so it is found without downloading)."""
    return str(locate_fashion_mnist(data_dir, system_dir, download=False).resolve())


def digits_source(data_dir: str, **_) -> str:
    import sklearn

    return f"scikit-learn {sklearn.__version__} (sklearn.datasets.load_digits, bundled)"


def load_digits(data_dir: str, test_size: int = 360, **_) -> Splits:
    """scikit-learn's 8x8 digits (ships inside the wheel), with a fixed held-out test set."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.from_numpy((digits.images * 16).clip(0, 255).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(digits.target).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    test, train = order[:test_size], order[test_size:]
    return images[train], labels[train], images[test], labels[test]


def _load_torchvision(dataset_class_name: str) -> Callable[..., Splits]:
    def load(data_dir: str, download: bool = True, **_) -> Splits:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, dataset_class_name)
        try:
            train, test = (cls(root=data_dir, train=flag, download=download) for flag in (True, False))
        except Exception as err:
            first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(
                f"{dataset_class_name} not found in data.data_dir={data_dir} and not downloadable "
                f"(data.download={download}): {first_line}"
            ) from None
        return (*_images_and_labels(train), *_images_and_labels(test))

    return load


def _torchvision_source(dataset_class_name: str) -> Callable[..., str]:
    return lambda data_dir, **_: str((Path(data_dir) / dataset_class_name).resolve())


def _images_and_labels(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.as_tensor(np.asarray(dataset.data))
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)  # HWC -> CHW
    return images.contiguous(), torch.as_tensor(np.asarray(dataset.targets)).long()


def prepare_fashion_mnist(data_dir: str, system_dir: str = SYSTEM_FASHION_MNIST, download: bool = True) -> None:
    locate_fashion_mnist(data_dir, system_dir, download)


@dataclass(frozen=True)
class DatasetSpec:
    load: Callable[..., Splits]
    channels: int
    image_size: int
    num_classes: int
    # Where the loaded data came from (a folder), for the run's log and result.json.
    source: Callable[..., str] = lambda data_dir, **_: str(Path(data_dir).resolve())
    # Makes the files available (downloads them if needed) without loading them; None: nothing to fetch.
    prepare: Callable[..., object] | None = None


_MNIST, _CIFAR10 = _load_torchvision("MNIST"), _load_torchvision("CIFAR10")
DATASETS = {
    "fashion_mnist": DatasetSpec(load_fashion_mnist, 1, 28, 10, fashion_mnist_source, prepare_fashion_mnist),
    "digits": DatasetSpec(load_digits, 1, 8, 10, digits_source),
    "mnist": DatasetSpec(_MNIST, 1, 28, 10, _torchvision_source("MNIST"), prepare=_MNIST),
    "cifar10": DatasetSpec(_CIFAR10, 3, 32, 10, _torchvision_source("CIFAR10"), prepare=_CIFAR10),
}


def dataset_spec(name: str) -> DatasetSpec:
    check_choice("data", name, DATASETS)
    return DATASETS[name]


def random_shift_flip(x: torch.Tensor, padding: int, flip: bool) -> torch.Tensor:
    """Per-sample random translation by up to ``padding`` pixels (edge-replicated) and h-flip."""
    n, c, h, w = x.shape
    if padding:
        padded = F.pad(x, (padding,) * 4, mode="replicate")
        dy, dx = (torch.randint(0, 2 * padding + 1, (n,), device=x.device) for _ in range(2))
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channel = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch, channel, rows, cols]
    if flip:
        mirror = torch.rand(n, device=x.device) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x


class DeviceBatches:
    """``(images, labels)`` batches indexed out of tensors that already sit on the training device.

    Yields what a ``DataLoader(TensorDataset(images, labels), batch_size, shuffle)`` would: the same
    batch size, the last batch partial. ``shuffle`` draws a new order every epoch from a generator
    seeded by ``seed`` and ``epoch()`` (read when the first batch is drawn), so runs are reproducible.

    Lightning injects no sampler into an iterable that is not a DataLoader, so under DDP this class
    shards itself by ``rank``: training shares are disjoint and of equal size (the ranks must take
    the same number of steps; the few images of ``len % world_size`` left over are dropped, different
    ones each epoch), evaluation shares are disjoint and cover every image once (exact metrics).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, epoch
        self.rank, self.world_size = rank, world_size

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in order."""
        n = len(self.labels)
        if not self.shuffle:
            return torch.arange(self.rank, n, self.world_size)
        # On the CPU: the same order on every device. The CPU generator keeps only 32 bits of its seed,
        # so seed and epoch are mixed into 32 bits rather than put side by side.
        epoch_seed = np.random.SeedSequence([self.seed, self.epoch()]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(epoch_seed))
        per_rank = n // self.world_size
        return torch.randperm(n, generator=generator)[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = self.indices().to(self.labels.device)
        for batch in indices.split(self.batch_size):
            yield self.images[batch], self.labels[batch]

    def __len__(self) -> int:
        n = len(self.labels)
        share = n // self.world_size if self.shuffle else len(range(self.rank, n, self.world_size))
        return -(-share // self.batch_size)


def split_indices(n: int, val_size: int, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set's ``(train_idx, val_idx)``: ``val_size`` images held out by a permutation
    seeded with ``split_seed`` (the feature net script trains on ``train_idx`` only)."""
    if not 0 < val_size < n:
        raise ConfigError(f"data.val_size={val_size} is not allowed: it must be in 1..{n - 1}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    return order[val_size:], order[:val_size]


class ImageDataModule(L.LightningDataModule):
    """Train/val split of the training set (fixed ``split_seed``); the test set is only for test.

    ``on_device``: keep the splits on the trainer's device and serve ``DeviceBatches`` instead of
    DataLoaders (shuffled from ``seed`` and the epoch). ``channels_last``: hand the model its
    image batches in channels-last memory format.
    """

    def __init__(
        self,
        name: str = "fashion_mnist",
        data_dir: str = "data",
        batch_size: int = 256,
        val_size: int = 5000,
        split_seed: int = 0,
        scaling: str = "standardize",
        augment: bool = False,
        shift: int = 2,
        hflip: bool = False,
        num_workers: int = 0,
        on_device: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        **loader_options,
    ) -> None:
        super().__init__()
        self.spec = dataset_spec(name)
        check_positive("data.batch_size", batch_size)
        check_choice("data.scaling", scaling, SCALINGS)
        check_bool("data.on_device", on_device)
        self.on_device, self.seed, self.channels_last = on_device, seed, channels_last
        self.name, self.data_dir, self.loader_options = name, data_dir, loader_options
        self.batch_size, self.val_size, self.split_seed, self.scaling = batch_size, val_size, split_seed, scaling
        self.augment, self.shift, self.hflip, self.num_workers = augment, shift, hflip, num_workers
        self.train_set = self.val_set = self.test_set = None
        self.source: str | None = None  # where the data were read from, set by setup

    def prepare_data(self) -> None:
        # Runs once per node before setup: any download happens here, not on every rank.
        if self.spec.prepare is not None:
            self.spec.prepare(self.data_dir, **self.loader_options)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self._make_splits()
        if self.on_device:
            # the strategy has set up its device before Lightning calls setup; without a trainer: the CPU
            device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
            self.train_set, self.val_set, self.test_set = (
                TensorDataset(*(t.to(device) for t in split.tensors))
                for split in (self.train_set, self.val_set, self.test_set)
            )

    def _make_splits(self) -> None:
        train_x, train_y, test_x, test_y = self.spec.load(self.data_dir, **self.loader_options)
        train_idx, val_idx = split_indices(len(train_y), self.val_size, self.split_seed)
        scale = _scaler(train_x[train_idx], self.scaling)
        self.train_set = TensorDataset(scale(train_x[train_idx]), train_y[train_idx])
        self.val_set = TensorDataset(scale(train_x[val_idx]), train_y[val_idx])
        self.test_set = TensorDataset(scale(test_x), test_y)
        self.source = self.spec.source(self.data_dir, **self.loader_options)
        if self.trainer is None or self.trainer.is_global_zero:
            print(
                f"data: {self.name} from {self.source} "
                f"(train {len(train_idx)}, val {len(val_idx)}, test {len(test_y)} images)"
            )

    def state_dict(self) -> dict:
        return {"source": self.source}  # every checkpoint records which copy of the data trained it

    def load_state_dict(self, state_dict: dict) -> None:
        pass  # the resumed run reads the data again and records its own source

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader(self.test_set, shuffle=False)

    def _loader(self, dataset: TensorDataset, shuffle: bool) -> DataLoader | DeviceBatches:
        if not self.on_device:
            # Every DataLoader iterator draws a seed from its generator; with the global one, each
            # evaluation would shift the training run's random numbers (its shuffles, a GAN's noise),
            # so evaluating more or less often would change training. Evaluation loaders draw from
            # their own generator; the training loader's shuffle stays on the seeded global one.
            own = None if shuffle else torch.Generator()
            return DataLoader(
                dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers, generator=own
            )
        trainer, placement = self.trainer, {}
        if trainer is not None:
            placement = {
                "epoch": lambda: trainer.current_epoch,
                "rank": trainer.global_rank,
                "world_size": trainer.world_size,
            }
        return DeviceBatches(*dataset.tensors, self.batch_size, shuffle=shuffle, seed=self.seed, **placement)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        if self.augment and self.trainer is not None and self.trainer.training:
            images = random_shift_flip(images, self.shift, self.hflip)
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels


def _scaler(train_images: torch.Tensor, scaling: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 -> float: ``standardize`` with the training split's per-channel statistics, or
    ``symmetric`` to [-1, 1] (a tanh generator's range)."""
    if scaling == "symmetric":
        return lambda images: images.float() / 127.5 - 1
    x = train_images.float() / 255
    mean, std = x.mean(dim=(0, 2, 3))[:, None, None], x.std(dim=(0, 2, 3))[:, None, None]
    return lambda images: (images.float() / 255 - mean) / std
