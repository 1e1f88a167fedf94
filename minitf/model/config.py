"""BertConfig: the hyper-parameters of a BERT encoder, read from a Hugging Face `config.json`."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from minitf.errors import MinitfError

# Google's small BERTs (Turc et al., 2019): layers, hidden, heads; intermediate = 4 × hidden.
SHAPES = {"tiny": (2, 128, 2), "mini": (4, 256, 4), "small": (4, 512, 8)}

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
# Upper bound on every size (vocab, hidden, layers, ...): far above any BERT, yet small enough
# that products of two sizes cannot overflow a tensor's byte count.
MAX_SIZE = 1 << 24


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    classifier_dropout: float | None = None
    # Classification heads: label names, saved so that predictions come back as names.
    id2label: dict[int, str] = field(default_factory=dict)
    # The weights' dtype as config.json records it ("float32", "bfloat16", ...); set on save.
    dtype: str | None = None
    # Prompt-based classifiers (minitf/tasks/prompt.py): template, verbalizer, label token ids.
    minitf_prompt: dict[str, Any] | None = None
    # Segmenters and taggers: the bonus of a word found in lexicon.txt (minitf/tasks/decode.py)
    minitf_lexicon_weight: float | None = None

    def __post_init__(self) -> None:
        self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_labels(self) -> int:
        return len(self.id2label) or 2

    @property
    def label2id(self) -> dict[str, int]:
        return {v: k for k, v in self.id2label.items()}

    def validate(self, source: str = "BertConfig") -> None:
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise MinitfError(f"{source}: {name} must be a positive integer, got {value!r}")
            if value > MAX_SIZE:
                raise MinitfError(f"{source}: {name} = {value} is implausibly large (at most "
                                  f"{MAX_SIZE:,}); is this config.json corrupted?")
        if self.hidden_size % self.num_attention_heads:
            raise MinitfError(
                f"{source}: hidden_size ({self.hidden_size}) is not divisible by "
                f"num_attention_heads ({self.num_attention_heads}); minitf splits the hidden "
                "vector into equal heads, so this model is not supported")
        if self.hidden_act not in ACTIVATIONS:
            raise MinitfError(f"{source}: hidden_act {self.hidden_act!r} is not supported; "
                              f"minitf supports {', '.join(ACTIVATIONS)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise MinitfError(f"{source}: {name} must be in [0, 1), got {getattr(self, name)}")
        if self.classifier_dropout is not None and not 0.0 <= self.classifier_dropout < 1.0:
            raise MinitfError(f"{source}: classifier_dropout must be in [0, 1) or null, got "
                              f"{self.classifier_dropout}")
        if not 0 < self.layer_norm_eps < math.inf:
            raise MinitfError(f"{source}: layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        if not 0 <= self.initializer_range < math.inf:
            raise MinitfError(f"{source}: initializer_range must be a finite number >= 0, got "
                              f"{self.initializer_range}")
        pad = self.pad_token_id
        if not isinstance(pad, int) or isinstance(pad, bool) or not 0 <= pad < self.vocab_size:
            raise MinitfError(f"{source}: pad_token_id {self.pad_token_id} is outside the "
                              f"vocabulary (size {self.vocab_size})")
        if sorted(self.id2label) != list(range(len(self.id2label))):
            raise MinitfError(f"{source}: id2label keys must be the label ids 0 to "
                              f"{len(self.id2label) - 1}, got {sorted(self.id2label)[:10]}")
        if self.minitf_prompt is not None and not isinstance(self.minitf_prompt, dict):
            raise MinitfError(f"{source}: minitf_prompt must be an object (template, "
                              f"verbalizer, ...), got {self.minitf_prompt!r:.40}")
        weight = self.minitf_lexicon_weight
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int | float)
                                   or not 0 <= weight < math.inf):
            raise MinitfError(f"{source}: minitf_lexicon_weight must be a number >= 0, got "
                              f"{weight!r:.40}")
        if self.dtype is not None and not isinstance(self.dtype, str):
            raise MinitfError(f"{source}: dtype must be a name such as \"float32\", got "
                              f"{self.dtype!r:.40}")

    # ---- Hugging Face config.json ------------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> BertConfig:
        _refuse_unsupported(raw, source)
        known = {f.name for f in fields(cls)}
        if raw.get("dtype") is None and raw.get("torch_dtype") is not None:  # transformers 4
            raw = {**raw, "dtype": raw["torch_dtype"]}
        kwargs = {k: v for k, v in raw.items() if k in known and v is not None or k == "id2label"}
        kwargs.setdefault("id2label", {})
        if kwargs["id2label"] is None:
            kwargs["id2label"] = {}
        try:
            config = cls(**kwargs)
        except MinitfError as exc:
            raise MinitfError(str(exc).replace("BertConfig", source, 1)) from None
        except (TypeError, ValueError) as exc:
            raise MinitfError(f"{source}: invalid value ({exc})") from None
        config.validate(source)
        return config

    @classmethod
    def from_pretrained(cls, path: str | Path) -> BertConfig:
        """Read `config.json` from a model directory (or the file itself)."""
        path = Path(path)
        file = path / "config.json" if path.is_dir() else path
        if not file.is_file():
            raise MinitfError(f"{file}: no config.json here; a model directory needs "
                              "config.json, model.safetensors and vocab.txt")
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, nesting too deep
            raise MinitfError(f"{file}: not valid JSON ({str(exc)[:200]}); restore the file "
                              "from the original model") from None
        if not isinstance(raw, dict):
            raise MinitfError(f"{file}: expected a JSON object of settings")
        return cls.from_dict(raw, source=str(file))

    def to_dict(self) -> dict[str, Any]:
        """A config.json that transformers' BertConfig reads back into the same model."""
        out = asdict(self)
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        if not self.id2label:
            del out["id2label"]
        else:
            out["label2id"] = self.label2id
        for name in ("classifier_dropout", "dtype", "minitf_prompt", "minitf_lexicon_weight"):
            if out[name] is None:
                del out[name]
        out.update(model_type="bert", position_embedding_type="absolute")
        return out

    def save(self, directory: str | Path, architecture: str = "BertModel") -> None:
        out = {"architectures": [architecture], **self.to_dict()}
        Path(directory, "config.json").write_text(json.dumps(out, indent=2) + "\n")


def _refuse_unsupported(raw: dict[str, Any], source: str) -> None:
    """Settings that change the architecture in ways minitf does not implement."""
    model_type = raw.get("model_type", "bert")
    if model_type != "bert":
        raise MinitfError(f"{source}: model_type {model_type!r} is not supported; minitf "
                          "implements the original BERT architecture (model_type 'bert')")
    position = raw.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise MinitfError(f"{source}: position_embedding_type {position!r} is not supported; "
                          "minitf implements absolute (learned) position embeddings only")
    if raw.get("tie_word_embeddings") is False:
        raise MinitfError(f"{source}: tie_word_embeddings=false is not supported; minitf's "
                          "masked-LM decoder is the word-embedding matrix")
    for flag in ("is_decoder", "add_cross_attention"):
        if raw.get(flag):
            raise MinitfError(f"{source}: {flag}=true is not supported; minitf is an "
                              "encoder-only (bidirectional) model")
    if "id2label" in raw and raw["id2label"] is not None and not isinstance(raw["id2label"], dict):
        raise MinitfError(f"{source}: id2label must be an object mapping ids to label names")
