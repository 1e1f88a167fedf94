"""Using a trained model: load a fine-tuned classifier, predict, evaluate, embed sentences.

    load_for_inference(dir)            → (classifier, tokenizer, label names in id order)
    predict_logits(model, data)        → logits (n, num_labels), in the data's order
    evaluate_encoded(model, data, ..)  → metrics: accuracy, macro-F1, per class, confusion
                                         matrix and loss; or, for a regression model
                                         (num_labels == 1), MSE, MAE, Pearson r and loss
    encode_texts(model, tok, texts)    → mean-pooled, L2-normalised sentence embeddings
    Classifier.from_pretrained(dir)(texts) → a Classification per text: label, probability,
                                         every class's probability (like FillMask)

The command line over these is minitf/cli/{evaluate,predict,encode}.py; the fine-tuning
recipe evaluates with the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from minitf.data import examples as D
from minitf.errors import MinitfError
from minitf.model.bert import BertForSequenceClassification, BertModel, classification_loss
from minitf.model.freeze import CachedPrefix, FreezePlan, classifier_logits
from minitf.tasks.metrics import classification_metrics, regression_metrics

NO_FREEZE = FreezePlan("none", None)


def load_tokenizer(directory: str | Path) -> Any:
    """The tokenizer of a model directory: WordPiece (vocab.txt) or SentencePiece
    (spiece.model), as minitf.tokenizers.wordpiece.load_tokenizer chooses. One name for the
    recipes and commands to call (and for tests to replace with a stand-in)."""
    from minitf.tokenizers.wordpiece import load_tokenizer as load
    return load(directory)


def load_for_inference(model: str | Path, attn_backend: str = "auto",
                       device: torch.device | str = "cpu", adapter: str | Path | None = None,
                       template: str | None = None, verbalizer: str | None = None
                       ) -> tuple[BertForSequenceClassification, Any, list[str]]:
    """A fine-tuned classifier directory → (model on `device`, tokenizer, label names).
    With `adapter` (a PEFT LoRA adapter directory), `model` is its base model. A prompt
    classifier (minitf/tasks/prompt.py: config.json has its prompt) loads as one; `template`
    and `verbalizer` make any masked-LM directory one (zero-shot)."""
    from minitf.paths import resolve_model_dir
    from minitf.tasks import prompt as P
    from minitf.tasks.peft_format import load_adapted_classifier

    directory = resolve_model_dir(model)
    if template is not None or verbalizer is not None or P.is_prompt_model(directory):
        if adapter:
            raise MinitfError("--adapter with a prompt classifier: give the merged directory "
                              "(best/ or last/) as --model instead")
        tokenizer = load_tokenizer(directory)
        classifier = P.load_prompt_classifier(directory, tokenizer, template, verbalizer,
                                              attn_backend=attn_backend)
        return classifier.to(device), tokenizer, classifier.prompt.labels
    classifier = (load_adapted_classifier(directory, adapter, attn_backend) if adapter else
                  BertForSequenceClassification.from_pretrained(directory,
                                                                attn_backend=attn_backend))
    if not classifier.config.id2label:
        raise MinitfError(f"{directory}: config.json has no id2label; is this a fine-tuned "
                          "classifier (minitf finetune's best/ or last/ directory)?")
    labels = [classifier.config.id2label[i] for i in range(classifier.config.num_labels)]
    return classifier.to(device), load_tokenizer(directory), labels


def encode_examples(model: Any, examples: D.Examples, tokenizer: Any,
                    labels: list[int] | list[float] | None = None, max_length: int = 128
                    ) -> D.Encoded:
    """The model's input for `examples`: each text in its prompt for a prompt classifier
    (minitf/tasks/prompt.py), else [CLS] text [SEP] (text pair [SEP])."""
    from minitf.tasks import prompt as P
    if isinstance(model, P.PromptClassifier):
        return P.encode(examples, tokenizer, model.prompt, labels, max_length)
    return D.encode(examples, tokenizer, labels, max_length)


def predict_logits(model: BertForSequenceClassification, data: D.Encoded,
                   plan: FreezePlan = NO_FREEZE, cache: CachedPrefix | None = None,
                   batch_size: int = 128, device: torch.device | str = "cpu") -> torch.Tensor:
    """Logits (n, num_labels) in the data's order, in eval mode, length-sorted batches."""
    was_training = model.training
    model.eval()
    logits = torch.empty(len(data), model.config.num_labels)
    with torch.inference_mode():
        for indices in D.batch_plan(data.lengths, batch_size, shuffle=False):
            batch = {k: v.to(device) for k, v in data.collate(indices).items()}
            logits[indices] = classifier_logits(model, batch, plan, cache, indices).float().cpu()
    model.train(was_training)
    return logits


