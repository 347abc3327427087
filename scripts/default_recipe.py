"""The recipe `hnm train` defaults to, end to end, on a BEIR collection's test split, with several seeds.

    python scripts/default_recipe.py --data ../shared/data/scifact --work /work/cache/default-recipe-scifact

What a user runs, in the package's own functions: mine the training queries with the default ensemble, 15 negatives
a query of which a quarter random (the mining the ablation measured the recipe on, scripts/results/recipe.md: the
experiment's arm (f), ensemble+; `--arm random` mines another of the experiment's arms the same way); train
one re-ranker per seed with TrainConfig's defaults (the paper's triplet, each mined negative its own example, one
epoch, 128 tokens; a tenth of the queries held out); for each first stage (BM25, the hybrid), choose alpha on those
held-out queries (as `hnm tune` does, on the first stage's top k); then retrieve the test queries' top k and re-rank
it. The `full` experiment mines 7 negatives a query for its arms; this is the recipe with 15.

Reported per first stage: the first stage alone; the re-ranker alone (alpha 1) and interpolated with the tuned alpha,
each as mean, sample standard deviation and per-seed values of nDCG@10 and MRR@10; p-values of the paired
randomisation test, on each query's metric averaged over the seeds, against the first stage alone; and the re-ranker
alone cut to the first stage's top 10, 20 and 50 below k (its scores of the documents there), against the first
stage alone: "does the pure re-ranker beat BM25 on BM25's top k". With --versus (another arm's --work folder), each
system's p against the same system of that arm, over the seeds it has. Nothing is chosen on the test split.

Every stage is cached under --work (mined rows, each seed's model with resumable checkpoints, first-stage runs,
re-ranked runs), so a killed run resumes; the table and JSON (scripts/results/default_recipe_<data>.{md,json}, with
_<arm> before the suffix for an arm other than ensemble+) are rewritten after each seed.
"""

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from hnm.data import atomic_write, load_beir
from hnm.embed import EmbedConfig
from hnm.experiment import ARMS, arm_mine_config, machine_line
from hnm.firststage import FirstStageConfig, retrieve
from hnm.metrics import per_query, randomisation_test, rank_documents, read_trec_run, write_trec_run
from hnm.miner import run as mine
from hnm.negatives import MineConfig
from hnm.reranker import CrossEncoder
from hnm.train import TrainConfig, kept_checkpoint, train
from hnm.twostage import choose_alpha, interpolate, rerank

from ablate_train import logged_seconds  # scripts/ is on the path of a script run from it

HERE = Path(__file__).resolve().parent
NEGATIVES = 15  # a query: the ablation's mining, on which the recipe was chosen
MINED_ARMS = {a.name: a for a in ARMS if a.mine is not None and not a.passages}
METRICS = ("ndcg@10", "mrr@10")
DEPTHS = (10, 20, 50)


def cached_run(path: Path, make) -> dict:
    """A TREC run read from `path`, made by make() and written there first when it is missing."""
    if not path.exists():
        write_trec_run(path, make(), tag=path.stem)
    return read_trec_run(path)


def per_query_values(run: dict, qrels: dict) -> dict:
    return per_query(run, qrels, ks=(10,), metrics=("ndcg", "mrr"))


def cut(run: dict, first: dict, depth: int) -> dict:
    """`run`'s scores of the documents in the first stage's top `depth` only."""
    tops = {q: {d for d, _ in rank_documents(scores, depth)} for q, scores in first.items()}
    return {q: {d: x for d, x in scores.items() if d in tops.get(q, ())} for q, scores in run.items()}


