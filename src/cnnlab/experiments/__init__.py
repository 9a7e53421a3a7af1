"""Experiments: loops over the same training code, each writing one folder with a summary."""

from cnnlab.experiments.compare import compare_runs
from cnnlab.experiments.cv import run_cv
from cnnlab.experiments.lrfind import lr_find
from cnnlab.experiments.search import run_search, show_search
from cnnlab.experiments.seeds import run_seeds
from cnnlab.experiments.sweep import run_sweep

__all__ = ["compare_runs", "lr_find", "run_cv", "run_search", "run_seeds", "run_sweep",
           "show_search"]
