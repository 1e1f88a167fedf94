// minitf attention explorer (the page's script; minitf/study/explorer.py puts it inline).
//
// The data block holds the model's own Q, K, V for every layer and head, (L, H, N, D) each,
// captured by forward hooks on the model's query/key/value projections. This script works
// out, for a layer l and head h, exactly what docs/attention.md steps 3-6 describe:
//   S = Q Kᵀ / √d_k,  S += mask (−∞ on padding keys),  P = softmax(S),  O = P V
// in float64. One function (scoreRow) does it; every view draws its P. The tests compare P
// with minitf's output_attentions in a real browser.
"use strict";

const D = JSON.parse(document.getElementById("data").textContent);
const N = D.n, L = D.layers, H = D.heads, DK = D.headDim;
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#17becf", "#bcbd22", "#393b79", "#ad494a", "#637939"];
const headColour = (h) => h < PALETTE.length ? PALETTE[h]
  : `hsl(${Math.round((h * 137.5) % 360)}, 62%, 45%)`;
const ROW = N > 128 ? 16 : 22;           // head view: pixels per token row
const MIN_LINE = N > 128 ? 0.01 : 0.002; // head view: weights below this are not drawn
const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const fmt = (x, digits = 4) => x === -Infinity ? "−∞" : x.toFixed(digits).replace("-", "−");

let Q, K, V;  // Float32Array / Float64Array of L·H·N·D numbers: ((l·H + h)·N + i)·D + d
const state = { view: "head", layer: 0, heads: new Set(), query: null, locked: null, side: "q" };

// --------------------------------------------------------------------------------------------
// The data: base64 → inflate → un-shuffle bytes → typed array
// --------------------------------------------------------------------------------------------

async function unpack(b64, bytesPer) {
  const text = atob(b64), packed = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) packed[i] = text.charCodeAt(i);
  const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("deflate"));
  const shuffled = new Uint8Array(await new Response(stream).arrayBuffer());
  const count = shuffled.length / bytesPer, out = new Uint8Array(shuffled.length);
  for (let b = 0; b < bytesPer; b++) {   // byte b of every number was stored together
    const base = b * count;
    for (let i = 0; i < count; i++) out[i * bytesPer + b] = shuffled[base + i];
  }
  return out.buffer;
}

function halfToFloat(bits) {  // IEEE float16 → float64, for V
  const out = new Float64Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i], sign = x & 0x8000 ? -1 : 1, exp = (x >> 10) & 0x1f, frac = x & 0x3ff;
    out[i] = exp === 0 ? sign * frac * 2 ** -24
      : exp === 31 ? (frac ? NaN : sign * Infinity) : sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return out;
}

// --------------------------------------------------------------------------------------------
// The attention arithmetic, once
// --------------------------------------------------------------------------------------------

const offset = (l, h, i) => ((l * H + h) * N + i) * DK;

// Steps 3-5 for query i of head (l, h): every intermediate, as the math view shows them.
function scoreRow(l, h, i) {
  const dot = new Float64Array(N), scaled = new Float64Array(N), masked = new Float64Array(N);
  const prob = new Float64Array(N), qo = offset(l, h, i);
  let max = -Infinity;
  for (let j = 0; j < N; j++) {
    const ko = offset(l, h, j);
    let s = 0;
    for (let d = 0; d < DK; d++) s += Q[qo + d] * K[ko + d];
    dot[j] = s;
    scaled[j] = s * D.scale;
    masked[j] = D.mask[j] ? scaled[j] : -Infinity;
    if (masked[j] > max) max = masked[j];
  }
  let sum = 0;
  if (max > -Infinity) {   // a query with every key masked gets zeros, as in minitf
    for (let j = 0; j < N; j++) { prob[j] = Math.exp(masked[j] - max); sum += prob[j]; }
    for (let j = 0; j < N; j++) prob[j] /= sum;
  }
  return { dot, scaled, masked, prob, max, sum };
}

// Step 6 for query i: o = Σ_j P[i, j] v_j (D numbers).
function weightedSum(l, h, prob) {
  const o = new Float64Array(DK);
  for (let j = 0; j < N; j++) {
    if (!prob[j]) continue;
    const vo = offset(l, h, j);
    for (let d = 0; d < DK; d++) o[d] += prob[j] * V[vo + d];
  }
  return o;
}

const cache = new Map();  // l·H + h → Float32Array (N·N), least recently used first
const CACHE_SIZE = Math.max(8, Math.floor(48e6 / (N * N * 4)));

