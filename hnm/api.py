"""The pipeline in Python, one call a step, for a user who would rather not write files between them.

    import hnm
    corpus, queries, qrels = hnm.load_beir("kestrel", "train")
    rows = hnm.mine_hard_negatives(corpus, queries, qrels, hnm.MineConfig(num_negatives=2))
    summary = hnm.train_reranker(rows, "kestrel/model", config=hnm.TrainConfig(max_steps=50))
    searcher = hnm.Searcher(corpus, reranker="kestrel/model/best")
    print(searcher.search(["How do I schedule automatic snapshots of a volume?"])[0][0].doc_id)

`mine_hard_negatives` mirrors sentence-transformers' `mine_hard_negatives(dataset, model, ...) -> Dataset` in
spirit: data in, rows out (the rows of `hnm mine`, DESIGN.md's format), written to disk only when `output` is
given. `train_reranker` takes those rows (or a rows file) and returns training's summary; its checkpoints are
folders under `output`, as `hnm train` writes them. `Searcher` (searcher.py), `fit` (fit.py) and `evaluate`
(metrics.py) are re-exported by `hnm` as they are.

Not here: anything the modules named do themselves; this file only joins them.
"""

import json
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Union

from hnm.config import EmbedConfig, MineConfig, TrainConfig
from hnm.data import Qrels, write_jsonl


def mine_hard_negatives(corpus: Dict[str, dict], queries: Dict[str, str], qrels: Qrels,
                        config: MineConfig = MineConfig(), output: Optional[Union[str, Path]] = None,
                        embed: EmbedConfig = EmbedConfig(), quiet: bool = True) -> List[dict]:
    """Hard negatives for every judged query with a positive: one row a query, {"query_id", "query",
    "positive_ids", "positives", "negative_ids", "negatives", "negative_scores", ...}. With `output`, the rows
    file and its review, statistics and chart are kept there (as `hnm mine --output` writes them)."""
    from hnm.miner import run
    if output is not None:
        run(corpus, queries, qrels, config, Path(output), embed, quiet=quiet)
        return _read_rows(Path(output))
    with tempfile.TemporaryDirectory(prefix="hnm-mine-") as tmp:
        run(corpus, queries, qrels, config, Path(tmp) / "mined.jsonl", embed, quiet=quiet)
        return _read_rows(Path(tmp) / "mined.jsonl")


def _read_rows(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def train_reranker(rows: Union[List[dict], str, Path], output: Union[str, Path], start: str = "all-MiniLM-L6-v2",
                   config: TrainConfig = TrainConfig(), resume: bool = False, quiet: bool = True) -> dict:
    """Train a cross-encoder from `start` (an encoder of weights.lock, or a checkpoint folder) on mined rows (a
    list, or a rows file) into `output` (log.jsonl, last/, best/, tuning_queries.json); -> training's summary:
    {"steps", "last_loss", "best", "seconds", "pairs_per_s", ...}."""
    from hnm.train import train
    output = Path(output)
    if not isinstance(rows, (str, Path)):
        path = output / "rows.jsonl"
        if not (resume and path.exists()):  # a resumed run must see the bytes it started on
            write_jsonl(path, rows)
        rows = path
    return train(Path(rows), output, start, config, resume=resume, quiet=quiet)
