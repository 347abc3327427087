"""Mining: the ensemble identity, a hand-made corpus, properties over random data, determinism, resume, bad input."""

import json
import os
import random
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from conftest import REPO
from hnm import miner
from hnm.data import load_beir, read_jsonl
from hnm.metrics import read_trec_run, write_trec_run
from hnm.ensemble import Ensemble, Member, ensemble_vectors, fuse_rrf, fuse_zscore, parse_members
from hnm.errors import InputError
from hnm.negatives import CONDITIONS, MineConfig, ceiling, reference_score, select_pca


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_ensemble_vector_inner_product_is_weighted_mean_cosine():
    rng = np.random.default_rng(0)
    a_docs, a_qs = unit(rng.normal(size=(50, 8))), unit(rng.normal(size=(5, 8)))
    b_docs, b_qs = unit(rng.normal(size=(50, 3))), unit(rng.normal(size=(5, 3)))
    docs = ensemble_vectors([a_docs, b_docs], [1.0, 3.0])
    qs = ensemble_vectors([a_qs, b_qs], [1.0, 3.0])
    expected = (1 * a_qs @ a_docs.T + 3 * b_qs @ b_docs.T) / 4
    assert np.abs(qs @ docs.T - expected).max() < 1e-6
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-6)
    e = Ensemble([Member("a", 1), Member("b", 3)], [a_docs, b_docs], [a_qs, b_qs], "mean")
    assert np.allclose(e.score(np.array([2]), [np.arange(50)])[0], expected[2], atol=1e-6)


def test_zscore_and_rrf_worked_examples():
    scores = np.array([[[0.9, 0.5, 0.1]], [[0.2, 0.3, 0.1]]])  # (M=2, Q=1, C=3)
    w = np.array([1.0, 1.0])
    # member 1 z-scores: (0.4, 0, -0.4) / 0.3266; member 2: (0, 0.1, -0.1) / 0.0816
    z = fuse_zscore(scores, w)[0]
    assert np.allclose(z, [(1.2247 + 0) / 2, (0 + 1.2247) / 2, (-1.2247 - 1.2247) / 2], atol=1e-3)
    r = fuse_rrf(scores, w)[0]  # ranks (1, 2, 3) and (2, 1, 3)
    assert np.allclose(r, [(1 / 61 + 1 / 62) / 2, (1 / 62 + 1 / 61) / 2, (1 / 63 + 1 / 63) / 2])
    assert parse_members("a,b:2,bm25:0.5") == (Member("a"), Member("b", 2.0), Member("bm25", 0.5))
    with pytest.raises(ValueError, match="weight must be a positive finite number"):
        parse_members("a:0")


def test_ceiling_rules():
    cfg = MineConfig(relative_ceiling=0.95)
    assert ceiling(0.8, cfg) == pytest.approx(0.76)
    assert ceiling(-0.2, cfg) == pytest.approx(-0.21)
    assert ceiling(0.8, replace(cfg, margin=0.1)) == pytest.approx(0.7)
    assert ceiling(0.8, replace(cfg, relative_ceiling=None, max_score=0.5)) == 0.5


# -------------------------------------------------------------------------------------------- hand-made corpus

ANGLES = {"p": 25.84, "a": 18.19, "b": 36.87, "c": 45.57, "d": 60.0, "e": 84.26, "f": 31.79}  # cos: .9 .95 .8 .7 .5 .1 .85


def hand_made():
    """One query along x; documents at known cosines. p is the positive, f is empty, a is above the ceiling."""
    ids = list(ANGLES)
    docs = unit([[np.cos(np.radians(a)), np.sin(np.radians(a))] for a in ANGLES.values()])
    corpus = {d: {"title": "", "text": "" if d == "f" else f"document {d}"} for d in ids}
    queries, qrels = {"q": "the query"}, {"q": {"p": 1}}
    return corpus, queries, qrels, Ensemble([Member("m")], [docs], [unit([[1.0, 0.0]])])


