"""Agglomerative clustering and the Gaussian mixture: hand-worked cases, invariants, agreement with scikit-learn
(fixture), and each clustering choice through mining."""

import json
from dataclasses import replace

import numpy as np
import pytest

from conftest import FIXTURES
from hnm import miner
from hnm.agglomerative import AgglomerativeConfig, agglomerative, distances, nn_chain
from hnm.ensemble import Ensemble, Member, PassageEnsemble
from hnm.gmm import GMMConfig, em, gaussian_mixture
from hnm.config import CLUSTERINGS
from hnm.negatives import Candidates, ClusterView, MineConfig

REF = np.load(FIXTURES / "clustering.npz", allow_pickle=False)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Labels equal up to renaming: the contingency table of the two has exactly one non-zero cell per row and per
    column (an adjusted Rand index of 1)."""
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=np.int64)
    np.add.at(table, (a, b), 1)
    nonzero = table > 0
    return bool((nonzero.sum(axis=0) == 1).all() and (nonzero.sum(axis=1) == 1).all())


def test_same_partition_helper_tells_renaming_from_regrouping():
    assert same_partition(np.array([0, 0, 1, 2]), np.array([2, 2, 0, 1]))
    assert not same_partition(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    assert not same_partition(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0]))


# ---------------------------------------------------------------------------------------------------- agglomerative


def test_ward_on_a_line_by_hand():
    # 0, 1, 5, 7, 20: {0}+{1} at d = 1, {5}+{7} at 4; {0,1}+{5,7} at 2*2*2/4 * (6 - 0.5)^2 = 60.5; then {20} joins
    # {0,1,5,7} (mean 3.25) at 2*4*1/5 * 16.75^2 = 448.9. Heights are sqrt(d).
    x = [[0], [1], [5], [7], [20]]
    merges, merged_at = nn_chain(distances(np.array(x, dtype=np.float64), "ward"), "ward")
    assert sorted(merged_at.tolist()) == pytest.approx([1, 4, 60.5, 448.9])
    result = agglomerative(x, AgglomerativeConfig(k=2))
    assert result.labels.tolist() == [0, 0, 0, 0, 1]
    assert result.centers[:, 0].tolist() == [3.25, 20.0]
    np.testing.assert_allclose(result.heights, np.sqrt([1, 4, 60.5, 448.9]))
    assert agglomerative(x, AgglomerativeConfig(k=3)).labels.tolist() == [0, 0, 1, 1, 2]
    assert result.predict([[11.5], [11.7], [-3]]).tolist() == [0, 1, 0]  # the midpoint of 3.25 and 20 is 11.625


def test_average_cosine_by_hand_and_scale_free():
    # Directions at 0, 20 and 90 degrees: 1 - cos 20 = 0.0603 joins the first two; the third is then at the mean of
    # 1 - cos 90 = 1 and 1 - cos 70 = 0.658, i.e. 0.829.
    angles = np.radians([0, 20, 90])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    result = agglomerative(x * np.array([[1], [7], [0.1]]), AgglomerativeConfig(k=2, linkage="average"))
    np.testing.assert_allclose(result.heights, [1 - np.cos(angles[1]), (1 + 1 - np.cos(np.radians(70))) / 2])
    assert result.labels.tolist() == [0, 0, 1]
    np.testing.assert_allclose(np.linalg.norm(result.centers, axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(result.centers[0], [np.cos(angles[1] / 2), np.sin(angles[1] / 2)], rtol=1e-6)


def greedy_heights(x: np.ndarray, linkage: str) -> list:
    """The textbook O(N^3) form: merge the closest pair of clusters by the linkage's own definition, every time."""
    clusters = [[i] for i in range(len(x))]
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    heights = []

    def dist(a, b):
        if linkage == "ward":
            na, nb = len(a), len(b)
            return np.sqrt(2 * na * nb / (na + nb) * np.sum((x[a].mean(0) - x[b].mean(0)) ** 2))
        return float(np.mean(1 - unit[a] @ unit[b].T))

    while len(clusters) > 1:
        h, i, j = min((dist(a, b), i, j) for i, a in enumerate(clusters) for j, b in enumerate(clusters) if i < j)
        heights.append(h)
        clusters = [c for n, c in enumerate(clusters) if n not in (i, j)] + [clusters[i] + clusters[j]]
    return sorted(heights)


@pytest.mark.parametrize("linkage", ["ward", "average"])
def test_chain_and_lance_williams_give_the_greedy_tree(linkage):
    x = np.random.default_rng(5).normal(size=(24, 3)).astype(np.float32).astype(np.float64)
    result = agglomerative(x, AgglomerativeConfig(k=4, linkage=linkage))
    np.testing.assert_allclose(result.heights, greedy_heights(x, linkage), rtol=1e-10)


