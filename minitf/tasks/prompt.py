"""Prompt-based classification through the masked-LM head (PET, Schick & Schütze 2021; LM-BFF,
Gao et al. 2021): texts → prompt → label-word logits, in this one module.

    template    "{text}总之很[MASK]。"  — {text} (and {text_pair} for pairs) and one [MASK]
    verbalizer  "pos=好,neg=差"         — one label word per class, each a single token
    logits      the masked-LM head's scores of the label words at the [MASK]: (B, num_labels)

So classification is what pre-training trained: filling a [MASK]. Without any training the
model is already a (zero-shot) classifier; fine-tuning (`minitf finetune --prompt ...
--verbalizer ...`) is cross-entropy over those label-word logits.

    Prompt.parse(template, verbalizer, labels)  checked settings (MinitfError on bad ones)
    prompt.resolve(tokenizer)                   → the label words' token ids
    PromptClassifier                            BertForMaskedLM whose forward returns the
                                                label-word logits: what classify.py, the
                                                freezing, LoRA and the cache call
    encode(examples, tokenizer, model, ...)     the examples wrapped in the template, the text
                                                truncated (never the template), → Encoded
    load_prompt_classifier(dir, ...)            a masked-LM directory as a PromptClassifier

The saved model is a plain BertForMaskedLM directory (transformers loads it); the template,
the verbalizer and the label words' ids live in config.json under "minitf_prompt", and the
class names in id2label, so `minitf predict` / `evaluate` and the explorer use it unchanged.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minitf.data import examples as D
from minitf.errors import MinitfError
from minitf.model.bert import BertForMaskedLM, ClassifierOutput, classification_loss
from minitf.model.config import BertConfig

MASK = "[MASK]"
SLOTS = ("{text}", "{text_pair}")
CONFIG_KEY = "minitf_prompt"  # config.json: {"template", "verbalizer", "label_token_ids", ...}


# ---------------------------------------------------------------------------------------------
# The settings: template and verbalizer, checked
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    template: str
    verbalizer: dict[str, str]   # class name → label word, in class-id order

    @classmethod
    def parse(cls, template: str, verbalizer: str | dict[str, str],
              labels: list[str] | None = None) -> Prompt:
        """Checked settings. `labels` (the data's classes) orders the verbalizer and must be
        covered by it exactly; None keeps the verbalizer's own order (zero-shot)."""
        check_template(template)
        words = parse_verbalizer(verbalizer) if isinstance(verbalizer, str) else dict(verbalizer)
        if labels is not None:
            missing = [name for name in labels if name not in words]
            if missing:
                raise MinitfError(f"--verbalizer has no word for the class(es) "
                                  f"{', '.join(map(repr, missing))}; give one per class "
                                  f"({', '.join(labels)}), e.g. --verbalizer "
                                  + ",".join(f"{name}=WORD" for name in labels))
            extra = [name for name in words if name not in labels]
            if extra:
                raise MinitfError(f"--verbalizer names {', '.join(map(repr, extra))}, which "
                                  f"the data does not have (classes: {', '.join(labels)})")
            words = {name: words[name] for name in labels}
        if len(words) < 2:
            raise MinitfError(f"--verbalizer {verbalizer!r}: a classifier needs at least 2 "
                              "classes, one word each")
        return cls(template, words)

    @property
    def labels(self) -> list[str]:
        return list(self.verbalizer)

    def resolve(self, tokenizer: Any) -> list[int]:
        """The label words' token ids, in class order; each word must be one token."""
        return [word_id(tokenizer, word) for word in self.verbalizer.values()]


def check_template(template: str) -> None:
    if not isinstance(template, str) or "{text}" not in template:
        raise MinitfError(f"--prompt {template!r} has no {{text}}: the template wraps each "
                          "text, e.g. --prompt '{text}总之很[MASK]。'")
    masks = template.count(MASK)
    if masks != 1:
        raise MinitfError(f"--prompt {template!r} has {masks or 'no'} {MASK}; a template has "
                          f"exactly one, where the label word goes (e.g. '{{text}} It was "
                          f"{MASK}.')")
    for slot in SLOTS:
        if template.count(slot) > 1:
            raise MinitfError(f"--prompt {template!r} has {slot} more than once")
    stray = re.findall(r"\{[^{}]*\}", template.replace("{text}", "").replace("{text_pair}", ""))
    if stray:
        raise MinitfError(f"--prompt {template!r}: unknown placeholder {stray[0]}; a template "
                          "knows {text} and {text_pair}")


def parse_verbalizer(text: str) -> dict[str, str]:
    """"pos=good,neg=bad" → {"pos": "good", "neg": "bad"}, checked."""
    words: dict[str, str] = {}
    for item in str(text).split(","):
        label, sep, word = item.partition("=")
        label, word = label.strip(), word.strip()
        if not sep or not label or not word:
            raise MinitfError(f"--verbalizer {text!r}: {item.strip()!r} is not LABEL=WORD; "
                              "write e.g. --verbalizer pos=good,neg=bad")
        if label in words:
            raise MinitfError(f"--verbalizer {text!r} gives class {label!r} twice")
        words[label] = word
    repeated = sorted({w for w in words.values() if list(words.values()).count(w) > 1})
    if repeated:
        raise MinitfError(f"--verbalizer {text!r} uses the word {repeated[0]!r} for more than "
                          "one class; each class needs its own word")
    return words


def vocabulary(tokenizer: Any) -> list[str]:
    """The tokenizer's token strings in id order."""
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        return tokenizer.convert_ids_to_tokens(list(range(tokenizer.vocab_size)))
    return list(tokenizer.vocab)


def text_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of `text` alone: no [CLS]/[SEP], no truncation."""
    return tokenizer.encode(text, max_length=1 << 30, truncation=True)[1:-1]


def word_id(tokenizer: Any, word: str) -> int:
    """The one token of a label word: the word itself if it is a vocabulary entry (e.g. a
    SentencePiece piece such as 好), else what the tokenizer makes of it, which must be one
    known token. Otherwise an error naming the word and close vocabulary entries."""
    vocab = vocabulary(tokenizer)
    if word in vocab:
        return vocab.index(word)
    ids = text_ids(tokenizer, word)
    unk = getattr(tokenizer, "unk_token_id", None)
    if len(ids) == 1 and ids[0] != unk:
        return ids[0]
    pieces = [vocab[i] for i in ids]
    stem = word.strip()
    starts = [t for t in vocab if t.strip("▁#") and stem.startswith(t.strip("▁#"))]
    close = difflib.get_close_matches(word, vocab, n=5, cutoff=0.5)
    close += sorted(starts, key=len, reverse=True)[:5]
    hint = f"; close single tokens: {', '.join(dict.fromkeys(close))}" if close else ""
    raise MinitfError(f"--verbalizer word {word!r} is not a single token of this model's "
                      f"vocabulary (it becomes {len(ids)} token(s): {' '.join(pieces) or '-'}); "
                      f"label words must be one token each{hint}")


# ---------------------------------------------------------------------------------------------
# The model: BertForMaskedLM whose output is the label words' logits at the [MASK]
# ---------------------------------------------------------------------------------------------


class PromptClassifier(BertForMaskedLM):
    """A masked-LM model used as a classifier: the same weights and checkpoint layout
    (saved as "BertForMaskedLM"), and a forward with BertForSequenceClassification's
    signature, so predict_logits, freezing, LoRA and the frozen-prefix cache use it as is."""

    architecture = "BertForMaskedLM"  # what config.json says: transformers loads it as that
    head_reads_cls_only = False       # the head reads the [MASK] position (the cache keeps all)

    def __init__(self, config: BertConfig, attn_backend: str = "auto"):
        super().__init__(config, attn_backend)
        settings = config.minitf_prompt or {}
        if "label_token_ids" not in settings or "mask_token_id" not in settings:
            raise MinitfError("config.json has no minitf_prompt settings (template, "
                              "verbalizer, label token ids); load it with "
                              "load_prompt_classifier(directory, template, verbalizer)")
        self.register_buffer("label_ids", torch.tensor(settings["label_token_ids"]),
                             persistent=False)
        self.mask_token_id = int(settings["mask_token_id"])
        self.num_labels = len(settings["label_token_ids"])

    @property
    def prompt(self) -> Prompt:
        settings = self.config.minitf_prompt
        return Prompt(settings["template"], dict(settings["verbalizer"]))

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool = False, hidden: torch.Tensor | None = None,
                first_layer: int = 0) -> ClassifierOutput:
        """Token ids (B, N), one [MASK] per row → label-word logits (B, num_labels).
        hidden / first_layer start part-way up, as BertForSequenceClassification.forward
        (input_ids are still needed: they say where the [MASK] is)."""
        if input_ids is None:
            raise MinitfError("PromptClassifier needs input_ids to find the [MASK]")
        if hidden is None:
            hidden, first_layer = self.bert.embed(input_ids, token_type_ids), 0
        hidden, attentions = self.bert.encoder(hidden, attention_mask, start=first_layer,
                                               output_attentions=output_attentions)
        at_mask = input_ids == self.mask_token_id                              # (B, N)
        if not bool((at_mask.sum(1) == 1).all()):
            raise MinitfError(f"each row needs exactly one [MASK] (id {self.mask_token_id}); "
                              "encode the texts with minitf.tasks.prompt.encode")
        logits = self.label_logits(hidden[at_mask])                            # (B, labels)
        loss = None if labels is None else classification_loss(logits, labels)
        return ClassifierOutput(logits, loss, attentions)

    def label_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Hidden states at the masks (B, C) → the masked-LM logits of the label words only
        (B, L): the vocabulary projection restricted to L rows (same numbers)."""
        head = self.cls.predictions  # its decoder is the word-embedding matrix (tied)
        words = self.bert.embeddings.word_embeddings.weight[self.label_ids]   # (L, C)
        return head.transform(states) @ words.T + head.bias[self.label_ids]

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      token_type_ids: torch.Tensor | None = None, layers: int = 0
                      ) -> torch.Tensor:
        """Embeddings, then encoder layers 0..layers-1 (B, N, C): the frozen prefix."""
        hidden = self.bert.embed(input_ids, token_type_ids)
        return self.bert.encoder(hidden, attention_mask, stop=layers)[0]