@pytest.mark.parametrize("strategy", ["dense", "ensemble"])
def test_hand_made_corpus_gives_the_known_negatives(tmp_path, strategy):
    corpus, queries, qrels, ens = hand_made()
    cfg = MineConfig(strategy=strategy, models="m", num_negatives=2, n_clusters=1, random_share=0.0)
    stats = miner.run(corpus, queries, qrels, cfg, tmp_path / "out.jsonl", quiet=True, ensemble=ens)
    row = json.loads((tmp_path / "out.jsonl").read_text())
    # ceiling 0.95 x 0.9 = 0.855: a (0.95) is flagged, f (0.85) is empty, so b and c are the two best negatives
    assert row["negative_ids"] == ["b", "c"]
    assert row["negative_scores"] == pytest.approx([0.8, 0.7], abs=1e-3)
    assert row["positive_scores"] == pytest.approx([0.9], abs=1e-3)
    review = [json.loads(x) for x in (tmp_path / "out.jsonl.review.jsonl").read_text().splitlines()]
    assert [r["doc_id"] for r in review] == ["a"]
    assert stats["empty_documents_kept_out"] == 1 and stats["likely_false_negatives_flagged"] == 1
    assert (tmp_path / "out.jsonl.scores.svg").read_text().startswith("<svg")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    # the window: skipping the top candidate also leaves a out of the review
    miner.run(corpus, queries, qrels, replace(cfg, skip_top=1, num_negatives=3), tmp_path / "w.jsonl",
                quiet=True, ensemble=ens)
    assert json.loads((tmp_path / "w.jsonl").read_text())["negative_ids"] == ["b", "c", "d"]
    assert (tmp_path / "w.jsonl.review.jsonl").read_text() == ""


# ------------------------------------------------------------------------------------------------ random data


def random_data(seed: int, n_docs: int = 240, n_queries: int = 30, dim: int = 6):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(40)]
    corpus = {f"d{i}": {"title": "", "text": " ".join(rng.choice(words, size=8)) if i % 37 else ""}
              for i in range(n_docs)}
    queries = {f"q{i}": " ".join(rng.choice(words, size=3)) for i in range(n_queries)}
    qrels = {q: {f"d{j}": int(rng.integers(0, 3)) for j in rng.choice(n_docs, size=rng.integers(1, 5), replace=False)}
             for q in queries}
    docs, qs = [unit(rng.normal(size=(n_docs, dim)))], [unit(rng.normal(size=(n_queries, dim)))]
    return corpus, queries, qrels, docs, qs


@pytest.mark.parametrize("seed", range(6))
def test_property_no_positive_is_a_negative_and_every_rule_holds(tmp_path, seed):
    pyrng = random.Random(seed)
    corpus, queries, qrels, docs, qs = random_data(seed)
    cfg = MineConfig(strategy=pyrng.choice(["ensemble", "dense", "bm25", "random"]), models="m",
                     skip_top=pyrng.randint(0, 3), max_rank=pyrng.randint(5, 60),
                     relative_ceiling=pyrng.choice([None, 0.9, 0.95]), margin=pyrng.choice([None, 0.05]),
                     min_score=pyrng.choice([None, -0.2]), sampling=pyrng.choice(["top", "random"]),
                     ceiling_from=pyrng.choice(["median", "weakest", "strongest"]),
                     num_negatives=pyrng.randint(1, 6), random_share=pyrng.choice([0.0, 0.5]),
                     n_clusters=pyrng.choice([None, 4]), chunk_size=7, seed=seed)
    kept = [q for q in qrels if any(g >= 1 for g in qrels[q].values())]
    ens = Ensemble([Member("m")], docs, [qs[0][[list(queries).index(q) for q in kept]]])
    stats = miner.run(corpus, queries, qrels, cfg, tmp_path / "o.jsonl", quiet=True, ensemble=ens)
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(rows) == len(kept) and stats["queries_skipped_without_positives"] == len(qrels) - len(kept)
    doc_ids = list(corpus)
    for row in rows:
        positives = {d for d, g in qrels[row["query_id"]].items() if g >= 1}
        assert set(row["positive_ids"]) == positives
        assert not positives & set(row["negative_ids"])
        assert len(set(row["negative_ids"])) == len(row["negative_ids"]) <= cfg.num_negatives
        assert all(corpus[d]["text"] for d in row["negative_ids"])  # empty documents never
        q = ens.query_vectors[0][kept.index(row["query_id"])]
        pos = row["positive_scores"]
        reference = {"median": np.median, "weakest": min, "strongest": max}[cfg.ceiling_from](pos) if pos else None
        full = docs[0] @ q
        ranking = [doc_ids[i] for i in np.lexsort((np.arange(len(doc_ids)), -full))
                   if doc_ids[i] not in positives and corpus[doc_ids[i]]["text"]]
        for d, s, src in zip(row["negative_ids"], row["negative_scores"], row["negative_sources"]):
            if src == "random" or cfg.strategy in ("random",):
                continue
            assert s < ceiling(reference, cfg) + 1e-9
            if cfg.min_score is not None:
                assert s >= cfg.min_score - 1e-9
            if cfg.strategy == "dense":
                assert cfg.skip_top <= ranking.index(d) < cfg.max_rank


