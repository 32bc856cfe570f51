"""The AnnData layer: kernel objects and their algebra."""
