"""The experiment end to end on a tiny cut of Cranfield with a tiny encoder added to a lock by its hashes."""

import hashlib
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import require_model
from hnm.data import bundled_cranfield, load_beir, write_jsonl
from hnm.encoder import EncoderConfig, build_encoder
from hnm.experiment import ARMS, SHUFFLES, Budget, ExperimentConfig, run_experiment, shuffled, work_order
from hnm.metrics import evaluate, rank_documents, read_trec_run
from hnm.results import claim, report
from hnm.twostage import stored_alphas


def tiny_model(home, tokenizer_json):
    """A random 2-layer BERT (hidden 32) in the cache, and a lock naming it by its files' hashes."""
    folder = home / "models" / "tiny"
    folder.mkdir(parents=True)
    cfg = dict(model_type="bert", vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=512, layer_norm_eps=1e-12, pad_token_id=0)
    torch.manual_seed(0)
    model = build_encoder(EncoderConfig(**cfg))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg))
    shutil.copy(tokenizer_json, folder / "tokenizer.json")
    lines = ['[models.tiny]', 'repo = "local/tiny"', 'revision = "none"', 'architecture = "bert"',
             'pooling = "mean"', 'normalize = true', 'max_length = 128']
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        data = (folder / name).read_bytes()
        lines += [f'[models.tiny.files."{name}"]', f'sha256 = "{hashlib.sha256(data).hexdigest()}"',
                  f"size = {len(data)}"]
    lock = home / "weights.lock"
    lock.write_text("\n".join(lines) + "\n")
    return lock