def test_same_seed_same_file_other_seed_other_file(tmp_path):
    corpus, queries, qrels, docs, qs = random_data(1)
    kept = [q for q in qrels if any(g >= 1 for g in qrels[q].values())]
    ens = Ensemble([Member("m")], docs, [qs[0][[list(queries).index(q) for q in kept]]])
    cfg = MineConfig(models="m", sampling="random", random_share=0.5, max_rank=50, chunk_size=4)
    outs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        miner.run(corpus, queries, qrels, replace(cfg, seed=seed), tmp_path / f"{name}.jsonl", quiet=True,
                    ensemble=ens)
        outs.append((tmp_path / f"{name}.jsonl").read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_killed_run_resumes_to_the_same_file(tmp_path, monkeypatch):
    corpus, queries, qrels, docs, qs = random_data(2)
    kept = [q for q in qrels if any(g >= 1 for g in qrels[q].values())]
    ens = Ensemble([Member("m")], docs, [qs[0][[list(queries).index(q) for q in kept]]])
    cfg = MineConfig(models="m", sampling="random", random_share=0.25, chunk_size=4, max_rank=40)
    miner.run(corpus, queries, qrels, cfg, tmp_path / "whole.jsonl", quiet=True, ensemble=ens)

    real = miner.select
    calls = {"n": 0}

    def dies_in_third_chunk(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 10:  # query 10 sits in the third chunk of four
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(miner, "select", dies_in_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        miner.run(corpus, queries, qrels, cfg, tmp_path / "cut.jsonl", quiet=True, ensemble=ens)
    assert not (tmp_path / "cut.jsonl").exists()
    assert json.loads((tmp_path / "cut.jsonl.progress.json").read_text())["chunks"] == 2
    with open(tmp_path / "cut.jsonl.part", "ab") as f:
        f.write(b'{"half a row')  # what a kill in the middle of a write leaves
    monkeypatch.setattr(miner, "select", real)
    miner.run(corpus, queries, qrels, cfg, tmp_path / "cut.jsonl", quiet=True, ensemble=ens)
    assert (tmp_path / "cut.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    assert ((tmp_path / "cut.jsonl.review.jsonl").read_bytes() ==
            (tmp_path / "whole.jsonl.review.jsonl").read_bytes())
    assert not (tmp_path / "cut.jsonl.progress.json").exists()


# -------------------------------------------------------------------------------------------------- bad input


def beir(folder, qrels_lines):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "wing lift"}\n{"_id": "d2", "text": ""}\n'
                                         '{"_id": "d3", "title": "Drag", "text": "drag at speed"}\n'
                                         '{"_id": "d4", "text": "heat transfer"}\n')
    (folder / "queries.jsonl").write_text('{"_id": "1", "text": "lift of wings"}\n{"_id": "2", "text": "drag"}\n')
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(qrels_lines))
    return folder


