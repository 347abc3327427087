"""hnm: ensemble hard-negative mining for retrieval training (arXiv 2411.02404), written from scratch.

The public API, one module per concept (see the README's layout table), loaded on first use: `import hnm` imports
neither torch nor NumPy, and `hnm.TrainConfig` or `from hnm import train` imports only the module that holds it.

    import hnm
    corpus, queries, qrels = hnm.load_beir("kestrel", "train")
    rows = hnm.mine_hard_negatives(corpus, queries, qrels, hnm.MineConfig(num_negatives=2))
    hnm.train_reranker(rows, "kestrel/model", config=hnm.TrainConfig(max_steps=50))
    hits = hnm.Searcher(corpus, reranker="kestrel/model/best").search(["How do I schedule snapshots?"])[0]
"""

import importlib

__version__ = "0.1.0"

_WHERE = {  # public name -> "module" or "module:attribute" when the names differ
    "BM25Config": "config", "EmbedConfig": "config", "EvalConfig": "config", "ExperimentConfig": "config",
    "FirstStageConfig": "config", "MineConfig": "config", "TrainConfig": "config", "Member": "config",
    "BM25Index": "bm25", "load_beir": "data", "Embedder": "embed", "Ensemble": "ensemble",
    "PassageEnsemble": "ensemble", "run_experiment": "experiment", "KMeansConfig": "kmeans", "kmeans": "kmeans",
    "evaluate": "metrics", "paired_bootstrap": "metrics", "randomisation_test": "metrics",
    "read_trec_run": "metrics", "write_trec_run": "metrics", "mine": "miner:run", "retrieve": "firststage",
    "choose_alpha": "twostage", "interpolate": "twostage", "rerank": "twostage", "CrossEncoder": "reranker",
    "topk": "search", "train": "train", "fetch": "weights", "read_lock": "weights",
    # the pipeline in one call a step (api.py), a searcher built once (searcher.py), the recipe as one job (fit.py)
    "mine_hard_negatives": "api", "train_reranker": "api", "Searcher": "searcher", "Hit": "searcher",
    "fit": "fit", "FitConfig": "config",
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    """hnm.NAME of the public API: its module is imported now, once (the name is then cached in this module)."""
    if name not in _WHERE:
        raise AttributeError(f"module 'hnm' has no attribute {name!r}")
    module, _, attribute = _WHERE[name].partition(":")
    value = getattr(importlib.import_module(f"hnm.{module}"), attribute or name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
