"""Every command-line option of minitf, declared once.

An `Option` is one setting: its name (the flag is `--` + the name with dashes), default, help
text, check, and whether `--resume` must find it unchanged. The recipes' configs are
dataclasses whose fields are options (`lr: float = LR.field(5e-4)`); from those fields come the
argparse flags (`add_config_arguments`), the validation (`check_config`) and the resume
comparison (`resume_mismatches`). Commands without a config (evaluate, predict, encode, ...)
add the same options with `add_options`. Adding an option is one declaration here and one
field in the config that uses it; a command that differs only in a default or help text says
so with `OPTION.but(default=...)`.

Options are grouped as the help output shows them: data, model, optimisation, length, LoRA,
precision and running.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from minitf.data.examples import FORMATS, LABEL_COLUMNS, TEXT_COLUMNS
from minitf.data.tokens import FORMATS as TOKEN_FORMATS
from minitf.errors import MinitfError
from minitf.model.attention import BACKENDS
from minitf.model.config import SHAPES
from minitf.model.freeze import POLICIES
from minitf.model.lora import TARGETS
from minitf.model.precision import INFERENCE_PRECISIONS, TRAINING_PRECISIONS
from minitf.paths import DEFAULT_MODEL
from minitf.tasks.tokens import DECODERS, DEFAULT_LEXICON_WEIGHT

Check = Callable[[Any], "str | None"]  # an error message for a bad value, else None


@dataclass(frozen=True)
class Option:
    name: str                             # the config field; the flag is --name-with-dashes
    default: Any = None
    help: str | None = None
    group: str = "running"
    type: Callable[[str], Any] | None = None   # None: str, or the default's int/float
    choices: tuple[Any, ...] | None = None
    action: str | None = None             # "store_true" / "store_false" (flags)
    flag: str | None = None               # when it is not --name-with-dashes
    aliases: tuple[str, ...] = ()         # e.g. ("-o",)
    metavar: str | None = None
    nargs: str | None = None
    required: bool = False
    check: Check | None = None
    resume: bool = False                  # --resume refuses a run whose value differs
    base: Option | None = None            # the declaration a `but(...)` variant comes from

    @property
    def flags(self) -> list[str]:
        return [*self.aliases, self.flag or "--" + self.name.replace("_", "-")]

    @property
    def declared(self) -> Option:
        """The declaration itself (variants made with `but` point back to it)."""
        return self.base or self

    def but(self, **changes: Any) -> Option:
        """This option with another default, help text, ... for one command or recipe."""
        return replace(self, base=self.declared, **changes)

    def field(self, default: Any = MISSING, **changes: Any) -> Any:
        """A dataclass field for this option (default: the option's)."""
        if default is not MISSING:
            changes["default"] = default
        option = self.but(**changes) if changes else self
        if option.required:
            return field(metadata={"option": option})
        return field(default=option.default, metadata={"option": option})

    def add_to(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        kwargs: dict[str, Any] = {"dest": self.name, "help": self.help}
        if self.action:
            kwargs["action"] = self.action
        else:
            kwargs.update(default=self.default, required=self.required, choices=self.choices,
                          metavar=self.metavar, nargs=self.nargs, type=self.parse_type())
        if self.required:
            kwargs.pop("default", None)
        action = parser.add_argument(*self.flags, **kwargs)
        action.minitf_option = self.declared  # lets tests trace every flag to its declaration

    def parse_type(self) -> Callable[[str], Any] | None:
        if self.type is not None:
            return self.type
        if isinstance(self.default, bool) or self.default is None:
            return None
        return type(self.default) if isinstance(self.default, (int, float)) else None

    def validate(self, value: Any) -> None:
        if self.check is None or value is None:
            return
        problem = self.check(value)
        if problem:
            raise MinitfError(f"{self.flags[-1]} {value}: {problem}")


# --- checks ------------------------------------------------------------------------------------


def at_least(low: int) -> Check:
    return lambda v: None if v >= low else f"must be at least {low}"


def positive(v: float) -> str | None:
    return None if math.isfinite(v) and v > 0 else "must be a positive number"


def non_negative(v: float) -> str | None:
    return None if math.isfinite(v) and v >= 0 else "must be 0 or more"


def fraction(v: float) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


def closed_fraction(v: float) -> str | None:
    return None if 0 <= v <= 1 else "must be in [0, 1]"


def lora_rank(v: int) -> str | None:
    """0 (off) or a rank; the model's hidden size bounds it further (tasks/peft_format.py)."""
    return None if 0 <= v <= 1 << 16 else "must be 0 (off) or a rank up to the hidden size"


def grad_norm(v: float) -> str | None:
    return None if math.isfinite(v) and v >= 0 else (
        "must be a positive number, or 0 to turn gradient clipping off")


# --- the options -----------------------------------------------------------------------------

# data: what to read
TRAIN = Option("train", required=True, group="data", resume=True,
               help="training data: .csv, .tsv or .jsonl")
VALIDATION = Option("validation", group="data", resume=True,
                    help="validation file (default: hold out --validation-fraction of --train)")
TEST = Option("test", group="data", help="test file, evaluated once with the best checkpoint")
VALIDATION_FRACTION = Option("validation_fraction", 0.1, group="data", check=fraction,
                             resume=True)
TEST_FRACTION = Option("test_fraction", 0.0, group="data", check=fraction, resume=True,
                       help="hold out this fraction of --train as test data (no --test)")
MAX_TRAIN_SAMPLES = Option("max_train_samples", None, type=int, group="data", resume=True,
                           check=at_least(1), help="train on a seeded subset")
TEXT_COLUMN = Option("text_column", group="data",
                     help=f"default: first of {', '.join(TEXT_COLUMNS)}")
PAIR_COLUMN = Option("pair_column", flag="--text-pair-column", group="data",
                     help="second text of sentence pairs (default: sentence2 / #2 String when "
                     "the text column is sentence1 / #1 String)")
LABEL_COLUMN = Option("label_column", group="data",
                      help=f"default: first of {', '.join(LABEL_COLUMNS)}")
FORMAT = Option("format", group="data", choices=(*FORMATS, *TOKEN_FORMATS),
                help="default: from the file extension (classify) or from --task (words for "
                     "segment, word-tags for tag, conll for ner)")
TASKS = ("classify", "segment", "tag", "ner")
TASK = Option("task", "classify", group="data", choices=TASKS, resume=True,
              help="classify: a label per text; segment / tag / ner: a label per character "
                   "(or word), minitf/recipes/tokens.py")
DECODER = Option("decoder", "viterbi", group="data", choices=DECODERS,
                 help="token models: viterbi, the best well-formed label sequence (a word never "
                 "has two tags, an I- never starts one); argmax, the best label per position "
                 "(minitf/tasks/decode.py; default: %(default)s)")
LEXICON = Option("lexicon", None, group="data", metavar="FILE",
                 help="segment / tag: a dictionary (a word per line, or jieba's `word count "
                 "tag`) added to the model's lexicon.txt; the decoder rewards words found in "
                 "them (minitf/tasks/decode.py)")
LEXICON_WEIGHT = Option("lexicon_weight", None, type=float, group="data", check=non_negative,
                        metavar="W",
                        help="segment / tag: the bonus of a lexicon word (0: off; default: "
                        "the weight fine-tuning picked on validation data, config.json's "
                        f"minitf_lexicon_weight, else {DEFAULT_LEXICON_WEIGHT})")
ENCODING = Option("encoding", "utf-8", group="data")
ENCODING_ERRORS = Option("encoding_errors", "strict", group="data",
                         choices=("strict", "replace"),
                         help="replace: undecodable bytes → U+FFFD")
SKIP_BAD_ROWS = Option("skip_bad_rows", False, group="data", action="store_true",
                       help="skip (and count) malformed rows instead of stopping")
REGRESSION = Option("regression", False, group="data", action="store_true", resume=True,
                    help="the labels are numbers: train one output with MSE")
DATA_OPTIONS = (TEXT_COLUMN, PAIR_COLUMN, LABEL_COLUMN, FORMAT, ENCODING, ENCODING_ERRORS,
                SKIP_BAD_ROWS)

DATA = Option("data", group="data", help="a .csv, .tsv or .jsonl file")
JSON = Option("json", False, action="store_true", help="print JSON")

# model: where to start, where to write
MODEL = Option("model", DEFAULT_MODEL, group="model",
               help="pre-trained BERT directory or name (default: %(default)s)")
ADAPTER = Option("adapter", group="model", resume=True,
                 help="a PEFT LoRA adapter directory (for --model)")
OUTPUT = Option("output", required=True, group="model",
                help="directory for checkpoints and metrics")
MAX_LENGTH = Option("max_length", 128, group="model", check=at_least(3), resume=True,
                    help="tokens per example, [CLS] and [SEP] included (default: %(default)s)")

# prompt-based classification through the masked-LM head (minitf/tasks/prompt.py)
PROMPT = Option("prompt", group="prompt (minitf/tasks/prompt.py)", metavar="TEMPLATE",
                resume=True,
                help="classify by filling a [MASK]: a template with {text} ({text_pair}) and "
                "one [MASK], e.g. '{text}总之很[MASK]。' (needs a masked-LM --model and "
                "--verbalizer)")
VERBALIZER = Option("verbalizer", group=PROMPT.group, metavar="LABEL=WORD,...", resume=True,
                    help="the label word of each class at the [MASK], one token each, e.g. "
                    "1=好,0=差")

# self-training on unlabelled texts (minitf/recipes/self_train.py)
UNLABELLED = Option("unlabelled", group="self-training (minitf/recipes/self_train.py)",
                    metavar="FILE",
                    help="unlabelled texts (one per line, or a CSV/TSV/JSONL text column): a "
                    "teacher trained on the labels soft-labels them, a student trains on both")
TEACHERS = ("model", "tfidf")
TEACHER = Option("teacher", "model", group=UNLABELLED.group, choices=TEACHERS, resume=True,
                 help="who labels the unlabelled texts first: model, the recipe fine-tuned on "
                 "the labels; tfidf, TF-IDF character 1-3-grams + logistic regression fitted on "
                 "the same labels in seconds (minitf/tasks/tfidf.py), often the better teacher "
                 "for a small pre-trained model (default: %(default)s)")
SELF_TRAIN_ROUNDS = Option("self_train_rounds", 1, group=UNLABELLED.group, check=at_least(1),
                           help="students trained, each taught by the previous model "
                           "(default: %(default)s)")

# optimisation
EPOCHS = Option("epochs", 3, group="optimisation", check=at_least(1), resume=True)
BATCH_SIZE = Option("batch_size", 32, group="optimisation", check=at_least(1), resume=True,
                    help="examples per step (default: %(default)s)")
LR = Option("lr", 5e-5, group="optimisation", check=positive, resume=True,
            help="peak learning rate (default: %(default)s)")
WEIGHT_DECAY = Option("weight_decay", 0.01, group="optimisation", check=non_negative,
                      resume=True)
WARMUP_RATIO = Option("warmup_ratio", 0.1, group="optimisation", check=closed_fraction,
                      resume=True)
MAX_GRAD_NORM = Option("max_grad_norm", 1.0, group="optimisation", check=grad_norm,
                       resume=True, help="clip the gradient norm (0: no clipping)")
SEED = Option("seed", 0, group="optimisation", resume=True)
FREEZE = Option("freeze", "none", group="optimisation", resume=True,
                help=f"{POLICIES} (default: none)")
CACHE = Option("cache", True, group="optimisation", action="store_false", flag="--no-cache",
               resume=True,
               help="recompute the frozen prefix every epoch instead of caching it")

PATIENCE = Option("patience", 0, group="optimisation", check=non_negative,
                  help="stop after N epochs without improvement (0: never)")
# metric → higher is better
SELECT_METRICS = {"accuracy": True, "macro_f1": True, "loss": False, "pearson": True,
                  "f1": True, "joint_f1": True, "tag_accuracy": True}  # the last: token tasks
SELECT_METRIC = Option("select_metric", "auto", group="optimisation",
                       choices=("auto", *SELECT_METRICS),
                       help="picks the best checkpoint (auto: accuracy; loss for --regression; "
                            "word F1 for segment, joint_f1 for tag, entity F1 for ner)")

# LoRA
LORA = Option("lora", 0, group="LoRA adapters (minitf/model/lora.py)", metavar="R",
              check=lora_rank, resume=True,
              help="train rank-R adapters instead of the weights (8 is usual)")
LORA_ALPHA = Option("lora_alpha", None, type=float, group=LORA.group, check=positive,
                    resume=True, help="scale alpha/R (default: 2R)")
LORA_DROPOUT = Option("lora_dropout", 0.1, group=LORA.group, check=fraction, resume=True)
LORA_TARGETS = Option("lora_targets", "query,value", group=LORA.group, resume=True,
                      help=f"comma-separated: {', '.join(TARGETS)}; or all-linear "
                      "(default: %(default)s)")
LORA_LAYERS = Option("lora_layers", "all", group=LORA.group, resume=True,
                     help="e.g. 4-5 or 0,2,4 (default: all); the layers below are cached")

# precision and device
DEVICE = Option("device", "auto", group="precision and device",
                help="auto, cpu, cuda, cuda:1, ...")
PRECISION = Option("precision", "auto", group=DEVICE.group, choices=INFERENCE_PRECISIONS,
                   resume=True, help="fp32 exact; bf16/int8 faster on some CPUs; auto: see "
                   "minitf/model/precision.py (default: %(default)s)")
TRAINING_PRECISION = PRECISION.but(choices=TRAINING_PRECISIONS,
                                   help="auto: bf16 autocast on CUDA when supported, else fp32")
ATTN_BACKEND = Option("attn_backend", "auto", group=DEVICE.group, choices=BACKENDS,
                      help="attention implementation (default: %(default)s)")

# running: resuming, saving, stopping, progress
RESUME = Option("resume", False, action="store_true", help="continue from --output/last")
OVERWRITE = Option("overwrite", False, action="store_true",
                   help="start afresh in an --output that holds an earlier run")
SAVE_EVERY = Option("save_every", 0, check=non_negative,
                    help="also checkpoint every N steps (default: each epoch)")
STOP_AFTER_STEPS = Option("stop_after_steps", None, type=int, check=at_least(1),
                          help="stop like Ctrl-C after N steps (saved; continue with --resume)")
PROGRESS = Option("progress", "auto", choices=("auto", "bar", "log", "off"))
DIST_TIMEOUT = Option("dist_timeout", 300.0, check=positive,
                      help="under torchrun: seconds to wait for the other processes in a "
                      "collective before stopping with an error (default: %(default)s)")
RUN_OPTIONS = (RESUME, OVERWRITE, SAVE_EVERY, STOP_AFTER_STEPS, PROGRESS, DIST_TIMEOUT)

# pre-training: the model from scratch, the objective, how long
TOKENIZER = Option("tokenizer", group="model", help="tokenizer directory (e.g. from `minitf "
                   "tokenizer train`), to pre-train a new model from scratch")
SHAPE = Option("config", "mini", group="model", choices=tuple(SHAPES),
               help="shape from scratch: " + ", ".join(
                   f"{k} {n}×{h} ({a} heads)" for k, (n, h, a) in SHAPES.items())
               + " (default: %(default)s)")
LAYERS = Option("layers", None, type=int, group="model",
                check=lambda v: None if 1 <= v <= 128 else "must be from 1 to 128 (BERT-large: 24)")
HIDDEN = Option("hidden", None, type=int, group="model", check=at_least(1))
HEADS = Option("heads", None, type=int, group="model", check=at_least(1))
INTERMEDIATE = Option("intermediate", None, type=int, group="model", check=at_least(1),
                      help="default: 4 × hidden")
DROPOUT = Option("dropout", 0.1, group="model", check=fraction)
INIT_STD = Option("init_std", 0.02, group="model",
                  check=lambda v: None if 0 < v < 10 else "must be a small positive number "
                  "(BERT's is 0.02)",
                  help="standard deviation of the initial weights, saved as initializer_range "
                  "(default: BERT's 0.02; 0.1 left the most-frequent-token plateau about twice "
                  "as soon on the tiny shape, see docs/zh.md)")
POSITION_INIT = Option("position_init", "normal", group="model", choices=("normal", "sinusoid"),
                       help="initial position embeddings: normal (BERT's, N(0, --init-std)) or "
                       "sinusoid (Vaswani et al.'s sinusoids, still learned). Measured: a "
                       "character tagger from scratch leaves the label-from-the-character-alone "
                       "plateau far sooner; a masked LM on the reviews' pieces stayed on its "
                       "plateau (docs/zh.md)")
MLM_PROBABILITY = Option("mlm_probability", 0.15, group="optimisation", resume=True,
                         check=lambda v: None if 0 < v < 1 else "must be in (0, 1)")
OBJECTIVE = Option("objective", "mlm", group="optimisation", choices=("mlm", "electra"),
                   resume=True, help="mlm: masked-language modelling (BERT); electra: "
                   "replaced-token detection, a small generator and the discriminator, which "
                   "is the model saved in --output (the generator in --output/generator); "
                   "default: %(default)s")
MAX_STEPS = Option("max_steps", None, type=int, group="how long (at least one)", resume=True,
                   check=non_negative, help="0: write the initialised model")
TIME_BUDGET = Option("time_budget", None, type=float, group=MAX_STEPS.group, resume=True,
                     metavar="MINUTES", check=positive,
                     help="train for about this long; the learning-rate schedule is sized to "
                     "fit it")
EVAL_EVERY = Option("eval_every", None, type=int, check=at_least(1),
                    help="steps (default: ~10 per run)")
MAX_EVAL_BLOCKS = Option("max_eval_blocks", 256, check=at_least(1),
                         help="validation blocks evaluated (the first ones)")

# what inference commands (evaluate, predict) read a file and run a model with
INFERENCE_OPTIONS = (*DATA_OPTIONS, MAX_LENGTH,
                     BATCH_SIZE.but(default=128, help="examples per forward pass"),
                     DEVICE, ATTN_BACKEND, PRECISION)


# --- generated: flags, checks, resume comparison -----------------------------------------------


def check_args(args: argparse.Namespace, options: Iterable[Option]) -> None:
    """Each option's own check on parsed flags (commands without a config)."""
    for option in options:
        option.validate(getattr(args, option.name))


def options_of(config: Any) -> list[Option]:
    """The options of a config dataclass (class or instance), in field order."""
    return [f.metadata["option"] for f in fields(config) if "option" in f.metadata]


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """The flags of `options`, in argparse groups named after the options' groups."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in options:
        if option.group not in groups:
            groups[option.group] = parser.add_argument_group(option.group)
        option.add_to(groups[option.group])


def add_config_arguments(parser: argparse.ArgumentParser, config: type) -> None:
    add_options(parser, options_of(config))


def config_from_args(config: type, args: argparse.Namespace) -> Any:
    names = {f.name for f in fields(config)}
    return config(**{k: v for k, v in vars(args).items() if k in names})


def check_config(cfg: Any) -> None:
    """Each option's own check (cross-option rules stay with the recipe)."""
    for option in options_of(cfg):
        option.validate(getattr(cfg, option.name))


def resume_state(cfg: Any, out: Path) -> dict[str, Any] | None:
    """With --resume, the training state in `out`/last, refused (naming each setting) when a
    resume option differs from the run that wrote it; None without --resume."""
    if not cfg.resume:
        return None
    from minitf.train.checkpoint import load_state  # only recipes that train get here
    state = load_state(out / "last")
    mismatched = resume_mismatches(cfg, state["config"])
    if mismatched:
        raise MinitfError(f"{out / 'last'} was trained with other settings; --resume "
                          "continues the same run only:\n  " + "\n  ".join(mismatched))
    return state


def resume_mismatches(cfg: Any, saved: dict[str, Any]) -> list[str]:
    """`--flag: checkpoint X, now Y` for every resume option that differs from `saved` (an
    option the checkpoint predates counts as its default)."""
    return [f"--{o.name.replace('_', '-')}: checkpoint {saved.get(o.name, o.default)!r}, now "
            f"{getattr(cfg, o.name)!r}" for o in options_of(cfg)
            if o.resume and saved.get(o.name, o.default) != getattr(cfg, o.name)]