def test_unknown_ids_in_judgments_are_counted_and_named_or_refused_when_strict(tmp_path, capsys):
    beir(tmp_path / "a", ["1\td1\t1\n", "1\td9\t1\n", "7\td1\t1\n", "2\td3\t1\n"])
    corpus, queries, qrels = load_beir(tmp_path / "a", "train")
    err = capsys.readouterr().err
    assert "1 judgments name unknown queries (dropped), 1 name documents missing from the corpus" in err
    assert "train.tsv:4: field 'query-id' names '7'" in err and "train.tsv:3: field 'corpus-id' names 'd9'" in err
    assert qrels == {"1": {"d1": 1, "d9": 1}, "2": {"d3": 1}}  # d9 counts against recall, as in trec_eval
    stats = miner.run(corpus, queries, qrels, MineConfig(strategy="random", num_negatives=1), tmp_path / "m.jsonl",
                      quiet=True)
    rows = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert rows[0]["positive_ids"] == ["d1"]  # mining leaves the missing document out
    assert stats["judgments_naming_documents_not_in_the_corpus"] == 1
    with pytest.raises(InputError, match=r"train.tsv:3: field 'corpus-id' names 'd9', which is not in the corpus"):
        load_beir(tmp_path / "a", "train", strict=True)
    beir(tmp_path / "b", ["7\td1\t1\n"])
    with pytest.raises(InputError, match=r"train.tsv:2: field 'query-id' names '7', which is not among the queries"):
        load_beir(tmp_path / "b", "train", strict=True)
    done = run_cli("mine", "--data", str(tmp_path / "a"), "--strategy", "random", "--strict", "--output",
                   str(tmp_path / "s.jsonl"), "--quiet")
    assert done.returncode == 2 and "train.tsv:3: field 'corpus-id'" in done.stderr


def test_files_with_a_byte_order_mark_and_crlf_line_ends_read_as_plain_ones(tmp_path):
    plain = beir(tmp_path / "plain", ["1\td1\t1\n", "2\td3\t1\n"])
    windows = tmp_path / "windows"
    (windows / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv"):
        text = (plain / name).read_text()
        (windows / name).write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert load_beir(windows, "train") == load_beir(plain, "train")
    run = tmp_path / "run.trec"
    write_trec_run(run, {"1": {"d1": 2.0, "d3": 1.0}}, "t")
    crlf = tmp_path / "crlf.trec"
    crlf.write_bytes(b"\xef\xbb\xbf" + run.read_bytes().replace(b"\n", b"\r\n"))
    assert read_trec_run(crlf) == read_trec_run(run)
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(b"\xef\xbb\xbf" + b'{"query_id": "1", "query": "q"}\r\n')
    assert [r for _, r in read_jsonl(rows)] == [{"query_id": "1", "query": "q"}]  # mined rows: the same reader
    (windows / "qrels" / "bad.tsv").write_bytes(b"query-id\tcorpus-id\tscore\n1\td\xff1\t1\n")
    with pytest.raises(InputError, match=r"bad.tsv:2: not valid UTF-8"):
        load_beir(windows, "bad")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "hnm", *args], capture_output=True, text=True, cwd=REPO)


def test_mine_verb_counts_skipped_queries_and_empty_documents_and_exports(tmp_path):
    data = beir(tmp_path / "data", ["1\td1\t1\n", "1\td4\t0\n", "2\td3\t0\n"])  # query 2 has no positive
    out = tmp_path / "mined.jsonl"
    done = run_cli("mine", "--data", str(data), "--strategy", "bm25", "--num-negatives", "3",
                   "--output", str(out), "--format", "triplets", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "skipped without a positive: 1" in done.stdout
    assert "empty documents kept out of the negatives: 1" in done.stdout
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["query_id"] for r in rows] == ["1"]
    assert "d2" not in rows[0]["negative_ids"] and "d1" not in rows[0]["negative_ids"]
    triplets = [json.loads(x) for x in (tmp_path / "mined.triplets.jsonl").read_text().splitlines()]
    assert len(triplets) == len(rows[0]["negative_ids"]) and triplets[0]["positive"] == "wing lift"