def evaluate_encoded(model: BertForSequenceClassification, data: D.Encoded, labels: list[str],
                     plan: FreezePlan = NO_FREEZE, cache: CachedPrefix | None = None,
                     batch_size: int = 128, device: torch.device | str = "cpu"
                     ) -> dict[str, Any]:
    """logits_metrics of the model's predictions on labelled `data`."""
    logits = predict_logits(model, data, plan, cache, batch_size, device)
    return logits_metrics(logits, data.labels, labels)


def logits_metrics(logits: torch.Tensor, targets: torch.Tensor, labels: list[str]
                   ) -> dict[str, Any]:
    """Classification metrics of the logits' argmax (regression metrics of the one output when
    there is a single label), plus `loss`: the training loss, model.classification_loss."""
    if len(labels) == 1:
        metrics = regression_metrics(targets, logits[:, 0])
    else:
        metrics = classification_metrics(targets, logits.argmax(-1), labels)
    metrics["loss"] = classification_loss(logits, targets).item()
    return metrics


# ---------------------------------------------------------------------------------------------
# Texts in, labels and probabilities out
# ---------------------------------------------------------------------------------------------


@dataclass
class Classification:
    label: str | float        # the most probable class; a regression model's value
    score: float | None       # its probability (None for regression)
    scores: list[float] = field(default_factory=list)  # every class's probability, id order
    names: list[str] = field(default_factory=list, repr=False)  # the class names, id order

    @property
    def probabilities(self) -> dict[str, float]:
        """{class name: probability}, in id order."""
        return dict(zip(self.names, self.scores, strict=True))

    def as_dict(self) -> dict[str, Any]:
        """{"label", "probabilities"} ({"label"} alone for regression): minitf predict's JSON."""
        if self.score is None:
            return {"label": self.label}
        return {"label": self.label, "probabilities": self.probabilities}


def classifications(logits: torch.Tensor, labels: list[str]) -> list[Classification]:
    """Logits (n, num_labels) → one Classification each: softmax over the classes; a single
    output is a regression model's value."""
    if len(labels) == 1:
        return [Classification(value, None) for value in logits[:, 0].float().tolist()]
    out = []
    for p in logits.float().softmax(-1).tolist():
        best = max(range(len(labels)), key=p.__getitem__)
        out.append(Classification(labels[best], p[best], p, list(labels)))
    return out


class Classifier:
    """A fine-tuned classifier as a function of texts: the pipeline `minitf predict`, the demos
    and the explorer use.

        classify = Classifier.from_pretrained("/tmp/minitf-demo/best")
        classify(["what a lovely day"])[0].label
    """

    def __init__(self, model: BertForSequenceClassification, tokenizer: Any, labels: list[str],
                 device: torch.device | str = "cpu", batch_size: int = 128,
                 max_length: int = 128):
        self.model, self.tokenizer, self.labels = model, tokenizer, labels
        self.device, self.batch_size, self.max_length = device, batch_size, max_length

    @classmethod
    def from_pretrained(cls, directory: str | Path, attn_backend: str = "auto",
                        device: torch.device | str = "cpu", adapter: str | Path | None = None,
                        **settings: Any) -> Classifier:
        model, tokenizer, labels = load_for_inference(directory, attn_backend, device, adapter)
        return cls(model, tokenizer, labels, device, **settings)

    def __call__(self, texts: list[str], pairs: list[str] | None = None
                 ) -> list[Classification]:
        return self.classify(D.Examples(list(texts), [None] * len(texts), pairs=pairs))

    def classify(self, examples: D.Examples) -> list[Classification]:
        """Every example of `examples` (labels, if any, are ignored), in their order."""
        data = encode_examples(self.model, examples, self.tokenizer, None, self.max_length)
        logits = predict_logits(self.model, data, batch_size=self.batch_size,
                                device=self.device)
        return classifications(logits, self.labels)


# ---------------------------------------------------------------------------------------------
# Sentence embeddings
# ---------------------------------------------------------------------------------------------


def embed(model: BertModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence vectors (B, C) — padding excluded from the mean."""
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.float()            # (B, N, C), fp32 sums
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)    # (B, N, 1)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    return F.normalize(mean, dim=-1)


def encode_texts(model: BertModel, tokenizer: Any, texts: list[str], batch_size: int = 32,
                 max_length: int = 512, device: torch.device | str = "cpu") -> torch.Tensor:
    """Sentence embeddings (len(texts), C) for any number of texts, in their original order.

    Texts are sorted by token count before batching, so each batch pads to a similar length
    and little compute is spent on padding; the result is put back in input order.
    """
    lengths = [len(tokenizer.tokenize(t)) for t in texts]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    out = torch.empty(len(texts), model.config.hidden_size)
    for start in range(0, len(texts), batch_size):
        index = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in index], max_length=max_length)
        out[index] = embed(model, {k: v.to(device) for k, v in batch.items()}).float().cpu()
    return out
