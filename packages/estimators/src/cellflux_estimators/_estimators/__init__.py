"""Estimator classes: the thin layer between the engine and AnnData."""
