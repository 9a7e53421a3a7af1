"""Command lines exactly as course homeworks write them, on top of cnnlab's own training.

`python -m cnnlab.compat.cs475 ...` is CS 475/675 HW3's `main_*.py` contract (see
docs/seeds.md). Each module here only translates arguments and file names; training,
checkpoints and prediction are cnnlab's (cnnlab.run.train, cnnlab.evaluate.predictor).
"""
