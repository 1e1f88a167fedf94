// minitf attention explorer, part 2: the matrix view, the math, the header and start-up.
// It runs in the same script element as explorer.js (explorer.py puts them one after the other),
// so it uses that file's data (Q, K, V, D), state and helpers.

// --------------------------------------------------------------------------------------------
// Matrix view: one head's N × N weights, values on hover
// --------------------------------------------------------------------------------------------

const matrix = { cell: Math.max(3, Math.min(30, Math.floor(640 / N))), left: 0, top: 0 };

function drawMatrix() {
  const h = firstHead(), P = weights(state.layer, h), c = matrix.cell, ratio = window.devicePixelRatio || 1;
  const canvas = $("mx-canvas"), over = $("mx-over"), ctx = canvas.getContext("2d");
  const labels = c >= 9, fs = Math.min(13, c - 2);
  ctx.font = `${fs}px ${getComputedStyle(document.body).fontFamily}`;
  let widest = 0;
  if (labels) for (let j = 0; j < N; j++) widest = Math.max(widest, ctx.measureText(tokenName(j)).width);
  matrix.left = labels ? Math.ceil(widest) + 12 : 8;
  matrix.top = matrix.left;
  const W = matrix.left + N * c + 80, Ht = matrix.top + N * c + 8;
  for (const cv of [canvas, over]) {
    cv.width = Math.round(W * ratio); cv.height = Math.round(Ht * ratio);
    cv.style.width = `${W}px`; cv.style.height = `${Ht}px`;
  }
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.font = `${fs}px ${getComputedStyle(document.body).fontFamily}`;
  let max = 0;
  for (let p = 0; p < N * N; p++) max = Math.max(max, P[p]);
  ctx.imageSmoothingEnabled = false;
  const sqrt = $("mx-sqrt").checked;
  ctx.drawImage(heatImage(P, max || 1, sqrt), matrix.left, matrix.top, N * c, N * c);
  ctx.fillStyle = "rgba(228, 231, 236, 0.9)";   // padding keys: masked, weight exactly 0
  for (let j = 0; j < N; j++) if (!D.mask[j]) ctx.fillRect(matrix.left + j * c, matrix.top, c, N * c);
  if (labels) drawMatrixLabels(ctx, c);
  if (c >= 26) {   // small inputs: the value in every cell
    ctx.font = `${Math.min(11, c / 2.6)}px ui-monospace, Menlo, monospace`;
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) {
      const w = P[i * N + j];
      ctx.fillStyle = w > 0.6 * max || !D.mask[j] ? "#1d2330" : "#ffffff";
      ctx.fillText(w >= 0.995 ? "1" : w.toFixed(2).slice(1), matrix.left + (j + 0.5) * c,
        matrix.top + (i + 0.5) * c);
    }
  }
  drawColourBar(ctx, matrix.left + N * c + 16, matrix.top, N * c, max, sqrt);
  $("mx-tip").textContent = `layer ${state.layer}, head ${h}: rows are queries, columns keys. `
    + "Hover a cell for its weight; click a row to see its math.";
  canvas.dataset.head = h;
}

function drawMatrixLabels(ctx, c) {
  ctx.fillStyle = "#344054";
  ctx.textBaseline = "middle";
  for (let j = 0; j < N; j++) {
    ctx.fillStyle = D.mask[j] ? (isSpecial(j) ? "#475467" : D.segments[j] ? "#9a4a00" : "#1849a9")
      : "#98a2b3";
    ctx.textAlign = "right";
    ctx.fillText(tokenName(j), matrix.left - 6, matrix.top + (j + 0.5) * c);
    ctx.save();
    ctx.translate(matrix.left + (j + 0.5) * c, matrix.top - 6);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "left";
    ctx.fillText(tokenName(j), 0, 0);
    ctx.restore();
  }
  const boundary = D.segments.indexOf(1);   // a line between the text and its pair
  if (boundary > 0) {
    ctx.strokeStyle = "#ffffff"; ctx.lineWidth = 1.5; ctx.beginPath();
    ctx.moveTo(matrix.left, matrix.top + boundary * c);
    ctx.lineTo(matrix.left + N * c, matrix.top + boundary * c);
    ctx.moveTo(matrix.left + boundary * c, matrix.top);
    ctx.lineTo(matrix.left + boundary * c, matrix.top + N * c);
    ctx.stroke();
  }
}

