"""The command line: `python -m hnm <verb> ...`, one argparse sub-command per verb, each calling one public function.

Defaults come from the dataclasses next to the code they configure; this file only translates flags.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

from hnm.errors import HnmError


def _quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars on stderr")


def _device(p: argparse.ArgumentParser) -> None:
    from hnm.distributed import DEVICES_HELP
    p.add_argument("--device", default="auto",
                   help=f"where the models run: {DEVICES_HELP} (default auto). Under `torchrun --nproc_per_node N "
                        f"-m hnm ...` the work is shared among the N processes and rank 0 writes the outputs")


def _count(text: str) -> int:
    """argparse type: a whole number, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return int(text)


def _streams(p: argparse.ArgumentParser) -> None:
    p.add_argument("--streams", type=_count, default=0,
                   help="batches encoded at once, torch's threads shared among them (default 0: 2 when it has 2 or more)")


def _cmd_weights(args) -> int:
    from hnm import weights
    lock = weights.read_lock()
    if args.action == "list":
        for name, spec in lock.items():
            here = "cached" if all(weights.is_valid(weights.safe_join(weights.model_dir(name), f), s)
                                   for f, s in spec.files.items()) else "not cached"
            size = sum(s.size for s in spec.files.values())
            print(f"{name:24s} {spec.architecture:6s} {spec.pooling:5s} max {spec.max_length:4d}  "
                  f"{size / 1e6:7.1f} MB  {here}  ({spec.repo}@{spec.revision[:10]})")
        return 0
    if not args.names:
        raise HnmError(f"weights {args.action} needs at least one model name; known: {', '.join(lock)}")
    status = 0
    for name in args.names:
        if args.action == "fetch":
            print(weights.fetch(name, lock, quiet=args.quiet))
        else:
            for fname, verdict in weights.verify(name, lock).items():
                print(f"{name}/{fname}: {verdict}")
                status = status or int(verdict != "ok")
    return status


def _cmd_embed(args) -> int:
    import numpy as np
    from hnm.data import atomic_write, document_text, read_jsonl
    from hnm.embed import EmbedConfig, Embedder
    rows = [(rec["_id"], document_text(rec) if args.kind == "document" else rec["text"])
            for _, rec in read_jsonl(args.input, required=("_id", "text"))]
    embedder = Embedder.load(args.model, EmbedConfig(batch_size=args.batch_size, precision=args.precision,
                                                     cache=not args.no_cache, streams=args.streams), quiet=args.quiet)
    vectors = embedder.encode([text for _, text in rows], kind=args.kind, quiet=args.quiet)
    ids_path = args.output.with_suffix(".ids.txt")
    if _writer():
        with atomic_write(args.output, "wb") as f:
            np.save(f, vectors, allow_pickle=False)
        with atomic_write(ids_path) as f:
            f.writelines(f"{doc_id}\n" for doc_id, _ in rows)
    print(f"{args.output}: {vectors.shape[0]} x {vectors.shape[1]} float32; row ids in {ids_path}")
    return 0


def _cmd_demo(args) -> int:
    from importlib.resources import files
    from hnm.embed import Embedder
    lines = files("hnm").joinpath("bundled/demo.txt").read_text(encoding="utf-8").splitlines()
    sentences = [line for line in lines if line.strip() and not line.startswith("#")]
    vectors = Embedder.load(args.model, quiet=args.quiet).encode(sentences, quiet=args.quiet)
    sims = vectors @ vectors.T  # cosines: the vectors are unit length
    print(f"cosine similarity, {args.model}")
    print("     " + "".join(f"{j:>6d}" for j in range(len(sentences))))
    for i, row in enumerate(sims):
        print(f"{i:>4d} " + "".join(f"{x:6.2f}" for x in row))
    for i, s in enumerate(sentences):
        print(f"{i:>4d}  {s}")
    return 0


def _cmd_bm25(args) -> int:
    from hnm.bm25 import BM25Config, BM25Index
    from hnm.data import load_beir
    from hnm.metrics import evaluate, write_trec_run
    if args.top_k < 1:
        raise HnmError(f"--top-k must be at least 1, got {args.top_k}")
    given = {name: getattr(args, name) for name in ("variant", "k1", "b", "delta") if getattr(args, name) is not None}
    try:
        config = BM25Config(**given, stopwords=not args.no_stopwords, stem=not args.no_stem)
    except ValueError as e:
        raise HnmError(str(e)) from None
    corpus, queries, qrels = load_beir(args.data, args.split, args.strict)
    run = BM25Index.from_corpus(corpus, config, quiet=args.quiet).run(queries, args.top_k)
    output = args.output or Path(f"bm25.{Path(args.data).resolve().name}.{args.split}.trec")
    write_trec_run(output, run, tag=f"hnm-bm25-{config.variant}")
    metrics = evaluate(run, qrels, ks=sorted({10, args.top_k}))
    print(f"BM25 {config.variant} (k1={config.k1}, b={config.b}, delta={config.delta}) on {args.data}, "
          f"split {args.split}: {metrics['queries']} queries evaluated")
    for name, value in metrics.items():
        if "@" in name:
            print(f"  {name:<10} {value:.4f}")
    print(f"run: {output}")
    return 0


# ---------------------------------------------------------------------------------------------------------- verbs


