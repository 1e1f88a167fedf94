"""`minitf demo --task segment` / `make demo-seg`: Chinese word segmentation and part-of-speech
tagging with a small BERT trained here, next to the segmenters people use, all learning from
the same People's Daily paragraphs. Offline, end to end, on 2 CPU cores:

    1. data        People's Daily 1998 split 80/10/10 by paragraph (prepare_pd); pre-training
                   text = its training paragraphs + the training reviews (prepare_zh), never a
                   validation or test paragraph
    2. tokenizer   one piece per character (`minitf tokenizer train --model-type characters`):
                   every character is one position of the tagger
    3. pre-train   a tiny BERT, masked LM, for --pretrain-minutes; position embeddings start
                   at the sinusoids (--position-init sinusoid; see docs/zh.md)
    4. fine-tune   `finetune --task segment` (B/M/E/S per character) and `--task tag` (B-TAG /
                   I-TAG: words and their part of speech at once) from the pre-trained model,
                   windows of --max-length characters, one epoch
    5. compare     on the same test paragraphs: forward maximum matching, jieba (if installed)
                   with the training words as its dictionary, snownlp retrained with its own
                   trainer (minitf/tasks/segmenters.py); word F1, OOV / IV recall, characters
                   per second; POS accuracy on the gold words for the tagger
    6. examples    a few test sentences as each system segments them

Every number printed is measured in this run; the table also goes to OUT/results.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minitf.data import tokens as T
from minitf.io import write_text
from minitf.recipes.demo_zh import Timer
from minitf.recipes.finetune import FinetuneConfig, finetune
from minitf.recipes.pretrain import PretrainConfig, pretrain
from minitf.recipes.tokens import score
from minitf.run_folder import RunFolder
from minitf.tasks import segmenters as S
from minitf.tasks.tokens import TokenTagger

DEFAULT_OUTPUT = "demo-seg"
EXAMPLES = 3


@dataclass
class DemoSegConfig:
    output: str = DEFAULT_OUTPUT
    pretrain_minutes: float = 2.0
    pretrain_steps: int | None = None   # instead of the minutes (tests)
    config: str = "tiny"                # 2 layers × 128 hidden
    heads: int = 4                      # tiny's 2 heads segmented worse (docs/zh.md)
    # Segmentation looks a few characters either way: short windows make more, cheaper steps,
    # and the small model left its first plateau after ~1,000 of them (docs/zh.md).
    max_length: int = 32
    pretrain_lr: float = 1e-3
    finetune_lr: float = 4e-3
    batch_size: int = 16
    epochs: int = 1
    segment_paragraphs: int | None = None   # training paragraphs for segmentation (None: all
    tag_paragraphs: int | None = 8000       # 15,195); fewer for tagging (77 labels)
    ner_paragraphs: int | None = None       # benchmarks/ner.py (not part of the demo)
    test_paragraphs: int = 600              # the test paragraphs every system is scored on
    peers: tuple[str, ...] = ("fmm", "jieba", "snownlp")    # those installed are compared
    seed: int = 0


def demo_seg(cfg: DemoSegConfig) -> list[dict[str, Any]]:
    """Run the demo; returns the table's rows (also printed and written to results.md).
    --output is a minitf folder (minitf/run_folder.py), locked while the demo runs."""
    with RunFolder(cfg.output, "demo-seg") as folder:
        return _demo_seg(cfg, folder.open())


def _demo_seg(cfg: DemoSegConfig, out: Path) -> list[dict[str, Any]]:
    from minitf.data.corpora import prepare_pd, prepare_zh

    say = Timer(time.perf_counter())
    pd = prepare_pd(out / "pd", seed=cfg.seed).folder
    pretrain_text = prepare_zh(out / "zh", seed=cfg.seed).pretrain
    say(f"data: People's Daily split by paragraph in {pd}; pre-training text {pretrain_text}")
    bert, steps = pretrain_characters(cfg, pretrain_text, out, say)
    train = T.read_sentences(pd / "train.words", "words")
    test = T.read_sentences(pd / "test.words", "words")
    test = T.Sentences([s for s in test.items if s.units][:cfg.test_paragraphs], "words",
                       test.source, test.labels)
    lexicon = set(S.training_words(train))
    segmenter, seconds = finetune_characters(cfg, "segment", bert, pd, out, say)
    tagger = TokenTagger.from_pretrained(segmenter, batch_size=64)
    decoding = (f"; training words as lexicon, weight {tagger.lexicon_weight:g}"
                if tagger.uses_lexicon else "")
    rows = [S.score_segmenter(f"minitf (pre-trained {steps} steps, fine-tuned{decoding})",
                              minitf_segmenter(tagger), test, lexicon, seconds)]
    tag_dir, tag_seconds = finetune_characters(cfg, "tag", bert, pd, out, say)
    tag_test = read_like(pd / "test.pd", "word-tags", test)
    tagged = score("tag", TokenTagger.from_pretrained(tag_dir, batch_size=64), tag_test, lexicon)
    rows.append({"system": "minitf tagger (segmentation + POS at once)", "f1": tagged["f1"],
                 "oov_recall": tagged["oov_recall"], "iv_recall": tagged["iv_recall"],
                 "tag_accuracy": tagged["tag_accuracy"], "joint_f1": tagged["joint_f1"],
                 "train_seconds": tag_seconds})
    peers = peer_segmenters(cfg.peers, train, out, say)
    rows += [S.score_segmenter(name, segment, test, lexicon, trained)
             for name, (segment, trained) in peers.items()]
    report = format_report(cfg, rows, test, steps)
    examples = format_examples({rows[0]["system"]: minitf_segmenter(tagger),
                                **{n: s for n, (s, _) in peers.items()}}, test)
    print(report + "\n\n" + examples, flush=True)
    write_text(out / "results.md", report + "\n\n" + examples + "\n")
    say(f"done; the segmenter: {segmenter}, the tagger: {tag_dir}; table: {out / 'results.md'}")
    return rows


def pretrain_characters(cfg: DemoSegConfig, text: Path, out: Path, say: Timer
                        ) -> tuple[Path, int]:
    """A character tokenizer on the pre-training text, then the masked LM; (its directory,
    the steps it trained)."""
    from minitf.data.text import read_documents
    from minitf.tokenizers.training import train_sentencepiece

    tokenizer = train_sentencepiece(read_documents(text), out / "tokenizer",
                                    model_type="characters", overwrite=True, source=str(text))
    say(f"tokenizer: {tokenizer.vocab_size} characters (coverage "
        f"{tokenizer.character_coverage})")
    budget = ({"max_steps": cfg.pretrain_steps} if cfg.pretrain_steps is not None
              else {"time_budget": cfg.pretrain_minutes})
    result = pretrain(PretrainConfig(
        train=[str(text)], output=str(out / "bert"), tokenizer=str(out / "tokenizer"),
        config=cfg.config, heads=cfg.heads, position_init="sinusoid", dropout=0.0,
        max_length=cfg.max_length,
        batch_size=2 * cfg.batch_size, lr=cfg.pretrain_lr, seed=cfg.seed, max_eval_blocks=64,
        progress="log", overwrite=True, **budget))
    say(f"pre-trained {result.total_steps} steps in {result.train_seconds / 60:.1f} min, "
        f"held-out masked-token accuracy {result.final.get('accuracy', 0):.3f}")
    return out / "bert", result.total_steps


def finetune_characters(cfg: DemoSegConfig, task: str, model: Path, pd: Path, out: Path,
                        say: Timer) -> tuple[Path, float]:
    """`minitf finetune --task segment|tag|ner` from `model` on (a seeded sample of) the
    training paragraphs for cfg.epochs (no validation split: the test paragraphs score the last
    epoch); (the model's directory, seconds of training)."""
    suffix = {"segment": "words", "tag": "pd", "ner": "conll"}[task]
    samples = {"segment": cfg.segment_paragraphs, "tag": cfg.tag_paragraphs,
               "ner": cfg.ner_paragraphs}[task]
    result = finetune(FinetuneConfig(
        task=task, model=str(model), train=str(pd / f"train.{suffix}"),
        validation_fraction=0.0, output=str(out / task),
        max_length=cfg.max_length, batch_size=cfg.batch_size, lr=cfg.finetune_lr,
        epochs=cfg.epochs, seed=cfg.seed, progress="log", overwrite=True,
        max_train_samples=samples))
    say(f"fine-tuned --task {task} in {result.train_seconds / 60:.1f} min")
    return out / task / "best", result.train_seconds


def minitf_segmenter(tagger: TokenTagger) -> S.Segmenter:
    return lambda texts: [[w.text for w in words] for words in tagger.segment(texts)]


def read_like(path: Path, fmt: str, sample: T.Sentences) -> T.Sentences:
    """The sentences of `path` whose text is one of `sample`'s, in `sample`'s order."""
    read = T.read_sentences(path, fmt)
    by_text = {s.text: s for s in read.items}
    return T.Sentences([by_text[s.text] for s in sample.items], fmt, str(path), read.labels)


def peer_segmenters(names: tuple[str, ...], train: T.Sentences, out: Path, say: Timer
                    ) -> dict[str, tuple[S.Segmenter, float | None]]:
    """The peers among `names` that are installed, each learning from the training words;
    (segmenter, seconds of training) by row name."""
    peers: dict[str, tuple[S.Segmenter, float | None]] = {}
    if "fmm" in names:
        peers["forward maximum matching (training words)"] = (S.fmm_segmenter(train), None)
    try:
        for hmm in (False, True) if "jieba" in names else ():
            peers[f"jieba (training words, HMM {'on' if hmm else 'off'})"] = (
                S.jieba_segmenter(train, out, hmm), None)
    except ImportError:
        say("jieba is not installed: its rows are left out (pip install jieba)")
    try:
        if "snownlp" in names:
            peers["snownlp (retrained)"] = S.snownlp_segmenter(train, out)
    except ImportError:
        say("snownlp is not installed: its row is left out")
    return peers


def format_report(cfg: DemoSegConfig, rows: list[dict[str, Any]], test: T.Sentences,
                  steps: int) -> str:
    chars = sum(len(s.units) for s in test.items)
    lines = [f"Word segmentation on {len(test.items)} held-out People's Daily paragraphs "
             f"({chars:,} characters); every system learnt from the same training paragraphs. "
             f"minitf: {cfg.config} BERT, {steps} pre-training steps, one epoch of fine-tuning.",
             "", "| system | word F1 | OOV recall | IV recall | POS accuracy | chars/s | "
             "train s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        pos = f"{r['tag_accuracy']:.4f}" if "tag_accuracy" in r else ""
        speed = f"{r['chars_per_s']:,.0f}" if "chars_per_s" in r else ""
        trained = "" if r.get("train_seconds") is None else f"{r['train_seconds']:,.0f}"
        lines.append(f"| {r['system']} | {r['f1']:.4f} | {r['oov_recall']:.3f} | "
                     f"{r['iv_recall']:.4f} | {pos} | {speed} | {trained} |")
    return "\n".join(lines)


def format_examples(segmenters: dict[str, S.Segmenter], test: T.Sentences) -> str:
    """The first few short test sentences: the reference, then each system's words."""
    picked = [s for s in test.items if 12 <= len(s.units) <= 40][:EXAMPLES]
    lines = []
    for sentence in picked:
        lines.append(f"reference: {' '.join(w for w in words_of(sentence))}")
        for name, segment in segmenters.items():
            lines.append(f"  {name}: {' '.join(segment([sentence.text])[0])}")
    return "\n".join(lines)


def words_of(sentence: T.Sentence) -> list[str]:
    return [sentence.text[a:b] for a, b, _ in T.tags_to_spans(sentence.tags)]
