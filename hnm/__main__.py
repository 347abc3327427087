"""The command line: `python -m hnm <verb> ...`, one argparse sub-command per verb, each calling one public function.

Flags come from two places, each declared once:
- a setting of a stage is a field of its configuration dataclass (config.py): `_fields(p, TrainConfig)` adds a flag
  for each field with a help, its name, type, choices, default and help taken from the field, and its range checked
  as argparse reads it (config.problem, the rule the dataclass itself applies); `_fields(p, EvalConfig, "top_k")`
  takes only the fields named. A new field in config.py is therefore a new flag of every verb that takes its class.
- a flag that is not a setting (--data, --output, --quiet, --device, ...) is an entry of SHARED, added by
  `_flag(p, "data", required=True)` with what the verb changes.
`_config(TrainConfig, args)` then builds the configuration from the parsed flags.

A bad flag is one line, `hnm VERB: error: --FLAG: why`, exit status 2, before any work: argparse's own errors, the
ranges of the fields, and the combinations __post_init__ checks (raised as HnmError by `_config`).

To add a verb: write `_cmd_NAME(args) -> int`, importing what it runs inside the function (so that --help and
`import hnm` never import torch), and `_verb_NAME(sub)`, which calls `_verb(sub, NAME, _cmd_NAME, help, description)`
and adds its flags with `_fields` and `_flag`; then append `_verb_NAME` to VERBS (the order of `--help`).

Errors. A failure the user can cause or meet ends in one line, `hnm VERB: error: FILE OR FLAG: cause`, and exit
status 2; a bug in hnm keeps its traceback. The two are told apart by type: the user's kind is HnmError (raised
for bad flags, bad input files and broken checkpoints, where the file is known: third-party parse errors such as
safetensors' or the tokenizers library's are turned into it there) or OSError (the operating system refusing:
a missing file, a full disk, no permission, a read-only file system; hnm's writers add the file name where the
system gives none). Anything else, a TypeError, an AttributeError, an AssertionError, is a bug and shows its
traceback. Each verb checks its outputs before any work and locks those of long jobs (`_output`).
"""

import argparse
import contextlib
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Callable, List, Optional, Tuple, get_args

from hnm.config import (BUDGETS, DEVICES_HELP, BM25Config, ChunkConfig, EmbedConfig, EvalConfig, ExperimentConfig,
                        FetchConfig, FirstStageConfig, FitConfig, IngestConfig, MineConfig, TrainConfig, problem)
from hnm.errors import HnmError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors in hnm's form, `hnm VERB: error: --flag: why` (exit status 2)."""

    def error(self, message: str):
        verb = self.prog.split()[-1] if self.prog != "python -m hnm" else ""
        self.exit(2, f"hnm{' ' + verb if verb else ''}: error: {message.removeprefix('argument ')}\n")


