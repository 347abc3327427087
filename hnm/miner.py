"""The mining job: a BEIR-layout data set in, one JSON line of hard negatives per query out, resumable.

    stats = run(corpus, queries, qrels, MineConfig(), Path("mined.jsonl"))

Writes, beside OUTPUT:
- OUTPUT              one row per query: {"query_id", "query", "positive_ids", "positives", "positive_scores",
                      "positive_grades", "negative_ids", "negatives", "negative_scores", "negative_sources", "source"}
- OUTPUT.review.jsonl the candidates above a ceiling, likely unlabelled positives: {"query_id", "doc_id", "score",
                      "reference_positive_score"}; never used as negatives. With the pca selection, the candidates
                      its rule kept out, each with the conditions it "failed" (negatives.CONDITIONS), and the
                      strongest positive's score as the reference
- OUTPUT.stats.json   the statistics that `table` prints; OUTPUT.scores.svg, the histograms of their scores
- with fmt "triplets" or "ntuple", the flat layouts other trainers read: {"query", "positive", "negative"} per
  (query, positive, negative), or {"query", "positive", "negative_1", ..., "negative_n"} per (query, positive).

While running, rows go to OUTPUT.part chunk by chunk, and OUTPUT.progress.json records the chunks done, the bytes
written and a fingerprint of the configuration and data. A rerun with the same fingerprint cuts the .part files to
the recorded length and goes on; any other rerun starts afresh. The files are renamed into place at the end.

Under torchrun (distributed.py) every rank embeds its share of the texts (embed.py), fits the same k-means from the
same seed on the same vectors, and mines the chunks `share` gives it, W chunks a round; rank 0 receives each
round's rows and writes them in chunk order, so the files are the bytes one process writes. Only rank 0 reads and
writes the progress file; it tells the others where to start.

Not here: the rules for choosing negatives (negatives.py).
"""

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from hnm.data import Qrels, atomic_write, document_text, named, unknown_documents
from hnm.distributed import current
from hnm.embed import EmbedConfig, resolve_precision
from hnm.errors import InputError
from hnm.ensemble import Ensemble, parse_members
from hnm.negatives import CONDITIONS, Candidates, MineConfig, ceiling, draw_random, reference_score, select, \
    select_pca
from hnm.pages import page_of
from hnm.progress import Progress
from hnm.search import exact_scores
from hnm.svg import histograms


def positives_of(qrels: Qrels, queries: Dict[str, str], rows_of: Dict[str, List[int]], min_grade: int):
    """-> (query ids with positives, their positive rows (arrays), the judged document of each positive row
    (arrays: positions in the query's judgments), query ids skipped for having none).

    `rows_of` maps a judged id to its rows: a row's own id to itself, a page's id to its chunks (pages.py), so a
    page's judgment makes each of its chunks a positive candidate (`chosen_positives` picks among them).
    """
    kept, positives, groups, skipped = [], [], [], []
    for qid, judged in qrels.items():  # a judged document missing from the corpus cannot be a positive
        group_of: Dict[int, int] = {}  # row -> position of the judgment that made it positive (first one wins)
        for j, (d, grade) in enumerate(judged.items()):
            if grade >= min_grade:
                for row in rows_of.get(d, ()):
                    group_of.setdefault(row, j)
        if group_of and qid in queries:
            kept.append(qid)
            positives.append(np.array(list(group_of), dtype=np.int64))
            groups.append(np.array(list(group_of.values()), dtype=np.int64))
        else:
            skipped.append(qid)
    return kept, positives, groups, skipped


def judged_rows(doc_ids: List[str], pages: Dict[str, str]) -> Dict[str, List[int]]:
    """{id a judgment may name: rows}: every row by its own id, and every page by its chunks, in corpus order."""
    out: Dict[str, List[int]] = {}
    for i, d in enumerate(doc_ids):
        out.setdefault(d, []).append(i)
        if pages[d] != d:
            out.setdefault(pages[d], []).append(i)
    return out