def tiny_cranfield(folder):
    """12 training and 6 test queries of the bundled Cranfield, their judged documents and 40 others."""
    corpus, _, train = load_beir(bundled_cranfield(), "train_80")
    _, _, test = load_beir(bundled_cranfield(), "test_20")
    _, queries, _ = load_beir(bundled_cranfield(), "test")
    train = dict(list(train.items())[:12])
    test = dict(list(test.items())[:6])
    keep = {d for q in (train, test) for docs in q.values() for d in docs} | set(list(corpus)[:40])
    (folder / "qrels").mkdir(parents=True)
    write_jsonl(folder / "corpus.jsonl", [{"_id": d, **corpus[d]} for d in corpus if d in keep])
    write_jsonl(folder / "queries.jsonl", [{"_id": q, "text": queries[q]} for q in (*train, *test)])
    for name, qrels in (("train", train), ("test", test)):
        (folder / "qrels" / f"{name}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"{q}\t{d}\t{g}\n" for q, docs in qrels.items() for d, g in docs.items()))
    return folder


def test_small_experiment_runs_every_arm_and_reports(tmp_path, monkeypatch):
    tokenizer_json = require_model("all-MiniLM-L6-v2") / "tokenizer.json"
    monkeypatch.setenv("HNM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HNM_LOCK", str(tiny_model(tmp_path / "home", tokenizer_json)))
    data = tiny_cranfield(tmp_path / "cran")
    n_docs = len((data / "corpus.jsonl").read_text().splitlines())
    budget = Budget("tiny", models="tiny", start="tiny", epochs=1, batch_size=4, max_length=48, top_k=5,
                    test_queries=None, train_queries=8, corpus_docs=n_docs - 5, seeds=(0, 1), negatives=4,
                    precision="float32", max_steps=3)
    cfg = replace(ExperimentConfig(), budget=budget, resamples=200)
    out = tmp_path / "exp"
    # --prepare: the first stages and every arm's mining, nothing trained; the full run then reuses them
    assert run_experiment(data, out, cfg, quiet=True, prepare=True) == {}
    assert not any((out / "models").iterdir()) and not (out / "report.md").exists()
    prepared = json.loads((out / "stage_times.json").read_text())
    assert {k for k in prepared if k.startswith("mine ")} == {f"mine {a.name}" for a in ARMS if a.mine}
    results = run_experiment(data, out, cfg, quiet=True)
    assert {k: v for k, v in json.loads((out / "stage_times.json").read_text()).items() if k in prepared} == prepared

    arms = {a.name for a in ARMS} | {"ensemble+ passages / MaxP"}
    labels = arms | {f"{n}, pure" for n in arms - {"first-stage"}} | {"first-stage, shuffled"}
    assert set(results["seeds_mean"]) == labels
    # the floor: the first stage's own top k in SHUFFLES seeded orders
    first = read_trec_run(out / "runs" / "first-stage.test.trec")
    assert set(results["per_seed"]["first-stage, shuffled"]) == set(range(SHUFFLES))
    m = [evaluate(shuffled({q: dict(rank_documents(d, 5)) for q, d in first.items()}, s), load_beir(data, "test")[2])
         for s in range(SHUFFLES)]
    assert results["seeds_mean"]["first-stage, shuffled"]["mrr@10"] == pytest.approx(np.mean([x["mrr@10"] for x in m]))
    assert all(("ndcg@10 vs first-stage, shuffled" in ps) == n.endswith(", pure")
               for n, ps in results["p_values"].items())
    for name, m in results["seeds_mean"].items():
        assert 0.0 <= m["mrr@10"] <= 1.0 and 0.0 <= m["ndcg@10"] <= 1.0
        lo, hi = results["intervals"][name]["mrr@10"]
        assert lo <= m["mrr@10"] + 1e-9 and m["mrr@10"] <= hi + 1e-9
    # the claim's arms train every seed, the others one; the mean is over the seeds
    assert set(results["per_seed"]["random"]) == {0, 1} and set(results["per_seed"]["dense"]) == {0}
    per_seed = results["per_seed"]["ensemble+, pure"]
    assert results["seeds_mean"]["ensemble+, pure"]["mrr@10"] == pytest.approx(
        (per_seed[0]["mrr@10"] + per_seed[1]["mrr@10"]) / 2)
    # each strategy against the baselines and against every other strategy: the claim's orderings, each tested
    assert set(results["p_values"]["ensemble+"]) == {f"{m} vs {b}" for m in ("mrr@10", "ndcg@10")
                                                     for b in ("first-stage", "random", "bm25", "dense", "ensemble")}
    assert set(results["claim"]["p"]) == {"ensemble vs bm25", "bm25 vs random", "ensemble+ vs random",
                                          "ensemble+ vs bm25", "ensemble+ vs dense", "ensemble+ vs ensemble"}
    assert results["claim"]["p"]["ensemble vs bm25"] == results["p_values"]["bm25"]["mrr@10 vs ensemble"]
    # alpha was tuned on each model's tuning queries and stored in its checkpoint
    for name, alpha in results["alphas"].items():
        assert 0.0 <= alpha <= 1.0
        kept = out / "models" / name / "best"  # the best held-out checkpoint, or the last without one
        assert list(stored_alphas(kept if kept.exists() else kept.with_name("last")).values()) == [alpha]
    assert set(results["alphas"]) == {f"{a}-s{s}" for a in ("ensemble+", "random", "ensemble", "bm25")
                                      for s in (0, 1)} | {"dense-s0", "ensemble+ passages-s0"}
    assert sum(results["split_sizes"].values()) == results["queries"] == 6
    assert results["corpus"] == {"documents": n_docs - 5, "of": n_docs}  # 5 unjudged documents cut
    text = (out / "report.md").read_text()
    assert f"corpus cut to {n_docs - 5:,} of {n_docs:,} documents" in text
    assert text == report(json.loads((out / "results.json").read_text()))
    for label in labels:
        assert f"| {label} |" in text
    assert (out / "chart.svg").read_text().startswith("<svg")
    m = {n: v["mrr@10"] for n, v in results["seeds_mean"].items() if not n.endswith((", pure", ", shuffled"))}
    holds = m["ensemble"] > m["bm25"] > m["random"] and max(m, key=lambda n: (n != "first-stage", m[n])) == "ensemble+"
    assert results["claim"]["holds"] == holds
    assert ("The data show the claim." if holds else "The data do not show the claim.") in text
    assert "| ensemble+ | 2 | " in text.split("Every metric")[0]  # the headline table, two seeds
    # each arm's first-seed model re-ranks BM25's top k alone, against BM25 alone
    check = results["check"]
    assert check["first_stage"] == "bm25" and set(check["re-ranked"]) == {a.name for a in ARMS if a.mine}
    bm25 = read_trec_run(out / "runs" / "bm25.test.trec")
    assert check["alone"]["ndcg@10"] == pytest.approx(evaluate(bm25, load_beir(data, "test")[2])["ndcg@10"])
    for arm, v in check["re-ranked"].items():
        pure = read_trec_run(out / "runs" / f"{arm.replace(' ', '-')}-s0.on-bm25.trec")
        assert set(pure) == set(bm25) and all(set(pure[q]) <= set(bm25[q]) for q in pure)
        assert 0.0 < v["p ndcg@10"] <= 1.0 and f"| {arm}, pure on bm25 | {v['ndcg@10']:.4f} |" in text
    assert not (out / "runs" / "random-s1.on-bm25.trec").exists()  # one seed only
    for arm in ("random", "bm25", "dense", "ensemble", "ensemble+", "ensemble+ passages"):
        rows = [json.loads(x) for x in (out / "mined" / f"{arm}.jsonl").read_text().splitlines()]
        assert len(rows) == 8 and all(r["negative_ids"] for r in rows)
        assert (out / "models" / f"{arm}-s0" / "done.json").exists()

    # a second run finds every stage done and only judges again
    times = json.loads((out / "stage_times.json").read_text())
    again = run_experiment(data, out, cfg, quiet=True)
    assert json.loads((out / "stage_times.json").read_text()) == times
    assert again["seeds_mean"] == results["seeds_mean"]

    # the small record of finished models (summaries, alphas, runs; no weights, no mined rows), copied into a fresh
    # OUT as a new machine would have it from the repository, is enough: nothing is mined or trained again
    record = tmp_path / "record"
    for f in [out / "config.json", out / "stage_times.json", *(out / "runs").iterdir(),
              *(out / "models").glob("*/*.json")]:
        (record / f.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, record / f.relative_to(out))
    assert not list(record.glob("models/*/best")) and not (record / "mined").exists()
    resumed = run_experiment(data, record, cfg, quiet=True)
    assert json.loads((record / "stage_times.json").read_text()) == times
    assert resumed["seeds_mean"] == results["seeds_mean"] and not any((record / "mined").iterdir())
    # a model whose outputs are not all there and whose weights are gone is trained again
    (record / "runs" / "dense-s0.trec").unlink()
    run_experiment(data, record, cfg, quiet=True)
    assert (record / "mined" / "dense.jsonl").exists() and (record / "models" / "dense-s0" / "last").exists()
    # OUT keeps the configuration it was made with: another one is refused, not mixed in
    with pytest.raises(ValueError, match="another configuration .*loss"):
        run_experiment(data, out, replace(cfg, loss="softmax"), quiet=True)


def test_shuffled_keeps_each_querys_candidates_in_a_seeded_order():
    run = {"q1": {f"d{i}": float(i) for i in range(30)}, "q2": {"a": 2.0, "b": 1.0}}
    once, again, other = shuffled(run, 0), shuffled(run, 0), shuffled(run, 1)
    assert once == again and once != other
    assert all(set(once[q]) == set(run[q]) and sorted(once[q].values()) == list(map(float, range(len(run[q]))))
               for q in run)
    orders = [[d for d, _ in rank_documents(shuffled(run, s)["q1"])] for s in range(5)]
    assert len({tuple(o) for o in orders}) == 5


def test_work_goes_seed_by_seed():
    order = [(a.name, s) for a, s in work_order(ARMS, (0, 1))]
    assert order[:5] == [("ensemble+", 0), ("random", 0), ("ensemble", 0), ("bm25", 0), ("dense", 0)]
    assert order[5:9] == [("ensemble+", 1), ("random", 1), ("ensemble", 1), ("bm25", 1)]
    assert order[9:] == [("ensemble+ passages", 0)]  # its long passage embedding holds back no other model


def test_claim_reads_the_papers_ordering():
    def arms(**mrr):
        return {n.replace("_plus", "+").replace("_", "-"): {"mrr@10": v} for n, v in mrr.items()}
    yes = claim(arms(first_stage=0.9, random=0.5, bm25=0.6, ensemble=0.7, ensemble_plus=0.8))
    assert yes["holds"] and yes["best arm"] == "ensemble+"  # the first stage alone is not a re-ranked arm
    no = claim(arms(random=0.5, bm25=0.6, ensemble=0.7, ensemble_plus=0.65))
    assert not no["holds"] and no["ensemble > bm25"] and no["best arm"] == "ensemble"
    assert not claim(arms(random=0.6, bm25=0.5, ensemble=0.7, ensemble_plus=0.8))["holds"]
    assert claim(arms(random=0.5, bm25=0.6)) is None
    variants = {**arms(random=0.5, bm25=0.6, ensemble=0.7, ensemble_plus=0.8), "ensemble+ gmm": {"mrr@10": 0.85}}
    assert claim(variants)["holds"]  # a clustering variant of (f) is not a rival strategy
    p = {"ensemble": {"mrr@10 vs bm25": 0.04}, "bm25": {"mrr@10 vs random": 0.5},
         "ensemble+": {"mrr@10 vs random": 0.01, "mrr@10 vs bm25": 0.2, "mrr@10 vs ensemble": 0.3}}
    tested = claim(arms(random=0.5, bm25=0.6, ensemble=0.7, ensemble_plus=0.8), p_values=p)
    assert tested["p"] == {"ensemble vs bm25": 0.04, "bm25 vs random": 0.5, "ensemble+ vs random": 0.01,
                           "ensemble+ vs bm25": 0.2, "ensemble+ vs ensemble": 0.3}
    assert "p" not in claim(arms(random=0.5, bm25=0.6, ensemble=0.7, ensemble_plus=0.8))


def test_relevant_document_rr_splits_pairs_by_document_length():
    from hnm.experiment import relevant_document_rr
    run = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"c": 5.0, "a": 1.0}}
    qrels = {"q1": {"b": 1, "c": 2, "x": 0}, "q2": {"a": 1, "z": 1}}
    got = relevant_document_rr(run, qrels, long_docs={"c", "z"})
    # within: (q1, b) at rank 2, (q2, a) at rank 2; beyond: (q1, c) at rank 3, (q2, z) not retrieved
    assert got == {"rr within window": 0.5, "rr beyond window": (1 / 3 + 0) / 2,
                   "pairs within window": 2, "pairs beyond window": 2}


