"""Agglomerative (hierarchical) clustering in NumPy: Ward's criterion, or average linkage on cosine distance, by the
nearest-neighbour chain; the tree cut into K clusters, and any point assigned to the nearest cluster centre.

What it follows:
- The nearest-neighbour chain (Benzecri 1982, Juan 1982), as Muellner gives it ("Modern hierarchical, agglomerative
  clustering algorithms", 2011, arXiv 1109.2378, algorithm NN-chain-linkage): from any cluster, follow nearest
  neighbours until two clusters are each other's nearest; merge those two and go on from the rest of the chain. For
  a reducible linkage (Ward's and average linkage are) this builds the same tree as merging the closest pair of
  clusters at every step, in O(N^2) time instead of O(N^3). scipy's `linkage` uses it for both methods
  (`_hierarchy.nn_chain`), and scikit-learn's AgglomerativeClustering calls scipy when there is no connectivity graph.
- After a merge of a and b, the distances to the new cluster come from the Lance-Williams formula (Lance & Williams
  1967) on one (N, N) matrix, n_x being cluster sizes:
    Ward (Ward 1963), on squared Euclidean distances d:
        d(k, a+b) = ((n_k + n_a) d(k, a) + (n_k + n_b) d(k, b) - n_k d(a, b)) / (n_k + n_a + n_b),
      which keeps d(a, b) = 2 n_a n_b / (n_a + n_b) ||mean_a - mean_b||^2, twice the growth of the within-cluster
      sum of squares that merging a and b costs; a merge's height is sqrt(d(a, b)), as scipy's and scikit-learn's
      `distances_`;
    average linkage (UPGMA; Sokal & Michener 1958), on cosine distance 1 - cos:
        d(k, a+b) = (n_a d(k, a) + n_b d(k, b)) / (n_a + n_b), the mean distance between the two clusters' points.
- The cut: the N - K lowest merges (sorted by height, ties in the order found) joined by union-find. scikit-learn's
  `_hc_cut` undoes the K - 1 highest merges instead, which leaves the same partition.
- Assignment of any point, fitted or not: a cluster's centre is the mean of its points (normalised to unit length
  for the cosine case); a point goes to the centre nearest in Euclidean distance (Ward) or of largest cosine
  (average), the rule k-means assigns by.

Memory: the one (N, N) float64 distance matrix, 8 N^2 bytes, and a float64 copy of the points, 8 N D: 128 MiB and
36 MiB at N = 4096 (the size that mining fits on, negatives.MineConfig.agglomerative_sample, a seeded sample of the
documents) and D = 1152 (SciFact's ensemble vectors); the matrix is 2 GiB at N = 16,384.
Time is O(N^2 D) for the distances (one matrix product) and O(N^2) for the chain, in about 3 N NumPy row operations.

Not here: single and complete linkage, other metrics, connectivity constraints, the linkage matrix as an output.

Letters: N points fitted, D features, K clusters, M points assigned, B rows in one block of an assignment.
"""

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from hnm.config import LINKAGES
from hnm.kmeans import _as_points


@dataclass(frozen=True)
class AgglomerativeConfig:
    k: int  # number of clusters the tree is cut into
    linkage: str = "ward"  # ward (squared Euclidean, Ward's criterion) or average (cosine distance)
    block: int = 1 << 20  # floats in one (B, K) block of an assignment: bounds its memory (4 MB)

    def __post_init__(self):
        for name in ("k", "block"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"AgglomerativeConfig.{name} must be an integer >= 1, got {value!r}")
        if self.linkage not in LINKAGES:
            raise ValueError(f"unknown linkage {self.linkage!r}; choose one of {', '.join(LINKAGES)}")


