"""benchmarks/pretrain_ablation.py's own logic: the held-out split and the in-domain upweighting
of the pre-training text, and the table's aggregation of seeds (no training here)."""

from __future__ import annotations

from benchmarks import pretrain_ablation as bench


def test_split_text_holds_out_the_same_lines_and_repeats_only_training_reviews(tmp_path):
    news = [f"新闻段落{i}。" for i in range(60)]
    reviews = [f"评论{i}很好" for i in range(40)]
    (tmp_path / "pretrain.txt").write_text("".join(x + "\n" for x in news + reviews), "utf-8")
    (tmp_path / "train.csv").write_text(
        "text,label\n" + "".join(f"{r},1\n" for r in reviews), "utf-8")
    files = bench.split_text(tmp_path / "pretrain.txt", tmp_path / "train.csv", tmp_path)
    read = lambda name: files[name].read_text("utf-8").splitlines()  # noqa: E731
    train, held, upweighted = read("train"), read("held_out"), read("upweighted")
    assert len(held) == 5 and not set(held) & set(train)
    assert sorted(train + held) == sorted(news + reviews)
    counts = {x: upweighted.count(x) for x in set(upweighted)}
    assert all(counts[x] == (3 if x in reviews else 1) for x in train)
    assert not set(held) & set(upweighted)  # the held-out reviews are not pre-trained on
    again = bench.split_text(tmp_path / "pretrain.txt", tmp_path / "train.csv", tmp_path)
    assert again["held_out"].read_text("utf-8").splitlines() == held


def test_row_means_the_seeds_measured_and_marks_the_rest():
    cells = {"pretrain A": {"steps": 100, "seconds_per_step": 0.5, "load_average_start": 2.0,
                            "load_average_end": 3.0, "wall_seconds": 330.0, "cpu_seconds": 250.0,
                            "held_out": {"accuracy": 0.2, "most_frequent_token_accuracy": 0.06}},
             "head A 500 0": {"accuracy": 0.60, "seconds": 10.0},
             "head A 500 1": {"accuracy": 0.70, "seconds": 20.0},
             "head A 2000 0": {"accuracy": 0.75, "seconds": 30.0}}
    row = bench.row(cells, "A")
    assert row[1:5] == ["100", "0.500", "250", "2.0 → 3.0"]
    assert row[5] == "0.200 (0.060)"
    assert row[6] == "65.0 (60.0 / 70.0)" and row[7] == "75.0" and row[8] == "-"
    assert row[9] == "330 + 60"
    assert bench.row(cells, "B")[1] == "not run"
    assert bench.mean_and_each([]) == "not run"


def test_steps_done_come_from_the_models_metrics_when_a_budget_stopped_early(tmp_path):
    (tmp_path / "model-A").mkdir()
    (tmp_path / "model-A" / "metrics.jsonl").write_text(
        '{"type": "eval", "step": 55}\n{"type": "eval", "step": 515}\n')
    cells = {"pretrain A": {"steps": 551, "train_seconds": 515.0},
             "pretrain B": {"steps": 10, "steps_planned": 12, "train_seconds": 5.0}}
    bench.steps_done(cells, tmp_path)
    assert cells["pretrain A"]["steps"] == 515 and cells["pretrain A"]["steps_planned"] == 551
    assert cells["pretrain A"]["seconds_per_step"] == 1.0
    assert cells["pretrain B"]["steps"] == 10  # recorded as done already: left alone