def _cmd_mine(args) -> int:
    from hnm.data import bundled_cranfield, load_beir
    from hnm.embed import EmbedConfig
    from hnm.negatives import MineConfig
    from hnm.miner import run, table
    data = args.data or bundled_cranfield()
    split = args.split or ("train_80" if args.data is None else "train")
    fields = {f: getattr(args, f) for f in MineConfig.__dataclass_fields__ if getattr(args, f, None) is not None}
    try:
        cfg = MineConfig(**fields)
    except ValueError as e:  # a combination argparse cannot check, before any data is read
        raise HnmError(str(e)) from None
    corpus, queries, qrels = load_beir(data, split, args.strict)
    stats = run(corpus, queries, qrels, cfg, args.output,
                EmbedConfig(batch_size=args.batch_size, precision=args.precision, streams=args.streams), args.format,
                args.quiet)
    print(f"mined {data} ({split}) with strategy {cfg.strategy}, encoders in {stats['precision']}"
          + (" (auto)" if args.precision == "auto" else "") + f" -> {args.output}")
    print(table(stats))
    print(f"wall time {stats['seconds']:.1f} s; review file, statistics and chart beside the output")
    return 0


def _cmd_ingest(args) -> int:
    from hnm.chunk import ChunkConfig, load_tokenizer
    from hnm.ingest import FetchConfig, IngestConfig, ingest
    try:
        fetch = FetchConfig(connect_timeout=min(args.timeout, FetchConfig.connect_timeout), read_timeout=args.timeout,
                            retries=args.retries, max_bytes=args.max_bytes, delay=args.delay)
        config = IngestConfig(fetch=fetch, chunk=ChunkConfig(args.chunk, args.max_tokens, args.stride),
                              near_dup_threshold=args.near_dup_threshold, retry_failed=args.retry_failed,
                              min_chars=args.min_chars, keep_aggregates=args.keep_aggregates)
    except ValueError as e:
        raise HnmError(str(e)) from None
    tokenizer = load_tokenizer(args.model) if args.chunk != "none" else None
    r = ingest(args.sources, args.output, config, tokenizer, args.errors, quiet=args.quiet)
    errors = args.errors or args.output.with_suffix(".errors.jsonl")
    print(f"sources: {r.ok} ok, {r.failed} failed (reasons in {errors}); {r.resumed} finished by an earlier run")
    print(f"duplicates dropped: {len(r.exact)} exact, {len(r.near)} near "
          f"(Jaccard >= {config.near_dup_threshold} of {config.shingle}-word shingles)")
    for dropped, kept, *jac in r.exact + r.near:
        print(f"  {dropped}  repeats  {kept}" + (f"  ({jac[0]:.3f})" if jac else ""))
    if r.other_files:
        print("files of other types skipped: " + ", ".join(f"{n} {suffix}" for suffix, n in r.other_files.items()))
    print(f"dropped: {len(r.redirects)} redirect stubs, {len(r.short)} pages under {config.min_chars} characters, "
          f"{len(r.aggregates)} aggregate pages" + ("" if not config.keep_aggregates else " (kept: --keep-aggregates)"))
    for page, n in r.aggregates:
        print(f"  {page}  holds {n} other pages (a print-all page?)")
    for page, holder, c in r.contained:
        print(f"  {page}  is {c:.0%} contained in  {holder}")
    print(f"boilerplate lines removed: {sum(map(len, r.boilerplate.values()))}")
    for site, lines in r.boilerplate.items():
        print(f"  {site}: " + "; ".join(repr(line[:60]) for line in lines))
    how = "" if args.chunk == "none" else f" ({args.chunk}, at most {config.chunk.max_tokens} tokens)"
    print(f"corpus: {r.documents} documents, {r.chunks} rows{how} -> {args.output}")
    return 0 if r.documents else 1


def _train_config(args):
    from hnm.train import TrainConfig
    given = {f: getattr(args, f) for f in TrainConfig.__dataclass_fields__ if getattr(args, f, None) is not None}
    try:
        return TrainConfig(**given)
    except ValueError as e:
        raise HnmError(str(e)) from None


def _cmd_train(args) -> int:
    from hnm.train import train
    s = train(args.rows, args.output, args.start, _train_config(args), resume=args.resume, quiet=args.quiet)
    best = s["best"]
    print(f"trained {s['steps']} of {s['total_steps']} steps on {s['examples']} examples "
          f"({len(s['skipped_rows'])} rows skipped) in {s['seconds']:.1f} s, {s['pairs_per_s']:.1f} pairs/s; "
          f"last loss {s['last_loss']:.4f}")
    if best:
        print(f"best held-out MRR@10 {best['mrr@10']:.4f} (nDCG@10 {best['ndcg@10']:.4f}) at step "
              f"{best['step']} -> {args.output / 'best'}")
    print(f"checkpoint {args.output / 'last'}; log {args.output / 'log.jsonl'}")
    return 0