@dataclass(frozen=True)
class AgglomerativeResult:
    labels: np.ndarray  # (N,) int64 cluster of each fitted point in the cut tree, numbered by their first point
    centers: np.ndarray  # (K, D) float32 mean of each cluster's points; unit length for average (cosine) linkage
    heights: np.ndarray  # (N - 1,) float64 merge heights, ascending: sqrt(d) for Ward, mean 1 - cos for average
    linkage: str
    block: int = 1 << 20

    def affinity(self, x: np.ndarray) -> np.ndarray:
        """(M, D) points -> (M, K) float32 nearness to each centre, larger nearer: 2 x.c - ||c||^2 for Ward (which is
        ||x||^2 - ||x - c||^2), the cosine for average linkage."""
        x = _as_points(x, spherical=self.linkage == "average")
        if x.shape[1] != self.centers.shape[1]:
            raise ValueError(f"points have {x.shape[1]} features but the centres have {self.centers.shape[1]}")
        near = x @ self.centers.T  # (M, K)
        if self.linkage == "ward":
            near *= 2
            near -= np.einsum("kd,kd->k", self.centers, self.centers)
        return near

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(M, D) points -> (M,) int64 index of the nearest centre, in blocks of block // K rows."""
        rows = max(1, self.block // len(self.centers))
        return np.concatenate([self.affinity(x[s:s + rows]).argmax(axis=1) for s in range(0, len(x), rows)])


def distances(x: np.ndarray, linkage: str) -> np.ndarray:
    """(N, D) float64 points -> (N, N) float64 distances with +inf on the diagonal: squared Euclidean (Ward) or
    1 - cos (average), from one matrix product, ||x - y||^2 = ||x||^2 - 2 x.y + ||y||^2 and cos = x.y / (|x| |y|),
    worked in place so that the product is the only (N, N) array."""
    d = x @ x.T  # (N, N)
    if linkage == "ward":
        sq = np.einsum("nd,nd->n", x, x)  # (N,)
        d *= -2
        d += sq[:, None]
        d += sq[None, :]
    else:
        norms = np.sqrt(np.einsum("nd,nd->n", x, x))  # (N,); np.linalg.norm would square all of x into a copy
        d /= norms[:, None]
        d /= norms[None, :]
        np.subtract(1, d, out=d)
    np.maximum(d, 0, out=d)  # rounding can take the distance of two equal points just below 0
    np.fill_diagonal(d, np.inf)  # a cluster is never its own nearest neighbour
    return d


def nn_chain(d: np.ndarray, linkage: str) -> Tuple[np.ndarray, np.ndarray]:
    """All N - 1 merges of the tree by the nearest-neighbour chain, overwriting the (N, N) distances `d`.

    -> (N - 1, 2) int64 the two clusters of each merge, each named by one of its points; (N - 1,) float64 the
    distance at which they merged; in the order found, which is not sorted by height.
    Example (Ward, points 0, 1, 5, 7, 20 on a line): merges {0}+{1} at d 1, {5}+{7} at 4, {0,1}+{5,7} at 60.5
    (2 * 2 * 2 / 4 * (6 - 0.5)^2), then {20} at 448.9.
    A cluster's row and column live on in the row of one of its points; the other row is set to +inf at a merge, so
    a row's argmin only ever finds live clusters.
    """
    n = len(d)
    size = np.ones(n)  # (N,) points in the cluster living in each row
    alive = np.ones(n, dtype=bool)
    merges = np.empty((n - 1, 2), dtype=np.int64)
    merged_at = np.empty(n - 1)
    chain: List[int] = []
    for m in range(n - 1):
        if not chain:
            chain.append(int(np.argmax(alive)))  # start anywhere: the first live cluster
        while True:
            a = chain[-1]
            b = int(np.argmin(d[a]))
            # reciprocal nearest neighbours end the chain; a tie with the previous link counts as one, so that the
            # chain cannot run in a circle between equidistant clusters
            if len(chain) > 1 and d[a, chain[-2]] <= d[a, b]:
                break
            chain.append(b)
        a, b = chain.pop(), chain.pop()
        keep, drop = min(a, b), max(a, b)
        merges[m], merged_at[m] = (keep, drop), d[a, b]
        na, nb = size[a], size[b]
        if linkage == "ward":
            new = ((size + na) * d[a] + (size + nb) * d[b] - size * d[a, b]) / (size + na + nb)  # (N,)
        else:
            new = (na * d[a] + nb * d[b]) / (na + nb)  # (N,)
        new[[keep, drop]] = np.inf  # the merged cluster itself, and the row that dies
        d[keep], d[:, keep] = new, new
        d[drop], d[:, drop] = np.inf, np.inf
        size[keep] = na + nb
        alive[drop] = False
    return merges, merged_at


def cut(merges: np.ndarray, merged_at: np.ndarray, n: int, k: int) -> np.ndarray:
    """(N - 1, 2) merges and their heights -> (N,) int64 labels of the K clusters left by the N - K lowest merges,
    numbered in the order of their first point. Example: the merges of `nn_chain`'s example cut at k=2 give
    [0, 0, 0, 0, 1]."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving
            i = parent[i]
        return i

    for a, b in merges[np.argsort(merged_at, kind="stable")[:n - k]]:
        parent[root(a)] = root(b)
    roots = np.array([root(i) for i in range(n)])
    _, first, labels = np.unique(roots, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[labels]  # renumber so that cluster 0 holds point 0, and so on


def agglomerative(x: np.ndarray, config: AgglomerativeConfig) -> AgglomerativeResult:
    """Cluster (N, D) points into `config.k` clusters: the whole tree by the chain, cut at k, centres of the clusters.

    Example: agglomerative([[0], [1], [5], [7], [20]], AgglomerativeConfig(k=2)) has labels [0, 0, 0, 0, 1],
    centres 3.25 and 20, heights [1, 2, 7.778, 21.187].
    """
    cosine = config.linkage == "average"
    zero = np.flatnonzero(~_as_points(x, spherical=False).any(axis=1))  # checks for a non-empty finite (N, D) matrix
    if cosine and len(zero):
        raise ValueError(f"cosine distance needs non-zero rows; row {int(zero[0])} is zero")
    x = np.asarray(x, dtype=np.float64)  # scipy's precision; unit rows for the cosine are made from these
    n = len(x)
    if config.k > n:
        raise ValueError(f"k={config.k} is more than the number of points ({n})")
    merges, merged_at = nn_chain(distances(x, config.linkage), config.linkage)  # the (N, N) matrix is freed here
    labels = cut(merges, merged_at, n, config.k)
    if cosine:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sums = np.zeros((config.k, x.shape[1]))
    np.add.at(sums, labels, x)  # (K, D); N is a sample of a few thousand points, so the plain form is fast enough
    if cosine:
        centers = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    else:
        centers = sums / np.bincount(labels, minlength=config.k)[:, None]
    heights = np.sort(np.sqrt(merged_at) if config.linkage == "ward" else merged_at)
    return AgglomerativeResult(labels, centers.astype(np.float32), heights, config.linkage, config.block)
