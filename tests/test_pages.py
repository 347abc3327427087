"""Pages and their chunks (pages.py): judgments name pages, rows may be chunks, a page scores as its best chunk;
mining maps a page's judgment onto its chunks; the first stage, re-ranking and search report pages."""

import json

import numpy as np
import pytest

from hnm import miner
from hnm.data import load_beir
from hnm.ensemble import Ensemble, Member
from hnm.firststage import FirstStage, FirstStageConfig
from hnm.negatives import MineConfig
from hnm.pages import best_chunks, chunked, page_of, page_qrels, rows_of, to_pages

CORPUS = {"a#0": {"title": "A", "text": "x", "parent_id": "a"}, "a#1": {"title": "A", "text": "y", "parent_id": "a"},
          "b": {"title": "B", "text": "z"}}


def test_pages_by_hand():
    pages = page_of(CORPUS)
    assert pages == {"a#0": "a", "a#1": "a", "b": "b"} and chunked(pages) and not chunked({"b": "b"})
    assert rows_of(pages) == {"a": ["a#0", "a#1"], "b": ["b"]}
    # a judgment of a chunk counts for its page, the highest grade winning; an unknown id stays as it is
    assert page_qrels({"q": {"a#1": 1, "a": 2, "zz": 1}}, pages) == {"q": {"a": 2, "zz": 1}}
    assert to_pages({"q": {"a#0": 0.2, "a#1": 0.9, "b": 0.5}}, pages) == {"q": {"a": 0.9, "b": 0.5}}
    run = {"q": {"a#0": 3.0, "a#1": 2.0, "b": 1.0}}
    assert best_chunks(run, pages, top_k=1, per_page=2) == {"q": {"a#0": 3.0, "a#1": 2.0}}
    assert best_chunks(run, pages, top_k=2, per_page=1) == {"q": {"a#0": 3.0, "b": 1.0}}


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def chunked_corpus():
    """One query along x. The judged page p has two chunks: p#0 at cosine 0.9 (the answer) and p#1 at 0.5; the
    other pages are single rows at 0.95 (a, above the ceiling), 0.8, 0.7 and 0.4."""
    cosines = {"p#0": 0.9, "p#1": 0.5, "a": 0.95, "b": 0.8, "c": 0.7, "d": 0.4}
    docs = unit([[c, np.sqrt(1 - c * c)] for c in cosines.values()])
    corpus = {d: {"title": "", "text": f"text of {d}", **({"parent_id": "p"} if d.startswith("p#") else {})}
              for d in cosines}
    return corpus, {"q": "the query"}, {"q": {"p": 1}}, Ensemble([Member("m")], [docs], [unit([[1.0, 0.0]])])


@pytest.mark.parametrize("how", ["best", "all"])
def test_mining_maps_a_page_judgment_onto_its_chunks(tmp_path, how):
    corpus, queries, qrels, ens = chunked_corpus()
    cfg = MineConfig(strategy="dense", models="m", num_negatives=3, random_share=0.0, chunk_positives=how)
    miner.run(corpus, queries, qrels, cfg, tmp_path / "m.jsonl", quiet=True, ensemble=ens)
    row = json.loads((tmp_path / "m.jsonl").read_text())
    # best: the chunk the query scores highest; all: every chunk of the page
    assert row["positive_ids"] == (["p#0"] if how == "best" else ["p#0", "p#1"])
    # no chunk of the positive page is ever a negative: p#1 (0.5) would otherwise rank above d (0.4)
    assert row["negative_ids"] == ["b", "c", "d"]


def test_mining_refuses_judgments_that_name_nothing_in_the_corpus(tmp_path):
    corpus, queries, _, ens = chunked_corpus()
    with pytest.raises(ValueError, match="none of the 1 judged queries has a positive"):
        miner.run(corpus, queries, {"q": {"site/p.html": 1}}, MineConfig(strategy="dense", models="m"),
                  tmp_path / "m.jsonl", quiet=True, ensemble=ens)
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_page_judgments_load_and_the_first_stage_reports_best_chunks_of_the_top_pages(tmp_path):
    (tmp_path / "qrels").mkdir()
    rows = [{"_id": "alpha#0", "title": "Alpha", "text": "volume snapshots schedule", "parent_id": "alpha"},
            {"_id": "alpha#1", "title": "Alpha", "text": "snapshots retention", "parent_id": "alpha"},
            {"_id": "alpha#2", "title": "Alpha", "text": "snapshots again snapshots", "parent_id": "alpha"},
            {"_id": "beta", "title": "Beta", "text": "api keys and scopes"},
            {"_id": "gamma", "title": "Gamma", "text": "snapshots of a volume restore"}]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "snapshots volume"}) + "\n")
    (tmp_path / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq\talpha\t1\n")
    corpus, queries, qrels = load_beir(tmp_path, "train", strict=True)  # "alpha" is a page: no unknown document
    assert qrels == {"q": {"alpha": 1}} and corpus["alpha#0"]["parent_id"] == "alpha"
    run = FirstStage(corpus, FirstStageConfig(kind="bm25", top_k=2, per_page=2), quiet=True).run(queries)
    pages = page_of(corpus)
    assert set(to_pages(run, pages)["q"]) == {"alpha", "gamma"}  # the two best pages, beta not among them
    assert sum(pages[r] == "alpha" for r in run["q"]) == 2  # at most per_page chunks of a page
