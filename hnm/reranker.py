"""The cross-encoder re-ranker: an encoder over `[CLS] query [SEP] document [SEP]` and a head to one relevance logit.

    model = CrossEncoder.from_encoder("all-MiniLM-L6-v2", head="pooler", seed=0)   # a new, seeded head
    scores = model.score(["a query", "a query"], ["a document", "another"])      # (2,) float32 logits
    model.save("out/reranker"); CrossEncoder.from_checkpoint("out/reranker")

Three heads, chosen by name (the first is the default):
- `pooler`: the layout of transformers' sequence-classification models with one label, so that tooling which loads
  those (AutoModelForSequenceClassification) loads a saved re-ranker and scores exactly as hnm does. BERT
  (BertForSequenceClassification): logit = classifier(dropout(tanh(bert.pooler.dense(h_CLS)))), the pooler
  starting from the encoder checkpoint's own. MPNet (MPNetForSequenceClassification, whose encoder has no pooler):
  logit = classifier.out_proj(dropout(tanh(classifier.dense(dropout(h_CLS))))), classifier.dense starting from the
  checkpoint's pooler, the same dense-tanh.
- `linear`: logit = classifier(dropout(h_CLS)), the plain head of many re-rankers (monoBERT, Nogueira & Cho 2019).
  Its checkpoint is marked {"hnm": {"head": "linear"}} and has no one-label `id2label`, so tooling that would put a
  pooler in front of the classifier refuses it (a 2-label head does not fit the 1 x H weight) instead of scoring it
  differently.
- `mean`: logit = classifier(dropout(mean of h over the pair's tokens)), the mean pooling that the bi-encoders of
  weights.lock were trained with (pooling.py), so the head starts from the representation the encoder knows best.
  Marked and refused by other tooling as `linear` is.
New head weights are drawn from N(0, 0.02^2) with zero biases (BERT's initialiser) by a generator seeded with
`seed`; `random` initialises a whole model that way, for tests and from-scratch runs.

Module attribute names are transformers' (`bert.*` or `mpnet.*`, `classifier.*`), so `state_dict()` keys equal the
saved file's keys and loading is strict. A checkpoint folder holds config.json (the encoder's fields, the
transformers class and label, and hnm's head and maximum length), model.safetensors and the tokenizer.json the
encoder came with, each written atomically.

Not here: training (train.py), first-stage retrieval and metrics (twostage.py), checkpoints made by other tooling
(hnm reads only the ones it wrote: their config.json carries the "hnm" key).
Shapes: B pairs, T tokens, H hidden size.
"""

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes
from tokenizers import Tokenizer as HFTokenizer
from torch import nn

from hnm.config import ARCHITECTURES, HEADS, PRECISIONS
from hnm.data import atomic_write, read_json
from hnm.distributed import current
from hnm.embed import resolve_precision
from hnm.encoder import EncoderConfig, build_encoder
from hnm.errors import InputError
from hnm.feed import Inline, Prefetch, TokenStore, sorted_batches
from hnm.pooling import mean_pooling
from hnm.tokenize import Batch, Tokenizer, parse_tokenizer
from hnm.weights import fetch, load_safetensors_strict, model_spec

INIT_STD = 0.02  # BERT's initializer_range
CLASS_NAMES = dict(zip(ARCHITECTURES, ("BertForSequenceClassification", "MPNetForSequenceClassification")))


def bert_init(module: nn.Module, generator: torch.Generator, std: float = INIT_STD) -> None:
    """BERT's initialisation (transformers' `_init_weights`) of every layer in `module`, drawn from `generator`:
    linear and embedding weights N(0, std^2), biases 0, LayerNorm scale 1 and shift 0, padding embedding row 0."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std, generator=generator)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class MPNetClassificationHead(nn.Module):
    """transformers' MPNetClassificationHead, names included: dropout, dense, tanh, dropout, out_proj on h_CLS."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.out_proj = nn.Linear(cfg.hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.dropout(hidden[:, 0])  # (B, H)
        return self.out_proj(self.dropout(torch.tanh(self.dense(x))))  # (B, 1)