def arm_systems(work: Path, kind: str, first: dict, train_qrels: dict, top_k: int, split: str) -> tuple:
    """An arm's systems on one first stage, from the runs cached in its --work folder: name -> {seed: run} for the
    re-ranker alone, interpolated with the alpha chosen on that seed's tuning queries, and alone cut to the first
    stage's top d; and {seed: alpha}."""
    systems, alphas = {"pure": {}, "interpolated (tuned alpha)": {}}, {}
    for folder in sorted(work.glob("seed-*"), key=lambda f: int(f.name.split("-")[1])):
        test = folder / f"{split}-{kind}-top{top_k}.trec"
        if not test.exists():
            continue
        seed = int(folder.name.split("-")[1])
        tune_first = read_trec_run(folder / f"tuning-{kind}-first-top{top_k}.trec")
        tuned = read_trec_run(folder / f"tuning-{kind}-top{top_k}.trec")
        alphas[seed], _ = choose_alpha(tuned, tune_first, {q: train_qrels[q] for q in tune_first})
        pure = read_trec_run(test)
        systems["pure"][seed] = pure
        systems["interpolated (tuned alpha)"][seed] = interpolate(pure, first, alphas[seed])
        for d in DEPTHS:
            if d < top_k:
                systems.setdefault(f"pure on the top {d}", {})[seed] = cut(pure, first, d)
    return systems, alphas


def averaged_values(by_seed: dict, qrels: dict, qs: list) -> tuple:
    """{seed: run} -> each metric's value per seed (the mean over queries), and per query (the mean over seeds)."""
    values = {s: per_query_values(r, qrels) for s, r in by_seed.items()}
    per_seed = {m: {str(s): float(np.mean([v[m].get(q, 0.0) for q in qs])) for s, v in values.items()}
                for m in METRICS}
    per_q = {m: np.array([np.mean([v[m].get(q, 0.0) for v in values.values()]) for q in qs]) for m in METRICS}
    return per_seed, per_q


