"""Readers, one per source format; each returns one ImageSet with per-item partitions."""