def _number(kind: type, meta) -> Callable[[str], float]:
    """The argparse type of a numeric field: its text parsed as `kind` and checked by the field's rules."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}")
        why = problem(value, meta)
        if why:
            raise argparse.ArgumentTypeError(why)
        return value
    return parse


def _fields(p: argparse.ArgumentParser, cls: type, *names: str, unset: bool = False, skip: Tuple[str, ...] = (),
            prefix: str = "") -> None:
    """A flag for each field of `cls` that has a help (or only those of `names`, less those of `skip`), as the module
    docstring says. unset: every default None, so that only the flags given override a configuration read from a
    file. prefix: --PREFIXNAME (dest PREFIX_NAME), for a verb that takes two classes with a field of the same name
    (fit: --mine-seed and --train-seed)."""
    chosen = [f for f in fields(cls) if "help" in f.metadata and (not names or f.name in names)
              and f.name not in skip]
    assert not names or len(chosen) == len(names) - len(set(skip) & set(names)), \
        f"{cls.__name__} has no flag among {names}"
    for f in chosen:
        meta = f.metadata
        kind = next(t for t in (get_args(f.type) or (f.type,)) if t is not type(None))
        flag = "--" + prefix + f.name.replace("_", "-") if prefix else meta.get("flag", "--" + f.name.replace("_", "-"))
        dest = prefix.replace("-", "_") + f.name
        if kind is bool:
            p.add_argument(flag if not f.default else "--no-" + flag[2:], dest=dest, default=None if unset else
                           f.default, action="store_false" if f.default else "store_true", help=meta["help"])
            continue
        shown = "" if f.default is None or "(default" in meta["help"] else f" (default {f.default})"
        p.add_argument(flag, dest=dest, default=None if unset else f.default, choices=meta.get("choices"),
                       type=_number(kind, meta) if kind in (int, float) else kind, help=meta["help"] + shown)


def _config(cls: type, args: argparse.Namespace, prefixed: Tuple[str, ...] = (), prefix: str = "", **fixed):
    """`cls` from the flags of its fields that were given a value (those of `prefixed` read from PREFIX_NAME), and
    `fixed`; a combination that __post_init__ refuses (say skip_top >= max_rank) is a one-line error before any
    work."""
    given = {}
    for f in fields(cls):
        value = getattr(args, (prefix.replace("-", "_") if f.name in prefixed else "") + f.name, None)
        if "help" in f.metadata and value is not None:
            given[f.name] = value
    try:
        return cls(**{**given, **fixed})
    except ValueError as e:
        raise HnmError(str(e)) from None


SHARED = {  # the flags that are not settings of a stage, each verb taking them with its own changes
    "data": dict(type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/"),
    "split": dict(help="judgments to use, qrels/<split>.tsv"),
    "strict": dict(action="store_true", help="judgments naming a query or document that is not there are errors "
                                             "(default: counted, named on stderr, and the run goes on)"),
    "output": dict(type=Path, help="where to write"),
    "model": dict(help="a model name from weights.lock"),
    "reranker": dict(type=Path, help="checkpoint folder (hnm train's best or last)"),
    "quiet": dict(action="store_true", help="no progress bars on stderr"),
    "device": dict(default="auto", help=f"where the models run: {DEVICES_HELP} (default auto). Under `torchrun "
                                        f"--nproc_per_node N -m hnm ...` the work is shared among the N processes "
                                        f"and rank 0 writes the outputs"),
}


def _flag(p: argparse.ArgumentParser, name: str, *aliases: str, **changes) -> None:
    """--NAME of SHARED, with the verb's changes (a default other than None or False is shown in the help)."""
    spec = {**SHARED[name], **changes}
    if spec.get("default") not in (None, False) and "(default" not in spec["help"]:
        spec["help"] += f" (default {spec['default']})"
    p.add_argument(f"--{name}", *aliases, **spec)


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
    from hnm.data import document_text, read_jsonl
    from hnm.embed import Embedder, save_embeddings
    _output(args, args.output)
    rows = [(rec["_id"], document_text(rec) if args.kind == "document" else rec["text"])
            for _, rec in read_jsonl(args.input, required=("_id", "text"))]
    embedder = Embedder.load(args.model, _config(EmbedConfig, args), quiet=args.quiet)
    vectors = embedder.encode([text for _, text in rows], kind=args.kind, quiet=args.quiet)
    ids_path = args.output.with_suffix(".ids.txt")
    if _writer():
        save_embeddings(args.output, [doc_id for doc_id, _ in rows], vectors)
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
    from hnm.bm25 import BM25Index
    from hnm.data import load_beir
    from hnm.metrics import evaluate, write_trec_run
    config = _config(BM25Config, args)
    output = args.output or Path(f"bm25.{Path(args.data).resolve().name}.{args.split}.trec")
    _output(args, output, lock=False)
    corpus, queries, qrels = load_beir(args.data, args.split, args.strict)
    run = BM25Index.from_corpus(corpus, config, quiet=args.quiet).run(queries, args.top_k)
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
    from hnm.miner import run, table
    data = args.data or bundled_cranfield()
    split = args.split or ("train_80" if args.data is None else "train")
    cfg = _config(MineConfig, args)
    _output(args, args.output)
    corpus, queries, qrels = load_beir(data, split, args.strict)
    stats = run(corpus, queries, qrels, cfg, args.output, _config(EmbedConfig, args), args.format, args.quiet)
    print(f"mined {data} ({split}) with strategy {cfg.strategy}, encoders in {stats['precision']}"
          + (" (auto)" if args.precision == "auto" else "") + f" -> {args.output}")
    print(table(stats))
    print(f"wall time {stats['seconds']:.1f} s; review file, statistics and chart beside the output")
    return 0


def _cmd_ingest(args) -> int:
    from hnm.chunk import load_tokenizer
    from hnm.ingest import ingest
    fetch = _config(FetchConfig, args, connect_timeout=min(args.read_timeout, FetchConfig.connect_timeout))
    config = _config(IngestConfig, args, fetch=fetch, chunk=_config(ChunkConfig, args))
    tokenizer = load_tokenizer(args.model) if config.chunk.mode != "none" else None
    _output(args, args.output)
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
    how = "" if config.chunk.mode == "none" else f" ({config.chunk.mode}, at most {config.chunk.max_tokens} tokens)"
    print(f"corpus: {r.documents} documents, {r.chunks} rows{how} -> {args.output}")
    return 0 if r.documents else 1


