"""A user's own documents, end to end, as the README's worked example runs them: `ingest` with its defaults (pages
cut into chunks), judgments that name pages, `mine`, `search`, and `fit` killed (stopped) and resumed."""

import json
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES, REPO, require_model

QUESTION = "How do I schedule automatic snapshots of a volume?"


def run_cli(*args, cwd=REPO, stdin=None):
    return subprocess.run([sys.executable, "-m", "hnm", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          input=stdin)


@pytest.fixture(scope="module")
def kestrel(tmp_path_factory):
    """The worked example: the fixture site ingested with every default, and the example's page judgments."""
    require_model("all-MiniLM-L6-v2")
    folder = tmp_path_factory.mktemp("own") / "kestrel"
    shutil.copytree(FIXTURES / "ingest" / "example", folder)
    done = run_cli("ingest", FIXTURES / "ingest" / "site", "-o", folder / "corpus.jsonl", "--quiet")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
    assert all(r["_id"].startswith(r["parent_id"] + "#") for r in rows)  # chunks, named after their page
    return folder


def test_default_ingest_page_judgments_mine_then_search(kestrel, tmp_path):
    done = run_cli("mine", "--data", kestrel, "--strategy", "dense", "--models", "all-MiniLM-L6-v2",
                   "--num-negatives", "2", "--output", tmp_path / "mined.jsonl", "--quiet")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "mined.jsonl").read_text().splitlines()]
    assert len(rows) == 5  # every query kept: its page's judgment found its chunks
    for row in rows:
        page = row["positive_ids"][0].split("#")[0]
        assert all(p.startswith(page + "#") for p in row["positive_ids"])
        assert not any(n.startswith(page + "#") for n in row["negative_ids"])  # never a chunk of the positive page

    done = run_cli("search", "--data", kestrel, "--models", "all-MiniLM-L6-v2", "--first-stage", "hybrid",
                   "--format", "jsonl", QUESTION)
    assert done.returncode == 0, done.stderr
    hits = [json.loads(line) for line in done.stdout.splitlines()]
    assert hits[0]["doc_id"] == "site/snapshots.html" and hits[0]["rank"] == 1
    assert {"query", "rank", "doc_id", "score", "title", "snippet", "chunk_id"} <= set(hits[0])
    assert hits[0]["chunk_id"].startswith("site/snapshots.html#") and hits[0]["query"] == QUESTION
    assert len({h["doc_id"] for h in hits}) == len(hits)  # one hit a page

    # the text format, and queries from standard input, one a line (a pipe, or a person typing)
    done = run_cli("search", "--data", kestrel, "--first-stage", "bm25", "--top-k", "2",
                   stdin=QUESTION + "\nWhich role can invite new members to a workspace?\n")
    assert done.returncode == 0, done.stderr
    assert "site/snapshots.html" in done.stdout and "site/roles.html" in done.stdout
    assert done.stdout.count("\n  1 ") == 2  # two queries, each with its own ranking


