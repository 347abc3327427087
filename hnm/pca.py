"""Principal component analysis in NumPy: centre, eigendecompose the covariance, keep the leading components.

What it follows: PCA as in Jolliffe, "Principal Component Analysis" (2nd ed., Springer 2002), sections 1.1 and 3.1:
the components are the eigenvectors of the sample covariance of the centred data, ordered by eigenvalue, and each
eigenvalue is the variance along its component. The conventions are scikit-learn's `PCA`, so that the two agree:

- the variance uses n - 1 (the unbiased sample covariance); `explained_variance_ratio` is each eigenvalue over
  their sum (the total variance);
- a share s in (0, 1) keeps the fewest components whose cumulative ratio exceeds s (scikit-learn's
  `np.searchsorted(cumsum, s, side="right") + 1`); an integer keeps that many;
- `transform` centres by the fitted mean and projects, x -> (x - mean) @ components.T, no whitening;
- the sign of each component, arbitrary in an eigendecomposition, is fixed so that its entry of largest absolute
  value is positive (scikit-learn's `svd_flip` with `u_based_decision=False`), so a fit is the same on any BLAS.

Why the covariance and not an SVD of the data: embeddings have far more rows than columns (N documents, D of a few
hundred to a few thousand), so the (D, D) covariance is small, and it is summed over blocks of rows in float64, so
memory stays at one block whatever N is. It squares the condition number, which costs precision only in the
smallest eigenvalues, the ones a variance share drops (scikit-learn's `covariance_eigh` solver makes the same trade).

Not here: whitening, randomised or incremental solvers, sparse input, inverse transforms.

Letters: N rows, D features, K kept components, B rows in one block.
"""

from dataclasses import dataclass
from typing import Union

import numpy as np

BLOCK = 65_536  # rows summed into the covariance at a time: (B, D) float64 at most


@dataclass(frozen=True)
class PCA:
    mean: np.ndarray  # (D,) float64, the fitted data's mean
    components: np.ndarray  # (K, D) float64, unit rows, by decreasing variance
    explained_variance: np.ndarray  # (K,) the variance along each component (n - 1 in the denominator)
    explained_variance_ratio: np.ndarray  # (K,) each one's share of the total variance

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, K) float32 coordinates of the centred rows on the components."""
        return ((x - self.mean) @ self.components.T).astype(np.float32)


def n_components(ratios: np.ndarray, keep: Union[float, int]) -> int:
    """How many of the ratios (sorted, decreasing) to keep: an int as given (at most all), a share s in (0, 1) the
    fewest whose cumulative sum exceeds s. [0.5, 0.3, 0.15, 0.05] with 0.8 -> 3 (0.8 is not above 0.8), 0.79 -> 2."""
    if isinstance(keep, (int, np.integer)) and not isinstance(keep, bool):
        if keep < 1:
            raise ValueError(f"components to keep must be at least 1, got {keep}")
        return min(int(keep), len(ratios))
    if not 0.0 < keep < 1.0:
        raise ValueError(f"a variance share must lie in (0, 1), got {keep}")
    return min(int(np.searchsorted(np.cumsum(ratios), keep, side="right")) + 1, len(ratios))


def fit_pca(x: np.ndarray, keep: Union[float, int] = 0.95) -> PCA:
    """PCA of the (N, D) rows keeping `keep` components (an int) or a share of the variance (a float in (0, 1)).

    Example: rows (1, 1), (-1, -1), (1, -1), (-1, 1) scaled by (2, 1) have variances 16/3 and 4/3 along the axes, so
    the ratios are (0.8, 0.2) and the components (1, 0) and (0, 1); a share 0.95 keeps both, 0.5 the first.
    """
    n, d = x.shape
    if n < 2:
        raise ValueError(f"PCA needs at least 2 rows, got {n}")
    mean = x.mean(axis=0, dtype=np.float64)  # (D,)
    cov = np.zeros((d, d))
    for start in range(0, n, BLOCK):
        block = x[start:start + BLOCK].astype(np.float64) - mean  # (B, D)
        cov += block.T @ block
    cov /= n - 1
    values, vectors = np.linalg.eigh(cov)  # ascending; columns are the eigenvectors
    values, vectors = np.maximum(values[::-1], 0.0), vectors[:, ::-1].T  # (D,), (D, D) rows by decreasing variance
    # rounding can leave the smallest eigenvalues a hair below zero: a variance is never negative
    biggest = np.argmax(np.abs(vectors), axis=1)
    vectors *= np.sign(vectors[np.arange(d), biggest])[:, None]  # each row's largest entry positive
    ratios = values / values.sum() if values.sum() > 0 else np.zeros(d)
    k = n_components(ratios, keep)
    return PCA(mean, vectors[:k], values[:k], ratios[:k])