def _check_max_length(start: str, max_length: Optional[int]) -> None:
    """--max-length within the start model's position embeddings (reranker.set_max_length's rule), before any
    work: a checkpoint folder's config.json, or the config.json of the weights.lock model (fetched if need be)."""
    import json
    folder = Path(start)
    if max_length is None:
        return
    if not (folder / "config.json").is_file():
        from hnm import weights
        folder = weights.fetch(start)
    limit = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings")
    if isinstance(limit, int) and max_length > limit:
        raise HnmError(f"--max-length: {start} has {limit} position embeddings, so at most {limit}, not {max_length}")


def _cmd_train(args) -> int:
    from hnm.train import train
    cfg = _config(TrainConfig, args)
    _check_max_length(args.start, cfg.max_length)
    _output(args, args.output, "folder")
    s = train(args.rows, args.output, args.start, cfg, resume=args.resume, quiet=args.quiet)
    best = s["best"]
    print(f"trained {s['steps']} of {s['total_steps']} steps on {s['examples']} examples "
          f"({len(s['skipped_rows'])} rows skipped) in {s['seconds']:.1f} s, {s['pairs_per_s']:.1f} pairs/s; "
          f"last loss {s['last_loss']:.4f}")
    if best:
        print(f"best held-out MRR@10 {best['mrr@10']:.4f} (nDCG@10 {best['ndcg@10']:.4f}) at step "
              f"{best['step']} -> {args.output / 'best'}")
    print(f"checkpoint {args.output / 'last'}; log {args.output / 'log.jsonl'}")
    return 0


def _alpha_said(checkpoint: Path, stage: FirstStageConfig, given: Optional[float]) -> float:
    """The alpha a re-ranker gets after this first stage (twostage.alpha_for), a fallback said on stderr."""
    from hnm.twostage import alpha_for
    alpha, why = alpha_for(checkpoint, stage, given)
    if why.startswith("not tuned"):
        print(f"note: {checkpoint}: {why}", file=sys.stderr)
    return alpha


def _cmd_rerank(args) -> int:
    import time
    from hnm.metrics import read_trec_run, write_trec_run
    from hnm.pages import best_chunks, expand_pages, page_of, page_qrels
    from hnm.reranker import CrossEncoder
    from hnm.twostage import interpolate, metrics_of, read_collection, rerank_pages
    cfg = _config(EvalConfig, args)
    _output(args, args.output, lock=False)
    corpus, queries = read_collection(args.data)
    run = read_trec_run(args.run)
    model = CrossEncoder.from_checkpoint(args.reranker)
    alpha = _alpha_said(args.reranker, cfg.retrieval(), cfg.alpha)
    pages = page_of(corpus)
    rows = best_chunks(expand_pages(run, corpus), pages, cfg.top_k, per_page=len(corpus))  # the run's top k pages
    started = time.perf_counter()
    try:
        first, pure = rerank_pages(model, rows, queries, corpus, cfg.batch_size, cfg.precision, args.quiet)
    except ValueError as e:
        raise HnmError(f"{args.run}: {e}") from None
    seconds = time.perf_counter() - started
    new = interpolate(pure, first, alpha)
    if _writer():
        write_trec_run(args.output, new, tag="hnm-rerank")
    pairs = sum(map(len, rows.values()))
    print(f"re-ranked {pairs} pairs of {len(new)} queries in {seconds:.1f} s ({pairs / seconds:.1f} pairs/s), "
          f"alpha {alpha:g} -> {args.output}")
    if args.split:
        from hnm.data import read_qrels
        from hnm.twostage import REPORTED
        qrels = page_qrels(read_qrels(Path(args.data) / "qrels" / f"{args.split}.tsv"), pages)
        for name, r in (("given run", first), ("re-ranked", new)):
            m = metrics_of(r, qrels)
            print(f"  {name:<10} " + "  ".join(f"{k} {m[k]:.4f}" for k in REPORTED) + f"  ({m['queries']} queries)")
    return 0


