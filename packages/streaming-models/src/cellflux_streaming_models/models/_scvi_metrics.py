"""Latent-space quality: label separation (silhouette, kNN accuracy) and batch mixing."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["latent_metrics"]


def _distances(z: torch.Tensor, rows: slice) -> torch.Tensor:
    return torch.cdist(z[rows], z)


def latent_metrics(
    z_nk: np.ndarray, labels_n: np.ndarray, batches_n: np.ndarray | None = None, *, k: int = 15, chunk: int = 2048
) -> dict[str, float]:
    """Label separation and batch mixing of an embedding.

    Parameters
    ----------
    z_nk
        The embedding (cells x dimensions).
    labels_n
        Cell labels (e.g. cell types).
    batches_n
        Batch of each cell (``None``: no mixing score).
    k
        Neighbours for the kNN scores.
    chunk
        Rows of the distance matrix held at once.

    Returns
    -------
    ``silhouette_label``: mean silhouette width of the labels (Euclidean, -1 to 1); ``knn_accuracy``:
    leave-one-out majority vote of the ``k`` nearest neighbours; and with batches ``batch_mixing``:
    the mean over cells of the fraction of neighbours from another batch divided by its expectation
    under perfect mixing (1: mixed as well as at random, 0: no neighbour from another batch).
    """
    z = torch.as_tensor(np.asarray(z_nk, dtype=np.float64))
    labels = np.unique(np.asarray(labels_n), return_inverse=True)[1]
    n = len(labels)
    if z.shape[0] != n or n < k + 2:
        raise ValueError(f"Need one label per cell and more than k + 1 cells; got {z.shape[0]} cells, {n} labels.")
    lab = torch.as_tensor(labels)
    n_labels = int(lab.max()) + 1
    counts = torch.bincount(lab, minlength=n_labels).double()
    onehot = torch.nn.functional.one_hot(lab, n_labels).double()
    bat = None
    if batches_n is not None:
        bat = torch.as_tensor(np.unique(np.asarray(batches_n), return_inverse=True)[1])
        share = torch.bincount(bat).double() / n
        expected = 1.0 - share[bat]  # chance that a random other cell is from another batch
    sil, correct, mixing = [], 0, []
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        d = _distances(z, rows)
        sums = d @ onehot  # total distance to each label
        own = lab[rows]
        a = sums.gather(1, own[:, None])[:, 0] / (counts[own] - 1).clamp_min(1)
        mean_other = sums / counts
        mean_other.scatter_(1, own[:, None], float("inf"))
        b = mean_other.min(1).values
        s = (b - a) / torch.maximum(a, b)
        sil.append(torch.where(counts[own] > 1, s, torch.zeros_like(s)))
        d[torch.arange(d.shape[0]), torch.arange(rows.start, rows.stop)] = float("inf")
        nn_idx = d.topk(k, largest=False).indices
        votes = torch.nn.functional.one_hot(lab[nn_idx], n_labels).sum(1)
        correct += int((votes.argmax(1) == own).sum())
        if bat is not None:
            other = (bat[nn_idx] != bat[rows, None]).double().mean(1)
            mixing.append(other / expected[rows].clamp_min(1e-12))
    out = {"silhouette_label": float(torch.cat(sil).mean()), "knn_accuracy": correct / n}
    if bat is not None:
        out["batch_mixing"] = float(torch.cat(mixing).mean())
    return out
