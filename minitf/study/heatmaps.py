"""Attention weights as heat-maps, with the tokens as labels (`minitf attention -o x.png`;
the command line is minitf/cli/attention.py).

    minitf attention --text "The cat sat on the mat." -o attn.png              all heads, last layer
    minitf attention --text "..." --pair "..." --layer 2 --head 5 -o head.png  one head
    minitf attention --text "..." --layer mean --head mean -o avg.png          everything averaged

Each panel is one (N × N) matrix P = softmax(Q Kᵀ / √d_k + mask) from docs/attention.md: row i is
the query token that reads, column j the key token it reads from, and every row sums to 1.
The weights come from `model(..., output_attentions=True)`, which computes them on the
reference path (the fused kernels never materialise P).

From Python:

    maps = attention_maps("minilm", "The cat sat on the mat.")
    draw_attention(maps.weights, maps.tokens, layer=-1, head="all", path="attn.png")

Labels in Chinese, Japanese, Korean (or any script the default font lacks) need a font that has
those glyphs: `choose_font` looks for one among the installed fonts. If there is none it prints
one line saying which package to install, and writes the missing characters as code points
(U+732B) rather than as empty boxes.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from minitf.errors import MinitfError
from minitf.io import atomic_file
from minitf.paths import resolve_model_dir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from minitf.model.bert import BertModel
    from minitf.tokenizers.wordpiece import Tokenizer

BASE_FONT = "DejaVu Sans"  # matplotlib's default font: Latin, Greek, Cyrillic, symbols
# Fonts with CJK glyphs, tried first (in this order) when a label needs characters BASE_FONT
# lacks; any other installed font that has the glyphs is accepted too.
PREFERRED_FONTS = (
    "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Sans CJK KR",
    "Noto Sans SC", "Noto Sans JP", "Source Han Sans SC", "Source Han Sans",
    "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback", "AR PL UMing CN",
    "Microsoft YaHei", "SimHei", "PingFang SC", "Hiragino Sans GB", "Arial Unicode MS",
)
FONT_HINT = ("install a CJK font (Debian/Ubuntu: sudo apt-get install fonts-noto-cjk; Fedora: "
             "sudo dnf install google-noto-sans-cjk-fonts; macOS and Windows ship one)")
# Fonts that "cover" every character with placeholder boxes: never a real answer.
PLACEHOLDER_FONTS = ("Last Resort",)
MAX_TOKENS_HINT = 64  # beyond this many tokens the labels get too small to read


# ---------------------------------------------------------------------------------------------
# Computing the weights
# ---------------------------------------------------------------------------------------------


@dataclass
class AttentionMaps:
    """Attention weights of one text (or pair), with a label per token."""

    tokens: list[str]            # one label per position, e.g. "[CLS]", "cat", "##s", "[UNK:猫]"
    weights: torch.Tensor        # (layers, heads, N, N); each row sums to 1
    token_type_ids: list[int]    # 0 for the text, 1 for the pair
    truncated: bool = False      # the text did not fit in max_length tokens


def attention_maps(model: str | Path | BertModel, text: str, pair: str | None = None,
                   tokenizer: Tokenizer | None = None, max_length: int = 128) -> AttentionMaps:
    """Run the encoder on one text (and optional pair) and keep every layer's attention weights.

    `model` is a loaded BertModel (then pass its `tokenizer`) or a model directory / name.
    """
    from minitf.model.bert import BertModel
    from minitf.tokenizers.wordpiece import load_tokenizer

    if not isinstance(model, BertModel):
        directory = resolve_model_dir(model)
        model = BertModel.from_pretrained(directory, attn_backend="reference")
        tokenizer = tokenizer or load_tokenizer(directory)  # WordPiece or SentencePiece
    if tokenizer is None:
        raise MinitfError("attention_maps: pass the model's tokenizer along with a loaded model")
    if not text.strip():
        raise MinitfError("the text is empty; give a sentence to look at")
    batch = tokenizer([text], None if pair is None else [pair], max_length=max_length)
    ids = batch["input_ids"][0].tolist()
    full_length = (len(tokenizer.tokenize(text)) + 2
                   + (0 if pair is None else len(tokenizer.tokenize(pair)) + 1))

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                        output_attentions=True)
    finally:
        model.train(was_training)
    weights = torch.stack([w[0] for w in out.attentions]).float()  # (L, H, N, N)
    types = batch["token_type_ids"][0].tolist()
    return AttentionMaps(token_labels(tokenizer, ids, text, pair), weights, types,
                         truncated=full_length > len(ids))


def token_labels(tokenizer: Tokenizer, ids: Sequence[int], text: str,
                 pair: str | None = None) -> list[str]:
    """One label per id: the WordPiece string, and for [UNK] the word it stands for ([UNK:猫])."""
    labels = [tokenizer.decode([i], skip_special_tokens=False) for i in ids]
    unk = tokenizer.decode([tokenizer.unk_token_id], skip_special_tokens=False)
    for position, word in unknown_words(tokenizer, ids, text, pair).items():
        labels[position] = f"{unk[:-1]}:{word}{unk[-1:]}"
    return labels


def unknown_words(tokenizer: Tokenizer, ids: Sequence[int], text: str,
                  pair: str | None = None) -> dict[int, str]:
    """Position of each [UNK] in `ids` → the word of `text` (or `pair`) that it replaced.

    WordPiece works word by word (tokenizer.split_words), so a word that becomes [UNK] can be
    found by tokenizing the words one at a time and lining them up with `ids`.
    """
    found: dict[int, str] = {}
    if tokenizer.unk_token_id not in ids or not hasattr(tokenizer, "split_words"):
        return found  # nothing unknown, or not WordPiece (SentencePiece: no word alignment)
    tokens = [tokenizer.decode([i], skip_special_tokens=False) for i in ids]
    unk = tokenizer.decode([tokenizer.unk_token_id], skip_special_tokens=False)
    sep = tokenizer.decode([tokenizer.sep_token_id], skip_special_tokens=False)
    start = 1  # after [CLS]
    for segment in (text, pair):
        if segment is None:
            break
        try:
            end = tokens.index(sep, start)
        except ValueError:
            break
        spelled = [(piece, word) for word in tokenizer.split_words(segment)
                   for piece in tokenizer.tokenize(word)]
        # Only trust the alignment when it reproduces the model's tokens (truncation keeps a
        # prefix; special tokens typed into the text would break it: then keep plain tokens).
        if [piece for piece, _ in spelled[:end - start]] == tokens[start:end]:
            for offset, (piece, word) in enumerate(spelled[:end - start]):
                if piece == unk:
                    found[start + offset] = word
        start = end + 1
    return found


# ---------------------------------------------------------------------------------------------
# Fonts: find one that can draw every label, or say clearly what is missing
# ---------------------------------------------------------------------------------------------


@dataclass
class FontChoice:
    families: list[str]                      # matplotlib font.family list, with fallbacks
    missing: list[str] = field(default_factory=list)  # characters no installed font has

    @property
    def notice(self) -> str | None:
        """One line for the user when some characters cannot be drawn, else None."""
        if not self.missing:
            return None
        shown = " ".join(self.missing[:8]) + (" ..." if len(self.missing) > 8 else "")
        return (f"no installed font can draw {shown}; those characters are written as code points "
                f"(U+{ord(self.missing[0]):04X}). To see them, {FONT_HINT}.")

    def label(self, text: str) -> str:
        """`text` with every character no font can draw replaced by its code point."""
        if not self.missing:
            return text
        return "".join(f"U+{ord(c):04X}" if c in self.missing else c for c in text)


def choose_font(labels: Sequence[str], fonts: Sequence[tuple[str, str]] | None = None,
                charmap: Any = None) -> FontChoice:
    """The font families that can draw every character of `labels`.

    `fonts` lists the candidates as (family name, file); by default the fonts matplotlib
    knows, then (if none fits) the fonts installed since matplotlib built its cache.
    `charmap(file)` returns the set of code points a font file covers (tests pass fakes).
    """
    charmap = charmap or _charmap
    needed = sorted({c for label in labels for c in label if not c.isspace()})
    base_file = _font_file(BASE_FONT)
    base = charmap(base_file) if base_file else set()
    missing = [c for c in needed if ord(c) not in base]
    if not missing:
        return FontChoice([BASE_FONT])

    search_lists = [fonts] if fonts is not None else [_known_fonts, _rescan_system_fonts]
    best: tuple[int, str] | None = None  # (characters covered, family)
    for candidates in search_lists:
        ranked = sorted(candidates() if callable(candidates) else candidates,
                        key=lambda f: (PREFERRED_FONTS.index(f[0])
                                       if f[0] in PREFERRED_FONTS else len(PREFERRED_FONTS)))
        for family, file in ranked:
            if family == BASE_FONT or family.startswith(PLACEHOLDER_FONTS):
                continue
            covered = charmap(file)
            count = sum(ord(c) in covered for c in missing)
            if count == len(missing):
                return FontChoice([BASE_FONT, family])
            if count and (best is None or count > best[0]):
                best = (count, family)
    if best is None:
        return FontChoice([BASE_FONT], missing)
    covered = charmap(_font_file(best[1]) or "")
    return FontChoice([BASE_FONT, best[1]], [c for c in missing if ord(c) not in covered])


_CHARMAPS: dict[str, set[int]] = {}
_RESCANNED: list[bool] = []


def _charmap(file: str) -> set[int]:
    if file not in _CHARMAPS:
        from matplotlib import font_manager
        try:
            _CHARMAPS[file] = set(font_manager.get_font(file).get_charmap())
        except (OSError, RuntimeError, ValueError):  # unreadable or unsupported font file
            _CHARMAPS[file] = set()
    return _CHARMAPS[file]


def _font_file(family: str) -> str | None:
    from matplotlib import font_manager
    for entry in font_manager.fontManager.ttflist:
        if entry.name == family:
            return entry.fname
    return None


def _known_fonts() -> list[tuple[str, str]]:
    from matplotlib import font_manager
    seen: dict[str, str] = {}
    for entry in font_manager.fontManager.ttflist:
        seen.setdefault(entry.name, entry.fname)
    return list(seen.items())


def _rescan_system_fonts() -> list[tuple[str, str]]:
    """Fonts installed after matplotlib cached its font list (e.g. apt-get install just now).
    Scans the system font folders once per process."""
    from matplotlib import font_manager
    if _RESCANNED:
        return []
    _RESCANNED.append(True)
    known = {entry.fname for entry in font_manager.fontManager.ttflist}
    added = []
    for path in font_manager.findSystemFonts():
        if path not in known:
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):
                continue
            added.append((font_manager.fontManager.ttflist[-1].name, path))
    return added


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------


def select_panels(weights: torch.Tensor, layer: int | str = -1, head: int | str = "all"
                  ) -> list[tuple[str, torch.Tensor]]:
    """Pick the (N × N) matrices to draw from (L, H, N, N) weights, with a title for each.

    `layer` and `head` are each an index (negative counts from the end), "all" (one panel per
    layer / head) or "mean" (their average, which is again a row-stochastic matrix).
    """
    if weights.dim() != 4 or weights.shape[-1] != weights.shape[-2]:
        raise MinitfError(f"expected weights of shape (layers, heads, N, N), got "
                          f"{tuple(weights.shape)}")
    n_layers, n_heads = weights.shape[:2]
    layers = _axis_choice(layer, n_layers, "layer")
    heads = _axis_choice(head, n_heads, "head")
    panels = []
    for layer_name, per_layer in layers(weights):          # per_layer: (H, N, N)
        for head_name, matrix in heads(per_layer):         # matrix: (N, N)
            panels.append((f"{layer_name} · {head_name}", matrix))
    return panels


def axis_index(choice: int | str, size: int, what: str) -> int | str:
    """--layer / --head checked against the model: "all", "mean", or an index in 0..size-1
    (a negative one counts from the end)."""
    if isinstance(choice, str) and choice not in ("all", "mean"):
        try:
            choice = int(choice)
        except ValueError:
            raise MinitfError(f"--{what} must be an index, 'all' or 'mean', got {choice!r}"
                              ) from None
    if isinstance(choice, str):
        return choice
    if not -size <= choice < size:
        raise MinitfError(f"{what} {choice} does not exist: this model has {size} {what}s "
                          f"(0..{size - 1}, or negative to count from the end)")
    return choice % size


def _axis_choice(choice: int | str, size: int, what: str):  # noqa: ANN202 - returns a function
    index = axis_index(choice, size, what)
    if index == "mean":
        return lambda t: [(f"mean of {size} {what}s", t.mean(0))]
    if index == "all":
        return lambda t: [(f"{what} {i}", t[i]) for i in range(size)]
    return lambda t: [(f"{what} {index}", t[index])]


def draw_attention(weights: torch.Tensor, tokens: Sequence[str], layer: int | str = -1,
                   head: int | str = "all", path: str | Path | None = None,
                   title: str | None = None, token_type_ids: Sequence[int] | None = None,
                   annotate: bool | None = None, dpi: int = 120,
                   overwrite: bool = True) -> Figure:
    """Heat-maps of attention weights (layers, heads, N, N), one panel per selected matrix.

    Rows are queries, columns keys, both labelled with `tokens`. A line separates the text from
    its pair when `token_type_ids` are given. Cells show their value when there is a single
    panel of at most 16 tokens (or `annotate=True`). Saves to `path` when given (the format
    follows the suffix: .png, .svg, .pdf; atomically, an existing file only if `overwrite`)
    and returns the matplotlib Figure.
    """
    try:
        from matplotlib import rc_context
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MinitfError("drawing needs matplotlib: pip install 'minitf[plot]' "
                          "(or pip install matplotlib)") from exc
    weights = weights.detach().float().cpu()
    panels = select_panels(weights, layer, head)
    n = weights.shape[-1]
    if len(tokens) != n:
        raise MinitfError(f"got {len(tokens)} token labels for {n} positions")

    font = choose_font(list(tokens) + [title or ""])
    if font.notice:
        print(f"minitf attention: {font.notice}", file=sys.stderr)
    labels = [font.label(t) for t in tokens]

    grid = Grid.for_panels(len(panels), n, weights.shape[1] if layer == "all" and head == "all"
                           else None)
    annotate = grid.single and n <= 16 if annotate is None else annotate
    vmax = max(float(m.max()) for _, m in panels) or 1.0

    with rc_context({"font.family": font.families, "font.size": 10}):
        fig = Figure(figsize=(grid.cols * grid.panel_size + 1.2,
                              grid.rows * grid.panel_size + 1.0), dpi=dpi, layout="constrained")
        axes = fig.subplots(grid.rows, grid.cols, squeeze=False)
        image = None
        for index, ax in enumerate(axes.flat):
            if index >= len(panels):
                ax.set_visible(False)
                continue
            name, matrix = panels[index]
            image = ax.imshow(matrix.numpy(), cmap="viridis", vmin=0.0, vmax=vmax,
                              interpolation="nearest")
            ax.set_title(name, fontsize=11 if grid.single else 9)
            _label_axes(ax, labels, grid, index, len(panels))
            _mark_segments(ax, token_type_ids)
            if annotate:
                _annotate(ax, matrix, vmax)
        fig.colorbar(image, ax=axes, shrink=0.8 if grid.single else 0.6,
                     label="attention weight")
        if title:
            fig.suptitle(font.label(title), fontsize=12)
        if path is not None:
            with atomic_file(path, overwrite) as tmp:
                fig.savefig(tmp, format=Path(path).suffix[1:].lower() or "png")
    return fig


@dataclass(frozen=True)
class Grid:
    """Where the panels go and how large they are drawn."""

    rows: int
    cols: int
    single: bool
    panel_size: float   # inches
    tick_size: int      # points

    @classmethod
    def for_panels(cls, count: int, n: int, cols: int | None) -> Grid:
        """`cols`: one column per head (all layers × all heads); None: near-square, 12 panels
        4 × 3, 6 panels 3 × 2."""
        cols = cols or math.ceil(math.sqrt(count))
        single = count == 1
        cell = 0.42 if single else (0.24 if count <= 16 else 0.16)
        return cls(rows=-(-count // cols), cols=cols, single=single,
                   panel_size=min(max(cell * n + 1.2, 3.0 if single else 2.2), 14.0),
                   tick_size=10 if single else (8 if n <= 24 else 6))


def _label_axes(ax: Any, labels: list[str], grid: Grid, index: int, count: int) -> None:
    """Token labels on the left column and the bottom row only."""
    n = len(labels)
    row, col = divmod(index, grid.cols)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    left = col == 0 or grid.single
    bottom = row == grid.rows - 1 or index + grid.cols >= count
    ax.set_xticklabels(labels if bottom else [], rotation=90, fontsize=grid.tick_size)
    ax.set_yticklabels(labels if left else [], fontsize=grid.tick_size)
    if bottom:
        ax.set_xlabel("key (attended to)", fontsize=9)
    if left:
        ax.set_ylabel("query (attending)", fontsize=9)
    ax.tick_params(length=0)


def _annotate(ax: Any, matrix: torch.Tensor, vmax: float) -> None:
    """Each cell's value, dark on light cells and light on dark ones."""
    n = matrix.shape[-1]
    for i in range(n):
        for j in range(n):
            value = float(matrix[i, j])
            ax.text(j, i, f"{value:.2f}".lstrip("0") if value < 1 else "1", ha="center",
                    va="center", fontsize=7, color="black" if value > 0.6 * vmax else "white")


def _mark_segments(ax: Any, token_type_ids: Sequence[int] | None) -> None:
    """A white line between the text and its pair, on both axes."""
    if not token_type_ids or len(set(token_type_ids)) < 2:
        return
    boundary = list(token_type_ids).index(1) - 0.5
    ax.axhline(boundary, color="white", linewidth=1.0)
    ax.axvline(boundary, color="white", linewidth=1.0)