@pytest.mark.parametrize("linkage", ["ward", "average"])
def test_tree_equals_scikit_learn(linkage):
    x = REF["tree_x"]
    result = agglomerative(x, AgglomerativeConfig(k=int(REF["tree_k"]), linkage=linkage))
    assert same_partition(result.labels, REF[f"{linkage}_labels"])
    _, first = np.unique(result.labels, return_index=True)
    assert (np.diff(first) > 0).all()  # clusters numbered in the order of their first point
    # Both in float64; the distances here come from one Gram product (scipy: differences point by point) and Ward's
    # are kept squared (scipy: roots, squared again at every update). Measured: 3e-14 relative at most.
    np.testing.assert_allclose(result.heights, REF[f"{linkage}_heights"], rtol=1e-10)


@pytest.mark.parametrize("linkage", ["ward", "average"])
def test_centres_are_cluster_means_and_points_go_to_the_nearest(linkage):
    x = REF["tree_x"]
    result = agglomerative(x, AgglomerativeConfig(k=6, linkage=linkage, block=100))  # several blocks in predict
    x64 = x.astype(np.float64)
    if linkage == "average":
        x64 /= np.linalg.norm(x64, axis=1, keepdims=True)
    for j in range(6):
        mean = x64[result.labels == j].mean(0)
        expected = mean / np.linalg.norm(mean) if linkage == "average" else mean
        np.testing.assert_allclose(result.centers[j], expected, rtol=1e-5, atol=1e-6)
    c = result.centers.astype(np.float64)
    near = x64 @ c.T if linkage == "average" else -((x64[:, None, :] - c[None]) ** 2).sum(-1)  # (N, K)
    np.testing.assert_array_equal(result.predict(x), near.argmax(1))
    assert (result.predict(x) == result.labels).mean() > 0.8  # the tree's clusters mostly sit around their means


def test_agglomerative_bad_input_raises():
    with pytest.raises(ValueError, match="unknown linkage 'single'"):
        AgglomerativeConfig(k=2, linkage="single")
    with pytest.raises(ValueError, match="more than the number of points"):
        agglomerative([[0.0], [1.0]], AgglomerativeConfig(k=3))
    with pytest.raises(ValueError, match="non-zero rows; row 1 is zero"):
        agglomerative([[1.0, 0.0], [0.0, 0.0]], AgglomerativeConfig(k=1, linkage="average"))
    assert agglomerative([[1.0, 0.0], [0.0, 0.0]], AgglomerativeConfig(k=1)).labels.tolist() == [0, 0]  # fine for Ward
    with pytest.raises(ValueError, match="NaN"):
        agglomerative([[0.0], [np.nan]], AgglomerativeConfig(k=1))


# ------------------------------------------------------------------------------------------------ Gaussian mixture


def test_two_groups_on_a_line_by_hand():
    # {0, 0.2} and {10, 10.2}: means 0.1 and 10.1, variances 0.1^2 + reg_covar, weights 1/2. A point's likelihood
    # is that of its own component (the other is exp(-5000) smaller): log 1/2 - log(2 pi s) / 2 - 0.1^2 / (2 s).
    x = [[0], [0.2], [10], [10.2]]
    result = gaussian_mixture(x, GMMConfig(k=2))
    order = np.argsort(result.means[:, 0])
    s = 0.01 + 1e-6
    np.testing.assert_allclose(result.means[order, 0], [0.1, 10.1], rtol=1e-6)  # float32 0.2 and 10.2
    np.testing.assert_allclose(result.variances[:, 0], [s, s], rtol=1e-4)
    np.testing.assert_allclose(result.weights, [0.5, 0.5])
    assert result.labels[0] == result.labels[1] != result.labels[2] == result.labels[3]
    assert result.converged and result.score(x) == pytest.approx(np.log(0.5) - np.log(2 * np.pi * s) / 2
                                                                 - 0.01 / (2 * s), rel=1e-4)


