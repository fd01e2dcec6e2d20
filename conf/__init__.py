"""Hydra config groups of prunelab (a package so Hydra can find it as `pkg://prunelab.conf`)."""
