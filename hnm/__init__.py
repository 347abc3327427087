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
from hnm.negatives import MineConfig
from hnm.miner import run as mine
from hnm.firststage import FirstStageConfig, retrieve
from hnm.twostage import EvalConfig, choose_alpha, interpolate, rerank
from hnm.reranker import CrossEncoder
from hnm.search import topk
from hnm.train import TrainConfig, train
from hnm.weights import fetch, read_lock

__version__ = "0.1.0"
__all__ = ["BM25Config", "BM25Index", "load_beir", "EmbedConfig", "Embedder", "Ensemble", "Member",
           "PassageEnsemble", "ExperimentConfig", "run_experiment", "KMeansConfig", "kmeans", "evaluate",
           "paired_bootstrap", "randomisation_test", "read_trec_run", "write_trec_run", "MineConfig", "mine",
           "FirstStageConfig", "retrieve", "EvalConfig", "choose_alpha", "interpolate", "rerank", "CrossEncoder", "topk", "TrainConfig", "train", "fetch", "read_lock"]