def test_fit_stops_resumes_and_reports_then_search_uses_the_tuned_alpha(kestrel, tmp_path):
    out = tmp_path / "fit"
    flags = ["fit", "--data", kestrel, "--output", out, "--models", "all-MiniLM-L6-v2", "--strategy", "dense",
             "--num-negatives", "2", "--max-steps", "4", "--eval-fraction", "0.25", "--test-share", "0.2", "--quiet"]
    done = run_cli(*flags, "--stop-after", "2")
    assert done.returncode == 0, done.stderr
    assert "training (default recipe) stopped at step 2 of 4" in done.stdout and not (out / "report.md").exists()
    assert "both the default and the few-label recipe are trained" in done.stdout  # 4 queries: auto tries both
    assert "split: 4 queries to learn from" in done.stdout and "1 to test on" in done.stdout
    assert "examples" in done.stdout and "seconds on a 2-core CPU" in done.stdout  # the cost, said before training
    mined = (out / "mined.jsonl").stat().st_mtime_ns
    done = run_cli(*flags)
    assert done.returncode == 0, done.stderr
    assert (out / "mined.jsonl").stat().st_mtime_ns == mined  # not mined again
    log = [json.loads(line) for line in (out / "model" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]  # resumed at step 3
    report = json.loads((out / "report.json").read_text())
    assert report["test_queries"] == 1 and "first stage (hybrid)" in report["metrics"]
    assert "| re-ranker alone |" in (out / "report.md").read_text()
    from hnm.metrics import read_trec_run
    assert set(read_trec_run(out / "runs" / "test.interpolated.trec")) == set(json.loads(
        (out / "split.json").read_text())["test"])  # the test runs, per page, beside the report
    assert "note: 1 tuning queries" in done.stdout  # too few to choose alpha well, and said so
    tuned = json.loads((out / "tune.json").read_text())
    assert set(tuned["recipes"]) == {"default", "few-label"} and tuned["recipe"] in tuned["recipes"]
    assert f"recipe: {tuned['recipe']}; " in done.stdout and (out / "train-few-label.json").exists()
    assert f"Recipe {tuned['recipe']}: " in (out / "report.md").read_text()
    # other settings in the same folder are refused, naming what changed
    done = run_cli(*flags[:-1], "--max-steps", "5")
    assert done.returncode == 2 and "fit.json" in done.stderr and "train" in done.stderr

    tuned = json.loads((out / "tune.json").read_text())
    done = run_cli("search", "--data", kestrel, "--models", "all-MiniLM-L6-v2", "--reranker", out,  # fit's choice
                   "--format", "jsonl", QUESTION)
    assert done.returncode == 0, done.stderr
    assert "not tuned" not in done.stderr and tuned["stage"].startswith("hybrid")
    assert len(done.stdout.splitlines()) >= 1


def test_search_says_what_is_wrong_with_the_folder(tmp_path):
    done = run_cli("search", "--data", tmp_path, "--first-stage", "bm25", "anything")
    assert done.returncode == 2 and "corpus.jsonl: no such file" in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "corpus.jsonl").write_text("")
    done = run_cli("search", "--data", tmp_path, "--first-stage", "bm25", "anything")
    assert done.returncode == 2 and "corpus.jsonl: no documents" in done.stderr