def test_cut_corpus_keeps_every_judged_document_and_a_seeded_sample():
    from hnm.experiment import cut_corpus
    corpus = {f"d{i}": {"title": "", "text": str(i)} for i in range(100)}
    train, test = {"q1": {"d5": 1, "d90": 1}}, {"q2": {"d42": 2, "missing": 1}}
    cut = cut_corpus(corpus, 10, train, test)
    assert len(cut) == 10 and {"d5", "d90", "d42"} <= set(cut)
    assert list(cut) == [d for d in corpus if d in cut]  # corpus order
    assert cut == cut_corpus(corpus, 10, train, test) and cut != cut_corpus(corpus, 10, train, test, seed=1)
    assert cut_corpus(corpus, None, train) is corpus and cut_corpus(corpus, 100, train) is corpus
    assert set(cut_corpus(corpus, 2, train, test)) == {"d5", "d90", "d42"}  # judged documents are never dropped


def test_against_reranks_only_the_first_stages_top_d_at_each_depth():
    from hnm.results import against
    qrels = {"q1": {"d3": 1}, "q2": {"e1": 1}}
    alone = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}, "q2": {"e1": 3.0, "e2": 2.0, "e3": 1.0}}
    # the re-ranker lifts q1's relevant third document to the top, and keeps q2's relevant first one there
    reranked = {"q1": {"d3": 9.0, "d1": 2.0, "d2": 1.0}, "q2": {"e1": 9.0, "e2": 1.0, "e3": 0.0}}
    out = against(alone, {"arm": reranked}, qrels, resamples=200, depths=(1, 2, 3))
    by = out["re-ranked"]["arm"]["by depth"]
    # within q1's top 1 or 2, d3 is not there to lift: q1 scores 0 and q2 1
    assert by["1"]["ndcg@10"] == pytest.approx(0.5) and by["2"]["ndcg@10"] == pytest.approx(0.5)
    assert by["3"]["ndcg@10"] == pytest.approx(1.0) == out["re-ranked"]["arm"]["ndcg@10"]
    assert out["alone"]["ndcg@10"] == pytest.approx((1 / np.log2(4) + 1.0) / 2)
    assert 0.0 < by["3"]["p ndcg@10"] <= 1.0


