"""Chinese word segmentation on People's Daily: minitf next to its peers, one split, one run.

    python benchmarks/tokens.py [--epochs 2] [--train-paragraphs N] [--hidden 128 --layers 2]

Data: minitf.data.corpora.prepare_pd (seed 0; 80/10/10 by distinct paragraph). Every system
learns from the training paragraphs only, and is scored on the test paragraphs with SIGHAN's
definition (minitf.tasks.token_metrics.segmentation_scores): word P/R/F1, OOV / IV recall
against the training lexicon. Characters per second: segmenting the test paragraphs, one
process, after a warm-up, on this machine in this run.

    fmm        forward maximum matching with the training lexicon
    jieba      (if installed) with a dictionary rebuilt from the training words, HMM off / on
    minitf     BertForTokenClassification trained from scratch here (no pre-training) with
               `minitf finetune --task segment`, a character vocabulary from the training text

Not here yet: pkuseg and snownlp retrained, minitf with pre-training, bf16 / int8.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_header  # noqa: E402

from minitf.data import tokens as T  # noqa: E402
from minitf.data.corpora import prepare_pd  # noqa: E402
from minitf.model.bert import BertModel  # noqa: E402
from minitf.model.config import BertConfig  # noqa: E402
from minitf.recipes.finetune import FinetuneConfig, finetune  # noqa: E402
from minitf.tasks.token_metrics import segmentation_scores  # noqa: E402
from minitf.tasks.tokens import TokenTagger  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def fmm(text: str, lexicon: set[str], longest: int) -> list[str]:
    words, i = [], 0
    while i < len(text):
        for n in range(min(longest, len(text) - i), 0, -1):
            if n == 1 or text[i:i + n] in lexicon:
                words.append(text[i:i + n])
                i += n
                break
    return words


def score(name: str, segment, texts: list[str], gold: list[list[str]], lexicon: set[str]
          ) -> dict:
    segment(texts[:50])  # warm-up
    started = time.perf_counter()
    predicted = segment(texts)
    seconds = time.perf_counter() - started
    for text, words in zip(texts, predicted, strict=True):
        assert "".join(words) == text, (name, text[:40])   # predictions never change the text
    s = segmentation_scores(gold, [T.words_to_tags(w) for w in predicted], texts, lexicon)
    return {"system": name, "f1": s["f1"], "precision": s["precision"], "recall": s["recall"],
            "oov_recall": s["oov_recall"], "iv_recall": s["iv_recall"],
            "chars_per_s": sum(map(len, texts)) / seconds}


def train_minitf(data: Path, work: Path, args: argparse.Namespace) -> Path:
    counts = collections.Counter((data / "train.words").read_text(encoding="utf-8"))
    chars = sorted(c for c in counts if not c.isspace())
    model = work / "init"
    model.mkdir(parents=True)
    (model / "vocab.txt").write_text("\n".join(SPECIALS + chars) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(SPECIALS) + len(chars), hidden_size=args.hidden,
                         num_hidden_layers=args.layers, num_attention_heads=args.hidden // 32,
                         intermediate_size=4 * args.hidden, max_position_embeddings=128)
              ).save_pretrained(model)
    finetune(FinetuneConfig(task="segment", train=str(data / "train.words"),
                            validation=str(data / "validation.words"), model=str(model),
                            output=str(work / "seg"), epochs=args.epochs, batch_size=32,
                            lr=args.lr, max_length=128, progress="log",
                            max_train_samples=args.train_paragraphs))
    return work / "seg" / "best"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-paragraphs", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="minitf-tokens-"))
    data = prepare_pd(work / "pd", seed=0).folder
    train = T.read_sentences(data / "train.words", "words")
    test = [s for s in T.read_sentences(data / "test.words", "words").items if s.units]
    lexicon = {s.text[a:b] for s in train.items for a, b, _ in T.tags_to_spans(s.tags)}
    texts, gold = [s.text for s in test], [s.tags for s in test]
    longest = max(map(len, lexicon))
    rows = [score("fmm (training lexicon)", lambda ts: [fmm(t, lexicon, longest) for t in ts],
                  texts, gold, lexicon)]
    try:
        import jieba
        freq = collections.Counter(s.text[a:b] for s in train.items
                                   for a, b, _ in T.tags_to_spans(s.tags))
        (work / "dict.txt").write_text("".join(f"{w} {n}\n" for w, n in freq.items()),
                                       encoding="utf-8")
        cutter = jieba.Tokenizer(dictionary=str(work / "dict.txt"))
        for hmm in (False, True):
            rows.append(score(f"jieba (training dictionary, HMM {'on' if hmm else 'off'})",
                              lambda ts, h=hmm: [list(cutter.cut(t, HMM=h)) for t in ts],
                              texts, gold, lexicon))
    except ImportError:
        print("jieba not installed: skipped", file=sys.stderr)
    tagger = TokenTagger.from_pretrained(train_minitf(data, work, args), batch_size=64)
    rows.append(score(f"minitf ({args.layers}×{args.hidden}, no pre-training, fp32)",
                      lambda ts: [[w.text for w in ws] for ws in tagger.segment(ts)],
                      texts, gold, lexicon))
    print(json.dumps({"machine": machine_header(), "args": vars(args), "rows": rows},
                     ensure_ascii=False, indent=1))
    print("\n| system | word F1 | P | R | OOV recall | IV recall | chars/s |\n|---|---|---|---|"
          "---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['f1']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | "
              f"{r['oov_recall']:.3f} | {r['iv_recall']:.4f} | {r['chars_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
