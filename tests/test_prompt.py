"""Prompt-based fine-tuning through the masked-LM head (minitf/tasks/prompt.py): the label-word
logits against the full masked-LM head, the template encoding, the recipe end to end (outputs
transformers loads, predict/evaluate unchanged, zero-shot, freezing + cache, LoRA, resume), and
every bad input as one clear error."""

import json

import pytest
import torch
from ft_fakes import FILLER, NEGATIVE, POSITIVE, SPECIALS, toy_rows, write_csv

from minitf import cli
from minitf.data import examples as D
from minitf.errors import MinitfError
from minitf.model.bert import BertForMaskedLM
from minitf.model.config import BertConfig
from minitf.recipes import finetune as FT
from minitf.tasks import classify as inference
from minitf.tasks import prompt as P

pytestmark = pytest.mark.usefixtures("one_thread")

TEMPLATE = "{text} it was [MASK]"
VERBALIZER = "pos=good,neg=bad"


def masked_lm_dir(path, seed=0):
    """A tiny random BertForMaskedLM with a WordPiece vocab.txt (whole words)."""
    torch.manual_seed(seed)
    vocab = SPECIALS + sorted(set(POSITIVE + NEGATIVE + FILLER + ["it", "was", "okay"]))
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64)
    BertForMaskedLM(config).save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("prompt")
    model = masked_lm_dir(root / "mlm")
    return {"model": model, "tok": inference.load_tokenizer(model),
            "train": write_csv(root / "train.csv", toy_rows(160, seed=1)),
            "test": write_csv(root / "test.csv", toy_rows(40, seed=2))}


def run(files, output, **settings):
    settings = {"max_length": 32, "batch_size": 16, "epochs": 2, "lr": 2e-3, "progress": "off",
                "prompt": TEMPLATE, "verbalizer": VERBALIZER, "model": str(files["model"]),
                **settings}
    cfg = FT.FinetuneConfig(train=str(files["train"]), output=str(output), **settings)
    return FT.finetune(cfg)


def test_label_logits_are_the_masked_lm_logits_at_the_mask(files):
    model = P.load_prompt_classifier(files["model"], files["tok"], TEMPLATE, VERBALIZER,
                                     ["neg", "pos"])
    examples = D.Examples(["the movie was", "a story quite long and really"], [None, None])
    data = P.encode(examples, files["tok"], model.prompt, None, 32)
    batch = data.collate([0, 1])
    mask_id = files["tok"].mask_token_id
    assert [int((row == mask_id).sum()) for row in batch["input_ids"]] == [1, 1]
    logits = model(batch["input_ids"], batch["attention_mask"]).logits            # (2, 2)
    mlm = BertForMaskedLM.from_pretrained(files["model"])
    full = mlm(batch["input_ids"], batch["attention_mask"]).logits                 # (2, N, V)
    at_mask = full[batch["input_ids"] == mask_id]                                  # (2, V)
    words = [files["tok"].encode(w)[1] for w in ("bad", "good")]                   # neg, pos
    torch.testing.assert_close(logits, at_mask[:, words], rtol=0, atol=1e-5)


def test_encode_keeps_the_template_and_cuts_the_text(files):
    prompt = P.Prompt.parse("[MASK] : {text} .", "pos=good,neg=bad")
    long = " ".join(["movie"] * 100)
    data = P.encode(D.Examples([long, "a [MASK] plot"], [None, None]), files["tok"], prompt,
                    None, 16)
    tok = files["tok"]
    assert len(data.input_ids[0]) == 16
    assert data.input_ids[0][1] == tok.mask_token_id and data.input_ids[0][-1] == tok.sep_token_id
    # a "[MASK]" typed in a text is text: the row still has the template's mask only
    assert int((data.input_ids[1] == tok.mask_token_id).sum()) == 1