def test_judge_gives_the_sample_spread_over_seeds_and_tests_the_per_query_means():
    from hnm.results import System, headline, judge
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    first = {"q1": {"x": 2.0, "a": 1.0}, "q2": {"y": 2.0, "b": 1.0}}  # every relevant document at rank 2
    # seed 0 lifts q1's and q2's relevant documents to rank 1, seed 1 neither: MRR@10 1.0 and 0.5
    lifted = {"q1": {"a": 2.0, "x": 1.0}, "q2": {"b": 2.0, "y": 1.0}}
    out = judge({System("first-stage"): {0: first}, System("arm"): {0: lifted, 1: first}}, qrels, resamples=200, top_k=10,
                split={"within window": {"q1"}, "beyond window": {"q2"}})
    assert out["seeds_mean"]["arm"]["mrr@10"] == pytest.approx(0.75)
    assert out["seeds_std"]["arm"]["mrr@10"] == pytest.approx(0.5 / np.sqrt(2))  # n - 1, not n
    assert out["seeds_std"]["first-stage"]["mrr@10"] == 0.0
    assert out["intervals"]["arm"]["mrr@10"] == pytest.approx((0.75, 0.75))  # both queries' seed mean is 0.75
    assert "| arm | 2 | " in headline(out) and "± 0.3536" in headline(out)


