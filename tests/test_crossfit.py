"""Cross-fitting (crossfit.py): the epochs and alpha chosen by hand from logs, and a tiny run end to end: the folds
cover every labelled query once, each fold's queries are scored by the model that did not see them, the final model
trains on all of them for the folds' epochs with nothing held out, alpha is stored in it, and a rerun trains
nothing."""

import json

import numpy as np
import pytest

from conftest import FIXTURES, require_model
from hnm.config import FirstStageConfig, TrainConfig
from hnm.crossfit import best_epoch, cross_fit, final_epochs
from hnm.encoder import EncoderConfig
from hnm.reranker import CrossEncoder
from hnm.twostage import stored_alpha

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models run on one thread


def test_best_epoch_and_final_epochs_by_hand(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = [{"step": s, "epoch": (s - 1) // 3, "loss": 1.0} for s in range(1, 10)]  # 3 steps an epoch, 3 epochs
    lines.insert(3, {"step": 3, "eval": {"mrr@10": 0.5}, "best": True})
    lines.insert(7, {"step": 6, "eval": {"mrr@10": 0.7}, "best": True})  # epoch 2's check is the best
    lines.append({"step": 9, "eval": {"mrr@10": 0.6}, "best": False})
    log.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert best_epoch(log) == 2
    log.write_text("".join(json.dumps(r) + "\n" for r in lines if "eval" not in r))
    assert best_epoch(log) == 3  # no check kept anything: the last epoch
    assert final_epochs([2, 2, 3, 5, 2]) == 2 and final_epochs([1, 2]) == 2 and final_epochs([4]) == 4


def test_cross_fit_scores_each_query_out_of_fold_and_trains_the_final_model_on_all(tmp_path):
    tokenizer = require_model("all-MiniLM-L6-v2") / "tokenizer.json"
    cfg = EncoderConfig(**json.loads((FIXTURES / "reranker_interop.json").read_text())["models"]["bert"]["config"])
    start = tmp_path / "start"
    CrossEncoder.random(cfg, tokenizer, max_length=32, seed=0, std=0.2).save(start)
    topics = ["volcano", "glacier", "comet", "reef", "desert", "canyon"]
    rng = np.random.default_rng(0)
    rows, corpus, first, qrels, queries = [], {}, {}, {}, {}
    for i in range(10):
        q, topic = f"q{i}", topics[i % len(topics)]
        others = [t for t in topics if t != topic][:3]
        docs = {f"p{i}": f"a report on the {topic}", **{f"n{i}-{j}": f"a report on the {o}"
                                                        for j, o in enumerate(others)}}
        corpus.update({d: {"title": "", "text": t} for d, t in docs.items()})
        queries[q] = f"what about the {topic}"
        first[q] = {d: float(s) for d, s in zip(docs, rng.normal(size=len(docs)))}
        qrels[q] = {f"p{i}": 1}
        rows.append({"query_id": q, "query": queries[q], "positive_ids": [f"p{i}"], "positives": [docs[f"p{i}"]],
                     "negative_ids": list(docs)[1:], "negatives": list(docs.values())[1:]})
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tcfg = TrainConfig(loss="softmax", negatives=3, batch_size=2, epochs=2, min_steps=0, lr=1e-3, save_every=100,
                       precision="float32")
    stage = FirstStageConfig(kind="bm25", top_k=4)
    said = []
    out = tmp_path / "cf"
    result = cross_fit(path, out, str(start), tcfg, first, queries, corpus, qrels, stage, folds=2, quiet=True,
                       say=said.append)

    held = [json.loads((out / f"fold{f}" / "tuning_queries.json").read_text()) for f in range(2)]
    assert sorted(held[0] + held[1]) == sorted(queries) and not set(held[0]) & set(held[1])  # each query once
    for f in range(2):  # each fold's queries, and only those, re-ranked by its own model
        scored = json.loads((out / f"fold{f}" / "out-of-fold.json").read_text())
        assert set(scored["pure"]) == set(held[f])
        model = CrossEncoder.from_checkpoint(out / f"fold{f}" / "best")
        q = held[f][0]
        docs = sorted(first[q])
        expected = model.score([queries[q]] * len(docs), [corpus[d]["text"] for d in docs])
        assert np.allclose([scored["pure"][q][d] for d in docs], expected, atol=1e-5)
    assert result["tuning_queries"] == 10 and result["fold_best_epochs"] == [
        best_epoch(out / f"fold{f}" / "log.jsonl") for f in range(2)]
    assert result["epochs"] == final_epochs(result["fold_best_epochs"])
    final = out / "final"
    steps = [json.loads(line)["step"] for line in (final / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 5 * result["epochs"] + 1))  # all 10 rows, 5 steps an epoch, no check
    assert not (final / "best").exists() and json.loads((final / "tuning_queries.json").read_text()) == []
    assert stored_alpha(final / "last", stage) == result["alpha"] and result["checkpoint"] == str(final / "last")
    assert any("fold model 2 of 2" in s for s in said) and any("the final model on all 10" in s for s in said)

    stamp = (final / "last" / "model.safetensors").stat().st_mtime_ns
    assert cross_fit(path, out, str(start), tcfg, first, queries, corpus, qrels, stage, folds=2, quiet=True,
                     say=said.append) == result
    assert (final / "last" / "model.safetensors").stat().st_mtime_ns == stamp  # nothing trained again
