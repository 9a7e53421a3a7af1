"""The names the settings choose from, without the code behind them.

The one place these names are written. settings.py builds its allowed values from them,
so the settings model (and with it the CLI's options, --help and option errors) loads without
torch, Pillow or NumPy. data/decode.py and device.py use the plain tuples as they are;
train/optim.py takes each optimizer's usual learning rate from here. The registries with code
(data/sources/registry.py's SOURCES, optim's OPTIMIZERS and SCHEDULES, sampling's SAMPLERS,
loggers' LOGGERS) are keyed by the same names; tests/test_startup.py checks that they agree.
"""

from __future__ import annotations

# data/sources/registry.py: "auto", then its SOURCES
FORMATS = ("auto", "folder", "csv", "npy", "cifar", "idx", "digits")
RESIZE_MODES = ("crop", "stretch", "shorter")  # data/decode.py
PRECISIONS = ("auto", "32", "bf16", "16-mixed")  # device.py
# train/optim.py's OPTIMIZERS: each optimizer's usual learning rate (what --lr defaults to)
OPTIMIZER_LRS = {"sgd": 0.01, "adam": 3e-3, "adamw": 3e-3, "rmsprop": 1e-3}
SCHEDULES = ("none", "cosine", "onecycle", "step", "multistep", "plateau")  # train/optim.py
SAMPLERS = ("none", "balanced")  # train/sampling.py
LOGGERS = ("tensorboard", "mlflow")  # train/loggers.py