function weights(l, h) {
  const key = l * H + h;
  if (cache.has(key)) { const P = cache.get(key); cache.delete(key); cache.set(key, P); return P; }
  const P = new Float32Array(N * N);
  for (let i = 0; i < N; i++) P.set(scoreRow(l, h, i).prob, i * N);
  cache.set(key, P);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value);
  return P;
}

// --------------------------------------------------------------------------------------------
// Tokens
// --------------------------------------------------------------------------------------------

const isSpecial = (j) => /^\[(CLS|SEP|PAD|MASK)\]$/.test(D.tokens[j]) || /^<.*>$/.test(D.tokens[j]);

function tokenClass(j) {
  const t = D.tokens[j];
  const cls = [D.mask[j] ? (isSpecial(j) ? "special" : `seg${D.segments[j]}`) : "pad"];
  if (t === "[SEP]") cls.push("sep");
  if (D.unknown[j] !== undefined) cls.push("unk");
  return cls.join(" ");
}

function tokenLabel(j, node) {  // the token, and for [UNK] the text it replaced
  node.append(D.tokens[j]);
  if (D.unknown[j] !== undefined) node.append(el("small", "", D.unknown[j]));
  node.title = `#${j} ${D.tokens[j]}` + (D.unknown[j] !== undefined
    ? ` (the vocabulary has no piece for “${D.unknown[j]}”)` : "")
    + (D.mask[j] ? ` · segment ${D.segments[j] ? "B (pair)" : "A (text)"}` : " · padding");
  return node;
}

const tokenName = (j) => D.unknown[j] !== undefined ? `${D.tokens[j]}(${D.unknown[j]})` : D.tokens[j];

function buildStrip() {
  const strip = $("strip");
  for (let j = 0; j < N; j++) {
    const chip = tokenLabel(j, el("span", `chip ${tokenClass(j)}`));
    chip.dataset.index = j;
    chip.addEventListener("click", () => { setQuery(j, true); });
    strip.append(chip);
  }
}

function setQuery(j, lock) {
  state.query = j;
  state.side = "q";
  if (lock) state.locked = state.locked === j && state.view === "head" ? null : j;
  render();
}

// --------------------------------------------------------------------------------------------
// Controls
// --------------------------------------------------------------------------------------------

function buildControls() {
  for (let l = 0; l < L; l++) {
    const b = el("button", "layer", String(l));
    b.dataset.layer = l;
    b.addEventListener("click", () => { state.layer = l; render(); });
    $("layers").append(b);
  }
  for (let h = 0; h < H; h++) {
    const b = el("button", "head", String(h));
    b.dataset.head = h;
    b.style.borderColor = headColour(h);
    b.addEventListener("click", (ev) => toggleHead(h, ev.shiftKey || ev.ctrlKey || ev.metaKey));
    $("heads").append(b);
  }
  $("heads-all").addEventListener("click", () => {
    for (let h = 0; h < H; h++) state.heads.add(h);
    if (!singleHeadView()) render(); else { state.heads = new Set([firstHead()]); render(); }
  });
  $("heads-none").addEventListener("click", () => { state.heads.clear(); render(); });
  for (const b of document.querySelectorAll("#views button")) {
    b.addEventListener("click", () => { state.view = b.dataset.view; render(); });
  }
}

const singleHeadView = () => state.view === "matrix" || state.view === "math";
const firstHead = () => state.heads.size ? Math.min(...state.heads) : 0;

// A click shows that head alone; shift- (or ctrl-) click adds or removes it.
function toggleHead(h, add) {
  if (!add || singleHeadView()) state.heads = new Set([h]);
  else if (state.heads.has(h)) state.heads.delete(h);
  else state.heads.add(h);
  render();
}

function renderControls() {
  for (const b of document.querySelectorAll("#layers button")) {
    b.classList.toggle("on", Number(b.dataset.layer) === state.layer);
  }
  const single = singleHeadView(), shown = single ? new Set([firstHead()]) : state.heads;
  for (const b of document.querySelectorAll("#heads button")) {
    const h = Number(b.dataset.head), on = shown.has(h);
    b.classList.toggle("on", on);
    b.style.background = on ? headColour(h) : "";
  }
  $("heads-all").style.display = $("heads-none").style.display = single ? "none" : "";
  $("controls").style.display = state.view === "model" ? "none" : "";
  for (const b of document.querySelectorAll("#views button")) {
    b.classList.toggle("on", b.dataset.view === state.view);
  }
  for (const v of document.querySelectorAll(".view")) {
    v.classList.toggle("on", v.id === `view-${state.view}`);
  }
  for (const chip of document.querySelectorAll("#strip .chip")) {
    chip.classList.toggle("current", Number(chip.dataset.index) === mathQuery()
      && (state.view === "math" || state.locked !== null));
  }
}

