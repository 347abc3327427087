"""The experiment's results, judged: metrics per system and seed, their mean and spread over the seeds, 95% bootstrap
intervals and paired randomisation tests on each test query's metric averaged over the seeds, the paper's claim,
and the Markdown report that experiment.py writes.

    results = judge(systems, qrels, resamples=2000, top_k=20, split={"within window": ..., "beyond window": ...})
    claim(results["seeds_mean"])   # {"holds": False, "best arm": "random", ...}

Not here: running the arms (experiment.py), the metrics and tests themselves (metrics.py).
"""

from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np

from hnm.config import CLUSTERING_ARMS, RULE_ARMS, STRATEGIES
from hnm.data import Qrels
from hnm.metrics import Run, evaluate, paired_bootstrap, per_query, randomisation_test, rank_documents


class System(NamedTuple):
    """One row of the experiment's tables, as a typed key; its label is made only where a table or results.json is
    written. The first stage alone is System("first-stage"), its candidates in seeded random orders (the floor a pure
    row is read against) System("first-stage", shuffled=True)."""
    arm: str  # an experiment arm's name (config.Arm.name), or "first-stage"
    mode: str = "truncate"  # or "passages": each document scored by its best passage (MaxP)
    pure: bool = False  # the re-ranker alone (alpha 1); False: interpolated with the first stage by the tuned alpha
    shuffled: bool = False

    @property
    def label(self) -> str:
        return (self.arm + (" / MaxP" if self.mode == "passages" else "") + (", pure" if self.pure else "")
                + (", shuffled" if self.shuffled else ""))

    def twin(self) -> Optional["System"]:
        """The k-means system, (f), a clustering arm's or the rule arm's row is tested against: ("ensemble+ gmm",
        pure) -> ("ensemble+", pure)."""
        return self._replace(arm="ensemble+") if self.arm in TWINNED else None

    @classmethod
    def parse(cls, label: str) -> "System":
        """The system of a label, for results.json files written before they recorded their systems."""
        s = {}
        for suffix, field in ((", shuffled", "shuffled"), (", pure", "pure")):
            if label.endswith(suffix):
                label, s[field] = label[:-len(suffix)], True
        if label.endswith(" / MaxP"):
            label, s["mode"] = label[:-len(" / MaxP")], "passages"
        return cls(label, **s)


FIRST, RANDOM = System("first-stage"), System("random")
BASELINES = (FIRST, RANDOM)  # every system is tested against these
FLOOR = System("first-stage", shuffled=True)  # tested against each pure row


# the paper's mining arms, (b) to (f): one per mining strategy, then (f), the ensemble with its safeguards
MINED_ARMS = tuple(reversed(STRATEGIES)) + ("ensemble+",)
RULES = tuple(a.name for a in RULE_ARMS)  # the authors' 2025 rule instead of (f)'s k-means and ceiling: vs (f)
TWINNED = tuple(a.name for a in CLUSTERING_ARMS) + RULES  # (f) with another clustering, or the rule: vs (f)


def systems_of(r: dict) -> Dict[str, System]:
    """{label: System} of a results.json, from its record, or from its labels when it predates the record."""
    if "systems" in r:
        return {label: System(**s) for label, s in r["systems"].items()}
    return {label: System.parse(label) for label in r["seeds_mean"]}


def claim(mean: Dict[str, dict], metric: str = "mrr@10", p_values: Optional[Dict[str, dict]] = None) -> Optional[dict]:
    """The paper's claim on `metric`: ensemble > bm25 > random, and ensemble+ the best of the mining strategies
    (b) to (f) (interpolated systems; the passage and clustering variants of (f) answer other questions and are not
    in the race); None when the configuration lacks one of the claim's arms. With judge()'s p-values, also the
    two-sided p of each ordering the claim makes: ensemble against bm25, bm25 against random, and ensemble+ against
    each other strategy."""
    needed = ("random", "bm25", "ensemble", "ensemble+")
    if not all(n in mean for n in needed):
        return None
    v = {n: mean[n][metric] for n in needed}
    trained = {n: mean[n][metric] for n in MINED_ARMS if n in mean}
    best = max(trained, key=trained.get)
    out = {"metric": metric, "ensemble > bm25": v["ensemble"] > v["bm25"], "bm25 > random": v["bm25"] > v["random"],
           "ensemble+ best": best == "ensemble+", "best arm": best,
           "holds": v["ensemble"] > v["bm25"] > v["random"] and best == "ensemble+"}
    if p_values:
        pairs = [("ensemble", "bm25"), ("bm25", "random")] + [("ensemble+", n) for n in trained if n != "ensemble+"]
        out["p"] = {f"{a} vs {b}": p_values[a][f"{metric} vs {b}"] for a, b in pairs
                    if f"{metric} vs {b}" in p_values.get(a, {})}
    return out


