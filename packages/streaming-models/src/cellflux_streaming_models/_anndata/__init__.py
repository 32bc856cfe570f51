"""The AnnData layer: registered ``cf.pp``/``cf.tl`` functions that stream an AnnData through the models."""