def test_em_from_the_same_start_equals_scikit_learn():
    x = REF["gmm_x"]
    config = GMMConfig(k=int(REF["gmm_k"]), tol=float(REF["gmm_tol"]), max_iter=int(REF["gmm_max_iter"]),
                       reg_covar=float(REF["gmm_reg_covar"]))
    result = em(x, REF["gmm_init"], config)
    assert result.n_iter == int(REF["gmm_n_iter"]) and result.converged
    np.testing.assert_array_equal(result.labels, REF["gmm_labels"])
    # Both in float64 from the same float32 points, sums in other orders (blocks here); measured 2e-15.
    assert result.lower_bound == pytest.approx(float(REF["gmm_lower_bound"]), abs=1e-9)
    assert result.score(x) == pytest.approx(float(REF["gmm_score"]), abs=1e-9)
    np.testing.assert_allclose(result.means, REF["gmm_means"], atol=1e-9)
    np.testing.assert_allclose(result.variances, REF["gmm_variances"], rtol=1e-9)
    np.testing.assert_allclose(result.weights, REF["gmm_weights"], atol=1e-12)


def test_k_means_plus_plus_start_matches_scikit_learn_over_seeds():
    x = REF["gmm_x"]
    ours = np.array([gaussian_mixture(x, GMMConfig(k=int(REF["gmm_k"]), seed=s)).score(x) for s in range(20)])
    ref = REF["gmm_kpp_scores"]
    # Other random streams: local optima differ per seed (sd ~0.18 on both sides), so the means of twenty differ
    # by chance with a standard error of ~0.06; 0.15 is 2.5 of them. Both reach the same best optimum.
    assert abs(ours.mean() - ref.mean()) < 0.15
    assert ours.max() == pytest.approx(ref.max(), abs=1e-5)


def test_lower_bound_never_decreases_and_blocks_do_not_matter():
    x, init = REF["gmm_x"], REF["gmm_init"]
    bounds = [em(x, init, GMMConfig(k=8, max_iter=i, tol=0)).lower_bound for i in range(1, 12)]
    assert all(b >= a - 1e-12 for a, b in zip(bounds, bounds[1:]))  # EM's monotone likelihood
    whole, blocked = em(x, init, GMMConfig(k=8)), em(x, init, GMMConfig(k=8, block=600))  # 100 rows a block
    np.testing.assert_array_equal(whole.labels, blocked.labels)
    assert whole.lower_bound == pytest.approx(blocked.lower_bound, abs=1e-12)
    log_prob = whole.log_prob(x)  # (N, K)
    np.testing.assert_array_equal(whole.predict(x), log_prob.argmax(1))
    top = log_prob.max(1)
    norm = top + np.log(np.exp(log_prob - top[:, None]).sum(1))  # responsibilities sum to one
    assert whole.score(x) == pytest.approx(norm.mean(), abs=1e-12)


def test_gmm_same_seed_same_result_and_seeds_differ():
    x = REF["gmm_x"]
    a, b = gaussian_mixture(x, GMMConfig(k=8, seed=3)), gaussian_mixture(x, GMMConfig(k=8, seed=3))
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.means, b.means)
    assert len({round(gaussian_mixture(x, GMMConfig(k=8, seed=s)).lower_bound, 6) for s in range(4)}) > 1


def test_gmm_bad_input_raises():
    with pytest.raises(ValueError, match="k must be an integer"):
        GMMConfig(k=0)
    with pytest.raises(ValueError, match="reg_covar must be > 0"):
        GMMConfig(k=2, reg_covar=0.0)
    with pytest.raises(ValueError, match="more than the number of points"):
        gaussian_mixture([[0.0], [1.0]], GMMConfig(k=3))
    with pytest.raises(ValueError, match="initial means must have shape"):
        em(REF["gmm_x"], REF["gmm_init"][:3], GMMConfig(k=8))


# ----------------------------------------------------------------------------------------------------- in mining


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


ANGLES = {"p": 25.84, "a": 18.19, "b": 36.87, "c": 45.57, "d": 60.0, "e": 84.26, "f": 31.79}  # test_negatives'


@pytest.mark.parametrize("clustering", CLUSTERINGS)
def test_every_clustering_mines_the_hand_made_corpus(tmp_path, clustering):
    # test_negatives' corpus: one query along x, documents at known cosines, p positive, f empty, a above the
    # ceiling. One cluster holds everything, so every choice must find b and c, as `none` does over the corpus.
    docs = unit([[np.cos(np.radians(a)), np.sin(np.radians(a))] for a in ANGLES.values()])
    corpus = {d: {"title": "", "text": "" if d == "f" else f"document {d}"} for d in ANGLES}
    ens = Ensemble([Member("m")], [docs], [unit([[1.0, 0.0]])])
    cfg = MineConfig(models="m", num_negatives=2, n_clusters=1, clustering=clustering)
    stats = miner.run(corpus, {"q": "the query"}, {"q": {"p": 1}}, cfg, tmp_path / "out.jsonl", quiet=True,
                      ensemble=ens)
    assert json.loads((tmp_path / "out.jsonl").read_text())["negative_ids"] == ["b", "c"]
    recorded = json.loads((tmp_path / "out.jsonl.stats.json").read_text())
    assert recorded["config"]["clustering"] == clustering
    assert ("clusters" in stats) == (clustering != "none")


