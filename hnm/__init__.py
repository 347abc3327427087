"""hnm: ensemble hard-negative mining for retrieval training (arXiv 2411.02404), written from scratch.

The public API, one module per concept (see the README's layout table):
"""

from hnm.bm25 import BM25Config, BM25Index
from hnm.data import load_beir
from hnm.embed import EmbedConfig, Embedder
from hnm.ensemble import Ensemble, Member, PassageEnsemble
from hnm.experiment import ExperimentConfig, run_experiment
from hnm.kmeans import KMeansConfig, kmeans
from hnm.metrics import evaluate, paired_bootstrap, randomisation_test, read_trec_run, write_trec_run
from hnm.mining import MineConfig
from hnm.minerun import run as mine
from hnm.rerank import EvalConfig, first_stage, rerank
from hnm.reranker import CrossEncoder
from hnm.search import topk
from hnm.train import TrainConfig, train
from hnm.weights import fetch, read_lock

__version__ = "0.1.0"
__all__ = ["BM25Config", "BM25Index", "load_beir", "EmbedConfig", "Embedder", "Ensemble", "Member",
           "PassageEnsemble", "ExperimentConfig", "run_experiment", "KMeansConfig", "kmeans", "evaluate",
           "paired_bootstrap", "randomisation_test", "read_trec_run", "write_trec_run", "MineConfig", "mine",
           "EvalConfig", "first_stage", "rerank", "CrossEncoder", "topk", "TrainConfig", "train", "fetch", "read_lock"]
