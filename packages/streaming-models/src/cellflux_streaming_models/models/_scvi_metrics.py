"""Latent-space quality: label separation, batch mixing, agreement of cell-type distances with an ontology.

Label separation: silhouette, kNN accuracy, a linear classifier's accuracy.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy.stats import rankdata

__all__ = [
    "centroid_batch_silhouette",
    "latent_metrics",
    "linear_classifier_accuracy",
    "ontology_spearman",
    "weighted_spearman",
]

logger = logging.getLogger(__name__)


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


def weighted_spearman(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """Spearman correlation of ``x`` and ``y`` with weighted pairs (cellarium-ml's frequency weighting).

    Both variables are ranked (ties averaged) without weights; the correlation of the ranks is then a
    weighted Pearson correlation. Pairs with a non-finite ``y`` (e.g. cell types in unconnected parts of
    an ontology) are left out.

    Parameters
    ----------
    x, y
        The two variables.
    weights
        Non-negative weight of each pair.

    Returns
    -------
    The correlation; ``nan`` with fewer than 3 usable pairs; 0 (with a logged warning) if a variable is constant.
    """
    x, y, w = (np.asarray(a, dtype=np.float64).ravel() for a in (x, y, weights))
    if not len(x) == len(y) == len(w):
        raise ValueError(f"x, y and weights must have one entry per pair; got {len(x)}, {len(y)}, {len(w)}.")
    if (w < 0).any() or not np.isfinite(w).all() or not np.isfinite(x).all():
        raise ValueError("weights must be finite and non-negative, and x finite.")
    keep = np.isfinite(y)
    if keep.sum() < 3:
        return float("nan")
    x, y, w = x[keep], y[keep], w[keep]
    if w.sum() <= 0:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    weighted = w > 0
    if np.ptp(rx[weighted]) == 0 or np.ptp(ry[weighted]) == 0:
        logger.warning("weighted_spearman: a variable is constant over the pairs; returning 0.")
        return 0.0
    w = w / w.sum()
    dx, dy = rx - w @ rx, ry - w @ ry
    vx, vy = w @ (dx * dx), w @ (dy * dy)
    return float((w @ (dx * dy)) / np.sqrt(vx * vy))


def ontology_spearman(centroids_kd: np.ndarray, counts_k: np.ndarray, distances_kk: np.ndarray) -> float:
    """Agreement of latent and ontology distances between cell types.

    The weighted Spearman correlation (:func:`weighted_spearman`), over pairs of cell types present
    (``counts_k > 0``), of the Euclidean distance between their latent centroids and their ontology
    distance, each pair weighted by the product of the two types' cell counts.

    Parameters
    ----------
    centroids_kd
        Mean latent of each cell type.
    counts_k
        Cells of each type.
    distances_kk
        Ontology distances between the types.

    Returns
    -------
    The correlation (``nan`` with fewer than three usable pairs).
    """
    counts = np.asarray(counts_k, dtype=np.float64)
    present = np.flatnonzero(counts > 0)
    if len(present) < 2:
        return float("nan")
    centroids = np.asarray(centroids_kd, dtype=np.float64)[present]
    latent = np.sqrt(((centroids[:, None, :] - centroids[None, :, :]) ** 2).sum(-1))
    onto = np.asarray(distances_kk, dtype=np.float64)[np.ix_(present, present)]
    i, j = np.triu_indices(len(present), k=1)
    return weighted_spearman(latent[i, j], onto[i, j], counts[present][i] * counts[present][j])


def linear_classifier_accuracy(
    train_z: torch.Tensor,
    train_y: torch.Tensor,
    test_z: torch.Tensor,
    test_y: torch.Tensor,
    n_classes: int,
    *,
    l2: float = 1e-4,
    max_iter: int = 50,
) -> tuple[float, torch.Tensor]:
    """Test accuracy of a multinomial logistic regression fitted on standardised training features.

    Parameters
    ----------
    train_z, train_y
        Training features and class codes.
    test_z, test_y
        Test features and class codes.
    n_classes
        Number of classes.
    l2
        Ridge penalty on the weights (``l2 / 2 * ||W||^2`` added to the mean cross-entropy): keeps
        separable data from driving the weights to infinity.
    max_iter
        L-BFGS iterations (float32: 50 iterations on 50,000 cells x 10 dimensions x 100 classes take a
        few seconds on one CPU core, with the accuracy of 100 iterations in float64).

    Returns
    -------
    The fraction of test rows predicted correctly, and the predicted codes.
    """
    # Lightning validates under torch.inference_mode: fit outside it, on ordinary copies of the inputs
    with torch.inference_mode(False), torch.enable_grad():
        return _fit_and_score(
            *(torch.as_tensor(a).detach().clone() for a in (train_z, train_y, test_z, test_y)), n_classes, l2, max_iter
        )


def _fit_and_score(
    x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor, n_classes: int, l2: float, max_iter: int
) -> tuple[float, torch.Tensor]:
    x, xt, y, yt = x.float(), xt.float(), y.long(), yt.long()
    if len(x) < 2 or len(xt) < 1:
        raise ValueError(f"Need at least 2 training and 1 test rows; got {len(x)} and {len(xt)}.")
    for name, codes in (("train_y", y), ("test_y", yt)):
        if int(codes.min()) < 0 or int(codes.max()) >= n_classes:
            raise ValueError(f"{name} has codes outside [0, {n_classes}).")
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    x, xt = (x - mean) / std, (xt - mean) / std
    weight = torch.zeros(n_classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + 0.5 * l2 * (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (xt @ weight.T + bias).argmax(1)
    return float((predicted == yt).double().mean()), predicted


def centroid_batch_silhouette(sums_bd: np.ndarray, square_sums_b: np.ndarray, counts_b: np.ndarray) -> float:
    """A silhouette of batches from their latent moments (cellarium-ml's ``val_batch_silhouette``).

    Each batch's spread ``a`` is the root mean squared distance of its cells to its centroid, ``b`` the
    distance from its centroid to the nearest other batch's; the score is the count-weighted mean of
    ``(b - a) / max(a, b)``: near or below 0 for well mixed batches, near 1 for separated ones.

    Parameters
    ----------
    sums_bd
        Sum of the latents of each batch.
    square_sums_b
        Sum of the squared norms of each batch's latents.
    counts_b
        Cells of each batch.

    Returns
    -------
    The score (``nan`` with fewer than two batches present).
    """
    counts = np.asarray(counts_b, dtype=np.float64)
    present = counts > 0
    if present.sum() < 2:
        return float("nan")
    n = counts[present]
    centroids = np.asarray(sums_bd, dtype=np.float64)[present] / n[:, None]
    spread = np.sqrt(np.clip(np.asarray(square_sums_b, dtype=np.float64)[present] / n - (centroids**2).sum(1), 0, None))
    d = np.sqrt(((centroids[:, None, :] - centroids[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    b = d.min(1)
    s = (b - spread) / np.maximum(np.maximum(b, spread), 1e-12)
    return float((s * n).sum() / n.sum())
