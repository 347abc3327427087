"""The cross-encoder: transformers scores hnm's saved checkpoints as hnm does (fixture), heads and their layouts,
round trips, seeded heads, batching, and clear errors for bad checkpoints."""

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import FIXTURES, require_model
from hnm.encoder import EncoderConfig, build_encoder
from hnm.errors import InputError, WeightsError
from hnm.reranker import CrossEncoder

INTEROP = json.loads((FIXTURES / "reranker_interop.json").read_text())
TOKENIZER_OF = {"bert": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2"}
STD = 0.2  # the fixture's initialiser spread (make_reranker_fixture.STD)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models run on one thread


def tiny(model_type: str, head: str = "pooler", seed: int = 0) -> CrossEncoder:
    cfg = EncoderConfig(**INTEROP["models"][model_type]["config"])
    tokenizer = require_model(TOKENIZER_OF[model_type]) / "tokenizer.json"
    return CrossEncoder.random(cfg, tokenizer, head=head, max_length=INTEROP["max_length"], seed=seed, std=STD)


@pytest.mark.parametrize("model_type", ["bert", "mpnet"])
def test_transformers_scores_a_saved_checkpoint_as_hnm_does(tmp_path, model_type):
    ref = INTEROP["models"][model_type]
    model = tiny(model_type)
    model.save(tmp_path)
    # the very model the fixture script saved and transformers loaded (as ref["class"]), byte for byte
    assert hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest() == ref["model_sha256"]
    assert model.tokenize(INTEROP["queries"], INTEROP["documents"]).input_ids.tolist() == ref["input_ids"]
    ours = CrossEncoder.from_checkpoint(tmp_path).score(INTEROP["queries"], INTEROP["documents"])
    theirs = np.array(ref["logits"])
    assert theirs.std() > 0.1  # the scores differ from pair to pair, so agreement is not a coincidence
    # float32 through two layers with other attention kernels: the brief's bound is 1e-5; measured <= 1e-6
    assert np.abs(ours - theirs).max() < 1e-5


@pytest.mark.parametrize("model_type,head", [("bert", "pooler"), ("bert", "linear"), ("bert", "mean"),
                                             ("mpnet", "pooler"), ("mpnet", "linear"), ("mpnet", "mean")])
def test_save_and_load_round_trip_with_the_transformers_layout(tmp_path, model_type, head):
    model = tiny(model_type, head)
    model.save(tmp_path)
    again = CrossEncoder.from_checkpoint(tmp_path)
    assert again.head == head and again.max_length == model.max_length
    q, d = INTEROP["queries"][:5], INTEROP["documents"][:5]
    assert np.array_equal(again.score(q, d), model.score(q, d))
    keys = set(load_file(str(tmp_path / "model.safetensors")))
    assert keys == set(model.state_dict())
    prefix = f"{model_type}."
    assert all(k.startswith((prefix, "classifier.")) for k in keys)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == model_type and config["hnm"] == {"head": head, "max_length": 64}
    if head == "pooler":
        assert config["architectures"] == [{"bert": "BertForSequenceClassification",
                                            "mpnet": "MPNetForSequenceClassification"}[model_type]]
        assert config["id2label"] == {"0": "LABEL_0"}  # one label
        expected = ({"classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"}
                    if model_type == "bert" else
                    {"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                     "classifier.out_proj.bias"})
        assert expected <= keys
    else:  # no pooler at all, and no one-label promise to other tooling
        assert "id2label" not in config and not any(".pooler." in k for k in keys)
        assert load_file(str(tmp_path / "model.safetensors"))["classifier.weight"].shape == (1, 32)


def test_new_head_is_seeded_and_the_encoder_is_the_checkpoint():
    folder = require_model("all-MiniLM-L6-v2")
    a = CrossEncoder.from_encoder("all-MiniLM-L6-v2", head="pooler", seed=3)
    b = CrossEncoder.from_encoder("all-MiniLM-L6-v2", head="pooler", seed=3)
    c = CrossEncoder.from_encoder("all-MiniLM-L6-v2", head="pooler", seed=4)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    assert torch.count_nonzero(a.classifier.bias) == 0 and 0.01 < a.classifier.weight.std() < 0.03  # N(0, 0.02^2)
    upstream = load_file(str(folder / "model.safetensors"))
    own = a.state_dict()
    assert all(torch.equal(own["bert." + k], v) for k, v in upstream.items())  # pooler included
    assert a.max_length == 256


def test_mpnet_pooler_head_starts_from_the_encoder_pooler():
    cfg = EncoderConfig(**INTEROP["models"]["mpnet"]["config"])
    torch.manual_seed(0)
    encoder = build_encoder(cfg)
    pooler = encoder.pooler.dense.weight.detach().clone()
    tokenizer = (require_model("all-mpnet-base-v2") / "tokenizer.json").read_text()
    model = CrossEncoder(encoder, "pooler", 64, tokenizer, seed=0)
    assert torch.equal(model.classifier.dense.weight, pooler)
    assert not hasattr(model.mpnet, "pooler")


def test_scores_do_not_depend_on_batching_and_bfloat16_stays_close():
    model = tiny("bert")
    q, d = INTEROP["queries"], INTEROP["documents"]
    whole = model.score(q, d, batch_size=64)
    # other batch compositions pad to other lengths: padded keys are masked, so only rounding differs
    assert np.abs(model.score(q, d, batch_size=3) - whole).max() < 1e-5
    assert np.abs(model.score(q[::-1], d[::-1])[::-1] - whole).max() < 1e-5  # input order is kept
    # bf16 keeps 8 bits of mantissa; these logits lie within +-2
    assert np.abs(model.score(q, d, precision="bfloat16") - whole).max() < 0.1
    assert model.training  # score() leaves the mode as it found it


def test_bad_checkpoints_and_settings_are_clear_errors(tmp_path):
    model = tiny("bert")
    with pytest.raises(FileNotFoundError, match="config.json, model.safetensors and tokenizer.json"):
        CrossEncoder.from_checkpoint(tmp_path)
    model.save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "hnm"}))
    with pytest.raises(InputError, match="no valid 'hnm' entry"):
        CrossEncoder.from_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["classifier.bias"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightsError, match="classifier.bias"):
        CrossEncoder.from_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="unknown head 'mlp'"):
        tiny("bert", head="mlp")
    with pytest.raises(ValueError, match=r"max_length 500 must lie in \[4, 128\]"):
        model.set_max_length(500)
    with pytest.raises(ValueError, match="precision"):
        model.score(["q"], ["d"], precision="float16")


def test_mean_head_scores_the_mean_of_the_pairs_token_states():
    model = tiny("bert", "mean").eval()
    b = model.tokenize(INTEROP["queries"][:3], INTEROP["documents"][:3])
    with torch.no_grad():
        hidden = model.bert(b.input_ids, b.attention_mask, b.token_type_ids)  # (B, T, H)
        m = b.attention_mask.unsqueeze(-1).float()
        by_hand = model.classifier((hidden * m).sum(1) / m.sum(1)).squeeze(-1)  # padding left out of the mean
        assert torch.allclose(model(b.input_ids, b.attention_mask, b.token_type_ids), by_hand, atol=1e-6)
