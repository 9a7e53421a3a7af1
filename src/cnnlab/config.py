"""Every training setting in one dataclass; written to config.yaml with the defaults filled in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("none", "cosine")


@dataclass
class TrainConfig:
    """Settings of one training run (data, model, optimisation, outputs)."""

    # data
    data: str | None = None
    format: str = "auto"
    image_size: int | None = None
    channels: int | None = None
    resize: str = "crop"
    val_split: float = 0.2
    test_split: float = 0.2
    task: str | None = None
    image_dir: str | None = None
    path_column: str = "filename"
    label_column: str = "semantic_label"
    numeric_column: str = "numeric_label"
    partition_column: str = "partition"
    task_column: str = "task"
    skip_bad: bool = False
    # model
    model: str = "cnn"
    model_args: dict = field(default_factory=dict)
    # optimisation
    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None  # None: the optimizer's usual default
    optimizer: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    patience: int | None = None
    class_weights: list[float] | str | None = None
    clip_grad: float | None = None
    seed: int = 0
    deterministic: bool = False
    # transfer learning, imbalance, augmentation
    pretrained: bool = False
    weights_file: str | None = None
    freeze: str = "none"  # "none", "all" or a number of leading conv layers / stages
    backbone_lr_mult: float = 0.1
    init_from: str | None = None
    augment: str | None = None
    sampler: str = "none"  # "none" or "balanced"
    positive_class: str | None = None
    feature_cache: bool = True
    # hardware
    device: str = "auto"
    precision: str = "auto"  # "auto" (bf16 where native), "32", "bf16" or "16-mixed"
    channels_last: bool | None = None  # None: decide per device and model
    compile: bool = False
    num_threads: int | None = None
    # outputs
    out: str | None = None
    runs_dir: str = "runs"
    name: str | None = None
    report: bool = True
    log_every: int = 0  # also log running metrics every n steps (0: per epoch only)
    # extensions owned by other modules keep their settings here
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A plain dict (for YAML and checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Rebuild from a dict, ignoring unknown keys (older or newer runs)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def resolved_lr(self) -> float:
        """The learning rate to use: the given one or the optimizer's common default."""
        if self.lr is not None:
            return self.lr
        return {"sgd": 0.01, "rmsprop": 1e-3}.get(self.optimizer, 3e-3)