const HELP = {
  head: "Each line joins a query token (left) to a key token (right); its opacity is the weight "
    + "P[query, key] of the head in that colour. Hover a token to see only its lines, click it "
    + "to keep them (click again to let go). Shift-click heads to pick several.",
  model: "Every layer (rows) and head (columns) as a small query × key heat-map, brighter = "
    + "more weight (each picture scaled to its own largest weight). Click one to open it in "
    + "the head view.",
  matrix: "One head's N × N weights: row = the query token that reads, column = the key token "
    + "it reads from; every row sums to 1. Hover a cell for its value, click a row for its math.",
  math: "How one query token, in one head, turns into a weighted average of the value vectors, "
    + "step by step, with this model's numbers. Click a token in the input above to pick the "
    + "query (or use ← →); pick the layer (↑ ↓) and head above.",
};

// --------------------------------------------------------------------------------------------
// Head view
// --------------------------------------------------------------------------------------------

function buildHeadView() {
  const hv = $("hv");
  hv.style.setProperty("--row", `${ROW}px`);
  hv.style.setProperty("--fs", `${ROW > 16 ? 14 : 12}px`);
  for (const [side, col] of [["q", $("hv-left")], ["k", $("hv-right")]]) {
    for (let j = 0; j < N; j++) {
      const t = tokenLabel(j, el("div", `tok ${tokenClass(j)}`));
      t.dataset.index = j;
      t.addEventListener("mouseenter", () => {
        if (state.locked === null) { state.query = j; state.side = side; drawHeadView(); }
      });
      t.addEventListener("mouseleave", () => {
        if (state.locked === null) { state.query = null; drawHeadView(); }
      });
      t.addEventListener("click", () => {
        state.locked = state.locked === j && state.side === side ? null : j;
        state.query = j;
        state.side = side;
        render();
      });
      col.append(t);
    }
  }
  const canvas = $("hv-canvas"), ratio = window.devicePixelRatio || 1;
  canvas.style.width = "300px";
  canvas.style.height = `${N * ROW}px`;
  canvas.width = Math.round(300 * ratio);
  canvas.height = Math.round(N * ROW * ratio);
}

function drawHeadView() {
  const canvas = $("hv-canvas"), ctx = canvas.getContext("2d");
  const ratio = canvas.width / 300, W = 300;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, W, N * ROW);
  const focus = state.locked ?? state.query, heads = [...state.heads].sort((a, b) => a - b);
  let drawn = 0, skipped = 0;
  const bar = new Float64Array(N);  // mean weight over the shown heads, for the token shading
  for (const h of heads) {
    const P = weights(state.layer, h), buckets = Array.from({ length: 21 }, () => []);
    const rows = focus === null || state.side === "k" ? N : 1;
    for (let r = 0; r < rows; r++) {
      const i = focus !== null && state.side === "q" ? focus : r;
      for (let j = 0; j < N; j++) {
        if (focus !== null && state.side === "k" && j !== focus) continue;
        const w = P[i * N + j];
        if (focus !== null) bar[state.side === "q" ? j : i] += w / heads.length;
        if (w < MIN_LINE) { if (w > 0) skipped++; continue; }
        buckets[Math.round(w * 20)].push(i, j);
        drawn++;
      }
    }
    ctx.strokeStyle = headColour(h);
    ctx.lineWidth = focus === null ? 1.1 : 2;
    buckets.forEach((ends, b) => {   // one path per opacity level: fast for long inputs
      if (!ends.length) return;
      ctx.globalAlpha = Math.max(b, 0.5) / 20;
      ctx.beginPath();
      for (let e = 0; e < ends.length; e += 2) {
        ctx.moveTo(2, (ends[e] + 0.5) * ROW);
        ctx.lineTo(W - 2, (ends[e + 1] + 0.5) * ROW);
      }
      ctx.stroke();
    });
  }
  ctx.globalAlpha = 1;
  markHeadViewTokens(focus, bar);
  $("hv-status").textContent = `layer ${state.layer}, ${heads.length ? `head${heads.length > 1
    ? "s" : ""} ${heads.join(", ")}` : "no head chosen"}` + (focus === null ? ""
    : ` · ${state.side === "q" ? "what" : "who reads"} “${tokenName(focus)}” ${state.side === "q"
      ? "reads" : ""}${state.locked !== null ? " (kept; click it again to let go)" : ""}`)
    + ` · ${drawn.toLocaleString("en")} lines drawn, ${skipped.toLocaleString("en")} below `
    + `${MIN_LINE} not drawn`;
  canvas.dataset.lines = drawn;
}