def summarise(alone: dict, systems: dict, qrels: dict, resamples: int, rival: dict = None,
              rival_name: str = "") -> dict:
    """systems: name -> {seed: run}. Mean, sd and per-seed values of each metric, and p against `alone` on each
    query's value averaged over the seeds; with `rival` (another arm's systems), p against its same system too."""
    base = per_query_values(alone, qrels)
    qs = sorted(base["ndcg@10"])
    out = {"alone": {m: float(np.mean([base[m][q] for q in qs])) for m in METRICS}, "systems": {}}
    for name, by_seed in systems.items():
        per_seed, per_q = averaged_values(by_seed, qrels, qs)
        theirs = averaged_values(rival[name], qrels, qs)[1] if rival and rival.get(name) else None
        row = {}
        for m in METRICS:
            seeds = list(per_seed[m].values())
            row[m] = {"mean": float(np.mean(seeds)), "sd": float(np.std(seeds, ddof=1)) if len(seeds) > 1 else 0.0,
                      "per_seed": per_seed[m],
                      "p vs alone": randomisation_test(per_q[m], np.array([base[m][q] for q in qs]), n=resamples,
                                                       seed=0)}
            if theirs is not None:
                row[m][f"p vs {rival_name}"] = randomisation_test(per_q[m], theirs[m], n=resamples, seed=0)
                row[m][f"{rival_name} mean, {len(rival[name])} seed(s)"] = float(theirs[m].mean())
        out["systems"][name] = row
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test")
    p.add_argument("--work", type=Path, help="caches (outside the repository); needed unless --report")
    p.add_argument("--arm", choices=list(MINED_ARMS), default="ensemble+",
                   help="the experiment's arm whose mining to use, with 15 negatives (default ensemble+, the paper's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--first-stages", nargs="+", default=["bm25", "hybrid"])
    p.add_argument("--top-k", type=int, default=20, help="documents re-ranked per query (tuning and test)")
    p.add_argument("--precision", default="bfloat16", help="of training and re-ranking")
    p.add_argument("--embed-precision", default="float32", help="of mining and the dense side of the hybrid")
    p.add_argument("--max-steps", type=int, help="smoke runs only: cut training short")
    p.add_argument("--resamples", type=int, default=10000)
    p.add_argument("--output", type=Path, help="JSON to write (default scripts/results/default_recipe_<data>.json)")
    p.add_argument("--versus", type=Path, help="another arm's --work folder: p of each system against the same "
                   "system of that arm, over the seeds it has finished")
    p.add_argument("--report", action="store_true", help="only write the Markdown table again from the JSON")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    arm = "" if args.arm == "ensemble+" else f"_{args.arm}"
    output = args.output or HERE / "results" / f"default_recipe_{args.data.resolve().name}{arm}.json"
    if args.report:
        write_table(json.loads(output.read_text()), output.with_suffix(".md"))
        return
    if args.work is None:
        p.error("--work is needed to train (only --report goes without it)")
    args.work.mkdir(parents=True, exist_ok=True)
    corpus, queries, train_qrels = load_beir(args.data, args.train_split)
    _, test_queries, test_qrels = load_beir(args.data, args.test_split)
    queries = {**queries, **test_queries}  # each split's load keeps its own queries

    rows = args.work / "rows.jsonl"
    mcfg = arm_mine_config(MINED_ARMS[args.arm], MineConfig.models, NEGATIVES)
    if not rows.exists():
        mine(corpus, queries, train_qrels, mcfg, rows, EmbedConfig(precision=args.embed_precision), quiet=args.quiet)
    tcfg = TrainConfig(seed=0, precision=args.precision, max_steps=args.max_steps, save_every=150)

    def first_stage(kind: str, qids, path: Path) -> dict:
        fcfg = FirstStageConfig(kind=kind, top_k=args.top_k, precision=args.embed_precision)
        return cached_run(path, lambda: retrieve(corpus, {q: queries[q] for q in qids}, fcfg, args.quiet))

    test_first = {k: first_stage(k, test_qrels, args.work / f"{args.test_split}-{k}-top{args.top_k}.trec")
                  for k in args.first_stages}
    rival_name = json.loads((args.versus / "rows.jsonl.stats.json").read_text())["config"]["strategy"] \
        if args.versus else ""
    seeds, timing = {}, {}
    for seed in args.seeds:
        folder = args.work / f"seed-{seed}"
        done = folder / "done.json"
        if not done.exists():
            t0 = time.monotonic()
            summary = train(rows, folder, "all-MiniLM-L6-v2", replace(tcfg, seed=seed),
                            resume=(folder / "last").exists(), quiet=args.quiet)
            record = {"steps": summary["steps"], "pairs_per_s": round(summary["pairs_per_s"], 2),
                      "train_seconds": round(logged_seconds(folder), 1), "machine": machine_line(),
                      "sitting_seconds": round(time.monotonic() - t0, 1)}
            with atomic_write(done) as f:
                json.dump(record, f, indent=1)
        seeds[seed] = json.loads(done.read_text())
        ckpt = kept_checkpoint(folder)
        model = None
        tuning = json.loads((folder / "tuning_queries.json").read_text())
        tuning_qrels = {q: train_qrels[q] for q in tuning if q in train_qrels}
        for kind in args.first_stages:
            def scored(first: dict, name: str) -> dict:
                nonlocal model
                path = folder / f"{name}-top{args.top_k}.trec"
                if not path.exists():
                    model = model or CrossEncoder.from_checkpoint(ckpt)
                    t0 = time.monotonic()
                    run = rerank(model, first, queries, corpus, args.top_k, precision=args.precision,
                                 quiet=args.quiet)
                    took = {"pairs": sum(map(len, run.values())), "seconds": round(time.monotonic() - t0, 1)}
                    with atomic_write(path.with_suffix(".json")) as f:
                        json.dump(took, f)
                    write_trec_run(path, run, tag=name)
                timing[f"seed {seed} {name}"] = json.loads(path.with_suffix(".json").read_text())
                return read_trec_run(path)
            tune_first = first_stage(kind, tuning_qrels, folder / f"tuning-{kind}-first-top{args.top_k}.trec")
            scored(tune_first, f"tuning-{kind}")
            scored(test_first[kind], f"{args.test_split}-{kind}")

        report = {"data": str(args.data.resolve().name), "train_split": args.train_split,
                  "test_split": args.test_split, "top_k": args.top_k, "precision": args.precision,
                  "embed_precision": args.embed_precision, "arm": args.arm, "mine": asdict(mcfg), "train": asdict(tcfg),
                  "seeds": {str(s): v for s, v in seeds.items()}, "alphas": {}, "rerank_timing": timing,
                  "versus": rival_name or None, "first_stages": {}}
        tuned = {}
        for kind in args.first_stages:
            first = test_first[kind]
            systems, tuned[kind] = arm_systems(args.work, kind, first, train_qrels, args.top_k, args.test_split)
            rival = arm_systems(args.versus, kind, first, train_qrels, args.top_k, args.test_split)[0] \
                if args.versus else None
            report["first_stages"][kind] = summarise(first, systems, test_qrels, args.resamples, rival, rival_name)
        # seed by seed, whatever order the seeds finished in, so that a resumed run writes the same file
        for s in sorted({s for by_seed in tuned.values() for s in by_seed}):
            report["alphas"].update({f"seed {s} {kind}": tuned[kind][s] for kind in args.first_stages
                                     if s in tuned[kind]})
        with atomic_write(output) as f:
            json.dump(report, f, indent=1)
        write_table(report, output.with_suffix(".md"))
        print(f"seed {seed} done: {output}", flush=True)


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def drawn(mine: dict) -> str:
    """How a mining's negatives were drawn, in words: the random strategy's are all random, whatever its share."""
    if mine["strategy"] == "random":
        return "all drawn uniformly from the corpus"
    return f"{mine['random_share']:g} of them drawn uniformly from the corpus, the rest the top eligible candidates"