def test_finetune_outputs_a_masked_lm_transformers_loads_and_predict_uses(files, tmp_path,
                                                                          capsys):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "out"
    result = run(files, out, test=str(files["test"]), epochs=8, lr=5e-3)
    assert result.test["accuracy"] >= 0.8   # the toy task is learnable through the head
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"]
    assert config["minitf_prompt"]["template"] == TEMPLATE
    assert config["minitf_prompt"]["verbalizer"] == {"neg": "bad", "pos": "good"}
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    hf = transformers.BertForMaskedLM.from_pretrained(out / "best").eval()
    ours = P.load_prompt_classifier(out / "best", files["tok"])
    data = P.encode(D.Examples(["the film was superb"], [None]), files["tok"], ours.prompt)
    batch = data.collate([0])
    with torch.no_grad():
        theirs = hf(input_ids=batch["input_ids"]).logits[batch["input_ids"] == 4]
    torch.testing.assert_close(ours(batch["input_ids"]).logits,
                               theirs[:, ours.label_ids], rtol=0, atol=1e-4)
    # predict and evaluate read the prompt from config.json
    assert cli.main(["predict", "--model", str(out / "best"), "--precision", "fp32",
                     "the movie was superb", "an awful plot"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("pos") and lines[1].startswith("neg")
    assert cli.main(["evaluate", "--model", str(out / "best"), "--data", str(files["test"]),
                     "--precision", "fp32", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(result.test["accuracy"])
    # the prompt model as the start of an ordinary (head) fine-tuning: no prompt left behind
    head = run(files, tmp_path / "head", model=str(out / "best"), prompt=None, verbalizer=None,
               epochs=1)
    assert "minitf_prompt" not in json.loads((head.output / "best" / "config.json").read_text())


def test_zero_shot_evaluate_on_a_masked_lm(files, capsys):
    assert cli.main(["evaluate", "--model", str(files["model"]), "--data", str(files["test"]),
                     "--prompt", TEMPLATE, "--verbalizer", VERBALIZER, "--precision", "fp32",
                     "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    model = P.load_prompt_classifier(files["model"], files["tok"], TEMPLATE, VERBALIZER)
    examples, targets = D.label_ids(D.read_examples(files["test"]), model.prompt.labels)
    data = P.encode(examples, files["tok"], model.prompt, targets, 128)
    expected = inference.evaluate_encoded(model, data, model.prompt.labels)
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])


def test_freezing_with_the_cache_matches_recomputing(files, tmp_path):
    cached = run(files, tmp_path / "a", freeze="layers:1", epochs=1)
    fresh = run(files, tmp_path / "b", freeze="layers:1", epochs=1, cache=False)
    assert cached.history[-1]["validation"]["loss"] == pytest.approx(
        fresh.history[-1]["validation"]["loss"], rel=1e-4)
    # every layer frozen: the cache keeps every position (the head reads the [MASK])
    top = run(files, tmp_path / "c", freeze="all-but-head", epochs=1)
    top_fresh = run(files, tmp_path / "d", freeze="all-but-head", epochs=1, cache=False)
    assert top.history[-1]["validation"]["loss"] == pytest.approx(
        top_fresh.history[-1]["validation"]["loss"], rel=1e-4)


def test_lora_and_resume(files, tmp_path):
    lora = run(files, tmp_path / "lora", lora=4, epochs=1)
    assert (tmp_path / "lora" / "best" / "adapter" / "adapter_config.json").is_file()
    assert json.loads((tmp_path / "lora" / "best" / "config.json").read_text())[
        "architectures"] == ["BertForMaskedLM"]
    assert lora.history
    whole = run(files, tmp_path / "whole", epochs=2)
    run(files, tmp_path / "cut", epochs=2, stop_after_steps=12)
    resumed = run(files, tmp_path / "cut", epochs=2, resume=True)
    assert resumed.history[-1]["validation"]["loss"] == pytest.approx(
        whole.history[-1]["validation"]["loss"], rel=1e-5)
    with pytest.raises(MinitfError, match="--verbalizer"):
        run(files, tmp_path / "cut", epochs=2, resume=True, verbalizer="pos=great,neg=bad")


@pytest.mark.parametrize("template, verbalizer, message", [
    ("it was [MASK]", VERBALIZER, "no {text}"),
    ("{text} it was", VERBALIZER, "no \\[MASK\\]"),
    ("{text} [MASK] [MASK]", VERBALIZER, "has 2 \\[MASK\\]"),
    ("{text} {txt} [MASK]", VERBALIZER, "unknown placeholder {txt}"),
    (TEMPLATE, "pos=good", "no word for the class\\(es\\) 'neg'"),
    (TEMPLATE, "pos=good,neg=good", "'good' for more than one class"),
    (TEMPLATE, "pos=good,neg=bad,meh=okay", "'meh', which the data does not have"),
    (TEMPLATE, "pos good,neg=bad", "is not LABEL=WORD"),
    (TEMPLATE, "pos=goodish,neg=bad", "'goodish' is not a single token.*close single tokens: "
     "good"),
])
def test_bad_prompts_are_one_clear_error_and_write_nothing(files, tmp_path, template,
                                                           verbalizer, message):
    with pytest.raises(MinitfError, match=message):
        run(files, tmp_path / "out", prompt=template, verbalizer=verbalizer)
    assert not (tmp_path / "out" / "last").exists()


def test_prompt_needs_a_masked_lm_and_both_flags(files, tmp_path):
    from ft_fakes import tiny_model_dir
    classifier = tiny_model_dir(tmp_path / "clf")
    with pytest.raises(MinitfError, match="needs a masked-LM model.*fine-tuned classifier"):
        P.load_prompt_classifier(classifier, files["tok"], TEMPLATE, VERBALIZER)
    with pytest.raises(MinitfError, match="go together"):
        run(files, tmp_path / "out", verbalizer=None)
    with pytest.raises(MinitfError, match="regression"):
        run(files, tmp_path / "out", regression=True)


# ---------------------------------------------------------------------------------------------
# Self-training (minitf/recipes/self_train.py)
# ---------------------------------------------------------------------------------------------


def unlabelled_file(path, n=80, seed=3):
    path.write_text("".join(f"{text}\n" for text, _ in toy_rows(n, seed=seed)))
    return path


@pytest.mark.parametrize("prompted", [True, False])
def test_self_training_teacher_then_student_on_soft_labels(files, tmp_path, prompted):
    from ft_fakes import tiny_model_dir
    settings = {} if prompted else {"prompt": None, "verbalizer": None,
                                    "model": str(tiny_model_dir(tmp_path / "base", head=False))}
    cfg = FT.FinetuneConfig(train=str(files["train"]), output=str(tmp_path / "out"),
                            model=str(files["model"]), unlabelled=str(
                                unlabelled_file(tmp_path / "u.txt")),
                            test=str(files["test"]), self_train_rounds=2, max_length=32,
                            batch_size=16, epochs=2, lr=2e-3, progress="off",
                            prompt=TEMPLATE, verbalizer=VERBALIZER)
    cfg = FT.FinetuneConfig(**{**cfg.__dict__, **settings})
    result = FT.finetune(cfg)
    out = tmp_path / "out"
    for name in ("teacher", "student-1", "student-2"):
        assert (out / name / "best" / "config.json").is_file(), name
    # the students trained on labels + unlabelled rows: 160 - 16 validation + 80
    assert result.history[0]["samples"] == 144 + 80
    assert result.test is not None and 0 <= result.test["accuracy"] <= 1


def test_a_killed_self_training_resumes_to_the_same_student(files, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    def self_train(output, **settings):
        return run(files, output, unlabelled=str(unlabelled_file(tmp_path / "u.txt")),
                   self_train_rounds=1, **settings)
    whole = self_train(tmp_path / "whole")
    cut = self_train(tmp_path / "cut", stop_after_steps=5)   # killed inside the teacher
    assert cut.interrupted and not (tmp_path / "cut" / "student-1").exists()
    with pytest.raises(MinitfError, match="--resume"):
        self_train(tmp_path / "cut")
    resumed = self_train(tmp_path / "cut", resume=True)
    weights = [load_file(tmp_path / run_dir / "student-1" / "last" / "model.safetensors")
               for run_dir in ("whole", "cut")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-6) for k in weights[0])
    assert resumed.history[-1]["validation"]["loss"] == pytest.approx(
        whole.history[-1]["validation"]["loss"], abs=1e-6)
    again = self_train(tmp_path / "cut", resume=True)   # finished: nothing is trained again
    assert again.history[-1]["validation"]["loss"] == pytest.approx(
        whole.history[-1]["validation"]["loss"], abs=1e-6)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(MinitfError, match="torchrun"):
        self_train(tmp_path / "elsewhere")


def test_a_tfidf_teacher_labels_the_unlabelled_texts(files, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from minitf.recipes import self_train as ST
    from minitf.tasks.tfidf import TfidfClassifier

    taught = []
    original = ST.tfidf_soft_labels
    monkeypatch.setattr(ST, "tfidf_soft_labels",
                        lambda *args: taught.append(original(*args)) or taught[-1])
    unlabelled = unlabelled_file(tmp_path / "u.txt")
    result = run(files, tmp_path / "whole", unlabelled=str(unlabelled), teacher="tfidf")
    out = tmp_path / "whole"
    assert not (out / "teacher").exists() and (out / "student-1" / "best").is_dir()
    assert result.history[0]["samples"] == 144 + 80   # 160 - 16 validation + the unlabelled
    # the teacher: TF-IDF on the rows the student trains on, classes in the student's order
    cfg = FT.FinetuneConfig(train=str(files["train"]), output=str(tmp_path / "x"))
    splits = FT.load_splits(cfg, say=lambda *a: None)
    assert len(splits.train) == 144 and splits.labels == result.label_names
    texts = unlabelled.read_text().splitlines()
    expected = TfidfClassifier().fit(splits.train.texts, splits.targets["train"],
                                     2).predict_proba(texts)
    torch.testing.assert_close(taught[0], expected.float())
    # killed inside the student, resumed: the same student
    cut = run(files, tmp_path / "cut", unlabelled=str(unlabelled), teacher="tfidf",
              stop_after_steps=5)
    assert cut.interrupted
    with pytest.raises(MinitfError, match="self-trained with --teacher tfidf"):
        run(files, tmp_path / "cut", unlabelled=str(unlabelled), resume=True)
    run(files, tmp_path / "cut", unlabelled=str(unlabelled), teacher="tfidf", resume=True)
    weights = [load_file(tmp_path / d / "student-1" / "last" / "model.safetensors")
               for d in ("whole", "cut")]
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-6) for k in weights[0])
    with pytest.raises(MinitfError, match="--teacher tfidf chooses the teacher of self-training"):
        run(files, tmp_path / "alone", teacher="tfidf")
    assert not (tmp_path / "alone").exists()


def test_soft_targets_are_cross_entropy_against_probabilities():
    from minitf.model.bert import classification_loss
    logits = torch.randn(4, 3)
    hard = torch.tensor([0, 2, 1, 1])
    one_hot = torch.nn.functional.one_hot(hard, 3).float()
    torch.testing.assert_close(classification_loss(logits, one_hot),
                               classification_loss(logits, hard))
    probs = torch.softmax(torch.randn(4, 3), -1)
    expected = -(probs * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(classification_loss(logits, probs), expected)


def test_unlabelled_bad_files_and_overlap(files, tmp_path):
    def run_with(path, **settings):
        return run(files, tmp_path / "out", unlabelled=str(path), epochs=1, **settings)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(MinitfError, match="no text in it"):
        run_with(empty)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"abc\x00\x01\x02" * 10)
    with pytest.raises(MinitfError, match="binary"):
        run_with(binary)
    assert not (tmp_path / "out").exists()   # nothing half-written
    header_only = tmp_path / "h.csv"
    header_only.write_text("text\n")
    with pytest.raises(MinitfError):
        run_with(header_only)
    overlap = tmp_path / "overlap.txt"
    test_texts = [line.rsplit(",", 1)[0] for line in
                  files["test"].read_text().splitlines()[1:]]
    overlap.write_text("\n".join(test_texts[:7] + ["a quite new film"]) + "\n")
    with pytest.warns(UserWarning, match=r"\b\d+ of its 8 texts are also in --test"):
        run_with(overlap, test=str(files["test"]))


def test_a_malformed_template_is_refused_before_the_output_folder_is_made(files, tmp_path):
    with pytest.raises(MinitfError, match="no \\[MASK\\]"):
        run(files, tmp_path / "out", prompt="{text} was")
    with pytest.raises(MinitfError, match="twice"):
        run(files, tmp_path / "out", verbalizer="pos=good,pos=bad")
    assert not (tmp_path / "out").exists()


def test_a_lone_word_start_piece_inside_the_prompt_is_dropped():
    class Pieces:  # SentencePiece's habit: every text it is given starts with "▁"
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "▁", "好", "。"]

    ids = [5, 7]                                                       # ▁ 。
    assert P.continued(Pieces(), ids, "。", after_something=True) == [7]
    assert P.continued(Pieces(), ids, "。", after_something=False) == ids   # the text's start
    assert P.continued(Pieces(), ids, " 。", after_something=True) == ids   # a real space
