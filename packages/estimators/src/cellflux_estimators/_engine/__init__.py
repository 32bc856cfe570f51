"""The numerical engine: arrays and sparse matrices in, arrays out; no AnnData."""