def judge(typed: Dict[System, Dict[int, Run]], qrels: Qrels, resamples: int, top_k: int,
          split: Dict[str, set]) -> dict:
    """Metrics per system and seed, their mean and spread over the seeds; on each query's metric averaged over the
    seeds, 95% bootstrap intervals of MRR@10 and nDCG@10, randomisation p-values against the baselines, and the
    long-document split. Every table is keyed by the systems' labels; "systems" records what each label is."""
    k = top_k
    systems = {s.label: runs for s, runs in typed.items()}
    kind = {s.label: s for s in typed}
    keys = ("mrr@10", "p@1", "p@5", "p@10", "ndcg@10", f"r@{k}")
    table = {n: {s: {m: v for m, v in evaluate(r, qrels, ks=(1, 5, 10, k),
                                               metrics=("mrr", "p", "r", "ndcg")).items() if m in keys}
                 for s, r in by_seed.items()} for n, by_seed in systems.items()}
    mean = {n: {m: float(np.mean([t[s][m] for s in t])) for m in keys} for n, t in table.items()}
    # the sample standard deviation (n - 1): three seeds are a sample of the seeds one could have drawn
    spread = {n: {m: float(np.std([t[s][m] for s in t], ddof=1)) if len(t) > 1 else 0.0 for m in keys}
              for n, t in table.items()}
    values = {}  # system -> metric -> {query: mean over seeds}
    for n, by_seed in systems.items():
        seeds = [per_query(r, qrels, ks=(10,), metrics=("mrr", "ndcg")) for r in by_seed.values()]
        values[n] = {m: {q: float(np.mean([s[m][q] for s in seeds])) for q in seeds[0][m]} for m in ("mrr@10",
                                                                                                   "ndcg@10")}
    intervals, pvalues, long_docs = {}, {}, {}
    for n, v in values.items():
        qs = sorted(v["mrr@10"])
        intervals[n] = {}
        for metric in ("mrr@10", "ndcg@10"):
            a = np.array([v[metric][q] for q in qs])
            ci = paired_bootstrap(a, np.zeros_like(a), n=resamples, seed=0)  # the mean's own interval
            intervals[n][metric] = (ci["low"], ci["high"])
            s = kind[n]
            # the claim's orderings, each pair tested
            rivals = [System(a) for a in MINED_ARMS] if s in [System(a) for a in MINED_ARMS] else []
            for other in (*BASELINES, s.twin(), FLOOR if s.pure else None, *rivals):
                base = other.label if other else None
                if base in values and base != n:
                    c = np.array([values[base][metric][q] for q in qs])
                    pvalues.setdefault(n, {})[f"{metric} vs {base}"] = randomisation_test(a, c, n=resamples,
                                                                                           seed=0)
            for part, members in split.items():
                sub = [v[metric][q] for q in qs if q in members]
                long_docs.setdefault(n, {})[f"{metric} {part}"] = float(np.mean(sub)) if sub else None
    return {"systems": {n: s._asdict() for n, s in kind.items()}, "per_seed": table, "seeds_mean": mean,
            "seeds_std": spread, "intervals": intervals, "p_values": pvalues, "long_documents": long_docs, "split_sizes": {k: len(v) for k, v in split.items()}, "queries": len(qrels)}


def against(alone: Run, reranked: Dict[str, Run], qrels: Qrels, resamples: int,
            depths: Tuple[int, ...] = (10, 20, 50)) -> dict:
    """Re-rankings of one first stage's candidates against that first stage alone: the mean nDCG@10 and MRR@10 of
    each, and each re-ranking's two-sided paired randomisation p-values against the first stage, query by query.
    Also each re-ranking's nDCG@10 when it re-ranks only the first stage's top d (its scores of the documents there;
    d below the depth it re-ranked), with p against the first stage alone: how the pure re-ranker fares with depth."""
    metrics = ("ndcg@10", "mrr@10")
    base = per_query(alone, qrels, ks=(10,), metrics=("mrr", "ndcg"))
    qs = sorted(base["ndcg@10"])
    c = {m: np.array([base[m][q] for q in qs]) for m in metrics}
    tops = {d: {q: {doc for doc, _ in rank_documents(alone[q], d)} for q in alone} for d in depths}
    out = {"alone": {m: float(c[m].mean()) for m in metrics}, "re-ranked": {}}
    for name, run in reranked.items():
        v = per_query(run, qrels, ks=(10,), metrics=("mrr", "ndcg"))
        row = {}
        for m in metrics:
            a = np.array([v[m].get(q, 0.0) for q in qs])
            row[m], row[f"p {m}"] = float(a.mean()), randomisation_test(a, c[m], n=resamples, seed=0)
        row["by depth"] = {}
        for d, top in tops.items():
            cut = {q: {doc: x for doc, x in scores.items() if doc in top.get(q, ())} for q, scores in run.items()}
            at_d = per_query(cut, qrels, ks=(10,), metrics=("ndcg",))["ndcg@10"]
            a = np.array([at_d.get(q, 0.0) for q in qs])
            row["by depth"][str(d)] = {"ndcg@10": float(a.mean()),
                                       "p ndcg@10": randomisation_test(a, c["ndcg@10"], n=resamples, seed=0)}
        out["re-ranked"][name] = row
    return out