def prompt_config(config: BertConfig, prompt: Prompt, tokenizer: Any) -> BertConfig:
    """`config` with the prompt's settings (checked against the tokenizer) and class names."""
    mask = getattr(tokenizer, "mask_token_id", None)
    if mask is None:
        raise MinitfError(f"the tokenizer has no {MASK} token; a prompt needs one")
    config.minitf_prompt = {"template": prompt.template, "verbalizer": prompt.verbalizer,
                            "label_token_ids": prompt.resolve(tokenizer),
                            "mask_token_id": int(mask)}
    config.id2label = dict(enumerate(prompt.labels))
    return config


def is_prompt_model(directory: str | Path) -> bool:
    return bool(BertConfig.from_pretrained(directory).minitf_prompt)


def load_prompt_classifier(directory: str | Path, tokenizer: Any, template: str | None = None,
                           verbalizer: str | None = None, labels: list[str] | None = None,
                           attn_backend: str = "auto") -> PromptClassifier:
    """A masked-LM directory as a PromptClassifier: with `template` and `verbalizer` new
    settings (checked; `labels` orders the classes), else the ones in its config.json."""
    from minitf.model.weights import read_checkpoint
    from minitf.paths import resolve_model_dir

    directory = resolve_model_dir(directory)
    config = BertConfig.from_pretrained(directory)
    if template is None and verbalizer is None and not config.minitf_prompt:
        raise MinitfError(f"{directory}: config.json has no prompt; give --prompt and "
                          "--verbalizer")
    if (template is None) != (verbalizer is None):
        raise MinitfError("--prompt and --verbalizer go together: give both")
    if template is not None:
        prompt = Prompt.parse(template, verbalizer, labels)
        names = read_checkpoint(directory).keys()
        if not any(n.startswith("cls.predictions.") for n in names):
            kind = ("a fine-tuned classifier (classifier.*)"
                    if any(n.startswith("classifier.") for n in names) else "a plain encoder")
            raise MinitfError(f"--prompt needs a masked-LM model, with the head that fills "
                              f"[MASK] (cls.predictions.*); {directory} is {kind}. Use a "
                              "`minitf pretrain` output or another BertForMaskedLM checkpoint")
    else:
        prompt = Prompt.parse(config.minitf_prompt["template"],
                              config.minitf_prompt["verbalizer"], labels)
    masked_lm = BertForMaskedLM.from_pretrained(directory, attn_backend=attn_backend)
    model = PromptClassifier(prompt_config(masked_lm.config, prompt, tokenizer), attn_backend)
    model.load_state_dict(masked_lm.state_dict())
    return model.to(next(masked_lm.parameters()).dtype).eval()


