"""Evaluation: metrics (scikit-learn), predictions, explanations."""
