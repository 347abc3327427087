"""hnm.pca: a hand-worked example, invariants, and agreement with scikit-learn's PCA through tests/fixtures/pca.npz
(made by tests/fixtures/make_pca_fixture.py)."""

from pathlib import Path

import numpy as np
import pytest

from hnm.pca import fit_pca, n_components

FIXTURE = Path(__file__).parent / "fixtures" / "pca.npz"


def test_hand_worked_example():
    # the docstring's: variances 16/3 and 4/3 along the axes
    x = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=np.float32) * np.array([2, 1], dtype=np.float32)
    p = fit_pca(x, 0.95)
    np.testing.assert_allclose(p.explained_variance, [16 / 3, 4 / 3], rtol=1e-12)
    np.testing.assert_allclose(p.explained_variance_ratio, [0.8, 0.2], rtol=1e-12)
    np.testing.assert_allclose(np.abs(p.components), np.eye(2), atol=1e-12)
    assert fit_pca(x, 0.5).components.shape == (1, 2)
    np.testing.assert_allclose(fit_pca(x, 1).transform(x)[:, 0], [2, -2, 2, -2], atol=1e-6)


def test_share_rule():
    ratios = np.array([0.5, 0.3, 0.15, 0.05])
    assert [n_components(ratios, s) for s in (0.49, 0.5, 0.79, 0.8, 0.94, 0.96)] == [1, 2, 2, 3, 3, 4]
    assert n_components(ratios, 2) == 2 and n_components(ratios, 9) == 4
    for bad in (0.0, 1.0, 1.5, 0):
        with pytest.raises(ValueError):
            n_components(ratios, bad)


def test_sign_convention_and_invariants():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 6)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)
    p = fit_pca(x, 6)
    c = p.components
    np.testing.assert_allclose(c @ c.T, np.eye(6), atol=1e-10)  # orthonormal
    assert np.all(np.diff(p.explained_variance) <= 0)  # by decreasing variance
    assert np.all(c[np.arange(6), np.argmax(np.abs(c), axis=1)] > 0)  # largest entry of each component positive
    flipped = fit_pca(-x, 6)  # the data mirrored: the same components, so the same signs
    np.testing.assert_allclose(flipped.components, c, atol=1e-10)
    z = p.transform(x)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)  # centred
    np.testing.assert_allclose(z.var(axis=0, ddof=1), p.explained_variance, rtol=1e-5)
    with pytest.raises(ValueError):
        fit_pca(x[:1])


def test_matches_scikit_learn():
    f = np.load(FIXTURE)
    x = f["x"]
    everything = fit_pca(x, x.shape[1])
    # both sides in float64 from the same float32 rows; the covariance route squares the condition number, which
    # costs relative precision eps x (largest / smallest eigenvalue) = 2e-16 x 0.64^-47 ~ 3e-7 in the smallest ratio
    # only, hence an absolute tolerance, far below the smallest ratio compared (~1e-10 x the largest)
    np.testing.assert_allclose(everything.explained_variance_ratio, f["ratio_all"], rtol=1e-7, atol=1e-14)
    np.testing.assert_allclose(everything.explained_variance, f["variance_all"], rtol=1e-7, atol=1e-14)
    for i, keep in enumerate(f["keeps"]):
        p = fit_pca(x, int(keep) if keep >= 1 else float(keep))
        assert p.components.shape[0] == int(f[f"k_{i}"])
        ref = f[f"proj_{i}"]
        z = p.transform(x).astype(np.float64)
        # a component's sign is a convention: compare each column up to it, the sign taken from the dot product
        sign = np.sign(np.sum(z * ref, axis=0))
        # the projections come back in float32 (relative rounding 6e-8 of values up to ~1), and each kept component
        # is separated from the next by a factor 0.64 in variance, so its direction agrees to ~1e-15 in float64
        np.testing.assert_allclose(z * sign, ref, atol=1e-6)