def test_passage_ensemble_scores_each_model_by_its_own_best_passage():
    """Two models cut the same three documents differently; a score is the weighted mean of each model's MaxP."""
    from hnm.ensemble import Member, PassageEnsemble
    rng = np.random.default_rng(3)

    def unit(n, d):
        x = rng.normal(size=(n, d)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    docs_a = np.array([0, 0, 0, 1, 2, 2])  # the short-window model: 3, 1 and 2 passages
    docs_b = np.array([0, 1, 2, 2])  # the long-window model: 1, 1 and 2
    pa, pb, qa, qb = unit(6, 4), unit(4, 3), unit(2, 4), unit(2, 3)
    ens = PassageEnsemble([Member("a", 1.0), Member("b", 3.0)], [pa, pb], [docs_a, docs_b], [qa, qb])
    got = ens.score(np.array([1, 0]), [np.array([2, 0, 1]), np.array([1])])
    for r, c, g in zip([1, 0], [[2, 0, 1], [1]], got):
        want = [0.25 * max(pa[docs_a == d] @ qa[r]) + 0.75 * max(pb[docs_b == d] @ qb[r]) for d in c]
        np.testing.assert_allclose(g, want, rtol=1e-6)
    # the document vectors k-means sees are each model's normalised passage mean
    mean0 = pa[:3].sum(0) / np.linalg.norm(pa[:3].sum(0))
    np.testing.assert_allclose(ens.doc_vectors[0][0], mean0, rtol=1e-6)
    with pytest.raises(ValueError, match="grouped by document"):
        PassageEnsemble([Member("a", 1.0), Member("b", 1.0)], [pa, pb], [docs_a, np.array([0, 2, 1, 2])], [qa, qb])


def test_reference_positive_of_several_by_hand():
    scores = np.array([0.9, 0.5, 0.03])  # graded judgments: one barely related positive
    assert reference_score(scores, MineConfig()) == 0.9  # the strongest, the default
    assert reference_score(scores, MineConfig(ceiling_from="median")) == 0.5
    assert reference_score(scores, MineConfig(ceiling_from="weakest")) == 0.03  # the strictest: most are flagged
    assert np.isnan(reference_score(np.empty(0), MineConfig()))
    with pytest.raises(ValueError, match="ceiling_from"):
        MineConfig(ceiling_from="mean")


# ------------------------------------------------------------------------------- the pca selection (step 4')


def test_pca_rule_verdicts_by_hand_with_two_positives():
    # cosines: cos(Q, D) of three candidates, cos(Q, PD) of two positives, cos(PD, D) per positive and candidate
    scores, positives = np.array([0.9, 0.8, 0.7]), np.array([0.75, 0.6])
    between = np.array([[0.5, 0.95, 0.2], [0.3, 0.1, 0.75]])
    cfg = MineConfig(selection="pca", clustering="none", models="m", random_share=0.0)
    sel = select_pca(np.array([10, 11, 12]), scores, positives, between, cfg, np.random.default_rng(0), 3)
    # D10: d(Q,D) 0.1 < 0.25, 0.4 and < 0.5, 0.7: a negative. D11: 0.2 < d(PD1,D) 0.05 fails. D12: 0.3 < 0.25
    # fails for the first positive (though it is nearer than the second), and 0.3 < d(PD2,D) 0.25 fails
    assert sel.negatives == [10]
    assert sel.flagged == [(11, 0.8), (12, 0.7)]
    assert sel.failed == [[CONDITIONS[1]], list(CONDITIONS)]


PCA_ANGLES = {"p": 40, "a": 10, "c": -25, "b": 30, "e": 55, "d": -65}  # degrees from the query, around a circle


def pca_hand_made(r: float = 0.8, h: float = 0.6):
    """Documents on a circle of radius r at height h, each with its antipode (so the mean lies on the axis and the
    height has no variance): the two kept components span the circle's plane, where a cosine is cos(angle)."""
    ids, angles = [], []
    for d, a in PCA_ANGLES.items():
        ids += [d, d + "'"]
        angles += [a, a + 180]
    rad = np.radians(angles)
    docs = np.stack([r * np.cos(rad), r * np.sin(rad), np.full(len(rad), h)], axis=1).astype(np.float32)
    corpus = {d: {"title": "", "text": f"document {d}"} for d in ids}
    ens = Ensemble([Member("m")], [docs], [np.array([[r, 0.0, h]], dtype=np.float32)])
    return corpus, {"q": "the query"}, {"q": {"p": 1}}, ens


def test_pca_rule_in_the_miner_by_hand(tmp_path):
    corpus, queries, qrels, ens = pca_hand_made()
    cfg = MineConfig(selection="pca", pca_components=2, clustering="none", models="m", max_rank=5,
                     num_negatives=3, random_share=0.0)
    stats = miner.run(corpus, queries, qrels, cfg, tmp_path / "o.jsonl", quiet=True, ensemble=ens)
    row = json.loads((tmp_path / "o.jsonl").read_text())
    # d(Q, P) = 1 - cos 40 = 0.234; the window, by d(Q, D): a (0.015), c (0.094), b (0.134), e (0.426), d (0.577).
    # a: d(P, a) = 1 - cos 30 = 0.134 > 0.015, a negative; c: d(P, c) = 1 - cos 65 = 0.577, a negative; b: d(P, b) =
    # 1 - cos 10 = 0.015 < 0.134, out; e: 0.426 > 0.234 and d(P, e) = 1 - cos 15 = 0.034, out twice; d: 0.577 > 0.234
    assert row["negative_ids"] == ["a", "c"]
    assert row["negative_scores"] == pytest.approx([np.cos(np.radians(10)), np.cos(np.radians(25))], abs=1e-5)
    assert row["positive_scores"] == pytest.approx([np.cos(np.radians(40))], abs=1e-5)
    review = [json.loads(x) for x in (tmp_path / "o.jsonl.review.jsonl").read_text().splitlines()]
    assert [(x["doc_id"], x["failed"]) for x in review] == [("b", [CONDITIONS[1]]), ("e", list(CONDITIONS)),
                                                            ("d", [CONDITIONS[0]])]
    assert stats["queries_with_too_few_negatives"] == 1  # two passed, three wanted
    p = stats["pca"]
    assert p["components"] == 2 and p["kept_out"] == {CONDITIONS[0]: 2, CONDITIONS[1]: 2}
    # the ensemble's own cosines (3-D): 0.64 cos + 0.36, so P 0.850 and the ceiling 0.95 x 0.850 = 0.808; a (0.990)
    # and c (0.940) are both above it: the ceiling would have kept out every negative the rule chose
    assert (p["hard_negatives"], p["ceiling_would_flag"]) == (2, 2)
    # an absolute ceiling of 0.95 instead: a (0.990) above it, c (0.940) below
    loose = miner.run(corpus, queries, qrels, replace(cfg, relative_ceiling=None, max_score=0.95),
                      tmp_path / "l.jsonl", quiet=True, ensemble=ens)
    assert loose["pca"]["ceiling_would_flag"] == 1
    assert json.loads((tmp_path / "l.jsonl").read_text())["negative_ids"] == ["a", "c"]  # the rule ignores it


def test_pca_selection_needs_the_ensemble_vectors():
    for bad in ({"strategy": "dense"}, {"fusion": "rrf"}, {"models": "m,bm25"}, {"pca_variance": 1.0},
                {"pca_components": 0}, {"selection": "nv"}):
        with pytest.raises(ValueError):
            MineConfig(**{"selection": "pca", "models": "m", **bad})
