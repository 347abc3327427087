"""Mining cost of the authors' 2025 rule (the pca selection, arXiv 2505.18366) against (f)'s k-means and ceiling:
the experiment's two arms' mining (experiment.RULE_ARMS and "ensemble+", the `full` budget's ensemble and 7
negatives a query) on the same ensemble vectors, in one process, alternating, `--repeats` times each.

The embeddings are made once beforehand (through the embedding cache) and handed to both, so the figures are the
mining stage proper: for (f), fitting k-means and searching the query's clusters; for the rule, fitting the PCA,
projecting, the exact top over the whole corpus in its space and the positives' cosines; then for both the
selection, the rows, the review file and the statistics (the rule's include its ceiling count). Also the PCA fit
alone. Writes scripts/results/bench_rule_<data>.json and prints a table.

    python scripts/bench_rule.py --data ../shared/data/scifact --split train
    python scripts/bench_rule.py --data ../shared/data/cranfield --split train_80
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from hnm.data import document_text, load_beir
from hnm.embed import EmbedConfig
from hnm.ensemble import Ensemble, parse_members
from hnm.experiment import ARMS, BUDGETS, RULE_ARMS, arm_mine_config, machine_line
from hnm.miner import positives_of, run
from hnm.pca import fit_pca

OUT = Path(__file__).resolve().parents[1] / "scripts" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a BEIR-layout folder")
    ap.add_argument("--split", default="train", help="the judgments mined (default train)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each arm, alternating (default 3)")
    ap.add_argument("--precision", default="auto", help="of the encoders (default auto, as the experiment)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args()
    budget = BUDGETS["full"]
    corpus, queries, qrels = load_beir(args.data, args.split)
    kept = positives_of(qrels, queries, {d: [i] for i, d in enumerate(corpus)}, 1)[0]
    t0 = time.perf_counter()
    ensemble = Ensemble.embed(parse_members(budget.models), [document_text(corpus[d]) for d in corpus],
                              [queries[q] for q in kept], "mean", EmbedConfig(precision=args.precision),
                              quiet=args.quiet)
    embed_s = time.perf_counter() - t0
    arms = [next(a for a in ARMS if a.name == "ensemble+"), RULE_ARMS[0]]
    seconds = {a.name: [] for a in arms}
    stats = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for arm in arms:
                cfg = arm_mine_config(arm, budget.models, budget.negatives)
                t0 = time.perf_counter()
                stats[arm.name] = run(corpus, queries, qrels, cfg, Path(tmp) / f"{i}.jsonl", quiet=True,
                                      ensemble=ensemble)
                seconds[arm.name].append(round(time.perf_counter() - t0, 3))
    t0 = time.perf_counter()
    pca = fit_pca(ensemble.docs, 0.95)
    fit_s = time.perf_counter() - t0
    out = {"data": str(args.data), "split": args.split, "documents": len(corpus), "queries": len(kept),
           "dimensions": int(ensemble.docs.shape[1]), "embedding_seconds_before": round(embed_s, 1),
           "machine": machine_line(), "repeats": args.repeats, "pca_fit_seconds": round(fit_s, 3),
           "pca_components": int(pca.components.shape[0]),
           "arms": {n: {"seconds": s, "median_seconds": float(np.median(s)), "negatives": stats[n]["negatives"],
                        "queries_with_too_few_negatives": stats[n]["queries_with_too_few_negatives"],
                        **({"pca": stats[n]["pca"]} if "pca" in stats[n] else {})} for n, s in seconds.items()}}
    path = OUT / f"bench_rule_{args.data.name}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{args.data.name} {args.split}: {len(corpus)} documents, {len(kept)} queries, {out['dimensions']} dims; "
          f"PCA to {out['pca_components']} components in {fit_s:.2f} s")
    for n, a in out["arms"].items():
        print(f"{n:10s} mining {a['median_seconds']:8.2f} s (median of {a['seconds']}), {a['negatives']} negatives, "
              f"{a['queries_with_too_few_negatives']} queries short")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
