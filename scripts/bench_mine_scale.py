"""Mining at scale: millions of synthetic document vectors through hnm's mining job, in memory or memory-mapped.

The documents are unit vectors drawn around 5,000 random topic centres (with --members 2, a 384- and a 768-dimension
"model" that share each document's topic, 1,152 dimensions together); each query is a noisy copy of one document, its
only positive. The job runs with the default ensemble settings (k = round(sqrt(N)) spherical k-means clusters fitted
on a seeded 100,000-document sample, then every document assigned; 2 probed clusters, window 100, the 95% ceiling;
4 negatives, none random) on the given vectors (no encoder). --path chooses where the vectors live:

- memory    float32 arrays in memory, the members' and (with two members) the ensemble's: the path before matrix files
- float32, float16, bfloat16   matrix files (hnm/vectorfile.py) written block by block, memory-mapped; with two
            members the ensemble's file is made from the members' block by block (ensemble.ensemble_file)

Reported per run: wall time of each phase (inputs; k-means fit; sample, assignment and grouping of every document;
mining per 1,000 queries), the peak resident memory (ru_maxrss, which counts the mapped file pages the process
touched) and, sampled every 0.2 s, the peaks of its anonymous part and its file-backed part (the mapped pages, which
the kernel can drop and re-read, shared by every process that maps the file). Each run is added to
scripts/results/bench_mine_scale.json under its label (PATH-DOCS-QUERIES-DIMS) and the whole table printed.

    python scripts/bench_mine_scale.py --docs 10000000 --queries 100000 --path float16 --workdir /big/disk
    python scripts/bench_mine_scale.py --compare A.jsonl B.jsonl   # how two mined files differ (half vs float32)

--keep DIR keeps the mined rows (DIR/LABEL.jsonl), to compare paths: with PYTHONPATH at an older checkout and
--path memory, the script measures that checkout's code on the same inputs.
"""

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "scripts" / "results" / "bench_mine_scale.json"
TOPICS = 5_000
BLOCK = 100_000
MEMBER_DIMS = {1: (384,), 2: (384, 768)}


class MemoryPeaks:
    """Peaks of this process's resident memory, anonymous and file-backed, sampled every 0.2 s on a thread."""

    def __init__(self):
        self.peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> dict:
        with open("/proc/self/status") as f:
            return {k: int(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in f) if k in self.peak}

    def _run(self):
        while not self._stop.wait(0.2):
            for k, v in self.now().items():
                self.peak[k] = max(self.peak[k], v)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {k: round(v) for k, v in self.peak.items()}


class SyntheticCorpus(Mapping):
    """{"d0": {"title": "", "text": "d0"}, ...} made on demand, so the corpus costs the job's own lists only."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __iter__(self):
        return (f"d{i}" for i in range(self.n))

    def __getitem__(self, key):
        return {"title": "", "text": key}


def member_blocks(n_docs: int, dim: int, member: int, seed: int):
    """Member `member`'s unit document vectors, (B, dim) float32 blocks in row order. Block b's topics come from
    the generator (seed, b), its noise from (seed, b, member + 1): every member sees the same topics, and each
    member is made on its own, a block at a time."""
    centres = np.random.default_rng([seed, 10 ** 6, member]).standard_normal((TOPICS, dim), dtype=np.float32)
    for b, start in enumerate(range(0, n_docs, BLOCK)):
        size = min(BLOCK, n_docs - start)
        topics = np.random.default_rng([seed, b]).integers(0, TOPICS, size)
        noise = np.random.default_rng([seed, b, member + 1]).standard_normal((size, dim), dtype=np.float32)
        block = centres[topics] + 0.6 * noise
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        yield block


def queries_of(blocks, source: np.ndarray, dim: int, rng: np.random.Generator):
    """Pass the blocks through, keeping the rows `source` names; returns a generator and a function giving the
    (Q, dim) unit queries, noisy copies of those rows, once the blocks are consumed."""
    picked = np.empty((len(source), dim), dtype=np.float32)
    order = np.argsort(source)

    def passing():
        start = 0
        for block in blocks:
            lo, hi = np.searchsorted(source[order], [start, start + len(block)])
            picked[order[lo:hi]] = block[source[order[lo:hi]] - start]
            start += len(block)
            yield block

    def queries():
        q = picked + 0.5 * rng.standard_normal(picked.shape, dtype=np.float32) / np.sqrt(dim)
        return q / np.linalg.norm(q, axis=1, keepdims=True)
    return passing(), queries


def make_inputs(args, work: Path):
    """-> (per member: documents as an array or a VectorFile, per member: (Q, D_m) queries, (Q,) source rows)."""
    source = np.random.default_rng([args.seed, 1]).choice(args.docs, size=args.queries, replace=False)
    docs, queries = [], []
    for m, dim in enumerate(MEMBER_DIMS[args.members]):
        blocks, make_queries = queries_of(member_blocks(args.docs, dim, m, args.seed), source, dim,
                                          np.random.default_rng([args.seed, 2, m]))
        if args.path == "memory":
            x = np.empty((args.docs, dim), dtype=np.float32)
            for s, block in zip(range(0, args.docs, BLOCK), blocks):
                x[s:s + len(block)] = block
            docs.append(x)
        else:
            from hnm.vectorfile import write_vectors
            docs.append(write_vectors(work / f"member{m}.{args.path}.npy", blocks, args.docs, dim, args.path))
        queries.append(make_queries())
    return docs, queries, source


def timed_clusters(times: dict) -> None:
    """Time k-means' fit and the whole ClusterView.fit (sample, fit, assignment of every document, grouping)."""
    import hnm.negatives as neg
    fit_kmeans, fit_view = neg.kmeans, neg.ClusterView.fit.__func__

    def kmeans(*a, **k):
        t = time.perf_counter()
        result = fit_kmeans(*a, **k)
        times["kmeans_fit_s"] = round(time.perf_counter() - t, 1)
        return result

    def fit(cls, docs, cfg):
        t = time.perf_counter()
        view = fit_view(cls, docs, cfg)
        times["clusters_s"] = time.perf_counter() - t
        return view
    neg.kmeans, neg.ClusterView.fit = kmeans, classmethod(fit)