def two_model_ensemble(seed: int, n_docs: int = 300, n_queries: int = 12):
    rng = np.random.default_rng(seed)
    docs = [unit(rng.normal(size=(n_docs, 5))), unit(rng.normal(size=(n_docs, 3)))]
    queries = [unit(rng.normal(size=(n_queries, 5))), unit(rng.normal(size=(n_queries, 3)))]
    return Ensemble([Member("a", 1.0), Member("b", 2.0)], docs, queries)


def test_none_is_the_exact_top_of_the_ensemble_over_the_corpus():
    ens = two_model_ensemble(0)
    n = len(ens.docs)
    excluded = np.zeros(n, dtype=bool)
    excluded[::50] = True  # "empty" documents
    positives = [np.array([3, 17]), np.array([5])] + [np.array([i]) for i in range(7, 17)]
    cfg = MineConfig(models="a,b:2", clustering="none", max_rank=20)
    for r, (ranked, scores, pos_scores) in enumerate(Candidates(cfg, n, excluded, ens).ranked(list(range(12)),
                                                                                              positives)):
        full = (ens.doc_vectors[0] @ ens.query_vectors[0][r] + 2 * ens.doc_vectors[1] @ ens.query_vectors[1][r]) / 3
        eligible = [d for d in np.argsort(-full, kind="stable") if not excluded[d] and d not in positives[r]]
        assert ranked.tolist() == eligible[:20]
        np.testing.assert_allclose(scores, full[ranked], atol=1e-6)
        np.testing.assert_allclose(pos_scores, full[positives[r]], atol=1e-6)


@pytest.mark.parametrize("sample", [300, 150])  # every document fitted; half of them, the rest assigned
@pytest.mark.parametrize("clustering", ["kmeans", "agglomerative", "gmm"])
def test_documents_and_queries_meet_clusters_by_the_same_rule(clustering, sample):
    ens = two_model_ensemble(1)
    cfg = MineConfig(models="a,b:2", clustering=clustering, n_clusters=9, n_probe=2, linkage="average",
                     kmeans_sample=sample, agglomerative_sample=sample, gmm_sample=sample)
    view = ClusterView.fit(ens.docs, cfg)
    np.testing.assert_array_equal(view.labels, view.affinity(ens.docs).argmax(1))
    assert sorted(np.concatenate(view.members).tolist()) == list(range(len(ens.docs)))
    positives = [np.array([i, i + 100]) for i in range(12)]
    for q, pos, cands in zip(ens.queries, positives, view.candidates(ens.queries, positives, 2)):
        probed = set(np.argsort(-view.affinity(q[None])[0])[:2].tolist()) | set(view.labels[pos].tolist())
        assert sorted(cands.tolist()) == sorted(np.flatnonzero(np.isin(view.labels, list(probed))).tolist())


@pytest.mark.parametrize("clustering", ["kmeans", "agglomerative", "gmm"])
def test_same_seed_same_clusters_other_seed_other_clusters(clustering):
    # agglomerative is deterministic on its points: a sample smaller than the corpus is where the seed enters
    ens = two_model_ensemble(2)
    cfg = MineConfig(models="a,b:2", clustering=clustering, n_clusters=9, seed=4,
                     agglomerative_sample=150 if clustering == "agglomerative" else 4096)
    a, b = ClusterView.fit(ens.docs, cfg), ClusterView.fit(ens.docs, cfg)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not same_partition(a.labels, ClusterView.fit(ens.docs, replace(cfg, seed=5)).labels)


def test_clustering_bad_values_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="clustering: must be one of kmeans, agglomerative, gmm, none, not 'spectral'"):
        MineConfig(clustering="spectral")
    with pytest.raises(ValueError, match="applies to the ensemble strategy only"):
        MineConfig(strategy="dense", clustering="gmm")
    with pytest.raises(ValueError, match="'mean' fusion"):
        MineConfig(clustering="none", fusion="zscore")
    with pytest.raises(ValueError, match="'mean' fusion"):
        MineConfig(clustering="none", models="all-MiniLM-L6-v2,bm25")
    with pytest.raises(ValueError, match="linkage: must be one of ward, average"):
        MineConfig(clustering="agglomerative", linkage="complete")
    ens = two_model_ensemble(3, n_docs=40)
    with pytest.raises(ValueError, match="raise agglomerative_sample"):
        ClusterView.fit(ens.docs, MineConfig(clustering="agglomerative", n_clusters=20, agglomerative_sample=10))
    passages = PassageEnsemble([Member("a")], [ens.doc_vectors[0]], np.arange(40), [ens.query_vectors[0]])
    with pytest.raises(ValueError, match="passage"):
        Candidates(MineConfig(models="a", clustering="none"), 40, np.zeros(40, dtype=bool), passages)


