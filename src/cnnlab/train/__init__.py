"""Training: the Trainer loop, run folders, checkpoints and resume."""