function drawColourBar(ctx, x, y, height, max, sqrt) {
  for (let p = 0; p < height; p++) {   // top = max; with sqrt, the middle is max / 4
    const [r, g, b] = colour(1 - p / height);
    ctx.fillStyle = `rgb(${r | 0},${g | 0},${b | 0})`;
    ctx.fillRect(x, y + p, 12, 1);
  }
  ctx.fillStyle = "#667085"; ctx.font = "11px sans-serif"; ctx.textAlign = "left";
  ctx.textBaseline = "top"; ctx.fillText(max.toFixed(3), x + 16, y);
  ctx.textBaseline = "bottom"; ctx.fillText("0", x + 16, y + height);
  ctx.textBaseline = "middle";
  ctx.fillText((sqrt ? max / 4 : max / 2).toFixed(3), x + 16, y + height / 2);
}

function matrixCell(ev) {
  const rect = $("mx-canvas").getBoundingClientRect(), c = matrix.cell;
  const j = Math.floor((ev.clientX - rect.left - matrix.left) / c);
  const i = Math.floor((ev.clientY - rect.top - matrix.top) / c);
  return i >= 0 && j >= 0 && i < N && j < N ? [i, j] : null;
}

function hookMatrix() {
  const canvas = $("mx-canvas");
  $("mx-sqrt").addEventListener("change", () => drawMatrix());
  canvas.addEventListener("mousemove", (ev) => {
    const over = $("mx-over"), ctx = over.getContext("2d"), ratio = over.width / parseFloat(over.style.width);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, over.width, over.height);
    const cell = matrixCell(ev);
    if (!cell) return;
    const [i, j] = cell, c = matrix.cell, w = weights(state.layer, firstHead())[i * N + j];
    ctx.strokeStyle = "rgba(255,255,255,.9)"; ctx.lineWidth = 1;
    ctx.strokeRect(matrix.left, matrix.top + i * c, N * c, c);
    ctx.strokeRect(matrix.left + j * c, matrix.top, c, N * c);
    ctx.strokeStyle = "#ff3b30"; ctx.lineWidth = 2;
    ctx.strokeRect(matrix.left + j * c, matrix.top + i * c, c, c);
    $("mx-tip").textContent = `P[${i}, ${j}] = ${w.toFixed(4)}: query #${i} “${tokenName(i)}” `
      + `reads key #${j} “${tokenName(j)}” with weight ${w.toFixed(4)} (layer ${state.layer}, `
      + `head ${firstHead()}). Click for the math of this row.`;
  });
  canvas.addEventListener("click", (ev) => {
    const cell = matrixCell(ev);
    if (cell) { state.locked = state.query = cell[0]; state.view = "math"; render(); }
  });
}

// --------------------------------------------------------------------------------------------
// The math of one query in one head
// --------------------------------------------------------------------------------------------

const mathQuery = () => state.locked ?? state.query ?? Math.min(1, N - 1);
const vec = (xs, digits = 3) => `[${Array.from(xs, (x) => fmt(x, digits)).join(", ")}]`;

function step(parent, number, title, link) {
  const h3 = el("h3");
  h3.append(el("span", "n", String(number)), title);
  if (D.links[link]) {
    const a = el("a", "", `docs/attention.md §${D.links[link].split("#")[1].split("-")[0]} →`);
    a.href = D.links[link];
    a.target = "_blank";
    h3.append(a);
  }
  parent.append(h3);
}

function para(parent, ...parts) {
  const p = el("p");
  for (const part of parts) p.append(typeof part === "string" ? part : part);
  parent.append(p);
  return p;
}

