"""Figures (matplotlib, Agg) and the HTML report of a run."""