def chosen_positives(groups: np.ndarray, scores: np.ndarray, how: str) -> np.ndarray:
    """Indices of the positives a row keeps: every one ("all", or no scores), or for each judged page the chunk
    that scores highest ("best"; the first on a tie). groups [0, 0, 1], scores [0.2, 0.7, 0.4] -> best [1, 2]."""
    if how == "all" or len(scores) == 0:
        return np.arange(len(groups))
    best: Dict[int, int] = {}
    for i, g in enumerate(groups.tolist()):
        if g not in best or scores[i] > scores[best[g]]:
            best[g] = i
    return np.array(sorted(best.values()), dtype=np.int64)


def _fingerprint(cfg: MineConfig, doc_ids: List[str], qids: List[str], positives: List[np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode())
    for part in (doc_ids, qids, [p.tolist() for p in positives]):
        h.update(json.dumps(part).encode())
    return h.hexdigest()


def _sidecar(output: Path, suffix: str) -> Path:
    return output.with_name(output.name + suffix)


def run(corpus: Dict[str, dict], queries: Dict[str, str], qrels: Qrels, cfg: MineConfig, output: Path,
        embed_cfg: EmbedConfig = EmbedConfig(), fmt: str = "jsonl", quiet: bool = False,
        ensemble: Optional[Ensemble] = None) -> dict:
    """Mine negatives for every judged query with a positive; returns the statistics (also written as JSON).

    `ensemble` (embeddings made elsewhere, rows in corpus order and in the order of the judged queries that have a
    positive) skips the embedding step; tests and the scale benchmark use it.
    """
    t0 = time.monotonic()
    procs = current()
    output = Path(output)
    doc_ids = list(corpus)
    rows_of = judged_rows(doc_ids, page_of(corpus))
    texts = [document_text(corpus[d]) for d in doc_ids]
    empty = np.array([not t.strip() for t in texts])
    qids, positives, groups, skipped = positives_of(qrels, queries, rows_of, cfg.min_grade)
    if not qids:
        raise InputError(f"none of the {len(qrels)} judged queries has a positive (grade >= {cfg.min_grade}) among "
                         f"the corpus's {len(doc_ids)} rows or their pages: check that the judgments name the "
                         f"corpus's ids (e.g. {doc_ids[0]!r}) or its pages' (parent_id)" if doc_ids else
                         "the corpus is empty")
    query_texts = [queries[q] for q in qids]

    ensemble, bm25 = _embedded(corpus, texts, query_texts, cfg, embed_cfg, ensemble, quiet)
    candidates = Candidates(cfg, len(doc_ids), empty, ensemble, bm25, query_texts)

    part, review_part = _sidecar(output, ".part"), _sidecar(output, ".review.part")
    progress_path = _sidecar(output, ".progress.json")
    fingerprint = _fingerprint(cfg, doc_ids, qids, positives)
    state = _resume(progress_path, part, review_part, fingerprint, procs)

    n_random = round(cfg.num_negatives * cfg.random_share)
    n_chunks = -(-len(qids) // cfg.chunk_size)

    def mine_chunk(chunk: int) -> bytes:
        """One chunk of queries: the length of its rows (8 bytes), its rows, its review lines."""
        out, review = [], []
        rows = list(range(chunk * cfg.chunk_size, min((chunk + 1) * cfg.chunk_size, len(qids))))
        for r, (ranked, scores, pos_scores) in zip(rows, candidates.ranked(rows, [positives[r] for r in rows])):
            rng = np.random.default_rng([cfg.seed, r])
            keep = chosen_positives(groups[r], pos_scores, cfg.chunk_positives)
            pos, pos_scores = positives[r][keep], pos_scores[keep] if len(pos_scores) else pos_scores
            reference = reference_score(pos_scores, cfg)
            if cfg.selection == "pca":
                reference = float(np.max(pos_scores))  # the first condition's bar: the nearest positive
                sel = select_pca(ranked, scores, pos_scores, candidates.between(pos, ranked), cfg, rng,
                                 cfg.num_negatives - n_random)
            else:
                sel = select(ranked, scores, reference, cfg, rng, cfg.num_negatives - n_random)
            if n_random:
                banned = set(positives[r].tolist()) | set(sel.negatives) | {d for d, _ in sel.flagged}
                banned |= set(np.flatnonzero(empty).tolist())
                extra = draw_random(n_random, len(doc_ids), banned, rng)
                sel.negatives += extra
                sel.scores += candidates.pca_scores(r, extra) if cfg.selection == "pca" else \
                    _scores(ensemble, cfg, r, extra)
                sel.sources += ["random"] * len(extra)
            judged = list(qrels[qids[r]].values())  # each kept positive's grade, for a graded loss (train.py)
            grades = [judged[j] for j in groups[r][keep]]
            out.append(_row(qids[r], query_texts[r], pos, pos_scores, grades, sel, doc_ids, texts, cfg))
            for i, (d, s) in enumerate(sel.flagged):
                line = {"query_id": qids[r], "doc_id": doc_ids[d], "score": s, "reference_positive_score": reference}
                if sel.failed is not None:
                    line["failed"] = sel.failed[i]
                review.append(json.dumps(line).encode() + b"\n")
        rows_blob = b"".join(out)
        return len(rows_blob).to_bytes(8, "little") + rows_blob + b"".join(review)

    with contextlib.ExitStack() as files, \
            Progress(len(qids), desc=f"mine {cfg.strategy}", quiet=quiet or not procs.main) as bar:
        out = files.enter_context(open(part, "ab")) if procs.main else None
        review = files.enter_context(open(review_part, "ab")) if procs.main else None
        bar.update(min(state["chunks"] * cfg.chunk_size, len(qids)))
        for chunk, blob in procs.in_order(n_chunks, mine_chunk, first=state["chunks"]):
            if not procs.main:
                continue
            n = int.from_bytes(blob[:8], "little")
            for f, data, path in ((out, blob[8:8 + n], part), (review, blob[8 + n:], review_part)):
                try:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                except OSError as e:  # a full disk: the error of a write names no file
                    raise named(e, path) from e
            state = {"fingerprint": fingerprint, "chunks": chunk + 1, "bytes": out.tell(),
                     "review_bytes": review.tell()}
            with atomic_write(progress_path) as f:
                json.dump(state, f)
            bar.update(min(cfg.chunk_size, len(qids) - chunk * cfg.chunk_size))

    if not procs.main:  # rank 0 writes the rest; the others take its statistics
        return json.loads(procs.broadcast_bytes(b""))
    os.replace(part, output)
    os.replace(review_part, _sidecar(output, ".review.jsonl"))
    progress_path.unlink()
    rows_iter = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    stats = statistics(rows_iter, _sidecar(output, ".review.jsonl"), cfg, skipped, int(empty.sum()), candidates,
                       unknown_documents(qrels, rows_of))
    if cfg.selection == "pca":
        stats["pca"] = pca_statistics(rows_iter, _sidecar(output, ".review.jsonl"), candidates,
                                      {d: i for i, d in enumerate(doc_ids)}, cfg)
    stats["seconds"] = round(time.monotonic() - t0, 2)
    stats["precision"] = resolve_precision(embed_cfg.precision)  # what "auto" chose on this machine
    _write_beside(output, rows_iter, stats, cfg, fmt)
    procs.broadcast_bytes(json.dumps(stats).encode())
    return stats


def _embedded(corpus: Dict[str, dict], texts: List[str], query_texts: List[str], cfg: MineConfig,
              embed_cfg: EmbedConfig, ensemble: Optional[Ensemble], quiet: bool):
    """-> (the ensemble of the strategies that embed, or the one given; BM25's index where the strategy or a member
    needs it)."""
    bm25 = None
    if cfg.strategy in ("ensemble", "dense") and ensemble is None:
        members = parse_members(cfg.models)[:1 if cfg.strategy == "dense" else None]
        if any(m.name == "bm25" for m in members):
            from hnm.bm25 import BM25Index
            bm25 = BM25Index.from_corpus(corpus, quiet=quiet)
        ensemble = Ensemble.embed(members, texts, query_texts, cfg.fusion, embed_cfg, bm25, quiet, cfg.vectors)
    if cfg.strategy == "bm25":
        from hnm.bm25 import BM25Index
        bm25 = BM25Index.from_corpus(corpus, quiet=quiet)
    return ensemble, bm25


def _resume(progress_path: Path, part: Path, review_part: Path, fingerprint: str, procs) -> dict:
    """Where a killed run with the same fingerprint stopped (its .part files cut back to the recorded length), else
    the start; rank 0 reads it and tells the others."""
    state = {"fingerprint": fingerprint, "chunks": 0, "bytes": 0, "review_bytes": 0}
    if procs.main:
        if progress_path.exists():
            saved = json.loads(progress_path.read_text())
            if saved.get("fingerprint") == fingerprint and part.exists() and review_part.exists():
                state = saved
        for path, size in ((part, state["bytes"]), (review_part, state["review_bytes"])):
            with open(path, "ab") as f:
                f.truncate(size)  # drop whatever a killed chunk left half-written
    return json.loads(procs.broadcast_bytes(json.dumps(state).encode()))


def _write_beside(output: Path, rows: List[dict], stats: dict, cfg: MineConfig, fmt: str) -> None:
    """OUTPUT.stats.json, OUTPUT.scores.svg and, for fmt other than jsonl, the flat export."""
    with atomic_write(_sidecar(output, ".stats.json")) as f:
        json.dump(stats, f, indent=1)
    with atomic_write(_sidecar(output, ".scores.svg")) as f:
        f.write(histograms({"positives": [s for row in rows for s in row["positive_scores"]],
                            "negatives": [s for row in rows for s in row["negative_scores"] if s is not None]},
                           title=f"{cfg.strategy} mining: scores of positives and negatives", xlabel="score"))
    if fmt != "jsonl":
        export(rows, output.with_name(f"{output.stem}.{fmt}.jsonl"), fmt)


def _scores(ensemble: Optional[Ensemble], cfg: MineConfig, r: int, docs: List[int]) -> List[Optional[float]]:
    """Scores for documents drawn at random: the ensemble's (or the one model's), None without embeddings."""
    if ensemble is None or not docs:
        return [None] * len(docs)
    if cfg.strategy == "dense":
        return [float(x) for x in exact_scores(ensemble.doc_vectors[0][docs], ensemble.query_vectors[0][r])]
    return [float(x) for x in ensemble.score(np.array([r]), [np.array(docs)])[0]]


def _row(qid: str, query: str, pos: np.ndarray, pos_scores: np.ndarray, grades: List[int], sel, doc_ids, texts,
         cfg) -> bytes:
    row = {"query_id": qid, "query": query,
           "positive_ids": [doc_ids[d] for d in pos], "positives": [texts[d] for d in pos],
           "positive_scores": [round(float(s), 6) for s in pos_scores], "positive_grades": [int(g) for g in grades],
           "negative_ids": [doc_ids[d] for d in sel.negatives], "negatives": [texts[d] for d in sel.negatives],
           "negative_scores": [None if s is None else round(s, 6) for s in sel.scores],
           "negative_sources": sel.sources, "source": cfg.strategy}
    return json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n"


def export(rows: List[dict], path: Path, fmt: str) -> None:
    """Write the flat layouts: 'triplets' (query, positive, negative) or 'ntuple' (query, positive, negative_1..n)."""
    with atomic_write(path) as f:
        for row in rows:
            for positive in row["positives"]:
                if fmt == "triplets":
                    for negative in row["negatives"]:
                        f.write(json.dumps({"query": row["query"], "positive": positive, "negative": negative},
                                           ensure_ascii=False) + "\n")
                elif row["negatives"]:
                    rec = {"query": row["query"], "positive": positive}
                    rec.update({f"negative_{i + 1}": n for i, n in enumerate(row["negatives"])})
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def pca_statistics(rows: List[dict], review: Path, candidates: Candidates, row_of: Dict[str, int],
                   cfg: MineConfig) -> dict:
    """The pca selection's: its space, what each condition kept out (a candidate may fail both), and how many of
    its hard negatives (not the random share) the positive-aware ceiling of step 4 (relative_ceiling, margin,
    max_score from the reference positive of ceiling_from), on the ensemble's own scores, would have flagged as
    likely false negatives."""
    kept_out = dict.fromkeys(CONDITIONS, 0)
    for line in review.read_text(encoding="utf-8").splitlines():
        for c in json.loads(line)["failed"] if line.strip() else ():
            kept_out[c] += 1
    hard = flagged = 0
    for r, row in enumerate(rows):  # row r of the output is query row r of the ensemble
        negs = [row_of[d] for d, src in zip(row["negative_ids"], row["negative_sources"]) if src != "random"]
        pos = [row_of[d] for d in row["positive_ids"]]
        s = candidates.ensemble.score(np.array([r]), [np.array(pos + negs, dtype=np.int64)])[0]
        top = ceiling(reference_score(s[:len(pos)], cfg), cfg)
        hard += len(negs)
        flagged += int(np.sum(s[len(pos):] >= top))
    pca = candidates.pca
    return {"components": int(pca.components.shape[0]), "variance_kept": float(pca.explained_variance_ratio.sum()),
            "kept_out": kept_out, "hard_negatives": hard, "ceiling_would_flag": flagged,
            "ceiling_would_flag_share": flagged / hard if hard else None}


def _summary(values: List[float]) -> dict:
    if not values:
        return {"n": 0}
    v = np.asarray(values)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"n": len(v), "mean": float(v.mean()), "median": float(med), "q1": float(q1), "q3": float(q3),
            "min": float(v.min()), "max": float(v.max())}


def statistics(rows: List[dict], review: Path, cfg: MineConfig, skipped: List[str], n_empty: int,
               candidates: Candidates, unknown_docs: int = 0) -> dict:
    """Summarise the finished rows, read back from the output (so a resumed run reports the same as a whole one)."""
    flagged = sum(1 for line in review.read_text(encoding="utf-8").splitlines() if line.strip())
    stats = {"strategy": cfg.strategy, "config": asdict(cfg), "queries": len(rows),
             "queries_skipped_without_positives": len(skipped),
             "queries_with_too_few_negatives": sum(len(r["negative_ids"]) < cfg.num_negatives for r in rows),
             "negatives": sum(len(r["negative_ids"]) for r in rows),
             "likely_false_negatives_flagged": flagged, "empty_documents_kept_out": n_empty,
             "judgments_naming_documents_not_in_the_corpus": unknown_docs,
             "positive_scores": _summary([s for r in rows for s in r["positive_scores"]]),
             "negative_scores": _summary([s for r in rows for s in r["negative_scores"] if s is not None])}
    if candidates.clusters is not None:
        sizes = np.array([len(m) for m in candidates.clusters.members])
        stats["clusters"] = {"k": len(sizes), "min": int(sizes.min()), "median": float(np.median(sizes)),
                             "max": int(sizes.max()), "empty": int((sizes == 0).sum())}
    return stats


def table(stats: dict) -> str:
    """The statistics as a plain-text table, the way the best miners print theirs."""
    lines = [f"{'scores':18s} {'n':>7s} {'mean':>8s} {'median':>8s} {'q1':>8s} {'q3':>8s} {'min':>8s} {'max':>8s}"]
    for label in ("positive_scores", "negative_scores"):
        s = stats[label]
        if s["n"]:
            lines.append(f"{label.split('_')[0]:18s} {s['n']:7d} " + " ".join(
                f"{s[k]:8.4f}" for k in ("mean", "median", "q1", "q3", "min", "max")))
        else:
            lines.append(f"{label.split('_')[0]:18s} {0:7d}  (no scores)")
    lines += [f"queries mined: {stats['queries']}; skipped without a positive: "
              f"{stats['queries_skipped_without_positives']}",
              f"negatives: {stats['negatives']}; queries with fewer than {stats['config']['num_negatives']}: "
              f"{stats['queries_with_too_few_negatives']}",
              ("kept out by the pca rule" if "pca" in stats else "likely false negatives flagged")
              + f" (review file): {stats['likely_false_negatives_flagged']}",
              f"empty documents kept out of the negatives: {stats['empty_documents_kept_out']}"]
    if "pca" in stats:
        p = stats["pca"]
        lines.append(f"pca rule: {p['components']} components ({p['variance_kept']:.1%} of the variance); kept out: "
                     + ", ".join(f"{c} failed {n}" for c, n in p["kept_out"].items())
                     + f"; of its {p['hard_negatives']} hard negatives the ceiling would flag {p['ceiling_would_flag']}")
    if "clusters" in stats:
        c = stats["clusters"]
        lines.append(f"clusters: k={c['k']}, sizes min {c['min']} / median {c['median']:.0f} / max {c['max']}, "
                     f"empty {c['empty']}")
    return "\n".join(lines)