def _cmd_rerank(args) -> int:
    import time
    from hnm.metrics import read_trec_run, write_trec_run
    from hnm.twostage import interpolate, metrics_of, read_collection, rerank
    from hnm.reranker import CrossEncoder
    corpus, queries = read_collection(args.data)
    run = read_trec_run(args.run)
    model = CrossEncoder.from_checkpoint(args.reranker)
    alpha = _alpha(args.alpha, args.reranker)
    started = time.perf_counter()
    try:
        pure = rerank(model, run, queries, corpus, args.top_k, args.batch_size, args.precision, args.quiet)
    except ValueError as e:
        raise HnmError(str(e)) from None
    seconds = time.perf_counter() - started
    new = interpolate(pure, run, alpha)
    if _writer():
        write_trec_run(args.output, new, tag="hnm-rerank")
    pairs = sum(map(len, new.values()))
    print(f"re-ranked {pairs} pairs of {len(new)} queries in {seconds:.1f} s ({pairs / seconds:.1f} pairs/s), "
          f"alpha {alpha:g} -> {args.output}")
    if args.split:
        from hnm.data import read_qrels
        from hnm.twostage import REPORTED
        qrels = read_qrels(Path(args.data) / "qrels" / f"{args.split}.tsv")
        for name, r in (("given run", run), ("re-ranked", new)):
            m = metrics_of(r, qrels)
            print(f"  {name:<10} " + "  ".join(f"{k} {m[k]:.4f}" for k in REPORTED) + f"  ({m['queries']} queries)")
    return 0


def _cmd_evaluate(args) -> int:
    import json
    import re
    from hnm.data import atomic_write, load_beir
    from hnm.metrics import write_trec_run
    from hnm.firststage import retrieve
    from hnm.twostage import EvalConfig, compare, interpolate, rerank, table
    from hnm.reranker import CrossEncoder
    given = {f: getattr(args, f) for f in EvalConfig.__dataclass_fields__ if getattr(args, f, None) is not None}
    try:
        cfg = EvalConfig(**given)
    except ValueError as e:
        raise HnmError(str(e)) from None
    corpus, queries, qrels = load_beir(args.data, args.split, args.strict)
    first = retrieve(corpus, queries, cfg.retrieval(), args.quiet)
    systems = {cfg.first_stage: first}
    for ckpt in args.reranker:
        model = CrossEncoder.from_checkpoint(ckpt)
        pure = rerank(model, first, queries, corpus, cfg.top_k, cfg.batch_size, cfg.precision, args.quiet)
        alpha = _alpha(cfg.alpha, ckpt)
        if alpha < 1.0:
            systems[f"{cfg.first_stage}+rerank:{ckpt}:alpha={alpha:g}"] = interpolate(pure, first, alpha)
        systems[f"{cfg.first_stage}+rerank:{ckpt}"] = pure
    report = compare(systems, qrels, cfg.resamples, cfg.seed)
    print(f"{args.data}, split {args.split}, first stage {cfg.first_stage} top {cfg.top_k}")
    print(table(report))
    for name, run in systems.items():
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
        path = args.output_dir / f"{slug}.{Path(args.data).resolve().name}.{args.split}.trec"
        if _writer():
            write_trec_run(path, run, tag=slug)
        report["metrics"][name]["run"] = str(path)
    if _writer():
        with atomic_write(args.output_dir / "evaluate.json") as f:
            json.dump(report, f, indent=1)
    print(f"runs and report (evaluate.json) in {args.output_dir}")
    return 0


def _alpha(given, checkpoint) -> float:
    """--alpha when given, else the alpha stored in the checkpoint by `hnm tune`, else 1 (pure re-ranking)."""
    from hnm.twostage import stored_alpha
    if given is not None:
        if not 0.0 <= given <= 1.0:
            raise HnmError(f"--alpha is a weight in [0, 1], not {given}")
        return given
    stored = stored_alpha(checkpoint)
    return 1.0 if stored is None else stored


def _cmd_tune(args) -> int:
    import json
    from hnm.data import load_beir
    from hnm.firststage import retrieve
    from hnm.twostage import EvalConfig, tune_alpha
    queries_file = args.queries or Path(args.reranker).resolve().parent / "tuning_queries.json"
    if not queries_file.is_file():
        raise HnmError(f"{queries_file}: no tuning queries; give --queries (a JSON list of query ids, as hnm train "
                       f"writes into its output folder)")
    corpus, queries, qrels = load_beir(args.data, args.split)
    tuning = [q for q in json.loads(queries_file.read_text(encoding="utf-8")) if q in qrels]
    if not tuning:
        raise HnmError(f"{queries_file}: none of its queries is judged in {args.data} split {args.split}")
    cfg = EvalConfig(first_stage=args.first_stage, top_k=args.top_k, models=args.models, precision=args.precision)
    picked = {q: queries[q] for q in tuning}
    first = retrieve(corpus, picked, cfg.retrieval(), args.quiet)
    tuned = tune_alpha(args.reranker, first, picked, corpus, {q: qrels[q] for q in tuning}, cfg.first_stage,
                       cfg.top_k, cfg.batch_size, cfg.precision, args.quiet)
    curve = tuned["curve"]
    print(f"nDCG@10 on {len(tuning)} tuning queries, first stage {cfg.first_stage} top {cfg.top_k}:")
    print("  " + "  ".join(f"{float(a):g}: {v:.4f}" for a, v in curve.items()))
    print(f"alpha {tuned['alpha']:g} (first stage alone {curve['0.0']:.4f}, re-ranker alone {curve['1.0']:.4f}) "
          f"-> {Path(args.reranker) / 'config.json'}")
    return 0