class CrossEncoder(nn.Module):
    """An encoder (BERT or MPNet, with its weights) and a new head; build it with from_encoder, random or
    from_checkpoint rather than directly."""

    def __init__(self, encoder: nn.Module, head: str, max_length: int, tokenizer_json: str, seed: int):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
        cfg: EncoderConfig = encoder.config
        self.config, self.head = cfg, head
        self.tokenizer_json = tokenizer_json  # written verbatim into checkpoints
        self.tokenizer = Tokenizer(HFTokenizer.from_str(tokenizer_json), max_length)
        self.set_max_length(max_length)
        g = torch.Generator().manual_seed(seed)
        if head == "pooler" and cfg.model_type == "mpnet":
            self.classifier = MPNetClassificationHead(cfg)
            bert_init(self.classifier, g)
            self.classifier.dense.load_state_dict(encoder.pooler.dense.state_dict())
        else:
            self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
            self.classifier = nn.Linear(cfg.hidden_size, 1)
            bert_init(self.classifier, g)
        if not (head == "pooler" and cfg.model_type == "bert"):
            del encoder.pooler  # unused by this head: neither trained nor saved (transformers' MPNet has none)
        setattr(self, cfg.model_type, encoder)  # `bert` or `mpnet`, as transformers names it

    @property
    def encoder(self) -> nn.Module:
        return getattr(self, self.config.model_type)

    def set_max_length(self, max_length: int) -> None:
        """Cut pairs at `max_length` tokens from now on (saved with the model)."""
        if not 4 <= max_length <= self.config.max_position_embeddings:
            raise ValueError(f"max_length {max_length} must lie in [4, {self.config.max_position_embeddings}], "
                             f"the encoder's positions")
        self.max_length = self.tokenizer.max_length = max_length

    # ------------------------------------------------------------------------------------------ construction

    @classmethod
    def from_encoder(cls, name: str, head: str = "pooler", seed: int = 0, lock=None,
                     quiet: bool = False) -> "CrossEncoder":
        """The encoder `name` of weights.lock (fetched and verified) with a new head; texts cut at its max length."""
        spec = model_spec(name, lock)
        folder = fetch(name, lock, quiet=quiet)
        encoder = build_encoder(EncoderConfig.from_json(folder / "config.json"))
        load_safetensors_strict(encoder, folder / "model.safetensors")
        return cls(encoder, head, spec.max_length, (folder / "tokenizer.json").read_text(encoding="utf-8"), seed)

    @classmethod
    def random(cls, config: EncoderConfig, tokenizer_path: Path, head: str = "pooler", max_length: int = 128,
               seed: int = 0, std: float = INIT_STD) -> "CrossEncoder":
        """A wholly random model, BERT's initialisation with weights N(0, std^2) from `seed`, the head's too.

        Tiny ones make fast, exact tests; a std well above BERT's 0.02 makes their scores differ from pair to pair.
        """
        g = torch.Generator().manual_seed(seed)
        encoder = build_encoder(config)
        bert_init(encoder, g, std)
        model = cls(encoder, head, max_length, Path(tokenizer_path).read_text(encoding="utf-8"), seed)
        bert_init(model.classifier, g, std)
        return model

    @classmethod
    def from_checkpoint(cls, folder: Path) -> "CrossEncoder":
        """A re-ranker that `save` wrote (config.json with an "hnm" key, model.safetensors, tokenizer.json)."""
        folder = Path(folder)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: no such file; a re-ranker checkpoint folder holds "
                                        f"config.json, model.safetensors and tokenizer.json")
        raw = read_json(folder / "config.json")
        ours = raw.get("hnm") if isinstance(raw, dict) else None
        if not isinstance(ours, dict) or ours.get("head") not in HEADS or not isinstance(ours.get("max_length"), int):
            raise InputError(f"{folder / 'config.json'}: no valid 'hnm' entry (head and max_length); hnm loads the "
                             f"re-rankers it saved")
        tokenizer_json = (folder / "tokenizer.json").read_text(encoding="utf-8")
        parse_tokenizer(tokenizer_json, folder / "tokenizer.json")  # a broken file named here, not deep inside
        model = cls(build_encoder(EncoderConfig.from_json(folder / "config.json")), ours["head"],
                    ours["max_length"], tokenizer_json, seed=0)
        load_safetensors_strict(model, folder / "model.safetensors")
        return model.to(current().device)  # the device the command chose (the CPU unless one did)

    # ------------------------------------------------------------------------------------------------- use

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids, mask and token types of pairs -> (B,) relevance logits."""
        hidden = self.encoder(input_ids, attention_mask, token_type_ids)  # (B, T, H)
        if self.head == "linear":
            x = self.dropout(hidden[:, 0])  # (B, H), the [CLS] state
        elif self.head == "mean":
            x = self.dropout(mean_pooling(hidden, attention_mask))  # (B, H), the mean over the pair's tokens
        elif self.config.model_type == "bert":
            x = self.dropout(self.bert.pooler(hidden))  # (B, H), tanh(dense(h_CLS))
        else:
            return self.classifier(hidden).squeeze(-1)  # MPNet's head does its own dropout, dense and tanh
        return self.classifier(x).squeeze(-1)  # (B,)

    def tokenize(self, queries: Sequence[str], documents: Sequence[str]) -> Batch:
        """(query, document) pairs -> one padded batch, the document cut first (tokenize.py)."""
        return self.tokenizer.pairs(queries, documents)

    @torch.no_grad()
    def score(self, queries: Sequence[str], documents: Sequence[str], batch_size: int = 64,
              precision: str = "float32", feed: str = "tokens", timings: Optional[dict] = None) -> np.ndarray:
        """Logits of (query, document) pairs, (N,) float32 in input order; pairs are batched by length so that a
        batch pads little. precision "bfloat16" runs under autocast (about twice as fast on CPUs with bf16 units);
        "auto" takes it where the hardware has it (embed.resolve_precision). feed "tokens" tokenises each distinct
        text once and pads the next batches on a thread while the model computes (feed.py); "text" tokenises every
        pair and pads each batch in turn. Both make the same batches, hence the same scores. `timings`, if given,
        receives {"seconds", "host_seconds"}: the whole call, and the time the model waited for the host."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if feed not in ("text", "tokens"):
            raise ValueError(f"feed {feed!r} is not one of text, tokens")
        start = time.perf_counter()
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        precision = resolve_precision(precision, device)
        if feed == "text":
            encodings = self.tokenizer.encode_pairs(queries, documents)
            lengths = np.array([len(e.ids) for e in encodings])

            def make(rows: np.ndarray) -> Batch:
                return self.tokenizer.pad([encodings[i] for i in rows])
        else:
            store = TokenStore(self.tokenizer, list(queries) + list(documents))
            lengths = store.pair_lengths(queries, documents)

            def make(rows: np.ndarray) -> Batch:
                return store.pairs([queries[i] for i in rows], [documents[i] for i in rows], device.type == "cuda")
        batches = sorted_batches(lengths, batch_size)
        host = time.perf_counter() - start
        out = np.zeros(len(lengths), dtype=np.float32)
        ready = Inline(make, batches) if feed == "text" else Prefetch(make, batches)
        try:
            for rows, (b, waited) in zip(batches, ready):
                host += waited
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                    ids, mask, types = (t.to(device, non_blocking=True)
                                        for t in (b.input_ids, b.attention_mask, b.token_type_ids))
                    logits = self(ids, mask, types)  # (B,)
                out[rows] = logits.float().cpu().numpy()
        finally:
            ready.close()
        self.train(was_training)
        if timings is not None:
            timings.update(seconds=time.perf_counter() - start, host_seconds=host)
        return out

    def save(self, folder: Path) -> None:
        """Write config.json, model.safetensors and tokenizer.json into `folder`, each atomically."""
        folder = Path(folder)
        config = {**asdict(self.config), "architectures": [CLASS_NAMES[self.config.model_type]],
                  "initializer_range": INIT_STD, "torch_dtype": "float32",
                  "hnm": {"head": self.head, "max_length": self.max_length}}
        if self.head == "pooler":  # one label: transformers sizes the classifier from id2label
            config.update(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_write(folder / "model.safetensors", "wb") as f:
            f.write(safetensors_bytes(tensors, metadata={"format": "pt"}))
        with atomic_write(folder / "tokenizer.json") as f:
            f.write(self.tokenizer_json)
        with atomic_write(folder / "config.json") as f:
            json.dump(config, f, indent=2)