# ---------------------------------------------------------------------------------------------
# Texts → prompts → token ids
# ---------------------------------------------------------------------------------------------


def continued(tokenizer: Any, ids: list[int], text: str, after_something: bool) -> list[int]:
    """The ids of a piece of the prompt that continues the text before it: SentencePiece
    marks the start of every text it is given with a lone word-start piece "▁", which inside
    a sentence it would not write (it would split 「…很好。」 as 很好 。, not 很好 ▁ 。). Dropped
    then, unless the piece starts with a space; WordPiece's ids are returned as they are."""
    if after_something and ids and not text[:1].isspace() and \
            vocabulary_token(tokenizer, ids[0]) == "▁":
        return ids[1:]
    return ids


def vocabulary_token(tokenizer: Any, token_id: int) -> str:
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        return tokenizer.convert_ids_to_tokens([token_id])[0]
    return tokenizer.vocab[token_id]


def encode(examples: D.Examples, tokenizer: Any, prompt: Prompt,
           labels: list[int] | list[float] | None = None, max_length: int = 128) -> D.Encoded:
    """Each example wrapped in the template: [CLS] template-with-texts [SEP], one segment.
    The template's own tokens always stay; the texts are cut (longest first) to fit."""
    mask = int(tokenizer.mask_token_id)
    parts = [p for p in re.split(r"(\{text\}|\{text_pair\}|\[MASK\])", prompt.template) if p]
    fixed = {p: continued(tokenizer, text_ids(tokenizer, p), p, i > 0)
             for i, p in enumerate(parts) if p not in (*SLOTS, MASK)}
    budget = max_length - 2 - sum(len(fixed[p]) for p in fixed) - 1
    has_pair = "{text_pair}" in parts
    if budget < 1:
        raise MinitfError(f"--max-length {max_length} leaves no room for the text: the "
                          f"template alone takes {max_length - budget - 1} tokens with "
                          "[CLS]/[SEP]; raise --max-length")
    if has_pair and examples.pairs is None:
        raise MinitfError(f"--prompt {prompt.template!r} has {{text_pair}}, but "
                          f"{examples.source} has no second text column")
    unk = tokenizer.unk_token_id if hasattr(tokenizer, "unk_token_id") else 1
    ids, types = [], []
    for i, text in enumerate(examples.texts):
        # a "[MASK]" typed in a text is text, not the template's mask
        a = [unk if t == mask else t for t in continued(
            tokenizer, text_ids(tokenizer, text), text, parts.index("{text}") > 0)]
        b = [unk if t == mask else t for t in continued(
            tokenizer, text_ids(tokenizer, examples.pairs[i]), examples.pairs[i],
            parts.index("{text_pair}") > 0)] if has_pair else []
        while len(a) + len(b) > budget:
            (a if len(a) >= len(b) else b).pop()
        row = [tokenizer.cls_token_id]
        for p in parts:
            row += a if p == "{text}" else b if p == "{text_pair}" else \
                [mask] if p == MASK else fixed[p]
        row.append(tokenizer.sep_token_id)
        ids.append(torch.tensor(row, dtype=torch.int64))
        types.append(torch.zeros(len(row), dtype=torch.int64))
    targets = list(labels) if labels is not None else [-1] * len(ids)
    regression = any(isinstance(y, float) for y in targets)
    label_tensor = torch.tensor(targets, dtype=torch.float32 if regression else torch.int64)
    return D.Encoded(ids, types, label_tensor, int(getattr(tokenizer, "pad_token_id", 0)))