def write_table(r: dict, path: Path) -> None:
    rival = r.get("versus")
    lines = [f"# The default recipe on {r['data']} {r['test_split']}, arm {r['arm']}, {len(r['seeds'])} seed(s)", "",
             f"Mined {r['train_split']} with strategy {r['mine']['strategy']} (the experiment's arm {r['arm']}), "
             f"{r['mine']['num_negatives']} negatives a query, {drawn(r['mine'])}; "
             f"`hnm train`'s defaults ({r['train']['loss']}, "
             f"{r['train']['epochs']} epoch, {r['train']['max_length']} tokens, batch {r['train']['batch_size']}, "
             f"lr {r['train']['lr']:g}), {r['precision']}; alpha tuned per first stage on each model's held-out "
             f"training queries; the first stage's top {r['top_k']} re-ranked. p: paired randomisation test on "
             "per-query values averaged over the seeds, against the first stage alone"
             + (f" and against the same system of arm {rival} (over the seeds it has)" if rival else "") + ". Machine: "
             f"{next(iter(r['seeds'].values()))['machine']}.", ""]
    head = ["nDCG@10 mean ± sd", "per seed", "p vs alone"] + ([f"p vs {rival}"] if rival else [])
    head += [h.replace("nDCG@10", "MRR@10") for h in head]
    lines += ["| first stage | system | " + " | ".join(head) + " |", "| --- " * (len(head) + 2) + "|"]
    dash = ["–"] * (len(head) // 2 - 1)
    for kind, s in r["first_stages"].items():
        a = s["alone"]
        lines.append(f"| {kind} | alone | " + " | ".join([f"{a['ndcg@10']:.4f}", *dash, f"{a['mrr@10']:.4f}", *dash])
                     + " |")
        for name, row in s["systems"].items():
            cells = []
            for m in METRICS:
                v = row[m]
                cells += [f"{v['mean']:.4f} ± {v['sd']:.4f}", ", ".join(f"{x:.4f}" for x in v["per_seed"].values()),
                          _p(v["p vs alone"])]
                if rival:
                    cells.append(_p(v[f"p vs {rival}"]) if f"p vs {rival}" in v else "–")
            lines.append(f"| {kind} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "| seed | steps | training s | pairs/s | alpha per first stage |", "| --- | --- | --- | --- | --- |"]
    for seed, v in r["seeds"].items():
        alphas = ", ".join(f"{k.split()[-1]} {a:g}" for k, a in r["alphas"].items() if k.split()[1] == seed)
        lines.append(f"| {seed} | {v['steps']} | {v['train_seconds']:.0f} | {v['pairs_per_s']:.1f} | {alphas} |")
    lines += ["", "Re-ranking: " + "; ".join(f"{k} {v['pairs']} pairs in {v['seconds']:.0f} s "
                                              f"({v['pairs'] / max(v['seconds'], 1e-9):.0f} pairs/s)"
                                              for k, v in r["rerank_timing"].items()) + "."]
    with atomic_write(path) as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