def test_mine_flag_and_a_bad_combination(tmp_path, capsys):
    from hnm.__main__ import main
    assert main(["mine", "--strategy", "dense", "--clustering", "gmm", "--output", str(tmp_path / "m.jsonl")]) == 2
    assert "hnm mine: error: clustering 'gmm' applies to the ensemble strategy only" in capsys.readouterr().err
    assert main(["mine", "--clustering", "spectral"]) == 2
    assert "hnm mine: error: --clustering: invalid choice: 'spectral'" in capsys.readouterr().err


def test_experiment_flag_adds_the_clustering_arms_after_the_others(tmp_path, monkeypatch):
    from hnm import experiment, results
    from hnm.__main__ import main
    seen = []
    monkeypatch.setattr(experiment, "run_experiment", lambda data, out, cfg, quiet, prepare: seen.append(cfg) or {})
    monkeypatch.setattr(results, "report", lambda r: "")
    for flags in ([], ["--clustering-arms"]):
        assert main(["experiment", "--data", str(tmp_path), "--out", str(tmp_path / "x"), *flags]) == 0
    plain, more = seen
    assert plain.arms == experiment.ARMS  # the default work order is untouched
    assert more.arms == experiment.ARMS + experiment.CLUSTERING_ARMS
    order = [(a.name, seed) for a, seed in experiment.work_order(more.arms, (0, 1, 2))]
    assert [s for name, s in order if name == "ensemble+ gmm"] == [0, 1, 2]  # every seed, as (f) itself
    for arm in experiment.CLUSTERING_ARMS:
        cfg = MineConfig(**arm.mine)
        assert (cfg.clustering, cfg.relative_ceiling, cfg.random_share) == (arm.name.split()[-1], 0.95, 0.25)


def test_clustering_arms_are_tested_against_kmeans_and_reported_beside_it():
    from hnm.results import System, judge, report
    rng = np.random.default_rng(0)
    qrels = {f"q{i}": {"d0": 1} for i in range(30)}

    def run(shift):  # d0's rank moves with the system
        return {q: {"d0": float(rng.normal(shift)), **{f"d{j}": float(rng.normal()) for j in range(1, 6)}}
                for q in qrels}
    systems = {System("first-stage"): {0: run(0.0)}, System("random"): {0: run(0.0)},
               System("ensemble+"): {0: run(1.0), 1: run(1.0)}, System("ensemble+", pure=True): {0: run(1.0)},
               System("ensemble+ gmm"): {0: run(3.0), 1: run(3.0)}, System("ensemble+ gmm", pure=True): {0: run(3.0)}}
    assert [s.twin() for s in systems] == [None, None, None, None, System("ensemble+"), System("ensemble+", pure=True)]
    assert [System.parse(s.label) for s in systems] == list(systems)  # records without "systems" still read
    r = judge(systems, qrels, resamples=500, top_k=5, split={"all": set(qrels)})
    assert set(r["p_values"]["ensemble+ gmm"]) == {f"{m} vs {b}" for m in ("mrr@10", "ndcg@10")
                                                   for b in ("first-stage", "random", "ensemble+")}
    assert "ndcg@10 vs ensemble+" not in r["p_values"]["ensemble+"]
    assert r["p_values"]["ensemble+ gmm"]["ndcg@10 vs ensemble+"] < 0.05  # d0 lifted well above (f)'s
    r.update(budget={"models": "m", "start": "m", "epochs": 1, "batch_size": 1, "negatives": 1, "lr": 1.0,
                     "max_length": 8, "top_k": 5, "seeds": [0, 1], "name": "t"}, loss="softmax", first_stage="hybrid",
             data="d", machine="here", stage_seconds={}, long_documents={}, split_sizes={"within window": 0, "beyond window": 0})
    text = report(r).split("open question on clustering")[1]
    m = r["seeds_mean"]["ensemble+ gmm"]
    assert f"| ensemble+ gmm | 2 | {m['ndcg@10']:.4f} ± " in text and "| ensemble+ gmm, pure | 1 |" in text