def test_choose_arms_keeps_the_first_stage_and_the_named_order():
    from hnm.experiment import ARMS, CLUSTERING_ARMS, choose_arms
    assert choose_arms(ARMS) == ARMS
    assert choose_arms(ARMS, clustering=True) == ARMS + CLUSTERING_ARMS
    picked = choose_arms(ARMS, "random, ensemble+ gmm,ensemble+")
    assert [a.name for a in picked] == ["first-stage", "random", "ensemble+ gmm", "ensemble+"]
    with pytest.raises(ValueError, match="'nope'"):
        choose_arms(ARMS, "random,nope")


def test_only_the_arms_that_ask_for_random_negatives_get_them():
    # `hnm mine` defaults to the recipe's quarter of random negatives; the experiment's (b) to (e) must not inherit it
    from hnm.experiment import arm_mine_config
    from hnm.negatives import MineConfig
    assert MineConfig().random_share == 0.25
    shares = {a.name: arm_mine_config(a, "m", 7).random_share for a in ARMS if a.mine is not None}
    assert shares == {"ensemble+": 0.25, "random": 0.0, "ensemble": 0.0, "bm25": 0.0, "dense": 0.0,
                      "ensemble+ passages": 0.25}
    assert {arm_mine_config(a, "m", 7).num_negatives for a in ARMS if a.mine is not None} == {7}


def test_the_pca_rule_arm_is_named_on_request_and_tested_against_f_and_random():
    from hnm.experiment import ARMS, RULE_ARMS, arm_mine_config, choose_arms
    from hnm.results import System, _rule_table
    picked = choose_arms(ARMS, "ensemble+,random,pca rule")
    assert [a.name for a in picked] == ["first-stage", "ensemble+", "random", "pca rule"]
    assert RULE_ARMS[0] not in choose_arms(ARMS, clustering=True)  # an experiment under way keeps its arms
    cfg = arm_mine_config(RULE_ARMS[0], "m", 7)
    assert (cfg.selection, cfg.clustering, cfg.random_share, cfg.relative_ceiling) == ("pca", "none", 0.25, 0.95)
    assert System("pca rule", pure=True).twin() == System("ensemble+", pure=True)
    assert System("pca rule").twin() == System("ensemble+")
    mean = {"ndcg@10": 0.5, "mrr@10": 0.4}
    r = {"seeds_mean": {"ensemble+": mean, "pca rule": mean}, "seeds_std": {"pca rule": {"ndcg@10": 0.01,
                                                                                       "mrr@10": 0.02}},
         "per_seed": {"pca rule": {0: mean, 1: mean}},
         "p_values": {"pca rule": {"ndcg@10 vs ensemble+": 0.2, "ndcg@10 vs random": 0.0004,
                                   "mrr@10 vs ensemble+": 0.03, "mrr@10 vs random": 0.5}},
         "rule_mining": {"pca rule": {"components": 40, "variance_kept": 0.95, "hard_negatives": 10,
                                      "ceiling_would_flag": 4, "ceiling_would_flag_share": 0.4,
                                      "queries_with_too_few_negatives": 3, "kept_out": {"c1": 5, "c2": 6}}}}
    text = "\n".join(_rule_table(r))
    assert "| pca rule | 2 | 0.5000 ± 0.0100 | 0.200 | < 0.001 | 0.4000 ± 0.0200 | 0.030 | 0.500 |" in text
    assert "of which (f)'s ceiling would have flagged 4 as likely false negatives (40.0%)" in text