def test_judgments_that_name_neither_rows_nor_pages_are_counted_and_named(kestrel, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(kestrel, data)
    (data / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tsnapshots.html\t1\n"
                                              "q2\tsite/restore.html\t1\n")
    done = run_cli("mine", "--data", data, "--strategy", "random", "--num-negatives", "1", "--output",
                   tmp_path / "m.jsonl", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "1 name documents missing from the corpus" in done.stderr and "'snapshots.html'" in done.stderr
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 1


def test_fit_without_tuning_queries_keeps_the_first_stage_and_says_so(kestrel, tmp_path):
    out = tmp_path / "fit"
    done = run_cli("fit", "--data", kestrel, "--output", out, "--models", "all-MiniLM-L6-v2", "--strategy", "dense",
                   "--num-negatives", "2", "--max-steps", "2", "--eval-fraction", "0", "--first-stage", "bm25",
                   "--quiet")
    assert done.returncode == 0, done.stderr
    assert "no tuning queries, so alpha is 0" in done.stdout and "alpha 0" in (out / "report.md").read_text()
    from hnm.config import FirstStageConfig
    from hnm.twostage import stored_alpha
    assert stored_alpha(out / "model" / "last", FirstStageConfig(kind="bm25")) == 0.0  # search will keep it out


def test_the_recipe_is_chosen_on_the_tuning_queries_and_none_beating_the_first_stage_keeps_it_alone():
    from hnm.config import FEW_LABELS
    from hnm.fit import choose_recipe, recipes_to_try
    said = []
    assert recipes_to_try("auto", FEW_LABELS - 1, said.append) == ["default", "few-label"]
    assert recipes_to_try("auto", FEW_LABELS, said.append) == ["default"]
    assert recipes_to_try("few-label", 10, said.append) == ["few-label"] and len(said) == 2
    curve = {"0.0": 0.55, "0.5": 0.60, "1.0": 0.40}
    # k-fold figures: the few-label model carries over better out of fold, though both beat the first stage
    tuned = {"default": {"alpha": 0.5, "out_of_fold": 0.58, "first_stage_alone": 0.55, "tuning_queries": 36,
                         "curve": curve},
             "few-label": {"alpha": 0.3, "out_of_fold": 0.61, "first_stage_alone": 0.55, "tuning_queries": 36,
                           "curve": curve}}
    chosen, why = choose_recipe(tuned)
    assert chosen == "few-label" and "alpha 0.3" in why and "default 0.5800, few-label 0.6100" in why
    # neither beats the first stage out of fold: tune_alpha gave both alpha 0, and the first stage stays alone
    tuned = {n: {**t, "alpha": 0.0, "out_of_fold": 0.50} for n, t in tuned.items()}
    chosen, why = choose_recipe(tuned)
    assert chosen == "default" and "no re-ranker beat the first stage alone on the 36 tuning queries" in why
    assert "the first stage 0.5500" in why and "alpha is 0" in why
    # a higher out-of-fold figure whose alpha is 0 loses to one that beats the first stage
    tuned["few-label"].update(alpha=0.2, out_of_fold=0.56)
    tuned["default"].update(out_of_fold=0.57)
    assert choose_recipe(tuned)[0] == "few-label"


def test_a_recipe_taught_by_the_first_stage_trains_on_its_scores_of_the_mined_rows(tmp_path):
    from hnm.config import FirstStageConfig, TrainConfig
    from hnm.data import write_jsonl
    from hnm.firststage import FirstStage
    from hnm.fit import teacher_rows
    corpus = {"a": {"title": "", "text": "wing flow"}, "b": {"title": "", "text": "wing"},
              "c": {"title": "", "text": "heat pipe"}}
    rows = [{"query_id": "q", "query": "wing flow", "positive_ids": ["b"], "positives": ["wing"],
             "negative_ids": ["c", "a"], "negatives": ["heat pipe", "wing flow"]}]
    mined = tmp_path / "mined.jsonl"
    write_jsonl(mined, rows)
    built = []

    def first_stage():
        built.append(1)
        return FirstStage(corpus, FirstStageConfig(kind="bm25", top_k=2), quiet=True)

    ensemble = TrainConfig(loss="margin_mse")  # the mined rows carry the ensemble's scores already
    assert teacher_rows(tmp_path, mined, ensemble, corpus, first_stage) == mined and not built
    taught = TrainConfig(loss="margin_mse", teacher_scores="first_stage", teacher_scale=1.0)
    path = teacher_rows(tmp_path, mined, taught, corpus, first_stage)
    assert path == tmp_path / "mined.first-stage.jsonl"
    row = json.loads(path.read_text())
    bm25 = first_stage().index.scores([["wing", "flow"]])[0]  # a, b, c in corpus order
    assert row["positive_first_stage_scores"] == pytest.approx([bm25[1]], abs=1e-6)
    assert row["negative_first_stage_scores"] == pytest.approx([0.0, bm25[0]], abs=1e-6)
    assert {k: row[k] for k in rows[0]} == rows[0] and not any(k.startswith("candidate") for k in row)
    built.clear()
    assert teacher_rows(tmp_path, mined, taught, corpus, first_stage) == path and not built  # written once
    # a held-out check on the first stage's list keeps its top k
    checked = tmp_path / "checked"
    checked.mkdir()
    row = json.loads(teacher_rows(checked, mined, TrainConfig(distill=1.0, teacher_scores="first_stage",
                                                              held_out="candidates"), corpus, first_stage).read_text())
    assert row["candidate_ids"] == ["a", "b"]


def test_fit_cross_fitted_stops_resumes_and_stores_alpha_in_the_final_model(kestrel, tmp_path):
    out = tmp_path / "fit"
    flags = ["fit", "--data", kestrel, "--output", out, "--models", "all-MiniLM-L6-v2", "--strategy", "dense",
             "--num-negatives", "2", "--max-steps", "2", "--test-share", "0.2", "--recipe", "default",
             "--cross-fit", "2", "--quiet"]
    done = run_cli(*flags, "--stop-after", "1")
    assert done.returncode == 0, done.stderr
    assert "cross-fitted in 2 folds, no tuning split" in done.stdout
    assert "(default recipe, fold0) stopped at step 1 of 2" in done.stdout and not (out / "report.md").exists()
    done = run_cli(*flags)
    assert done.returncode == 0, done.stderr
    assert "the final model on all 4 queries" in done.stdout and "(cross-fitted)" in done.stdout
    tuned = json.loads((out / "tune.json").read_text())
    assert tuned["cross_fit"] == 2 and tuned["tuning_queries"] == 4 and tuned["recipe"] == "default"
    held = [json.loads((out / "model" / f"fold{f}" / "tuning_queries.json").read_text()) for f in range(2)]
    assert sorted(held[0] + held[1]) == json.loads((out / "split.json").read_text())["learn"]
    from hnm.config import FirstStageConfig
    from hnm.fit import fitted_checkpoint
    from hnm.twostage import stored_alpha
    assert fitted_checkpoint(out) == out / "model" / "final" / "last"
    assert stored_alpha(out / "model" / "final" / "last", FirstStageConfig(models="all-MiniLM-L6-v2", top_k=20)) \
        == tuned["alpha"] == json.loads((out / "report.json").read_text())["alpha"]
    assert json.loads((out / "report.json").read_text())["checkpoint"] == str(out / "model" / "final" / "last")
