"""`minitf attention` on the command line: heat-map images (minitf/study/heatmaps.py) and the
interactive explorer page (minitf/study/explorer.py).

    minitf attention --text "The cat sat on the mat." -o attn.png            all heads, last layer
    minitf attention --text "..." --pair "..." --layer 2 --head 5 -o head.png
    minitf attention --text "..." --pair "..." --html explorer.html           one offline page
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minitf.errors import MinitfError
from minitf.paths import resolve_model_dir
from minitf.recipes import options as O
from minitf.study.heatmaps import MAX_TOKENS_HINT, attention_maps, axis_index, draw_attention

HTML_MAX_LENGTH = 512  # the page stays usable up to BERT's longest input
MIN_DPI, MAX_DPI = 10, 1200  # below: fonts fail to render; above: gigabytes of canvas


def add_arguments(parser: argparse.ArgumentParser) -> None:
    O.add_options(parser, [
        O.MODEL.but(help="model directory or name (default: %(default)s)"),
        O.OUTPUT.but(required=False, aliases=("-o",), help="image file to write; .png, .svg or "
                     ".pdf (default: attention.png, unless --html is given)"),
        O.MAX_LENGTH.but(default=None, type=int, resume=False,
                         help=f"truncate to this many tokens (default: {MAX_TOKENS_HINT} for "
                         f"images, {HTML_MAX_LENGTH} for --html)")])
    parser.add_argument("--text", required=True, help="the sentence to look at")
    parser.add_argument("--pair", help="an optional second sentence (a sentence pair)")
    parser.add_argument("--layer", default="-1",
                        help="layer index (0-based, negative from the end), 'all' or 'mean' "
                             "(default: -1, the last layer)")
    parser.add_argument("--head", default="all",
                        help="head index, 'all' (a grid) or 'mean' (default: all)")
    parser.add_argument("--html", metavar="FILE",
                        help="write the interactive explorer: one self-contained offline page "
                             "(head view, model view, matrix, and the math of one query)")
    parser.add_argument("--pad-to", type=int, metavar="N",
                        help="--html only: append [PAD] tokens up to N, to see the mask at work")
    O.add_options(parser, [O.OVERWRITE.but(
        help="replace an existing --output image or --html page (else an existing file is an "
        "error)")])
    parser.add_argument("--dpi", type=int, default=120, help="resolution of a .png (default 120)")


def run(args: argparse.Namespace) -> int:
    O.check_args(args, [O.MAX_LENGTH])
    if args.pad_to is not None and not args.html:
        raise MinitfError("--pad-to is for the explorer page: add --html FILE")
    if not MIN_DPI <= args.dpi <= MAX_DPI:  # before the figure's canvas is allocated
        raise MinitfError(f"--dpi {args.dpi}: must be from {MIN_DPI} to {MAX_DPI} (print "
                          "quality is 300)")
    if args.html:
        write_page(args)
    if args.output or not args.html:
        write_image(args)
    return 0


def write_page(args: argparse.Namespace) -> None:
    from minitf.study.explorer import explore, write_explorer

    max_length = args.max_length or HTML_MAX_LENGTH
    data = explore(args.model, args.text, args.pair, max_length=max_length, pad_to=args.pad_to)
    if data.truncated:
        print(f"minitf attention: the text was cut to {max_length} tokens (--max-length)",
              file=sys.stderr)
    layers, heads, n, _ = data.q.shape
    data.start = start_view(args.layer, args.head, layers, heads)
    size = write_explorer(data, args.html, args.overwrite)
    print(f"{n} tokens: {' '.join(data.tokens)}")
    print(f"model: {data.kind}, {layers} layers × {heads} heads")
    print(f"wrote {args.html} ({size / 1e6:.2f} MB, self-contained; open it in a browser)")


def start_view(layer: str, head: str, layers: int, heads: int) -> dict[str, object]:
    """The page's first layer and head from --layer / --head when they are indices ("all" and
    "mean" leave the page's defaults: layer 0, all heads)."""
    start: dict[str, object] = {}
    chosen_layer = axis_index(layer, layers, "layer")
    chosen_head = axis_index(head, heads, "head")
    if isinstance(chosen_layer, int):
        start["layer"] = chosen_layer
    if isinstance(chosen_head, int):
        start["heads"] = [chosen_head]
    return start


def write_image(args: argparse.Namespace) -> None:
    directory = resolve_model_dir(args.model)
    output = args.output or "attention.png"
    max_length = args.max_length or MAX_TOKENS_HINT
    maps = attention_maps(directory, args.text, args.pair, max_length=max_length)
    if maps.truncated:
        print(f"minitf attention: the text was cut to {max_length} tokens "
              "(--max-length); longer maps get hard to read", file=sys.stderr)
    n_layers, n_heads, n, _ = maps.weights.shape
    name = args.model if not Path(args.model).expanduser().is_dir() else directory.name
    title = f"{name}: {args.text}" + (f"  ‖  {args.pair}" if args.pair else "")
    if len(title) > 110:
        title = title[:107] + "..."
    draw_attention(maps.weights, maps.tokens, _index_or_word(args.layer),
                   _index_or_word(args.head), path=output, title=title,
                   token_type_ids=maps.token_type_ids, dpi=args.dpi,
                   overwrite=args.overwrite)
    print(f"{n} tokens: {' '.join(maps.tokens)}")
    print(f"model: {directory} ({n_layers} layers × {n_heads} heads)")
    print(f"wrote {output} (layer {args.layer}, head {args.head})")


def _index_or_word(value: str) -> int | str:
    try:
        return int(value)
    except ValueError:
        return value