def bench(args) -> dict:
    from hnm.ensemble import Ensemble, Member
    from hnm.miner import run
    from hnm.negatives import MineConfig
    dims = sum(MEMBER_DIMS[args.members])
    label = f"{args.path}-{args.docs}-{args.queries}-{dims}"
    work = Path(args.workdir) / label
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ["HNM_HOME"] = str(work / "home")  # where ensemble_file writes the ensemble's vectors
    peaks = MemoryPeaks()
    t0 = time.perf_counter()
    docs, queries, source = make_inputs(args, work)
    members = [Member(f"synthetic{m}") for m in range(args.members)]
    ensemble_docs = None
    if args.path != "memory":
        from hnm.ensemble import ensemble_file
        ensemble_docs = ensemble_file(docs, [1.0] * args.members, args.path)
    corpus = SyntheticCorpus(args.docs)
    qrels = {f"q{i}": {f"d{d}": 1} for i, d in enumerate(source.tolist())}
    query_texts = {f"q{i}": f"query {i}" for i in range(args.queries)}
    t_inputs = time.perf_counter() - t0
    base = peaks.now()
    times = {}
    timed_clusters(times)
    cfg = MineConfig(models=",".join(m.name for m in members), num_negatives=4, random_share=0.0)
    t1 = time.perf_counter()
    extra = {} if ensemble_docs is None else {"docs": ensemble_docs}
    ensemble = Ensemble(members, docs, queries, **extra)  # the memory path makes the ensemble's vectors here
    stats = run(corpus, query_texts, qrels, cfg, work / "mined.jsonl", ensemble=ensemble, quiet=args.quiet)
    t_total = time.perf_counter() - t1
    peak = peaks.stop()
    digest = hashlib.sha256((work / "mined.jsonl").read_bytes()).hexdigest()
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(work / "mined.jsonl", Path(args.keep) / f"{label}.jsonl")
    shutil.rmtree(work, ignore_errors=True)
    mining = t_total - times["clusters_s"]
    return {"label": label, "path": args.path, "docs": args.docs, "queries": args.queries, "dims": dims,
            "members": args.members, "code": args.code, "seconds_inputs": round(t_inputs, 1),
            "kmeans_fit_s": times["kmeans_fit_s"],
            "assign_s": round(times["clusters_s"] - times["kmeans_fit_s"], 1),
            "mining_s": round(mining, 1), "mining_s_per_1000_queries": round(1000 * mining / args.queries, 2),
            "rss_with_inputs_mb": round(base["VmRSS"]), "peak_rss_mb": round(peak_rss_mb()),
            "peak_anon_mb": peak["RssAnon"], "peak_file_mb": peak["RssFile"],
            "mined_sha256": digest, "queries_with_too_few_negatives": stats["queries_with_too_few_negatives"],
            "flagged": stats["likely_false_negatives_flagged"], "clusters": stats["clusters"],
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def compare(a: Path, b: Path) -> dict:
    """How mined file b differs from a (same queries, in the same order): negatives and their scores; whether the
    files are the same bytes, and, where one side writes fields the other's code did not have (an older checkout's
    rows lack positive_grades), whether the rows are the same bytes without those fields."""
    ra = [json.loads(line) for line in a.read_text().splitlines()]
    rb = [json.loads(line) for line in b.read_text().splitlines()]
    only = sorted(set().union(*rb) ^ set().union(*ra))
    common = [json.dumps({k: v for k, v in x.items() if k not in only}) for x in ra] == \
        [json.dumps({k: v for k, v in y.items() if k not in only}) for y in rb]
    same, overlap, diffs, pos_diffs = 0, [], [], []
    for x, y in zip(ra, rb):
        assert x["query_id"] == y["query_id"]
        same += x["negative_ids"] == y["negative_ids"]
        sa, sb = set(x["negative_ids"]), set(y["negative_ids"])
        overlap.append(len(sa & sb) / max(len(sa | sb), 1))
        sx = dict(zip(x["negative_ids"], x["negative_scores"]))
        diffs += [abs(sx[d] - s) for d, s in zip(y["negative_ids"], y["negative_scores"]) if d in sx]
        pos_diffs += [abs(p - q) for p, q in zip(x["positive_scores"], y["positive_scores"])]
    return {"a": a.name, "b": b.name, "queries": len(ra), "identical_bytes": a.read_bytes() == b.read_bytes(),
            "fields_on_one_side": only, "identical_rows_without_those_fields": common,
            "identical_negative_lists": same / len(ra),
            "mean_jaccard_of_negatives": float(np.mean(overlap)),
            "negative_score_abs_diff_mean": float(np.mean(diffs)), "negative_score_abs_diff_max": float(np.max(diffs)),
            "positive_score_abs_diff_mean": float(np.mean(pos_diffs)),
            "positive_score_abs_diff_max": float(np.max(pos_diffs))}


def table(runs: dict) -> str:
    head = (f"{'run':34s} {'docs':>10s} {'dims':>5s} {'peak RSS':>9s} {'anon':>7s} {'file':>7s} {'fit s':>6s} "
            f"{'assign s':>8s} {'s/1000 q':>8s}")
    lines = [head]
    for r in sorted(runs.values(), key=lambda r: (r["dims"], r["docs"], r["path"])):
        lines.append(f"{r['label'] + ' (' + r['code'] + ')':34s} {r['docs']:10,d} {r['dims']:5d} "
                     f"{r['peak_rss_mb'] / 1024:7.2f}Gi {r['peak_anon_mb'] / 1024:5.2f}Gi "
                     f"{r['peak_file_mb'] / 1024:5.2f}Gi "
                     f"{r['kmeans_fit_s']:6.1f} {r['assign_s']:8.1f} {r['mining_s_per_1000_queries']:8.1f}")
    return "\n".join(lines)


def load() -> dict:
    """The results file; one in the earlier single-run layout is kept under "earlier"."""
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    return old if "runs" in old else {"runs": {}, "comparisons": {}, **({"earlier": old} if old else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=100_000)
    ap.add_argument("--members", type=int, choices=(1, 2), default=1, help="1: 384 dimensions; 2: 384 + 768")
    ap.add_argument("--path", choices=("memory", "float32", "float16", "bfloat16"), default="float16")
    ap.add_argument("--workdir", default="/tmp", help="where the vector files go while the run lasts")
    ap.add_argument("--keep", help="copy the mined rows to KEEP/LABEL.jsonl")
    ap.add_argument("--code", default="this", help="a name for the code measured, e.g. 'before' for an older checkout")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="only compare two mined files")
    args = ap.parse_args()
    runs = load()
    if args.compare:
        result = compare(*args.compare)
        runs["comparisons"][f"{args.compare[0].name} vs {args.compare[1].name}"] = result
    else:
        result = bench(args)
        runs = load()  # other runs may have landed meanwhile
        runs["runs"][f"{result['label']}-{result['code']}"] = result
    print(json.dumps(result, indent=1))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_name(OUT.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(runs, indent=1))
    os.replace(tmp, OUT)
    print(table(runs["runs"]))


if __name__ == "__main__":
    main()
