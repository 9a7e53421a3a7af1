"""The peers: PyTorch Lightning Trainer.fit and skorch NeuralNetClassifier.fit, same network,
same optimizer, batch size and epochs. Both get the data already decoded in memory (the most
favourable setup for them: no file decoding per epoch) with per-sample augmentation in the
Dataset, as their users write it. Installed only by the `bench` extra."""

from __future__ import annotations

import logging
import sys
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bench.cases import WORK
from bench.harness import Prepared, ThreadedFit, accuracy, fresh_net, net_predictor, set_train_mode


def available() -> dict[str, str | None]:
    """{'lightning': version or None, 'skorch': version or None}."""
    out: dict[str, str | None] = {}
    for name in ("lightning", "skorch"):
        try:
            out[name] = __import__(name).__version__
        except Exception as exc:  # noqa: BLE001 - missing or broken install: the peer is skipped
            print(f"[bench] {name} not usable: {type(exc).__name__}: {exc}"[:300],
                  file=sys.stderr)
            out[name] = None
    return out


class MemoryImages(Dataset):
    """Decoded uint8 images in memory; per-sample pad-crop/flip, then ToTensor + Normalize."""

    def __init__(self, prep: Prepared, augment: str | None) -> None:
        self.x, self.y = prep.train_x, prep.train_y
        self.mean = torch.tensor(prep.mean).view(-1, 1, 1)
        self.std = torch.tensor(prep.std).view(-1, 1, 1)
        self.pad = 0
        self.flip = False
        for part in (augment or "").split(","):
            name, _, val = part.partition("=")
            if name == "crop":
                self.pad = int(float(val or 4))
            elif name == "hflip":
                self.flip = True

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.x[i]
        if self.pad:
            h, w = img.shape[1:]
            p = self.pad
            padded = F.pad(img, (p, p, p, p))
            top, left = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
            img = padded[:, top:top + h, left:left + w]
        if self.flip and torch.rand(1) < 0.5:
            img = img.flip(2)
        return (img.float() / 255.0 - self.mean) / self.std, self.y[i]


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _Peer(ThreadedFit):
    """A peer library's fit() on the case's seeded network, scored in fp32 like every variant."""

    def __init__(self, prep: Prepared) -> None:
        super().__init__()
        self.prep, self.case = prep, prep.case
        self.images_per_epoch = len(prep.train_y)

    def trained_net(self) -> nn.Module:
        """The network the library trained."""
        return self.net

    def accuracy(self) -> float:
        """Eval accuracy of the network (fp32)."""
        net = self.trained_net()
        acc = accuracy(net_predictor(net, self.prep), self.prep)
        set_train_mode(net)
        return acc


class LightningPeer(_Peer):
    """lightning.Trainer(max_epochs=E).fit(LightningModule, DataLoader) with default settings
    (checkpointing and logging on, progress bar off because the output is not a terminal)."""

    name = "PyTorch Lightning Trainer.fit"
    kind = "peer"

    def setup(self) -> None:
        """LightningModule, loader and Trainer."""
        import lightning as L

        _quiet()
        gate = self
        lr = self.case.lr

        class LitNet(L.LightningModule):
            def __init__(self, net: nn.Module) -> None:
                super().__init__()
                self.net = net

            def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
                x, y = batch
                loss = F.cross_entropy(self.net(x), y)
                self.log("train_loss", loss)
                return loss

            def configure_optimizers(self):  # noqa: ANN201
                return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad],
                                         lr=lr, weight_decay=0.0)

        class Gate(L.Callback):
            def on_train_epoch_end(self, trainer, pl_module):  # noqa: ANN001, ANN201
                gate.epoch_ended()

        self.net = fresh_net(self.case, self.prep)
        self.module = LitNet(self.net)
        self.loader = DataLoader(MemoryImages(self.prep, self.case.augment),
                                 batch_size=self.case.batch_size, shuffle=True, num_workers=0,
                                 generator=torch.Generator().manual_seed(0))
        self.trainer = L.Trainer(max_epochs=self.case.epochs, accelerator="cpu", devices=1,
                                 callbacks=[Gate()], enable_progress_bar=False,
                                 enable_model_summary=False, num_sanity_val_steps=0,
                                 default_root_dir=str(WORK / "lightning" / self.case.key))

    def run_fit(self) -> None:
        """Trainer.fit."""
        self.trainer.fit(self.module, self.loader)



class SkorchPeer(_Peer):
    """skorch NeuralNetClassifier(max_epochs=E).fit(dataset) with its default callbacks
    (no internal validation split: every variant trains on the same images)."""

    name = "skorch NeuralNetClassifier.fit"
    kind = "peer"

    def setup(self) -> None:
        """The estimator around the seeded network."""
        from skorch import NeuralNetClassifier
        from skorch.callbacks import Callback

        _quiet()
        gate = self

        class Gate(Callback):
            def on_epoch_end(self, net, **kwargs):  # noqa: ANN001, ANN003, ANN201
                gate.epoch_ended()

        self.net = fresh_net(self.case, self.prep)
        self.est = NeuralNetClassifier(
            self.net, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.AdamW,
            optimizer__weight_decay=0.0, lr=self.case.lr, max_epochs=self.case.epochs,
            batch_size=self.case.batch_size, train_split=None, iterator_train__shuffle=True,
            callbacks=[("bench_gate", Gate())], verbose=0, device="cpu")
        self.dataset = MemoryImages(self.prep, self.case.augment)

    def run_fit(self) -> None:
        """NeuralNetClassifier.fit."""
        self.est.fit(self.dataset, y=None)

    def trained_net(self) -> nn.Module:
        """The network skorch trained (its module_ once initialised)."""
        return self.est.module_ if hasattr(self.est, "module_") else self.net