def _p(ps: dict, key: str) -> str:
    return "–" if key not in ps else f"{ps[key]:.3f}" if ps[key] >= 0.001 else "< 0.001"


def _p_phrase(p: float) -> str:
    """"p = 0.123", or "p < 0.001"."""
    return f"p = {p:.3f}" if p >= 0.001 else "p < 0.001"


def _pm(mean: dict, sd: dict, key: str, seeds: int) -> str:
    """"0.7758 ± 0.0041" over several seeds, "0.7758" over one."""
    return f"{mean[key]:.4f}" + (f" ± {sd[key]:.4f}" if seeds > 1 else "")


def headline(r: dict) -> str:
    """The table the README quotes: nDCG@10 and MRR@10, mean ± sample standard deviation over the seeds, the 95%
    interval of the per-query mean over seeds, and the p-values against the first stage and the random arm."""
    lines = ["Mean ± sample standard deviation (n - 1) over the seeds; the intervals and p-values are on each test "
             "query's metric averaged over the seeds.", "",
             "| system | seeds | nDCG@10 | 95% CI | MRR@10 | 95% CI | p nDCG vs first stage | p MRR vs first stage "
             "| p MRR vs random |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n, m in r["seeds_mean"].items():
        ci, ps, sd = r["intervals"][n], r["p_values"].get(n, {}), r["seeds_std"][n]
        seeds = len(r["per_seed"][n])
        lines.append(f"| {n} | {seeds} | {_pm(m, sd, 'ndcg@10', seeds)} | "
                     f"{ci['ndcg@10'][0]:.3f}–{ci['ndcg@10'][1]:.3f} | "
                     f"{_pm(m, sd, 'mrr@10', seeds)} | {ci['mrr@10'][0]:.3f}–{ci['mrr@10'][1]:.3f} | "
                     f"{_p(ps, 'ndcg@10 vs first-stage')} | {_p(ps, 'mrr@10 vs first-stage')} | "
                     f"{_p(ps, 'mrr@10 vs random')} |")
    return "\n".join(lines)


def _corpus_note(r: dict) -> str:
    c = r.get("corpus")
    if not c or c["documents"] == c["of"]:
        return ""
    return (f"; corpus cut to {c['documents']:,} of {c['of']:,} documents (every judged document of the chosen "
            f"queries and a seeded sample of the rest)")


def _example(loss: str, negatives: int) -> str:
    """What one training example is (experiment.py's train_config): the triplet takes each mined negative alone."""
    if loss == "triplet":
        return f"1 positive + 1 negative, each of the {negatives} mined negatives its own triplet"
    return f"1 positive + {negatives} negatives"


def _rule_table(r: dict) -> list:
    """The authors' 2025 rule (arXiv 2505.18366) against (f) and random negatives, and what its mining did."""
    systems = systems_of(r)
    rows = [n for n, s in systems.items() if s.arm in RULES and s.twin().label in r["seeds_mean"]]
    if not rows:
        return []
    lines = ["", "The authors' follow-up rule (arXiv 2505.18366: PCA of the concatenated ensemble embeddings, then "
             "d(Q,D) < d(Q,PD) and d(Q,D) < d(PD,D) for every positive) instead of (f)'s k-means and ceiling, "
             "(f)'s recipe otherwise (mean ± sample standard deviation over the seeds; paired randomisation p, a pure row's "
             "against (f)'s pure row and random's interpolated one, as in the first table):", "",
             "| system | seeds | nDCG@10 | p vs (f) | p vs random | MRR@10 | p vs (f) | p vs random |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n in rows:
        m, sd, ps, twin = r["seeds_mean"][n], r["seeds_std"][n], r["p_values"].get(n, {}), systems[n].twin().label
        seeds = len(r["per_seed"][n])
        cells = [f"{_pm(m, sd, k, seeds)} | {_p(ps, f'{k} vs {twin}')} | {_p(ps, f'{k} vs random')}"
                 for k in ("ndcg@10", "mrr@10")]
        lines.append(f"| {n} | {seeds} | " + " | ".join(cells) + " |")
    for n, s in r.get("rule_mining", {}).items():
        share = s["ceiling_would_flag_share"]
        lines += ["", f"Mining of {n}: {s['components']} principal components ({s['variance_kept']:.1%} of the "
                  f"variance); {s['hard_negatives']} hard negatives, of which (f)'s ceiling would have flagged "
                  f"{s['ceiling_would_flag']} as likely false negatives"
                  + (f" ({share:.1%})" if share is not None else "")
                  + f"; {s['queries_with_too_few_negatives']} queries with too few negatives; kept out by "
                  + ", ".join(f"{c}: {k}" for c, k in s["kept_out"].items()) + "."]
    return lines


def report(r: dict) -> str:
    """results.json as Markdown: the settings, the tables, the p-values, the long-document split, the timings."""
    b = r["budget"]
    keys = list(next(iter(r["seeds_mean"].values())))
    lines = [f"# Experiment on {r['data']}", "",
             f"Budget `{b['name']}`: ensemble {b['models']}; re-ranker from {b['start']}, {b['epochs']} "
             f"epoch{'s' if b['epochs'] != 1 else ''} of "
             f"batches of {b['batch_size']} examples ({_example(r['loss'], b['negatives'])}), loss {r['loss']}, "
             f"peak lr {b['lr']}, max length {b['max_length']}, {r.get('precision', 'float32')}; first stage "
             f"{r['first_stage']}, top {b['top_k']} re-ranked; {r['queries']} test queries; seeds "
             f"{', '.join(map(str, b['seeds']))}" + _corpus_note(r) + ".",
             f"Machine: {r['machine']}.", "",
             "Each arm's row interpolates its re-ranker with the first stage (alpha from the model's tuning split); "
             "', pure' rows are the re-ranker alone (alpha 1)"
             + (f"; '{FLOOR.label}' is the first stage's top {b['top_k']} in {len(r['per_seed'][FLOOR.label])} "
                "seeded random orders, the floor the pure rows are tested against" if FLOOR.label in r["per_seed"]
                else "")
             + ".", "", headline(r), "", "Every metric (mean ± sample "
             "standard deviation over the seeds):", "",
             "| system | " + " | ".join(keys) + " |", "| --- | " + " | ".join("---" for _ in keys) + " |"]
    for n, m in r["seeds_mean"].items():
        sd = r["seeds_std"][n]
        cells = [_pm(m, sd, k, len(r["per_seed"][n])) for k in keys]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "Per seed, nDCG@10 / MRR@10:", ""]
    for n, by_seed in r["per_seed"].items():
        lines.append(f"- {n}: " + "; ".join(f"seed {s}: {v['ndcg@10']:.4f} / {v['mrr@10']:.4f}"
                                            for s, v in by_seed.items()))
    if r.get("alphas"):
        lines += ["", "Interpolation weights chosen on each model's tuning split: " +
                  ", ".join(f"{n} {a:g}" for n, a in r["alphas"].items()) + "."]
    lines += ["", "Paired randomisation tests (two-sided, on per-query means over the seeds):", ""]
    for n, ps in r["p_values"].items():
        lines.append(f"- {n}: " + "; ".join(f"{k} p = {v:.4f}" for k, v in ps.items()))
    sizes = r["split_sizes"]
    lines += ["", f"Long documents: test queries whose relevant documents all fit the re-ranker's window "
              f"({sizes['within window']}) and those with one beyond it ({sizes['beyond window']}); "
              "'/ MaxP' rows score each document by its best passage instead of its truncated start.", "",
              "| system | MRR@10 within | MRR@10 beyond | nDCG@10 within | nDCG@10 beyond |",
              "| --- | --- | --- | --- | --- |"]
    for n, ld in r["long_documents"].items():
        cells = [ld[f"{m} {p}"] for m in ("mrr@10", "ndcg@10") for p in ("within window", "beyond window")]
        lines.append(f"| {n} | " + " | ".join("–" if c is None else f"{c:.4f}" for c in cells) + " |")
    rd = r.get("relevant_documents")
    if rd:
        first = next(iter(rd.values()))
        lines += ["", f"The same per document: the mean reciprocal rank of each judged relevant (query, document) pair, "
                  f"{first['pairs within window']} pairs whose document fits the window and "
                  f"{first['pairs beyond window']} beyond it (0 when the first stage missed the document).", "",
                  "| system | RR within | RR beyond |", "| --- | --- | --- |"]
        for n, v in rd.items():
            cells = [v[f"rr {p}"] for p in ("within window", "beyond window")]
            lines.append(f"| {n} | " + " | ".join("–" if c is None else f"{c:.4f}" for c in cells) + " |")
    c = r.get("claim")
    if c:
        m = r["seeds_mean"]
        lines += ["", f"The paper's claim on {c['metric'].upper()}: ensemble > BM25 > random negatives, and ensemble+ "
                  f"the best mining strategy. Here: ensemble {m['ensemble'][c['metric']]:.4f}, BM25 "
                  f"{m['bm25'][c['metric']]:.4f}, random {m['random'][c['metric']]:.4f}; best strategy: "
                  f"{c['best arm']}. "
                  + ("The data show the claim." if c["holds"] else "The data do not show the claim.")]
        if c.get("p"):
            lines.append("Each ordering's two-sided paired randomisation p: "
                         + "; ".join(f"{k}, {_p_phrase(x)}" for k, x in c["p"].items()) + ".")
    ch = r.get("check")
    if ch:
        name = ch["first_stage"]
        lines += ["", f"The re-ranker alone (alpha 1) on {name}'s top {b['top_k']}, each arm's seed-{ch['seed']} "
                  f"model, against {name} alone (paired randomisation p):", "",
                  "| system | nDCG@10 | p nDCG@10 | MRR@10 | p MRR@10 |", "| --- | --- | --- | --- | --- |",
                  f"| {name} alone | {ch['alone']['ndcg@10']:.4f} | – | {ch['alone']['mrr@10']:.4f} | – |"]
        for n, v in ch["re-ranked"].items():
            lines.append(f"| {n}, pure on {name} | {v['ndcg@10']:.4f} | {_p(v, 'p ndcg@10')} | {v['mrr@10']:.4f} | "
                         f"{_p(v, 'p mrr@10')} |")
        depths = [d for d in next(iter(ch["re-ranked"].values())).get("by depth", {}) if int(d) < b["top_k"]]
        if depths:
            lines += ["", f"The same models re-ranking only {name}'s top d (nDCG@10, p against {name} alone, "
                      f"{ch['alone']['ndcg@10']:.4f} at every d):", "",
                      "| system | " + " | ".join(f"top {d}" for d in depths) + f" | top {b['top_k']} |",
                      "| --- | " + " | ".join("---" for _ in depths) + " | --- |"]
            for n, v in ch["re-ranked"].items():
                cells = [f"{v['by depth'][d]['ndcg@10']:.4f} (p {_p(v['by depth'][d], 'p ndcg@10')})" for d in depths]
                lines.append(f"| {n}, pure on {name} | " + " | ".join(cells)
                             + f" | {v['ndcg@10']:.4f} (p {_p(v, 'p ndcg@10')}) |")
    twins = [(n, s.twin().label) for n, s in systems_of(r).items()
             if s.arm in TWINNED and s.arm not in RULES and s.twin().label in r["seeds_mean"]]
    if twins:
        lines += ["", "The paper's open question on clustering: (f) with each clustering against k-means, (f) itself "
                  "(mean ± sample standard deviation over the seeds; paired randomisation p against the k-means "
                  "row):", "",
                  "| system | seeds | nDCG@10 | p nDCG@10 vs k-means | MRR@10 | p MRR@10 vs k-means |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for n, twin in twins:
            m, sd, ps = r["seeds_mean"][n], r["seeds_std"][n], r["p_values"].get(n, {})
            seeds = len(r["per_seed"][n])
            lines.append(f"| {n} | {seeds} | {_pm(m, sd, 'ndcg@10', seeds)} | "
                         f"{_p(ps, f'ndcg@10 vs {twin}')} | {_pm(m, sd, 'mrr@10', seeds)} | "
                         f"{_p(ps, f'mrr@10 vs {twin}')} |")
    lines += _rule_table(r)
    if r.get("training"):
        lines += ["", "Training (seconds, pairs/s, steps):", ""]
        lines += [f"- {n}: {t['seconds']:.0f} s, {t['pairs_per_s']:.1f} pairs/s, {t['steps']} steps"
                  for n, t in r["training"].items() if t.get("seconds") is not None]
    lines += ["", "Wall time of each stage (seconds, when it ran):", ""]
    lines += [f"- {k}: {v}" for k, v in r["stage_seconds"].items()]
    lines += [f"- all stages: {sum(r['stage_seconds'].values()):.1f} s"]
    return "\n".join(lines) + "\n"