def _cmd_evaluate(args) -> int:
    import json
    import re
    from hnm.data import atomic_write, load_beir
    from hnm.firststage import retrieve
    from hnm.metrics import write_trec_run
    from hnm.pages import page_of, page_qrels, to_pages
    from hnm.reranker import CrossEncoder
    from hnm.twostage import compare, interpolate, rerank_pages, table
    cfg = _config(EvalConfig, args)
    _output(args, args.output_dir, "folder", lock=False)
    corpus, queries, qrels = load_beir(args.data, args.split, args.strict)
    rows = retrieve(corpus, queries, cfg.retrieval(), args.quiet)
    first = to_pages(rows, page_of(corpus))  # a page scores as its best chunk; the corpus's own rows otherwise
    systems = {cfg.first_stage: first}
    for ckpt in args.reranker:
        model = CrossEncoder.from_checkpoint(ckpt)
        _, pure = rerank_pages(model, rows, queries, corpus, cfg.batch_size, cfg.precision, args.quiet)
        alpha = _alpha_said(ckpt, cfg.retrieval(), cfg.alpha)
        if alpha < 1.0:
            systems[f"{cfg.first_stage}+rerank:{ckpt}:alpha={alpha:g}"] = interpolate(pure, first, alpha)
        systems[f"{cfg.first_stage}+rerank:{ckpt}"] = pure
    report = compare(systems, page_qrels(qrels, page_of(corpus)), cfg.resamples, cfg.seed)
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


def _cmd_tune(args) -> int:
    import json
    from hnm.data import load_beir
    from hnm.firststage import retrieve
    from hnm.twostage import stage_key, tune_alpha
    queries_file = args.queries or Path(args.reranker).resolve().parent / "tuning_queries.json"
    if not queries_file.is_file():
        raise HnmError(f"{queries_file}: no tuning queries; give --queries (a JSON list of query ids, as hnm train "
                       f"writes into its output folder)")
    corpus, queries, qrels = load_beir(args.data, args.split)
    tuning = [q for q in json.loads(queries_file.read_text(encoding="utf-8")) if q in qrels]
    if not tuning:
        raise HnmError(f"{queries_file}: none of its queries is judged in {args.data} split {args.split}")
    cfg = _config(EvalConfig, args)
    picked = {q: queries[q] for q in tuning}
    rows = retrieve(corpus, picked, cfg.retrieval(), args.quiet)
    tuned = tune_alpha(args.reranker, rows, picked, corpus, {q: qrels[q] for q in tuning}, cfg.retrieval(),
                       cfg.batch_size, cfg.precision, args.quiet)
    curve = tuned["curve"]
    print(f"nDCG@10 on {len(tuning)} tuning queries, first stage {cfg.first_stage} top {cfg.top_k}:")
    print("  " + "  ".join(f"{float(a):g}: {v:.4f}" for a, v in curve.items()))
    print(f"alpha {tuned['alpha']:g} (first stage alone {curve['0.0']:.4f}, re-ranker alone {curve['1.0']:.4f}) "
          f"for {stage_key(cfg.retrieval())} -> {Path(args.reranker) / 'config.json'}")
    return 0


def _search_queries(args) -> Optional[List[str]]:
    """The queries given on the command line or in --queries (queries.jsonl, or one a line); None: read stdin."""
    if args.query:
        return args.query
    if args.queries is None:
        return None
    from hnm.data import read_queries, text_lines
    if args.queries.suffix in (".jsonl", ".gz"):
        return list(read_queries(args.queries).values())
    if not args.queries.is_file():
        raise FileNotFoundError(f"{args.queries}: no such file")
    return [line.strip() for _, line in text_lines(args.queries) if line.strip()]


def _print_hits(hits, fmt: str) -> None:
    import json
    if fmt == "jsonl":
        for h in hits:
            print(json.dumps(h.as_dict(), ensure_ascii=False))
    else:
        if hits:
            print(hits[0].query)
        for h in hits:
            print(f"{h.rank:3d}  {h.score:8.4f}  {h.doc_id}  {h.title}\n       {h.snippet}")
    sys.stdout.flush()