def _cmd_experiment(args) -> int:
    from dataclasses import replace
    from hnm.experiment import BUDGETS, ExperimentConfig, choose_arms, run_experiment
    from hnm.results import report
    cfg = ExperimentConfig.load(args.config) if args.config else ExperimentConfig()
    overrides = {k: getattr(args, k) for k in ("train_split", "test_split", "first_stage", "loss") if getattr(args, k)}
    if args.budget:
        overrides["budget"] = BUDGETS[args.budget]
    try:
        arms = choose_arms(cfg.arms, args.arms, args.clustering_arms)
    except ValueError as e:
        raise HnmError(f"--arms: {e}") from None
    if arms != cfg.arms:
        overrides["arms"] = arms
    cfg = replace(cfg, **overrides)
    out = args.out or Path("experiments") / f"{args.data.name}-{cfg.budget.name}"
    results = run_experiment(args.data, out, cfg, quiet=args.quiet, prepare=args.prepare)
    if args.prepare:
        print(f"first stages and every arm's mined rows in {out}; the same command without --prepare trains")
        return 0
    print(report(results))
    print(f"report, results.json and chart.svg in {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hnm",
        description="Ensemble hard-negative mining and cross-encoder re-ranking, from scratch.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = sub.add_parser("weights", help="list, fetch or verify the models of weights.lock",
                       description="List the models of weights.lock, fetch them (cache, hub, then mirror; every "
                                   "file checked by sha256) or re-hash the cached files.")
    p.add_argument("action", choices=("list", "fetch", "verify"), help="what to do")
    p.add_argument("names", nargs="*", help="model names from weights.lock (fetch and verify)")
    _quiet(p)
    p.set_defaults(func=_cmd_weights)

    from hnm.embed import EmbedConfig
    p = sub.add_parser("embed", help="embed a JSON-lines file of texts with one model",
                       description="Embed each line's text ({'_id', 'text'[, 'title']}) and save an (N, D) float32 "
                                   ".npy in input order, with the row ids in a .ids.txt beside it.")
    p.add_argument("--model", required=True, help="a model name from weights.lock")
    p.add_argument("--input", type=Path, required=True, help="JSON lines with '_id' and 'text' (a BEIR corpus works)")
    p.add_argument("--output", type=Path, required=True, help="where to write the vectors (.npy)")
    p.add_argument("--kind", choices=("document", "query"), default="document",
                   help="which prefix of the model to use; documents also get their title prepended")
    p.add_argument("--batch-size", type=int, default=EmbedConfig.batch_size, help="texts per forward pass")
    p.add_argument("--precision", choices=("float32", "bfloat16", "auto"), default=EmbedConfig.precision,
                   help="bfloat16 autocast: cosine ~0.9999 to float32; faster only on CPUs with bf16 instructions; "
                        "auto: bfloat16 where the hardware has it (default float32)")
    _streams(p)
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    _device(p)
    _quiet(p)
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("demo", help="embed the bundled demo sentences and print their cosine similarities",
                       description="Embed a few bundled sentences and print their similarity table.")
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="a model name from weights.lock")
    _quiet(p)
    p.set_defaults(func=_cmd_demo)

    # defaults stay None here so that BM25Config's apply; hnm.bm25 is imported only when the verb runs
    p = sub.add_parser("bm25", help="BM25 retrieval over a BEIR folder: metrics and a TREC run",
                       description="Index a BEIR folder's corpus with BM25 (lower-case, Lucene's stop words, Porter "
                                   "stems), retrieve the top k documents for each query of a split, print the "
                                   "metrics against its judgments and write a TREC run file.")
    p.add_argument("--data", type=Path, required=True, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/")
    p.add_argument("--split", default="test", help="judgments to use, qrels/<split>.tsv (default test)")
    p.add_argument("--strict", action="store_true",
                   help="judgments naming a query or document that is not there are errors (default: counted, "
                        "named on stderr, and the run goes on)")
    p.add_argument("--variant", choices=("robertson", "lucene", "atire", "bm25l", "bm25+"),
                   help="scoring variant (default lucene)")
    p.add_argument("--k1", type=float, help="term-frequency saturation (default 1.5)")
    p.add_argument("--b", type=float, help="length normalisation, 0 to 1 (default 0.75)")
    p.add_argument("--delta", type=float, help="tf floor of bm25l and bm25+ (default 0.5)")
    p.add_argument("--no-stopwords", action="store_true", help="keep stop words")
    p.add_argument("--no-stem", action="store_true", help="do not stem")
    p.add_argument("--top-k", type=int, default=100, help="documents retrieved per query (default 100)")
    p.add_argument("--output", type=Path,
                   help="TREC run file to write (default bm25.<data folder name>.<split>.trec here)")
    _quiet(p)
    p.set_defaults(func=_cmd_bm25)
    from hnm.agglomerative import LINKAGES
    from hnm.negatives import CLUSTERINGS, MineConfig, SELECTIONS, STRATEGIES
    d = MineConfig()
    p = sub.add_parser("mine", help="mine hard negatives for judged queries (default: bundled Cranfield)",
                       description="Mine hard negatives with an ensemble of encoders and k-means clusters (the "
                                   "paper), or a baseline strategy through the same code path. Writes one JSON "
                                   "line per query, a review file of likely false negatives, statistics and an "
                                   "SVG of the score histograms. A killed run resumes when rerun.")
    p.add_argument("--data", type=Path, help="a BEIR-layout folder (default: the bundled Cranfield collection)")
    p.add_argument("--split", help="the qrels split to mine (default: train_80 for the bundled data, else train)")
    p.add_argument("--strict", action="store_true",
                   help="judgments naming a query or document that is not there are errors (default: counted, "
                        "named on stderr, and the run goes on)")
    p.add_argument("--output", type=Path, default=Path("mined.jsonl"), help="the rows file (default mined.jsonl)")
    p.add_argument("--format", choices=("jsonl", "triplets", "ntuple"), default="jsonl",
                   help="also export the flat triplet or n-tuple layout beside the rows file")
    p.add_argument("--strategy", choices=STRATEGIES, help=f"how candidates are found (default {d.strategy})")
    p.add_argument("--models", help=f"ensemble members NAME[:WEIGHT],... ; 'bm25' may join (default {d.models})")
    p.add_argument("--fusion", choices=("mean", "zscore", "rrf"), help=f"score fusion (default {d.fusion})")
    p.add_argument("--n-clusters", dest="n_clusters", type=int, help="k of k-means (default round(sqrt(N)))")
    p.add_argument("--clustering", choices=CLUSTERINGS,
                   help="how the ensemble strategy groups documents: kmeans (the paper's), agglomerative (fitted on "
                        "a sample, see --agglomerative-sample), gmm (diagonal Gaussian mixture), or none (the "
                        f"ensemble's exact top over the whole corpus) (default {d.clustering})")
    p.add_argument("--linkage", choices=LINKAGES,
                   help=f"agglomerative: ward (Euclidean) or average (cosine distance) (default {d.linkage})")
    p.add_argument("--agglomerative-sample", dest="agglomerative_sample", type=int,
                   help="agglomerative is fitted on at most this many documents; its float64 distance matrix takes "
                        f"8 n^2 bytes (default {d.agglomerative_sample}: 128 MiB)")
    p.add_argument("--n-probe", dest="n_probe", type=int, help=f"nearest clusters searched (default {d.n_probe})")
    p.add_argument("--skip-top", dest="skip_top", type=int, help=f"top candidates skipped (default {d.skip_top})")
    p.add_argument("--max-rank", dest="max_rank", type=int, help=f"candidates considered (default {d.max_rank})")
    p.add_argument("--relative-ceiling", dest="relative_ceiling", type=float,
                   help=f"keep candidates below this x the reference positive's score (default {d.relative_ceiling})")
    p.add_argument("--ceiling-from", dest="ceiling_from", choices=("strongest", "median", "weakest"),
                   help=f"the reference among a query's positives' scores (default {d.ceiling_from})")
    p.add_argument("--margin", type=float, help="also keep only candidates this far below the reference positive")
    p.add_argument("--min-score", dest="min_score", type=float, help="floor: candidates below are not negatives")
    p.add_argument("--max-score", dest="max_score", type=float, help="absolute ceiling: candidates above are flagged")
    p.add_argument("--selection", choices=SELECTIONS,
                   help="which candidates become negatives: ceiling (below the positive-aware ceiling, the options "
                        "above) or pca (the authors' 2025 rule, arXiv 2505.18366: in the PCA space of the "
                        "concatenated ensemble embeddings, D only if d(Q,D) < d(Q,PD) and d(Q,D) < d(PD,D) for every "
                        "positive PD, cosine distances; ensemble strategy, mean fusion; --clustering none searches "
                        f"the whole corpus, as the paper) (default {d.selection})")
    p.add_argument("--pca-variance", dest="pca_variance", type=float,
                   help=f"pca selection: the share of the variance PCA keeps (default {d.pca_variance})")
    p.add_argument("--pca-components", dest="pca_components", type=int,
                   help="pca selection: keep this many principal components instead of a variance share")
    p.add_argument("--sampling", choices=("top", "random"), help=f"among eligible candidates (default {d.sampling})")
    p.add_argument("--num-negatives", dest="num_negatives", type=int, help=f"per query (default {d.num_negatives})")
    p.add_argument("--random-share", dest="random_share", type=float,
                   help=f"share of negatives drawn at random from the corpus (default {d.random_share})")
    p.add_argument("--min-grade", dest="min_grade", type=int, help=f"grade of a positive (default {d.min_grade})")
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    p.add_argument("--chunk-size", dest="chunk_size", type=int, help=f"queries per chunk (default {d.chunk_size})")
    p.add_argument("--batch-size", type=int, default=EmbedConfig.batch_size, help="texts per encoder pass")
    p.add_argument("--precision", choices=("float32", "bfloat16", "auto"), default=EmbedConfig.precision,
                   help="encoder precision")
    _streams(p)
    _device(p)
    _quiet(p)
    p.set_defaults(func=_cmd_mine)

    from hnm.chunk import MODES, ChunkConfig
    from hnm.ingest import FetchConfig, IngestConfig
    p = sub.add_parser("ingest", help="fetch and clean web pages and files into a de-duplicated, chunked corpus",
                       description="Fetch URLs and read local .html, .txt and .md files; clean the HTML to text, "
                                   "remove boilerplate lines repeated across a site, drop exact and near "
                                   "duplicates, cut chunks by the model's tokenizer, and write a BEIR corpus. "
                                   "Failed sources go to an errors file; a killed run resumes when rerun.")
    p.add_argument("sources", nargs="+", metavar="SOURCES",
                   help="URLs, folders of .html/.txt/.md files, or files listing URLs one a line")
    p.add_argument("-o", "--output", type=Path, required=True, help="the corpus to write (JSON lines)")
    p.add_argument("--errors", type=Path, help="failed sources, JSON lines {source, reason} "
                                               "(default: the output with suffix .errors.jsonl)")
    p.add_argument("--chunk", choices=MODES, default=ChunkConfig.mode,
                   help=f"token windows, sentences packed up to --max-tokens, or whole documents "
                        f"(default {ChunkConfig.mode})")
    p.add_argument("--model", default="all-MiniLM-L6-v2",
                   help="whose tokenizer counts tokens: a model of weights.lock or a tokenizer.json path")
    p.add_argument("--max-tokens", type=int, default=ChunkConfig.max_tokens,
                   help=f"tokens per chunk, special tokens not counted (default {ChunkConfig.max_tokens})")
    p.add_argument("--stride", type=int, help="tokens from one window's start to the next (default 3/4 of "
                                              "--max-tokens)")
    p.add_argument("--timeout", type=float, default=FetchConfig.read_timeout,
                   help=f"seconds without a byte before an attempt fails (default {FetchConfig.read_timeout:g}); "
                        f"also caps the connect timeout ({FetchConfig.connect_timeout:g})")
    p.add_argument("--retries", type=int, default=FetchConfig.retries,
                   help=f"attempts per URL on 5xx, timeouts and connection errors (default {FetchConfig.retries})")
    p.add_argument("--max-bytes", type=int, default=FetchConfig.max_bytes,
                   help=f"larger pages are refused (default {FetchConfig.max_bytes:,})")
    p.add_argument("--delay", type=float, default=FetchConfig.delay,
                   help=f"seconds between two requests to one host (default {FetchConfig.delay:g})")
    p.add_argument("--near-dup-threshold", type=float, default=IngestConfig.near_dup_threshold,
                   help=f"Jaccard similarity of 5-word shingle sets from which a page is a near duplicate "
                        f"(default {IngestConfig.near_dup_threshold})")
    p.add_argument("--retry-failed", action="store_true", help="on a rerun, try the sources that failed again")
    p.add_argument("--min-chars", dest="min_chars", type=int, default=IngestConfig.min_chars,
                   help=f"pages with less text are dropped (default {IngestConfig.min_chars})")
    p.add_argument("--keep-aggregates", dest="keep_aggregates", action="store_true",
                   help=f"keep pages that hold {IngestConfig.aggregate_pages} or more other pages (a site's "
                        f"print-all page); by default they are dropped and listed")
    _quiet(p)
    p.set_defaults(func=_cmd_ingest)
    from hnm.train import TrainConfig
    t = TrainConfig()
    p = sub.add_parser("train", help="train a cross-encoder re-ranker on mined rows (torchrun for several processes)",
                       description="Fine-tune a cross-encoder on the rows of `hnm mine`: each positive with groups "
                                   "of --negatives negatives; by default the paper's triplet loss, each mined "
                                   "negative its own triplet (the ablation's best recipe). Writes "
                                   "OUTPUT/log.jsonl, OUTPUT/last (checkpoint, resumable) and OUTPUT/best (best "
                                   "held-out MRR@10). "
                                   "Run it under `torchrun --nproc_per_node N -m hnm train ...` for DDP.")
    p.add_argument("--rows", type=Path, required=True, help="mined rows, JSON lines (hnm mine's output)")
    p.add_argument("--output", type=Path, required=True, help="folder for the log and the checkpoints")
    # not --start: torchrun would take that for an abbreviation of its own --start-method
    p.add_argument("--model", dest="start", default="all-MiniLM-L6-v2",
                   help="start from an encoder of weights.lock (with a new head) or a re-ranker checkpoint folder")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last with the same flags")
    p.add_argument("--loss", choices=("softmax", "triplet", "bce", "margin_mse"),
                   help=f"training loss (default {t.loss}; the paper's is triplet, with --negatives 1; margin_mse "
                        f"distils the mined rows' ensemble scores alone)")
    p.add_argument("--distill", type=float,
                   help=f"weight of MarginMSE on the rows' ensemble scores added to the loss (default {t.distill})")
    p.add_argument("--teacher-scale", dest="teacher_scale", type=float,
                   help=f"the ensemble's scores are multiplied by this for MarginMSE (default {t.teacher_scale})")
    p.add_argument("--margin", type=float, help=f"of the triplet loss (default {t.margin})")
    p.add_argument("--negatives", type=int, help=f"negatives per example (default {t.negatives})")
    p.add_argument("--batch-size", dest="batch_size", type=int,
                   help=f"examples per micro-batch per process, each 1 + negatives pairs (default {t.batch_size})")
    p.add_argument("--grad-accum", dest="grad_accum", type=int,
                   help=f"micro-batches per optimiser step (default {t.grad_accum})")
    p.add_argument("--epochs", type=int, help=f"passes over the examples (default {t.epochs})")
    p.add_argument("--max-steps", dest="max_steps", type=int, help="optimiser steps in all; replaces --epochs")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {t.lr})")
    p.add_argument("--weight-decay", dest="weight_decay", type=float,
                   help=f"AdamW weight decay, not on biases and LayerNorm (default {t.weight_decay})")
    p.add_argument("--warmup", type=float, help=f"share of steps warming up, then linear decay (default {t.warmup})")
    p.add_argument("--max-grad-norm", dest="max_grad_norm", type=float,
                   help=f"gradient clipping norm (default {t.max_grad_norm})")
    p.add_argument("--seed", type=int, help=f"data order, held-out rows, new head, dropout (default {t.seed})")
    p.add_argument("--precision", choices=("float32", "bfloat16", "auto"),
                   help=f"bfloat16: autocast; auto: bfloat16 where the hardware has it (default {t.precision})")
    p.add_argument("--max-length", dest="max_length", type=int, help=f"tokens per pair (default {t.max_length})")
    p.add_argument("--head", choices=("pooler", "linear", "mean"), help=f"head of a new model (default {t.head})")
    p.add_argument("--eval-fraction", dest="eval_fraction", type=float,
                   help=f"share of queries held out for evaluation (default {t.eval_fraction})")
    p.add_argument("--eval-every", dest="eval_every", type=int,
                   help=f"steps between evaluations; 0: at the end only (default {t.eval_every})")
    p.add_argument("--save-every", dest="save_every", type=int,
                   help=f"steps between checkpoints (default {t.save_every})")
    p.add_argument("--stop-after", dest="stop_after", type=int,
                   help="end this invocation after this step, checkpointed; go on later with --resume")
    _device(p)
    _quiet(p)
    p.set_defaults(func=_cmd_train)

    from hnm.twostage import EvalConfig, FIRST_STAGES
    e = EvalConfig()
    p = sub.add_parser("rerank", help="re-rank a TREC run file with a trained cross-encoder",
                       description="Score the top k documents of each query of a TREC run with a re-ranker "
                                   "checkpoint and write them, re-ordered, as a new TREC run.")
    p.add_argument("--data", type=Path, required=True, help="BEIR folder with the corpus and queries of the run")
    p.add_argument("--run", type=Path, required=True, help="TREC run file to re-rank")
    p.add_argument("--reranker", type=Path, required=True, help="checkpoint folder (hnm train's best or last)")
    p.add_argument("--output", type=Path, required=True, help="TREC run file to write")
    p.add_argument("--top-k", dest="top_k", type=int, default=e.top_k,
                   help=f"documents re-ranked per query; the rest are dropped (default {e.top_k})")
    p.add_argument("--split", help="also print the metrics of both runs against qrels/<split>.tsv")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=e.batch_size, help="pairs per pass")
    p.add_argument("--precision", choices=("float32", "bfloat16", "auto"), default=e.precision,
                   help="re-ranker precision")
    p.add_argument("--alpha", type=float, help="weight of the re-ranker against the run's scores, each standardised "
                                               "per query (default: the checkpoint's tuned alpha, else 1: pure)")
    _device(p)
    _quiet(p)
    p.set_defaults(func=_cmd_rerank)

    p = sub.add_parser("evaluate", help="first stage, optional re-ranking, metrics and paired tests",
                       description="Retrieve the top k of each query with BM25, a dense model or the ensemble, "
                                   "re-rank them with each --reranker, print MRR@10, P@1, P@10, nDCG@10 and R@100, "
                                   "compare every two systems (paired bootstrap and randomisation test on nDCG@10 "
                                   "and MRR@10), and write the TREC runs and evaluate.json.")
    p.add_argument("--data", type=Path, required=True, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/")
    p.add_argument("--split", default="test", help="judgments to use, qrels/<split>.tsv (default test)")
    p.add_argument("--strict", action="store_true",
                   help="judgments naming a query or document that is not there are errors (default: counted, "
                        "named on stderr, and the run goes on)")
    p.add_argument("--first-stage", dest="first_stage", choices=FIRST_STAGES,
                   help=f"first-stage retrieval (default {e.first_stage})")
    p.add_argument("--top-k", dest="top_k", type=int, help=f"documents retrieved and re-ranked (default {e.top_k})")
    p.add_argument("--reranker", type=Path, nargs="*", default=[], help="re-ranker checkpoint folders")
    p.add_argument("--models", help=f"NAME[:WEIGHT],... for dense (the first) and ensemble (default {e.models})")
    p.add_argument("--batch-size", dest="batch_size", type=int, help=f"pairs per pass (default {e.batch_size})")
    p.add_argument("--precision", choices=("float32", "bfloat16", "auto"),
                   help=f"re-ranker precision (default {e.precision})")
    p.add_argument("--embed-precision", dest="embed_precision", choices=("float32", "bfloat16", "auto"),
                   help=f"precision of the first stage's encoders (default {e.embed_precision})")
    p.add_argument("--fusion", choices=("zscore", "rrf"), help=f"of the hybrid first stage (default {e.fusion})")
    p.add_argument("--bm25-weight", dest="bm25_weight", type=float,
                   help=f"BM25's share in the hybrid first stage (default {e.bm25_weight})")
    p.add_argument("--alpha", type=float, help="weight of the re-ranker against the first stage, each standardised "
                                               "per query; 1: pure re-ranking (default: the checkpoint's tuned "
                                               "alpha, else 1); systems with alpha < 1 are reported beside pure")
    p.add_argument("--resamples", type=int, help=f"of the paired tests (default {e.resamples})")
    p.add_argument("--seed", type=int, help=f"of the paired tests (default {e.seed})")
    p.add_argument("--output-dir", dest="output_dir", type=Path, default=Path("."),
                   help="where the TREC runs and evaluate.json go (default here)")
    _device(p)
    _quiet(p)
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("tune", help="choose a re-ranker's interpolation weight alpha on its tuning queries",
                       description="Retrieve the first stage's top k for the tuning queries (held out of training: "
                                   "OUTPUT/tuning_queries.json of hnm train), re-rank them, pick the alpha of "
                                   "alpha x z(re-ranker) + (1 - alpha) x z(first stage) with the best nDCG@10 "
                                   "(steps of 0.05), and store it in the checkpoint's config.json, where rerank "
                                   "and evaluate read it.")
    p.add_argument("--data", type=Path, required=True, help="the BEIR folder the re-ranker was trained on")
    p.add_argument("--split", default="train", help="judgments of the tuning queries (default train)")
    p.add_argument("--reranker", type=Path, required=True, help="checkpoint folder (hnm train's best or last)")
    p.add_argument("--queries", type=Path, help="JSON list of tuning query ids (default: tuning_queries.json "
                                                "beside the checkpoint)")
    p.add_argument("--first-stage", dest="first_stage", choices=FIRST_STAGES, default=e.first_stage,
                   help=f"the first stage the re-ranker will follow (default {e.first_stage})")
    p.add_argument("--top-k", dest="top_k", type=int, default=e.top_k, help=f"documents re-ranked (default {e.top_k})")
    p.add_argument("--models", default=e.models, help="encoders of the dense, ensemble and hybrid first stages")
    p.add_argument("--precision", choices=("float32", "bfloat16", "auto"), default=e.precision,
                   help="re-ranker precision")
    _device(p)
    _quiet(p)
    p.set_defaults(func=_cmd_tune)

    from hnm.experiment import BUDGETS
    p = sub.add_parser("experiment", help="the paper's comparison: one re-ranker trained on each strategy's negatives",
                       description="Mine with each arm's strategy, train the same re-ranker on each, re-rank the same "
                                   "first-stage top k of the test queries, and report metrics with bootstrap "
                                   "intervals and paired tests, the long-document comparison and stage timings. "
                                   "Every stage is cached under --out; a rerun resumes.")
    p.add_argument("--data", type=Path, required=True, help="a BEIR-layout folder")
    p.add_argument("--out", type=Path, help="the working and report folder (default experiments/NAME-BUDGET)")
    p.add_argument("--budget", choices=tuple(BUDGETS),
                   help="small: a smoke run (default); full: the README's tables on a 2-core CPU (hours); gpu: three "
                        "epochs of 15 negatives at 256 tokens, for one GPU")
    p.add_argument("--loss", choices=("softmax", "triplet", "bce"),
                   help="the re-rankers' loss (default triplet, the paper's, each mined negative its own example)")
    p.add_argument("--config", type=Path, help="a JSON file of arms and budget over the defaults")
    p.add_argument("--train-split", dest="train_split", help="the split mined and trained on (default train)")
    p.add_argument("--test-split", dest="test_split", help="the split judged (default test)")
    p.add_argument("--first-stage", dest="first_stage", choices=FIRST_STAGES,
                   help="the first stage whose top k is re-ranked (default hybrid)")
    p.add_argument("--clustering-arms", dest="clustering_arms", action="store_true",
                   help="add the arms of the clustering question after the others: ensemble+ with agglomerative, "
                        "gmm and no clustering, every seed")
    p.add_argument("--arms", help="only these arms, comma-separated names in the order of the work (e.g. "
                                   "'ensemble+,random'); the first stage alone is always reported")
    p.add_argument("--prepare", action="store_true",
                   help="run only what needs the ensemble's encoders (the first stages, every arm's mining), then stop: "
                        "a copy of --out trains where only the start model is, e.g. a GPU machine")
    _device(p)
    _quiet(p)
    p.set_defaults(func=_cmd_experiment)
    return parser


def _writer() -> bool:
    """Whether this process writes the outputs: always, except on the ranks past 0 under torchrun."""
    from hnm.distributed import current
    return current().main


def _run(args) -> int:
    """The verb, in the processes torchrun started (one without it) on --device; only rank 0 prints and writes."""
    distributed = None
    try:
        if getattr(args, "device", None) is not None:
            from hnm import distributed
            try:
                procs = distributed.Processes.start(args.device)
            except ValueError as e:
                raise HnmError(str(e)) from None
            if not procs.main:
                sys.stdout = open(os.devnull, "w")
        return args.func(args) or 0
    except (HnmError, FileNotFoundError) as e:
        print(f"hnm {args.verb}: error: {e}", file=sys.stderr)
        return 2
    finally:
        if distributed is not None:
            distributed.stop()


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if "TORCHELASTIC_RUN_ID" in os.environ:  # under torchrun: a rank's traceback goes into torchrun's failure report
        from torch.distributed.elastic.multiprocessing.errors import record
        return record(_run)(args)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