// The focused token gets an outline; the tokens across from it a bar and the number: the
// weight between them (averaged over the shown heads).
function markHeadViewTokens(focus, bar) {
  for (const [side, col] of [["q", $("hv-left")], ["k", $("hv-right")]]) {
    const other = side !== state.side;
    col.childNodes.forEach((t, j) => {
      const shown = focus !== null && other && state.heads.size > 0;
      t.classList.toggle("focus", focus === j && !other);
      t.style.setProperty("--w", shown ? bar[j].toFixed(4) : "0");
      t.dataset.w = shown && bar[j] >= 0.005 ? bar[j].toFixed(2) : "";
    });
  }
}

// --------------------------------------------------------------------------------------------
// Colours for heat-maps (viridis, 9 stops)
// --------------------------------------------------------------------------------------------

const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];

function colour(t) {  // t in [0, 1] → [r, g, b]
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), 7);
  const f = x - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return [a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), a[2] + f * (b[2] - a[2])];
}

const LUT = Array.from({ length: 256 }, (_, t) => colour(t / 255));

function heatImage(P, scaleMax, sqrt = false) {  // an N × N canvas, one pixel per weight
  const c = document.createElement("canvas");
  c.width = c.height = N;
  const ctx = c.getContext("2d"), img = ctx.createImageData(N, N), px = img.data;
  for (let p = 0; p < N * N; p++) {
    const t = P[p] / scaleMax, [r, g, b] = LUT[Math.min(255, Math.round((sqrt ? Math.sqrt(t) : t) * 255))];
    px[4 * p] = r; px[4 * p + 1] = g; px[4 * p + 2] = b; px[4 * p + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

// --------------------------------------------------------------------------------------------
// Model view: every layer × head, drawn a few at a time so that long inputs stay responsive
// --------------------------------------------------------------------------------------------

let modelViewBuilt = false;

function buildModelView() {
  modelViewBuilt = true;
  const grid = $("mv-grid"), size = Math.max(52, Math.min(84, Math.floor(960 / H) - 8));
  grid.style.gridTemplateColumns = `auto repeat(${H}, ${size + 4}px)`;
  grid.append(el("div"));
  for (let h = 0; h < H; h++) {
    const lab = el("div", "lab", `head ${h}`);
    lab.style.color = headColour(h);
    grid.append(lab);
  }
  const pending = [];
  for (let l = 0; l < L; l++) {
    grid.append(el("div", "lab", `layer ${l}`));
    for (let h = 0; h < H; h++) {
      const c = el("canvas");
      c.width = c.height = size;
      c.dataset.layer = l; c.dataset.head = h;
      c.title = `layer ${l}, head ${h}: click to open`;
      c.addEventListener("click", () => {
        state.layer = l; state.heads = new Set([h]); state.view = "head"; render();
      });
      grid.append(c);
      pending.push(c);
    }
  }
  const step = () => {   // ~30 ms of pictures at a time, then let the page breathe
    const start = performance.now();
    while (pending.length && performance.now() - start < 30) {
      const c = pending.shift(), P = weights(Number(c.dataset.layer), Number(c.dataset.head));
      let max = 0;
      for (let p = 0; p < P.length; p++) if (P[p] > max) max = P[p];
      const ctx = c.getContext("2d");
      ctx.imageSmoothingEnabled = N > c.width;  // average when shrinking, sharp when growing
      ctx.drawImage(heatImage(P, max || 1), 0, 0, c.width, c.height);
    }
    if (pending.length) setTimeout(step, 0);
    else grid.dataset.done = "1";
  };
  setTimeout(step, 0);
}

function renderModelView() {
  if (!modelViewBuilt) buildModelView();
  for (const c of document.querySelectorAll("#mv-grid canvas")) {
    c.classList.toggle("current", Number(c.dataset.layer) === state.layer
      && state.heads.has(Number(c.dataset.head)));
  }
}