def _cmd_search(args) -> int:
    from hnm.searcher import Searcher, read_search_corpus
    cfg = _config(EvalConfig, args, top_k=args.candidates)
    queries = _search_queries(args)
    searcher = Searcher(read_search_corpus(args.data), cfg.retrieval(), args.reranker, quiet=args.quiet,
                        batch_size=cfg.batch_size, precision=cfg.precision, alpha=cfg.alpha)
    if searcher.model is not None and searcher.alpha_note.startswith("not tuned"):
        print(f"note: {args.reranker}: {searcher.alpha_note}", file=sys.stderr)
    if queries is not None:
        for hits in searcher.search(queries, args.top_k):
            _print_hits(hits, args.format)
        return 0
    interactive = sys.stdin.isatty()
    while True:  # one query a line: a person typing, or a pipe
        if interactive:
            print("query> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        if line.strip():
            _print_hits(searcher.search([line.strip()], args.top_k)[0], args.format)


def _cmd_fit(args) -> int:
    from dataclasses import replace
    from hnm.fit import fit
    mine = _config(MineConfig, args, prefixed=("margin", "seed", "fusion"), prefix="mine-")
    train = _config(TrainConfig, args, prefixed=("margin", "seed"), prefix="train-")
    evaluation = _config(EvalConfig, args, prefixed=("fusion",), prefix="hybrid-", models=mine.models,
                         batch_size=EvalConfig.batch_size, seed=EvalConfig.seed)
    stage = replace(evaluation.retrieval(), top_k=args.top_k)  # one set of encoders, and one precision, throughout
    embed = _config(EmbedConfig, args, prefixed=("batch_size", "streams"), prefix="embed-", precision=stage.precision)
    cfg = _config(FitConfig, args, mine=mine, train=train, stage=stage, embed=embed)
    _output(args, args.output, "folder")
    report = fit(args.data, args.output, cfg, quiet=args.quiet)
    if "stopped" in report:
        return 0
    from hnm.fit import report_markdown
    print(report_markdown(report), end="")
    print(f"report: {args.output / 'report.md'}; re-ranker: {report['checkpoint']}")
    return 0


def _cmd_experiment(args) -> int:
    from dataclasses import replace
    from hnm.experiment import choose_arms, run_experiment
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
    _output(args, out, "folder")
    results = run_experiment(args.data, out, cfg, quiet=args.quiet, prepare=args.prepare)
    if args.prepare:
        print(f"first stages and every arm's mined rows in {out}; the same command without --prepare trains")
        return 0
    print(report(results))
    print(f"report, results.json and chart.svg in {out}")
    return 0


# ---------------------------------------------------------------------------------------------------- the parser


def _verb(sub, name: str, func, help: str, description: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=description)
    p.set_defaults(func=func)
    return p


def _verb_weights(sub) -> None:
    p = _verb(sub, "weights", _cmd_weights, "list, fetch or verify the models of weights.lock",
              "List the models of weights.lock, fetch them (cache, hub, then mirror; every file checked by sha256) "
              "or re-hash the cached files.")
    p.add_argument("action", choices=("list", "fetch", "verify"), help="what to do")
    p.add_argument("names", nargs="*", help="model names from weights.lock (fetch and verify)")
    _flag(p, "quiet")


def _verb_embed(sub) -> None:
    p = _verb(sub, "embed", _cmd_embed, "embed a JSON-lines file of texts with one model",
              "Embed each line's text ({'_id', 'text'[, 'title']}) and save an (N, D) float32 .npy in input order, "
              "with the row ids in a .ids.txt beside it.")
    _flag(p, "model", required=True)
    p.add_argument("--input", type=Path, required=True, help="JSON lines with '_id' and 'text' (a BEIR corpus works)")
    _flag(p, "output", required=True, help="where to write the vectors (.npy)")
    p.add_argument("--kind", choices=("document", "query"), default="document",
                   help="which prefix of the model to use; documents also get their title prepended")
    _fields(p, EmbedConfig)
    _flag(p, "device")
    _flag(p, "quiet")


def _verb_demo(sub) -> None:
    p = _verb(sub, "demo", _cmd_demo, "embed the bundled demo sentences and print their cosine similarities",
              "Embed a few bundled sentences and print their similarity table.")
    _flag(p, "model", default="all-MiniLM-L6-v2")
    _flag(p, "quiet")


def _verb_bm25(sub) -> None:
    p = _verb(sub, "bm25", _cmd_bm25, "BM25 retrieval over a BEIR folder: metrics and a TREC run",
              "Index a BEIR folder's corpus with BM25 (lower-case, Lucene's stop words, Porter stems), retrieve the "
              "top k documents for each query of a split, print the metrics against its judgments and write a TREC "
              "run file.")
    _flag(p, "data", required=True)
    _flag(p, "split", default="test")
    _flag(p, "strict")
    _fields(p, BM25Config)
    _fields(p, FirstStageConfig, "top_k")
    _flag(p, "output", help="TREC run file to write (default bm25.<data folder name>.<split>.trec here)")
    _flag(p, "quiet")


def _verb_mine(sub) -> None:
    p = _verb(sub, "mine", _cmd_mine, "mine hard negatives for judged queries (default: bundled Cranfield)",
              "Mine hard negatives with an ensemble of encoders and k-means clusters (the paper), or a baseline "
              "strategy through the same code path. Writes one JSON line per query, a review file of likely false "
              "negatives, statistics and an SVG of the score histograms. A killed run resumes when rerun.")
    _flag(p, "data", help="a BEIR-layout folder (default: the bundled Cranfield collection)")
    _flag(p, "split", help="the qrels split to mine (default: train_80 for the bundled data, else train)")
    _flag(p, "strict")
    _flag(p, "output", default=Path("mined.jsonl"), help="the rows file")
    p.add_argument("--format", choices=("jsonl", "triplets", "ntuple"), default="jsonl",
                   help="also export the flat triplet or n-tuple layout beside the rows file")
    _fields(p, MineConfig)
    _fields(p, EmbedConfig, "batch_size", "precision", "streams")
    _flag(p, "device")
    _flag(p, "quiet")


def _verb_ingest(sub) -> None:
    p = _verb(sub, "ingest", _cmd_ingest, "fetch and clean web pages and files into a de-duplicated, chunked corpus",
              "Fetch URLs and read local .html, .txt and .md files; clean the HTML to text, remove boilerplate lines "
              "repeated across a site, drop exact and near duplicates, cut chunks by the model's tokenizer, and "
              "write a BEIR corpus. Failed sources go to an errors file; a killed run resumes when rerun.")
    p.add_argument("sources", nargs="+", metavar="SOURCES",
                   help="URLs, folders of .html/.txt/.md files, or files listing URLs one a line")
    _flag(p, "output", "-o", required=True, help="the corpus to write (JSON lines)")
    p.add_argument("--errors", type=Path, help="failed sources, JSON lines {source, reason} "
                                               "(default: the output with suffix .errors.jsonl)")
    _fields(p, ChunkConfig)
    _flag(p, "model", default="all-MiniLM-L6-v2",
          help="whose tokenizer counts tokens: a model of weights.lock or a tokenizer.json path")
    _fields(p, FetchConfig)
    _fields(p, IngestConfig)
    _flag(p, "quiet")


def _verb_train(sub) -> None:
    p = _verb(sub, "train", _cmd_train, "train a cross-encoder re-ranker on mined rows (torchrun for several processes)",
              "Fine-tune a cross-encoder on the rows of `hnm mine`: each positive with groups of --negatives "
              "negatives; by default the paper's triplet loss, each mined negative its own triplet (the ablation's "
              "best recipe). Writes OUTPUT/log.jsonl, OUTPUT/last (checkpoint, resumable) and OUTPUT/best (best "
              "held-out MRR@10). Run it under `torchrun --nproc_per_node N -m hnm train ...` for DDP.")
    p.add_argument("--rows", type=Path, required=True, help="mined rows, JSON lines (hnm mine's output)")
    _flag(p, "output", required=True, help="folder for the log and the checkpoints")
    # not --start: torchrun would take that for an abbreviation of its own --start-method
    _flag(p, "model", dest="start", default="all-MiniLM-L6-v2",
          help="start from an encoder of weights.lock (with a new head) or a re-ranker checkpoint folder")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last with the same flags")
    _fields(p, TrainConfig)
    _flag(p, "device")
    _flag(p, "quiet")


STAGE = ("first_stage", "models", "fusion", "bm25_weight", "embed_precision")  # one first stage, in every verb


def _verb_rerank(sub) -> None:
    p = _verb(sub, "rerank", _cmd_rerank, "re-rank a TREC run file with a trained cross-encoder",
              "Score the top k documents (or pages) of each query of a TREC run with a re-ranker checkpoint, "
              "interpolate with the run's scores by the alpha the checkpoint was tuned with for the first stage "
              "named by the first-stage flags, and write them, re-ordered, as a new TREC run. On a chunked corpus "
              "a page scores as its best chunk.")
    _flag(p, "data", required=True, help="BEIR folder with the corpus and queries of the run")
    p.add_argument("--run", type=Path, required=True, help="TREC run file to re-rank")
    _flag(p, "reranker", required=True)
    _flag(p, "output", required=True, help="TREC run file to write")
    _flag(p, "split", help="also print the metrics of both runs against qrels/<split>.tsv")
    _fields(p, EvalConfig, "top_k", "batch_size", "precision", "alpha", *STAGE)
    _flag(p, "device")
    _flag(p, "quiet")


def _verb_evaluate(sub) -> None:
    p = _verb(sub, "evaluate", _cmd_evaluate, "first stage, optional re-ranking, metrics and paired tests",
              "Retrieve the top k of each query with BM25, a dense model, the ensemble or the hybrid, re-rank them "
              "with each --reranker, print MRR@10, P@1, P@10, nDCG@10 and R@100 per page, compare every two "
              "systems (paired bootstrap and randomisation test on nDCG@10 and MRR@10), and write the TREC runs "
              "and evaluate.json.")
    _flag(p, "data", required=True)
    _flag(p, "split", default="test")
    _flag(p, "strict")
    _flag(p, "reranker", nargs="*", default=[], help="re-ranker checkpoint folders")
    _fields(p, EvalConfig)
    p.add_argument("--output-dir", dest="output_dir", type=Path, default=Path("."),
                   help="where the TREC runs and evaluate.json go (default here)")
    _flag(p, "device")
    _flag(p, "quiet")


def _verb_tune(sub) -> None:
    p = _verb(sub, "tune", _cmd_tune, "choose a re-ranker's interpolation weight alpha on its tuning queries",
              "Retrieve the first stage's top k for the tuning queries (held out of training: "
              "OUTPUT/tuning_queries.json of hnm train), re-rank them, pick the alpha of alpha x z(re-ranker) + "
              "(1 - alpha) x z(first stage) with the best nDCG@10 (steps of 0.05), and store it in the checkpoint's "
              "config.json for this first stage and its settings, where rerank, evaluate and search read it.")
    _flag(p, "data", required=True, help="the BEIR folder the re-ranker was trained on")
    _flag(p, "split", default="train", help="judgments of the tuning queries")
    _flag(p, "reranker", required=True)
    p.add_argument("--queries", type=Path, help="JSON list of tuning query ids (default: tuning_queries.json "
                                                "beside the checkpoint)")
    _fields(p, EvalConfig, "top_k", "batch_size", "precision", *STAGE)
    _flag(p, "device")
    _flag(p, "quiet")


def _verb_search(sub) -> None:
    p = _verb(sub, "search", _cmd_search, "search a corpus: queries in, pages out, optionally re-ranked",
              "Retrieve each query's best pages with the first stage, re-rank the top --candidates with --reranker "
              "(interpolated by the alpha it was tuned with for this first stage), and print rank, score, page id, "
              "title and a snippet (--format text) or one JSON object per hit (--format jsonl: query, rank, doc_id, "
              "score, title, snippet, chunk_id on a chunked corpus). Queries come from the command line, from "
              "--queries FILE, or one a line from standard input. The index is built on the first call and reused: "
              "BM25's under $HNM_HOME/bm25, the document vectors in the embedding cache.")
    _flag(p, "data", required=True, help="a folder with corpus.jsonl (hnm ingest writes one)")
    p.add_argument("query", nargs="*", help="queries to answer (none: --queries, or standard input)")
    p.add_argument("--queries", type=Path, help="a queries.jsonl, or a text file of one query a line")
    _flag(p, "reranker", help="a re-ranker: hnm fit's OUT (the checkpoint it chose), or a checkpoint folder (hnm "
                              "train's best)")
    p.add_argument("--top-k", dest="top_k", type=_number(int, {"ge": 1}), default=10,
                   help="pages shown per query (default 10)")
    p.add_argument("--candidates", type=_number(int, {"ge": 1}), default=20,
                   help="first-stage pages re-ranked per query (default 20, as fit tunes alpha)")
    p.add_argument("--format", choices=("text", "jsonl"), default="text", help="how hits are printed (default text)")
    _fields(p, EvalConfig, "batch_size", "precision", "alpha", *STAGE)
    _flag(p, "device")
    _flag(p, "quiet")


def _verb_fit(sub) -> None:
    p = _verb(sub, "fit", _cmd_fit, "the default recipe on one folder: split, mine, train, tune, test, report",
              "Split the judged queries (test: qrels/<test-split>.tsv, else a seeded share), mine hard negatives "
              "for the training queries, train the re-ranker, tune alpha for the first stage on the held-out "
              "tuning queries, evaluate on the test queries against the first stage alone with paired tests, and "
              "write OUTPUT/report.md. Every stage is kept in OUTPUT; a rerun resumes. Mining and training take "
              "every flag of hnm mine and hnm train; where both have one of a name it is --mine-NAME and "
              "--train-NAME. --models names the encoders of mining and of the first stage.")
    _flag(p, "data", required=True, help="a folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    _flag(p, "output", required=True, help="the working and report folder")
    _fields(p, FitConfig)
    _fields(p, MineConfig, skip=("margin", "seed", "fusion"))
    _fields(p, MineConfig, "margin", "seed", "fusion", prefix="mine-")
    _fields(p, TrainConfig, skip=("margin", "seed"))
    _fields(p, TrainConfig, "margin", "seed", prefix="train-")
    _fields(p, EvalConfig, "first_stage", "bm25_weight", "embed_precision")
    _fields(p, EvalConfig, "fusion", prefix="hybrid-")
    p.add_argument("--top-k", dest="top_k", type=_number(int, {"ge": 1}), default=20,
                   help="first-stage pages re-ranked per query, in tuning and in the test (default 20)")
    _fields(p, EmbedConfig, "batch_size", "streams", prefix="embed-")
    _flag(p, "device")
    _flag(p, "quiet")


def _verb_experiment(sub) -> None:
    p = _verb(sub, "experiment", _cmd_experiment,
              "the paper's comparison: one re-ranker trained on each strategy's negatives",
              "Mine with each arm's strategy, train the same re-ranker on each, re-rank the same first-stage top k "
              "of the test queries, and report metrics with bootstrap intervals and paired tests, the long-document "
              "comparison and stage timings. Every stage is cached under --out; a rerun resumes.")
    _flag(p, "data", required=True, help="a BEIR-layout folder")
    p.add_argument("--out", type=Path, help="the working and report folder (default experiments/NAME-BUDGET)")
    p.add_argument("--budget", choices=tuple(BUDGETS),
                   help="small: a smoke run (default); full: the README's tables on a 2-core CPU (hours); gpu: three "
                        "epochs of 15 negatives at 256 tokens, for one GPU")
    p.add_argument("--config", type=Path, help="a JSON file of arms and budget over the defaults")
    _fields(p, ExperimentConfig, unset=True)  # a flag given overrides --config's file, which overrides the defaults
    p.add_argument("--clustering-arms", dest="clustering_arms", action="store_true",
                   help="add the arms of the clustering question after the others: ensemble+ with agglomerative, "
                        "gmm and no clustering, every seed")
    p.add_argument("--arms", help="only these arms, comma-separated names in the order of the work (e.g. "
                                   "'ensemble+,random'); the first stage alone is always reported")
    p.add_argument("--prepare", action="store_true",
                   help="run only what needs the ensemble's encoders (the first stages, every arm's mining), then stop: "
                        "a copy of --out trains where only the start model is, e.g. a GPU machine")
    _flag(p, "device")
    _flag(p, "quiet")


VERBS = (_verb_weights, _verb_embed, _verb_demo, _verb_bm25, _verb_mine, _verb_ingest, _verb_train, _verb_fit,
         _verb_search, _verb_rerank,
         _verb_evaluate, _verb_tune, _verb_experiment)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m hnm",
                     description="Ensemble hard-negative mining and cross-encoder re-ranking, from scratch.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for add in VERBS:
        add(sub)
    return parser


def _writer() -> bool:
    """Whether this process writes the outputs: always, except on the ranks past 0 under torchrun."""
    from hnm.distributed import current
    return current().main


def _output(args, path: Path, kind: str = "file", lock: bool = True) -> None:
    """Before any work: check that the output `path` (a "file" or a "folder") can be written and, for the long
    jobs, lock it until the verb ends, so that a second process on it refuses at once (data.one_writer)."""
    from hnm.data import check_output, one_writer
    if _writer():
        check_output(path, kind)
        if lock:
            args.held.enter_context(one_writer(path, kind))


def _os_error(e: OSError) -> str:
    """'FILE: cause' of an operating-system error ('out.npy: No space left on device')."""
    if e.filename is None:
        return str(e)
    both = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else str(e.filename)
    return f"{both}: {e.strerror or e}"


def _run(args) -> int:
    """The verb, in the processes torchrun started (one without it) on --device; only rank 0 prints and writes."""
    distributed = None
    args.held = contextlib.ExitStack()  # the outputs' locks, released when the verb ends
    try:
        if getattr(args, "device", None) is not None:
            from hnm import distributed
            try:
                procs = distributed.Processes.start(args.device)
            except ValueError as e:
                raise HnmError(str(e)) from None
            if not procs.main:
                sys.stdout = open(os.devnull, "w")
        with args.held:
            return args.func(args) or 0
    except HnmError as e:
        print(f"hnm {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the system refused (see the module docstring): a missing file, a full disk, ...
        print(f"hnm {args.verb}: error: {_os_error(e)}", file=sys.stderr)
        return 2
    finally:
        if distributed is not None:
            distributed.stop()


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a bad flag, already printed
        return e.code
    if "TORCHELASTIC_RUN_ID" in os.environ:  # under torchrun: a rank's traceback goes into torchrun's failure report
        from torch.distributed.elastic.multiprocessing.errors import record
        return record(_run)(args)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
