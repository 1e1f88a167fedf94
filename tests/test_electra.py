"""`minitf pretrain --objective electra`: the model's pieces, what it writes (and who loads it),
exact resume, learning, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from pretrain_fakes import tiny_files, tiny_pretrain_config
from safetensors.torch import load_file

from minitf.errors import MinitfError
from minitf.model.bert import BertForMaskedLM, BertModel
from minitf.model.config import BertConfig
from minitf.model.electra import (
    DISC_WEIGHT,
    HEAD_FILE,
    Electra,
    corrupt,
    generator_config,
    sample,
)
from minitf.recipes.pretrain import PretrainConfig, pretrain

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tiny_files(tmp_path_factory.mktemp("electra"))


def tiny(files, output, **overrides) -> PretrainConfig:
    return tiny_pretrain_config(files, output, **{"layers": 3, "objective": "electra", **overrides})


def tiny_config(**changes) -> BertConfig:
    return BertConfig(**{**dict(vocab_size=40, hidden_size=32, num_hidden_layers=3,
                                num_attention_heads=2, intermediate_size=64,
                                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                         **changes})


# ---- the model ---------------------------------------------------------------------------------


def test_generator_is_shallower_and_shares_the_embeddings():
    torch.manual_seed(0)
    model = Electra.new(tiny_config(num_hidden_layers=6))
    assert model.generator.config.num_hidden_layers == 2
    assert generator_config(tiny_config(num_hidden_layers=2)).num_hidden_layers == 1
    g, d = model.generator, model.discriminator
    assert g.bert.embeddings is d.embeddings
    assert g.cls.predictions.decoder.weight is d.embeddings.word_embeddings.weight
    # each shared tensor is one parameter, so the optimizer updates it once
    params = list(model.parameters())
    assert len(params) == len({id(p) for p in params})
    assert sum(p is d.embeddings.word_embeddings.weight for p in params) == 1


def test_corrupt_labels_a_sample_equal_to_the_original_as_original():
    ids = torch.tensor([[2, 4, 11, 4, 4, 3]])           # [MASK] = 4 at positions 1, 3, 4
    labels = torch.tensor([[-100, 10, -100, 12, 13, -100]])
    original, corrupted, replaced = corrupt(ids, labels, torch.tensor([10, 20, 13]))
    assert original.tolist() == [[2, 10, 11, 12, 13, 3]]
    assert corrupted.tolist() == [[2, 10, 11, 20, 13, 3]]
    assert replaced.tolist() == [[False, False, False, True, False, False]]


def test_seeded_samples_depend_on_the_block_only():
    torch.manual_seed(0)
    logits = torch.randn(7, 40) * 3                    # 3 chosen tokens in block a, 4 in b
    both = sample(logits, [3, 4], [11, 22])
    assert torch.equal(both[3:], sample(logits[3:], [4], [22]))
    assert torch.equal(both[:3], sample(logits[:3], [3], [11]))
    draws = torch.stack([sample(logits[:1], [1], [s]) for s in range(2000)]).flatten()
    expected = torch.softmax(logits[0], -1)            # the draws follow the softmax
    frequency = torch.bincount(draws, minlength=40).float() / 2000
    assert (frequency - expected).abs().max() < 0.05


def test_forward_the_discriminator_sees_the_samples_and_their_labels():
    """A generator that always samples token 7: a label of 7 is 'original', others 'replaced'."""
    torch.manual_seed(0)
    model = Electra.new(tiny_config())
    with torch.no_grad():
        model.generator.cls.predictions.bias[7] = 1e4
    ids = torch.tensor([[2, 4, 11, 4, 4, 3], [2, 12, 4, 13, 14, 3]])
    labels = torch.tensor([[-100, 7, -100, 12, 7, -100], [-100, -100, 9, -100, -100, -100]])
    out = model(ids, labels)
    assert out.replaced.tolist() == [[False, False, False, True, False, False],
                                     [False, False, True, False, False, False]]
    assert out.real.all() and out.disc_logits.shape == (2, 6)
    assert out.mlm_loss.shape == (2,) and out.token_loss.shape == (4,)
    # the per-block loss is mlm + λ · disc, the disc part a BCE over every real token
    hidden = model.discriminator(torch.tensor([[2, 7, 11, 7, 7, 3], [2, 12, 7, 13, 14, 3]]))
    logits = model.discriminator_predictions(hidden.last_hidden_state)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, out.replaced.float(), reduction="none").mean(1)
    assert torch.allclose(out.disc_loss, bce, atol=1e-6)
    assert torch.allclose(out.loss, out.mlm_loss + DISC_WEIGHT * out.disc_loss)


def test_the_head_is_transformers_electra_discriminator_head():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    ours = Electra.new(tiny_config()).eval()
    c = ours.config
    theirs = transformers.ElectraForPreTraining(transformers.ElectraConfig(
        vocab_size=c.vocab_size, embedding_size=c.hidden_size, hidden_size=c.hidden_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        intermediate_size=c.intermediate_size, layer_norm_eps=c.layer_norm_eps)).eval()
    state = {f"electra.{n}": t for n, t in ours.discriminator.state_dict().items()}
    state.update({f"discriminator_predictions.{n}": t
                  for n, t in ours.discriminator_predictions.state_dict().items()})
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in n for n in missing), (missing, unexpected)
    ids = torch.tensor([[2, 10, 11, 4, 12, 3]])
    with torch.no_grad():
        expected = theirs(input_ids=ids).logits
        got = ours.discriminator_predictions(ours.discriminator(ids).last_hidden_state)
    assert torch.allclose(got, expected, atol=1e-5)


# ---- the recipe's outputs ---------------------------------------------------------------------


def test_output_is_a_bert_encoder_and_a_generator_that_transformers_load(files, tmp_path):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "out"
    result = pretrain(tiny(files, out, max_steps=3))
    for name in ("config.json", "model.safetensors", "vocab.txt", HEAD_FILE, "metrics.jsonl",
                 "generator/config.json", "generator/model.safetensors", "generator/vocab.txt"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertModel"]
    generator = json.loads((out / "generator" / "config.json").read_text())
    assert generator["architectures"] == ["BertForMaskedLM"]
    assert generator["num_hidden_layers"] == 1 and generator["hidden_size"] == 32
    assert set(load_file(out / HEAD_FILE)) == {
        f"discriminator_predictions.{n}.{p}" for n in ("dense", "dense_prediction")
        for p in ("weight", "bias")}
    for key in ("mlm_loss", "accuracy", "disc_loss", "replaced_accuracy", "original_accuracy"):
        assert key in result.final, key

    ids = torch.tensor([[2, 10, 11, 4, 12, 3], [2, 13, 14, 15, 16, 3]])
    theirs, info = transformers.AutoModel.from_pretrained(out, output_loading_info=True)
    assert type(theirs).__name__ == "BertModel" and not info["unexpected_keys"]
    assert all(n.startswith("pooler.") for n in info["missing_keys"]), info  # ELECTRA has none
    theirs.eval()
    with pytest.warns(UserWarning, match="no pooler weights"):  # as for an MLM output
        ours = BertModel.from_pretrained(out).eval()
    with torch.no_grad():
        assert torch.allclose(ours(ids).last_hidden_state,
                              theirs(input_ids=ids).last_hidden_state, atol=1e-5)
    theirs_g = transformers.BertForMaskedLM.from_pretrained(out / "generator").eval()
    ours_g = BertForMaskedLM.from_pretrained(out / "generator").eval()
    with torch.no_grad():
        assert torch.allclose(ours_g(ids).logits, theirs_g(input_ids=ids).logits, atol=1e-5)
    # the generator's copy of the shared embeddings is the discriminator's
    top, gen = load_file(out / "model.safetensors"), load_file(out / "generator" /
                                                                "model.safetensors")
    for name in ("word_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight"):
        assert torch.equal(top[f"embeddings.{name}"], gen[f"bert.embeddings.{name}"]), name


def test_fill_mask_and_finetune_take_the_outputs(files, tmp_path, capsys):
    from minitf.cli import main
    from minitf.recipes.finetune import FinetuneConfig, finetune

    pretrain(tiny(files, tmp_path / "pt", max_steps=2))
    assert main(["fill-mask", "--model", str(tmp_path / "pt" / "generator"), "天气很[MASK]",
                 "--top-k", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "天气很[MASK]"
    rows = ["text,label"] + [f"{'天气很好' if i % 2 else '我们不在'},{i % 2}" for i in range(40)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = finetune(FinetuneConfig(model=str(tmp_path / "pt"), train=str(tmp_path / "train.csv"),
                                     output=str(tmp_path / "ft"), epochs=1, batch_size=8,
                                     max_length=16, progress="off"))
    assert result.history and (tmp_path / "ft" / "best" / "model.safetensors").is_file()


def weights(directory):
    return {**load_file(directory / "model.safetensors"), **load_file(directory / HEAD_FILE),
            **{f"generator/{n}": t for n, t in
               load_file(directory / "generator" / "model.safetensors").items()}}


def test_resume_equals_an_uninterrupted_run(files, tmp_path):
    whole = pretrain(tiny(files, tmp_path / "whole"))
    assert not whole.interrupted and whole.total_steps == 6
    part = pretrain(tiny(files, tmp_path / "part", stop_after_steps=4))
    assert part.interrupted and not (tmp_path / "part" / "model.safetensors").exists()
    assert (tmp_path / "part" / "last" / "generator" / "model.safetensors").is_file()
    resumed = pretrain(tiny(files, tmp_path / "part", resume=True))
    assert not resumed.interrupted
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "part")
    assert a.keys() == b.keys() and any(n.startswith("generator/") for n in a)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert whole.final == resumed.final
    # the resumed pair shares its embeddings again
    model = Electra.from_pretrained(tmp_path / "part" / "last")
    assert model.generator.bert.embeddings is model.discriminator.embeddings


def test_training_lowers_the_held_out_losses(files, tmp_path):
    result = pretrain(tiny(files, tmp_path / "learn", max_steps=40, eval_every=40, lr=3e-3,
                           dropout=0.0, validation_fraction=0.2))
    first = pretrain(tiny(files, tmp_path / "init", max_steps=0, dropout=0.0,
                          validation_fraction=0.2)).final
    final = result.final
    assert final["mlm_loss"] < first["mlm_loss"] - 0.1
    assert final["disc_loss"] < first["disc_loss"] - 0.1
    assert final["loss"] < first["loss"]


# ---- bad input: one MinitfError, nothing written ----------------------------------------------


def test_continuing_a_plain_bert_is_refused(files, tmp_path):
    from minitf.tokenizers.wordpiece import load_tokenizer

    pretrain(tiny(files, tmp_path / "mlm", objective="mlm", max_steps=0))
    encoder = tmp_path / "encoder"              # a BertModel directory, e.g. an MLM's encoder
    BertModel(BertForMaskedLM.from_pretrained(tmp_path / "mlm").config).save_pretrained(encoder)
    load_tokenizer(files["tok"]).save_pretrained(encoder)
    for model in ("mlm", "encoder"):
        out = tmp_path / "bad"
        with pytest.raises(MinitfError, match="no generator/ folder.*--objective mlm.*--tok"):
            pretrain(tiny(files, out, tokenizer=None, model=str(tmp_path / model)))
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_time_budget(files, tmp_path):
    result = pretrain(tiny(files, tmp_path / "budget", max_steps=None, time_budget=0.05))
    assert result.total_steps >= 1 and not result.interrupted
    assert (tmp_path / "budget" / "generator" / "model.safetensors").is_file()


def test_continuing_an_electra_output(files, tmp_path):
    pretrain(tiny(files, tmp_path / "first", max_steps=2))
    result = pretrain(tiny(files, tmp_path / "second", tokenizer=None,
                           model=str(tmp_path / "first"), max_steps=2))
    assert result.total_steps == 2 and (tmp_path / "second" / "generator" / "config.json").is_file()


def test_resume_with_another_objective_is_refused(files, tmp_path):
    pretrain(tiny(files, tmp_path / "r", stop_after_steps=2))
    with pytest.raises(MinitfError, match="--objective: checkpoint 'electra', now 'mlm'"):
        pretrain(tiny(files, tmp_path / "r", resume=True, objective="mlm"))
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_a_checkpoint_from_before_the_option_resumes_as_mlm():
    from minitf.recipes.options import resume_mismatches
    cfg = PretrainConfig(train=["x"], output="o", max_steps=1)
    saved = {k: v for k, v in vars(cfg).items() if k != "objective"}
    assert resume_mismatches(cfg, saved) == []
    assert resume_mismatches(PretrainConfig(train=["x"], output="o", max_steps=1,
                                            objective="electra"), saved) == [
        "--objective: checkpoint 'mlm', now 'electra'"]


def test_two_processes_train_like_one(files, tmp_path):
    """Under torchrun the masks and the generator's samples are drawn per block, so two
    processes (gloo, no dropout) end with the one-process weights."""
    from test_distributed import TOLERANCE, torchrun

    from minitf import cli

    args = ["pretrain", "--objective", "electra", "--train", str(files["corpus"]),
            "--tokenizer", str(files["tok"]), "--layers", "3", "--hidden", "32", "--heads", "2",
            "--intermediate", "64", "--max-length", "16", "--batch-size", "8", "--max-steps",
            "4", "--eval-every", "2", "--dropout", "0", "--lr", "1e-3", "--progress", "off"]
    assert cli.main([*args, "--output", str(tmp_path / "one")]) == 0
    result = torchrun([*args, "--output", str(tmp_path / "two")])
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], **TOLERANCE, msg=name)
    evals = [[json.loads(x)["validation"] for x in (tmp_path / d / "metrics.jsonl").read_text()
              .splitlines() if '"validation"' in x] for d in ("one", "two")]
    assert len(evals[0]) == len(evals[1]) == 2
    for a, b in zip(*evals, strict=True):
        assert b["replaced_fraction"] == a["replaced_fraction"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
