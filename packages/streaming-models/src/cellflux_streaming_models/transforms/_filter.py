"""Keep a subset of genes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = ["Filter"]


class Filter(nn.Module):
    """Keep the genes in ``filter_list`` (in that order), updating ``var_names_g``.

    Parameters
    ----------
    filter_list
        Gene names to keep.
    """

    def __init__(self, filter_list: Sequence[str]) -> None:
        super().__init__()
        self.filter_list = np.asarray(filter_list, dtype=object)
        if len(self.filter_list) == 0:
            raise ValueError("Filter: filter_list is empty.")
        self._cache: tuple[int, np.ndarray, torch.Tensor] | None = None

    def _positions(self, var_names_g: np.ndarray) -> torch.Tensor:
        if self._cache is not None and self._cache[0] == id(var_names_g) and self._cache[1] is var_names_g:
            return self._cache[2]
        position = pd.Index(var_names_g).get_indexer(self.filter_list)
        if (position < 0).any():
            missing = list(self.filter_list[position < 0][:5])
            raise KeyError(f"Filter: genes {missing} are not in the batch's var_names_g.")
        index = torch.as_tensor(position, dtype=torch.long)
        self._cache = (id(var_names_g), var_names_g, index)
        return index

    def forward(self, x_ng: torch.Tensor, var_names_g: np.ndarray) -> dict[str, torch.Tensor | np.ndarray]:
        """Return ``{"x_ng": x_ng[:, genes], "var_names_g": filter_list}``."""
        return {"x_ng": x_ng.index_select(1, self._positions(var_names_g)), "var_names_g": self.filter_list}
