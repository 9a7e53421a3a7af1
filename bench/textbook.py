"""The textbook loop of the seeds: a torch Dataset reading images with PIL, per-sample transforms,
a DataLoader with 2 workers, and the usual train loop (torchvision itself cannot be imported
here, so its transforms are written out below with PIL and numpy, doing the same work)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from bench.harness import (
    Prepared,
    Variant,
    fresh_net,
    head_accuracy,
    head_inputs,
    make_optimizer,
    net_predictor,
    set_train_mode,
)

Transform = Callable[[Image.Image], object]


class Compose:
    """transforms.Compose."""

    def __init__(self, ops: list[Transform]) -> None:
        self.ops = ops

    def __call__(self, img: Image.Image) -> torch.Tensor:
        for op in self.ops:
            img = op(img)
        return img  # type: ignore[return-value]


class Resize:
    """transforms.Resize((h, w)) (bilinear)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.resize((self.size, self.size), Image.BILINEAR)


class CenterCrop:
    """transforms.CenterCrop(size)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        left, top = (w - self.size) // 2, (h - self.size) // 2
        return img.crop((left, top, left + self.size, top + self.size))


class RandomCrop:
    """transforms.RandomCrop(size, padding) with zero padding."""

    def __init__(self, size: int, padding: int) -> None:
        self.size, self.padding = size, padding

    def __call__(self, img: Image.Image) -> Image.Image:
        img = ImageOps.expand(img, border=self.padding, fill=0)
        w, h = img.size
        top = int(torch.randint(0, h - self.size + 1, (1,)))
        left = int(torch.randint(0, w - self.size + 1, (1,)))
        return img.crop((left, top, left + self.size, top + self.size))


class RandomHorizontalFlip:
    """transforms.RandomHorizontalFlip(p=0.5)."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.transpose(Image.FLIP_LEFT_RIGHT) if torch.rand(1) < 0.5 else img


class ToTensor:
    """transforms.ToTensor: HWC uint8 -> CHW float in [0, 1]."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        a = np.asarray(img, dtype=np.uint8)
        if a.ndim == 2:
            a = a[:, :, None]
        return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div(255.0)


class Normalize:
    """transforms.Normalize(mean, std)."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ArrayImages(Dataset):
    """Like torchvision's CIFAR10/MNIST: a uint8 array in memory, a PIL image per item."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Compose) -> None:
        x = images.permute(0, 2, 3, 1).numpy()  # NHWC, as those datasets keep it
        self.images = x[..., 0] if x.shape[-1] == 1 else x
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


class FileImages(Dataset):
    """Like ImageFolder / the seeds' DogDataset: open and decode the file every time."""

    def __init__(self, paths: list[Path], labels: torch.Tensor, transform: Compose,
                 channels: int = 3) -> None:
        self.paths, self.labels, self.transform = paths, labels.tolist(), transform
        self.mode = "RGB" if channels == 3 else "L"

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert(self.mode)), self.labels[i]


def transforms_for(prep: Prepared, train: bool) -> Compose:
    """The seeds' transform list for this case."""
    case = prep.case
    ops: list[Transform] = []
    if case.textbook_source == "files":
        resize, crop = case.textbook_resize
        ops.append(Resize(resize))
        if crop:
            ops.append(CenterCrop(crop))
    if train and case.augment:
        for part in case.augment.split(","):
            name, _, val = part.partition("=")
            if name == "crop":
                ops.append(RandomCrop(case.image_size, int(float(val or 4))))
            elif name == "hflip":
                ops.append(RandomHorizontalFlip())
    ops += [ToTensor(), Normalize(prep.mean, prep.std)]
    return Compose(ops)


def dataset_for(prep: Prepared, train: bool) -> Dataset:
    """The training (augmented) or evaluation dataset of the case."""
    tf = transforms_for(prep, train)
    if prep.case.textbook_source == "files":
        paths = prep.train_files if train else prep.eval_files
        labels = prep.train_y if train else prep.eval_y
        return FileImages(paths, labels, tf, prep.channels)
    x, y = (prep.train_x, prep.train_y) if train else (prep.eval_x, prep.eval_y)
    return ArrayImages(x, y, tf)


class Textbook(Variant):
    """DataLoader(2 workers, shuffle) over a PIL Dataset, then the usual loop, all in fp32."""

    name = "textbook (PIL Dataset + DataLoader, 2 workers)"
    kind = "textbook"

    def __init__(self, prep: Prepared, workers: int = 2) -> None:
        self.prep, self.case, self.workers = prep, prep.case, workers
        self.images_per_epoch = len(prep.train_y)

    def setup(self) -> None:
        """Dataset, loader, network, optimizer (what a seed's script does before its loop)."""
        self.loader = DataLoader(dataset_for(self.prep, True), batch_size=self.case.batch_size,
                                 shuffle=True, num_workers=self.workers,
                                 generator=torch.Generator().manual_seed(0))
        self.net = fresh_net(self.case, self.prep)
        self.opt = make_optimizer(self.net, self.case.lr)
        self._eval_x: torch.Tensor | None = None

    def epoch(self) -> None:
        """The seeds' loop, including the per-step loss.item() they log."""
        set_train_mode(self.net)
        running = 0.0
        for x, y in self.loader:
            self.opt.zero_grad()
            out = self.net(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            self.opt.step()
            running += loss.item()
        self.last_loss = running

    def accuracy(self) -> float:
        """Eval accuracy on images prepared by the textbook's own eval transforms (untimed)."""
        if self.prep.case.textbook_source != "files":
            return _acc(net_predictor(self.net, self.prep), self.prep)
        if self._eval_x is None:
            ds = dataset_for(self.prep, False)
            self._eval_x = torch.stack([ds[i][0] for i in range(len(ds))])
            if getattr(self.net, "_bench_frozen", False):
                self._eval_feats = head_inputs(self.net, self._eval_x)
        if getattr(self.net, "_bench_frozen", False):
            return head_accuracy(self.net, self._eval_feats, self.prep.eval_y)
        was = self.net.training
        self.net.eval()
        with torch.inference_mode():
            correct = 0
            for s in range(0, len(self._eval_x), 256):
                out = self.net(self._eval_x[s:s + 256])
                correct += int((out.argmax(1) == self.prep.eval_y[s:s + 256]).sum())
        if was:
            set_train_mode(self.net)
        return correct / max(len(self.prep.eval_y), 1)


def _acc(predict: Callable, prep: Prepared) -> float:
    from bench.harness import accuracy

    return accuracy(predict, prep)
