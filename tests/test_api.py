"""The Python API of the README's "The same in Python": lazy, and each call doing what the verbs do."""

import json
import shutil
import subprocess
import sys

from conftest import FIXTURES, REPO, require_model


def test_import_hnm_is_lazy_and_names_the_pipeline():
    code = ("import sys, hnm; names = [hnm.mine_hard_negatives, hnm.train_reranker, hnm.Searcher, hnm.fit, "
            "hnm.evaluate, hnm.load_beir]; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", "import sys, hnm; print('torch' in sys.modules)"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr  # torch once a model's module is used


def test_the_readme_walk_in_python(tmp_path):
    import hnm
    require_model("all-MiniLM-L6-v2")
    data = tmp_path / "kestrel"
    shutil.copytree(FIXTURES / "ingest" / "example", data)
    done = subprocess.run([sys.executable, "-m", "hnm", "ingest", str(FIXTURES / "ingest" / "site"), "-o",
                           str(data / "corpus.jsonl"), "--quiet"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    corpus, queries, qrels = hnm.load_beir(data, "train")

    cfg = hnm.MineConfig(strategy="dense", models="all-MiniLM-L6-v2", num_negatives=2, random_share=0.0)
    rows = hnm.mine_hard_negatives(corpus, queries, qrels, cfg)
    assert len(rows) == 5 and not list(tmp_path.glob("**/mined*"))  # returned, not written
    kept = hnm.mine_hard_negatives(corpus, queries, qrels, cfg, output=tmp_path / "mined.jsonl")
    assert kept == rows and [json.loads(x) for x in (tmp_path / "mined.jsonl").read_text().splitlines()] == rows

    summary = hnm.train_reranker(rows, tmp_path / "model", config=hnm.TrainConfig(max_steps=3, eval_fraction=0.0))
    assert summary["steps"] == 3 and (tmp_path / "model" / "last" / "model.safetensors").is_file()

    searcher = hnm.Searcher(corpus, hnm.FirstStageConfig(kind="bm25", top_k=4), reranker=tmp_path / "model" / "last")
    assert searcher.alpha == 0.5 and searcher.alpha_note.startswith("not tuned")  # untuned: equal weights, said
    first, second = searcher.search(["How do I schedule automatic snapshots of a volume?", "api key scopes"], top_k=3)
    assert [h.rank for h in first] == [1, 2, 3] and len({h.doc_id for h in first}) == 3
    assert all(h.chunk_id.startswith(h.doc_id + "#") and h.snippet for h in first + second)

    run = {"q1": {"site/snapshots.html": 2.1, "site/restore.html": 0.4}}
    assert hnm.evaluate(run, {"q1": qrels["q1"]})["mrr@10"] == 1.0
