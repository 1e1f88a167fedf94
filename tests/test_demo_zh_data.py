"""`minitf demo --lang zh --data DIR --results FILE` on a handmade split (a few dozen rows, a
tiny model, seconds of pre-training): the rows it writes, the checks on DIR, the refusal to
replace --results; the table's aggregation (mean ± sd) on fixed rows; minitf's TF-IDF +
logistic regression against scikit-learn's."""

from __future__ import annotations

import csv
import json
import random

import pytest

import minitf.data.corpora
from minitf.errors import MinitfError
from minitf.recipes.demo_zh import DemoZhConfig, demo_zh
from minitf.recipes.demo_zh_rows import format_table, summarise

pytestmark = pytest.mark.usefixtures("one_thread")

GOOD, BAD = ["天气很好", "我们很好", "好的人很好"], ["他不在", "不是这个", "人不在这"]


def write_split(folder, sizes=(("train", 40), ("validation", 12), ("test", 12)), seed=0):
    """DIR/train.csv, validation.csv, test.csv (text,label); texts repeat a few patterns."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for k, (split, n) in enumerate(sizes):
        with open(folder / f"{split}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for i in range(n):
                label = i % 2
                writer.writerow([rng.choice(GOOD if label else BAD) + str(k) + str(i), label])
    return folder


@pytest.fixture
def tiny_people_daily(monkeypatch):
    """People's Daily replaced by a few paragraphs (pd_splits's shape)."""
    paragraphs = [[("今天", "t"), ("天气", "n"), ("总之", "c"), ("很", "d"), ("好", "a")],
                  [("东西", "n"), ("总之", "c"), ("很", "d"), ("差", "a")]] * 15
    monkeypatch.setattr(minitf.data.corpora, "pd_splits",
                        lambda seed=0: ({"train": paragraphs, "validation": [], "test": []}, 0))


def tiny_config(tmp_path, data, **changes):
    settings = dict(output=str(tmp_path / "demo"), data=str(data), pretrain_minutes=0.05,
                    vocab_size=40, pretrain_batch_size=8, pretrain_max_length=16,
                    pretrain_eval_blocks=4, labels=(10, 0), epochs=(1, 1), max_length=24,
                    rows=("tfidf", "scratch", "zero-shot"), method="head")
    return DemoZhConfig(**{**settings, **changes})


def test_demo_with_data_dir_writes_the_results_json(tmp_path, tiny_people_daily, capsys):
    pytest.importorskip("sentencepiece")
    data = write_split(tmp_path / "split")
    with open(data / "test.csv", "a", encoding="utf-8", newline="") as f:
        csv.writer(f).writerow(["天气很好30x", 1])
    with open(data / "train.csv", "a", encoding="utf-8", newline="") as f:
        csv.writer(f).writerow(["天气很好30x", 1])  # one test text also in train.csv
    results = tmp_path / "table.json"
    with pytest.warns(UserWarning, match="1 of the 13 texts of test.csv are also in train"):
        rows = demo_zh(tiny_config(tmp_path, data, results=str(results)))
    written = json.loads(results.read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(rows))
    assert [(r["system"], r["labels"]) for r in written] == [
        ("tfidf", 10), ("scratch", 10), ("head", 10), ("zero-shot", 0),
        ("tfidf", 41), ("scratch", 41), ("head", 41)]
    for row in written:
        assert {"system", "name", "labels", "test_accuracy", "macro_f1", "seconds",
                "pretraining_steps", "pretraining_minutes"} <= set(row)
        assert 0 <= row["test_accuracy"] <= 1 and row["seconds"] >= 0
    by = {(r["system"], r["labels"]): r for r in written}
    assert by["tfidf", 10]["pretraining_steps"] is None
    assert by["scratch", 41]["pretraining_steps"] == 0
    assert by["head", 41]["pretraining_steps"] > 0 and by["head", 41]["pretraining_minutes"] > 0
    assert by["head", 41]["pretraining_steps"] == by["zero-shot", 0]["pretraining_steps"]
    # the first 10 rows of train.csv were the few-label set; the pre-training text holds
    # People's Daily and the training texts, never a validation or test one
    few = (tmp_path / "demo" / "data" / "train-10-first.csv").read_text(encoding="utf-8")
    assert few == "".join((data / "train.csv").read_text(encoding="utf-8").splitlines(True)[:11])
    pretrain = (tmp_path / "demo" / "data" / "pretrain.txt").read_text(encoding="utf-8")
    validation = [r["text"] for r in csv.DictReader(open(data / "validation.csv",
                                                          encoding="utf-8"))]
    lines = pretrain.splitlines()
    assert "今天天气总之很好" in lines and "天气很好30x" in lines
    assert not set(validation) & set(lines)
    out = capsys.readouterr().out
    assert "| TF-IDF char 1-3-grams + logistic regression |" in out and "all (41)" in out
    with pytest.raises(MinitfError, match="already exists; pass --overwrite"):
        demo_zh(tiny_config(tmp_path, data, results=str(results)))


def test_the_prompt_and_self_training_rows(tmp_path, tiny_people_daily):
    pytest.importorskip("sentencepiece")
    data = write_split(tmp_path / "split")
    rows = demo_zh(tiny_config(tmp_path, data, labels=(10,), epochs=(1,),
                               method="prompt+self-train", rows=("tfidf+self-train",)))
    assert [(r["system"], r["labels"]) for r in rows] == [
        ("tfidf+self-train", 10), ("prompt+self-train", 10)]
    student = rows[1]["directory"]
    assert student.endswith("ft-prompt-10-student")
    config = json.loads((tmp_path / "demo" / "ft-prompt-10-student" / "best" / "config.json")
                        .read_text())
    assert config["minitf_prompt"]["template"] == "{text}总之很[MASK]。"
    assert (tmp_path / "demo" / "ft-prompt-10" / "best").is_dir()  # its teacher


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "validation.csv").unlink(), r"no validation\.csv"),
    (lambda d: (d / "test.csv").write_text("review,label\n好,1\n", encoding="utf-8"),
     r"test\.csv: no text column 'text'.*columns text,label"),
    (lambda d: (d / "train.csv").write_text("text,label\n好,1\n坏\n", encoding="utf-8"),
     r"train\.csv:3"),
])
def test_a_bad_data_dir_is_one_clear_error(tmp_path, damage, message):
    data = write_split(tmp_path / "split")
    damage(data)
    with pytest.raises(MinitfError, match=message):
        demo_zh(tiny_config(tmp_path, data))
    assert not (tmp_path / "demo" / "data" / "pretrain.txt").exists()


def test_labels_the_prompt_has_no_word_for_are_refused_before_pre_training(tmp_path,
                                                                          tiny_people_daily):
    data = write_split(tmp_path / "split")
    for name in ("train", "validation", "test"):
        text = (data / f"{name}.csv").read_text(encoding="utf-8")
        (data / f"{name}.csv").write_text(text.replace(",1\n", ",pos\n")
                                          .replace(",0\n", ",neg\n"), encoding="utf-8")
    with pytest.raises(MinitfError, match="prompt rows \\(zero-shot\\).*no word for the class"):
        demo_zh(tiny_config(tmp_path, data))
    assert not (tmp_path / "demo" / "tokenizer").exists()


def test_results_are_refused_before_anything_runs(tmp_path):
    existing = tmp_path / "table.json"
    existing.write_text("[]\n")
    with pytest.raises(MinitfError, match="already exists; pass --overwrite"):
        demo_zh(tiny_config(tmp_path, tmp_path / "nowhere", results=str(existing)))
    assert existing.read_text() == "[]\n" and not (tmp_path / "demo").exists()


def test_the_command_line_passes_the_zh_flags_and_refuses_them_in_english(tmp_path, capsys):
    from minitf.cli import main

    existing = tmp_path / "table.json"
    existing.write_text("[]\n")
    assert main(["demo", "--lang", "zh", "--data", str(tmp_path), "--results", str(existing),
                 "--method", "prompt", "--output", str(tmp_path / "demo")]) == 2
    assert "table.json already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["demo", "--data", str(tmp_path)]) == 2
    assert "--data: only with --lang zh" in capsys.readouterr().err


def test_summarise_takes_mean_and_sample_sd_over_seeds():
    rows = [{"system": "tfidf", "name": "T", "labels": 500, "test_accuracy": a, "seconds": s}
            for a, s in ((0.70, 1.0), (0.74, 3.0), (0.78, 5.0))]
    rows.append({"system": "head", "name": "H", "labels": 500, "test_accuracy": 0.6,
                 "seconds": 9.0})
    tfidf, head = summarise(rows)
    assert tfidf["mean"] == pytest.approx(0.74) and tfidf["sd"] == pytest.approx(0.04)
    assert tfidf["seconds"] == pytest.approx(3.0) and tfidf["accuracies"] == [0.70, 0.74, 0.78]
    assert head["mean"] == 0.6 and head["sd"] is None
    table = format_table(rows, [500])
    assert table.splitlines() == ["| system | 500 labels |", "|---|---|",
                                  "| T | 74.0 ± 4.0 (3 s) |", "| H | 60.0 (9 s) |"]


def test_tfidf_logistic_regression_matches_scikit_learn():
    np = pytest.importorskip("numpy")
    text = pytest.importorskip("sklearn.feature_extraction.text")
    linear = pytest.importorskip("sklearn.linear_model")
    from minitf.tasks.tfidf import TfidfClassifier, self_trained

    rng = random.Random(1)
    texts = [rng.choice(GOOD if i % 2 else BAD) + rng.choice("天地人和中国大小") * rng.randint(0, 3)
             for i in range(80)]
    labels = [i % 2 for i in range(80)]
    ours = TfidfClassifier().fit(texts[:60], labels[:60])
    vectorizer = text.TfidfVectorizer(analyzer="char", ngram_range=(1, 3))
    theirs = linear.LogisticRegression(tol=1e-8, max_iter=5000).fit(
        vectorizer.fit_transform(texts[:60]), labels[:60])
    np.testing.assert_allclose(ours.features(texts[60:]).to_dense().numpy(),
                               vectorizer.transform(texts[60:]).toarray(), atol=1e-12)
    np.testing.assert_allclose(ours.predict_proba(texts[60:]).numpy(),
                               theirs.predict_proba(vectorizer.transform(texts[60:])), atol=1e-4)
    student = self_trained(texts[:20], labels[:20], texts[20:60], 2)
    assert len(student.vocabulary) > len(TfidfClassifier().fit(texts[:20], labels[:20])
                                         .vocabulary)  # the student saw the unlabelled texts