function renderMath() {
  const l = state.layer, h = firstHead(), i = mathQuery(), root = $("math");
  const r = scoreRow(l, h, i), o = weightedSum(l, h, r.prob);
  const order = Array.from(r.prob.keys()).sort((a, b) => r.prob[b] - r.prob[a]);
  const top = order[0], qv = Q.subarray(offset(l, h, i), offset(l, h, i) + DK);
  const kv = K.subarray(offset(l, h, top), offset(l, h, top) + DK);
  root.replaceChildren();
  root.dataset.layer = l; root.dataset.head = h; root.dataset.query = i;
  root.append(el("h2", "", `Layer ${l}, head ${h}: how “${tokenName(i)}” (token #${i}) reads the input`));
  para(root, `Head size d_k = ${DK}, so √d_k = ${fmt(Math.sqrt(DK), 4)}. The numbers are this `
    + "model's own: its query, key and value projections of this layer, cut to this head's "
    + `${DK} columns (${h * DK}…${(h + 1) * DK - 1}).`);

  step(root, 1, "The query and the keys", "qkv");
  para(root, `q (“${tokenName(i)}”) = `, el("span", "vec", vec(qv)));
  para(root, `k (“${tokenName(top)}”, the key it reads most) = `, el("span", "vec", vec(kv)));

  step(root, 2, "Scores: q · k for every key, then ÷ √d_k", "scores");
  const paren = (x) => x < 0 ? `(${fmt(x, 3)})` : fmt(x, 3);
  const terms = Array.from(qv.slice(0, 3), (x, d) => `${paren(x)}×${paren(kv[d])}`).join(" + ");
  para(root, el("span", "formula", `q · k(${tokenName(top)}) = ${terms} + … (${DK} products) = `
    + `${fmt(r.dot[top])};   ÷ √${DK} → ${fmt(r.scaled[top])}`));
  step(root, 3, "The mask", "mask");
  const padding = D.mask.filter((m) => !m).length;
  para(root, padding ? `${padding} key${padding > 1 ? "s are" : " is"} padding ([PAD]): `
    + "their score becomes −∞, so the softmax gives them exactly 0."
    : "No key is padding here, so the mask adds 0 everywhere (run with --pad-to N to add "
      + "[PAD] keys and see them get −∞). BERT has no mask between a text and its pair: the "
      + "segment reaches the model only through the token-type embedding, and [SEP] is a key "
      + "like any other.");
  step(root, 4, "Softmax over the keys", "softmax");
  para(root, el("span", "formula", `P_j = exp(s_j − max) / Σ exp(s − max);  max = `
    + `${fmt(r.max)},  Σ = ${fmt(r.sum)};  P(${tokenName(top)}) = exp(${fmt(r.masked[top])} − `
    + `${fmt(r.max)}) / ${fmt(r.sum)} = ${fmt(r.prob[top])}`));
  root.append(mathTable(r, order.slice(0, 3)));
  step(root, 5, "The weighted sum of the values", "sum");
  const shown = order.slice(0, 3).filter((j) => r.prob[j] > 0);
  para(root, el("span", "formula", "o = Σ_j P_j v_j = " + shown.map((j) => `${fmt(r.prob[j], 3)}`
    + ` × v(${tokenName(j)})`).join(" + ") + ` + … (${N} terms)`));
  para(root, `o (“${tokenName(i)}”, this head's output) = `, el("span", "vec", vec(o)));
  para(root, `The ${H} heads' outputs, side by side, make the ${H * DK} numbers that go on to `
    + "the output projection (docs/attention.md steps 7-9). Values v are stored as float16 "
    + "in this file (about 3 significant digits), q and k as float32.");
}

function mathTable(r, top) {
  const wrap = el("div", "tablewrap"), table = el("table");
  table.id = "math-table";
  const head = el("tr");
  for (const name of ["#", "key", "q · k", "÷ √d_k", "+ mask", "softmax P", ""]) {
    head.append(el("th", "", name));
  }
  table.append(head);
  for (let j = 0; j < N; j++) {
    const tr = el("tr", D.mask[j] ? (top.includes(j) ? "top" : "") : "masked");
    tr.dataset.key = j;
    const key = tokenLabel(j, el("span", `chip ${tokenClass(j)}`));
    const cells = [String(j), key, fmt(r.dot[j]), fmt(r.scaled[j]), D.mask[j] ? "0" : "−∞",
      fmt(r.prob[j])];
    cells.forEach((c, k) => {
      const td = el("td", ["idx", "key", "dot", "scaled", "mask", "p"][k]);
      td.append(c);
      tr.append(td);
    });
    const bar = el("td", "bar"), b = el("i");
    b.style.width = `${Math.round(r.prob[j] * 150)}px`;
    bar.append(b);
    tr.append(bar);
    table.append(tr);
  }
  wrap.append(table);
  return wrap;
}

// --------------------------------------------------------------------------------------------
// Header, notes, and drawing the current view
// --------------------------------------------------------------------------------------------

function renderHeader() {
  const kind = { encoder: "encoder", classifier: "fine-tuned classifier", "masked-lm": "masked-LM" };
  $("subtitle").textContent = `${D.title} · ${kind[D.kind]} · ${L} layers × ${H} heads · ${N} tokens`;
  const box = $("prediction"), p = D.prediction;
  if (p && p.labels) {
    const div = el("div", "pred");
    div.append("Prediction: ", el("b", "", p.predicted));
    p.labels.forEach((label, c) => {
      const s = el("span", "pbar"), b = el("i");
      b.style.width = `${Math.round(p.probs[c] * 90) + 2}px`;
      s.append(label, b, p.probs[c].toFixed(3));
      div.append(s);
    });
    box.append(div);
  } else if (p && p.regression !== undefined) {
    const div = el("div", "pred");
    div.append("Prediction (regression): ", el("b", "", p.regression.toFixed(4)));
    box.append(div);
  }
  if (D.kind === "masked-lm") {
    const div = el("div", "pred");
    if (D.fillMask.length) div.append("Fill-mask: ");
    if (!D.fillMask.length) div.append("A masked-LM: write [MASK] in the text to see what it predicts there.");
    for (const m of D.fillMask) {
      div.append(el("b", "", `[MASK] #${m.position} →`));
      for (const [token, prob] of m.top) div.append(el("span", "pbar", `${token} ${prob.toFixed(3)}`));
    }
    box.append(div);
  }
}

