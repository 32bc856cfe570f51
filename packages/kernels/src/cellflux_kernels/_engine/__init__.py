"""The numerical engine: arrays and sparse matrices in, arrays and sparse matrices out (no AnnData)."""