function renderNotes() {
  const lines = [
    `Drawn with canvas. Head view: lines with weight below ${MIN_LINE} are not drawn (they `
    + "would be invisible), and lines of equal opacity go into one path, so that even 512 "
    + "tokens redraw quickly; the model view draws its pictures a few at a time.",
    "The file holds the model's own Q and K (float32) and V (float16) for every layer and "
    + "head, taken by forward hooks on its query/key/value projections; the page computes "
    + "softmax(q·k/√d_k + mask) from them in float64. Nothing is fetched from the network.",
  ];
  if (D.truncated) lines.unshift("The input was cut to fit --max-length.");
  if (D.tokens.some((t) => /[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]/.test(t))
      || Object.values(D.unknown).some((w) => /[\u2e80-\u9fff\uac00-\ud7af]/.test(w))) {
    lines.push("Chinese, Japanese and Korean are drawn with your system's fonts: if they show "
      + "as boxes, install a CJK font (Debian/Ubuntu: apt-get install fonts-noto-cjk).");
  }
  for (const line of lines) $("notes").append(el("p", "", line));
}

function render() {
  renderControls();
  $("help").textContent = HELP[state.view];
  if (state.view === "head") drawHeadView();
  else if (state.view === "model") renderModelView();
  else if (state.view === "matrix") drawMatrix();
  else renderMath();
  document.documentElement.dataset.view = state.view;
}

function readHash() {  // e.g. explorer.html#view=math&layer=2&heads=3&query=5
  const args = new URLSearchParams(location.hash.slice(1));
  if (["head", "model", "matrix", "math"].includes(args.get("view"))) state.view = args.get("view");
  const layer = Number(args.get("layer"));
  if (args.has("layer") && layer >= 0 && layer < L) state.layer = layer;
  if (args.has("heads")) {
    state.heads = new Set(args.get("heads").split(",").map(Number).filter((h) => h >= 0 && h < H));
  }
  const query = Number(args.get("query"));
  if (args.has("query") && query >= 0 && query < N) state.locked = state.query = query;
}

// Keys: ← → the previous / next query token, ↑ ↓ the previous / next layer.
function hookKeys() {
  document.addEventListener("keydown", (ev) => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey || ev.target.tagName === "INPUT") return;
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (!moves[ev.key]) return;
    const [dq, dl] = moves[ev.key];
    if (dq) {
      state.locked = state.query = Math.min(N - 1, Math.max(0, mathQuery() + dq));
      state.side = "q";
    }
    state.layer = Math.min(L - 1, Math.max(0, state.layer + dl));
    ev.preventDefault();
    render();
  });
}

async function main() {
  try {
    if (typeof DecompressionStream === "undefined") {
      throw new Error("this browser has no DecompressionStream (Chrome 80+, Firefox 113+ and "
        + "Safari 16.4+ have it)");
    }
    const [q, k, v] = await Promise.all([unpack(D.q, 4), unpack(D.k, 4), unpack(D.v, 2)]);
    Q = new Float32Array(q); K = new Float32Array(k); V = halfToFloat(new Uint16Array(v));
    for (let h = 0; h < (N > 128 ? 1 : H); h++) state.heads.add(h);
    if (D.start.layer !== undefined) state.layer = D.start.layer;   // --layer, --head
    if (D.start.heads !== undefined) state.heads = new Set(D.start.heads);
    readHash();
    renderHeader(); buildStrip(); buildControls(); buildHeadView(); hookMatrix(); hookKeys();
    renderNotes();
    render();
    document.documentElement.dataset.ready = "1";
  } catch (err) {
    $("help").replaceChildren(el("span", "error", `Could not show the data: ${err.message}`));
    document.documentElement.dataset.ready = "error";
    console.error(err);
  }
}

window.explorer = { state, weights, scoreRow, weightedSum, render, matrix, data: D };
main();
