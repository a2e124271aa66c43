"use strict";
/* page.js — the latent-space explorer: the model's decoder runs here, in the page, on every
 * pointer move. Everything it needs is in the JSON block above (written by `vae explore`);
 * nothing is fetched, nothing is evaluated from strings (the page's CSP forbids it). */
(function () {
  const D = JSON.parse(document.getElementById("vae-data").textContent);
  const L = D.latent, C = D.classes || 0, N = D.points ? D.points.n : 0;
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------ decoding base64 blobs
  function bytes(b64) {
    const s = atob(b64), out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function halfToFloat(h) {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
    if (e === 31) return f ? NaN : s * Infinity;
    return s * Math.pow(2, e - 15) * (1 + f / 1024);
  }
  function floats(blob, dtype) { // little-endian f32 or f16
    const b = bytes(blob), v = new DataView(b.buffer);
    if (dtype === "f16") {
      const out = new Float32Array(b.length / 2);
      for (let i = 0; i < out.length; i++) out[i] = halfToFloat(v.getUint16(2 * i, true));
      return out;
    }
    const out = new Float32Array(b.length / 4);
    for (let i = 0; i < out.length; i++) out[i] = v.getFloat32(4 * i, true);
    return out;
  }

  // ------------------------------------------------------------ the decoder
  const W = floats(D.weights.data, D.weights.dtype);
  const layers = [];
  let off = 0, widest = L + C;
  for (const l of D.layers) {
    layers.push({ n_in: l.in, n_out: l.out, w: W.subarray(off, off + l.in * l.out),
                  b: W.subarray(off + l.in * l.out, off + l.in * l.out + l.out) });
    off += l.in * l.out + l.out;
    widest = Math.max(widest, l.out);
  }
  const bufA = new Float32Array(widest), bufB = new Float32Array(widest);
  const dim = D.input;
  const out = new Float32Array(dim);
  const mean = D.standardize ? floats(D.standardize.mean, "f32") : null;
  const std = D.standardize ? floats(D.standardize.std, "f32") : null;
  const act = {
    relu: (x) => (x > 0 ? x : 0), tanh: Math.tanh,
    leaky_relu: (x) => (x > 0 ? x : 0.01 * x), elu: (x) => (x > 0 ? x : Math.expm1(x)),
  }[D.activation];

  /* z (L values) and a label -> the means of p(x|z) (dim values, in the data's units): the
   * same layers, in the same order, as the library's decoder. */
  function decode(z, label, into) {
    let x = bufA, y = bufB;
    for (let j = 0; j < L; j++) x[j] = z[j];
    for (let c = 0; c < C; c++) x[L + c] = c === label ? 1 : 0;
    for (let li = 0; li < layers.length; li++) {
      const { n_in, n_out, w, b } = layers[li], last = li === layers.length - 1;
      for (let o = 0; o < n_out; o++) {
        let s = 0;
        const r = o * n_in;
        for (let i = 0; i < n_in; i++) s += w[r + i] * x[i];
        s += b[o];
        y[o] = last ? s : act(s);
      }
      const t = x; x = y; y = t;
    }
    const res = into || out;
    for (let d = 0; d < dim; d++) {
      const v = x[d];
      let m = D.likelihood === "bernoulli" ? 1 / (1 + Math.exp(-v))
        : D.likelihood === "poisson" ? Math.exp(v) : v;
      if (mean) m = m * std[d] + mean[d];
      res[d] = m;
    }
    return res;
  }

  // ------------------------------------------------------------ data points
  const means = N ? floats(D.points.means, D.points.means_dtype) : new Float32Array(0);
  const labels = N && D.points.labels ? bytes(D.points.labels) : null;
  const names = D.class_names || [];
  const colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                  "#7f7f7f", "#bcbd22", "#17becf"];
  const color = (k) => (k === null ? "#546e7a" : colors[k % colors.length]);
  const point = (i) => means.subarray(i * L, (i + 1) * L);

  // projections: the latent itself (2-D), the means' first two principal components, or two
  // chosen dimensions; each maps z to the plane and a plane point back to z
  const center = new Float32Array(L);
  for (let i = 0; i < N; i++) for (let j = 0; j < L; j++) center[j] += means[i * L + j] / N;
  function principal() { // power iteration with deflation on the means' covariance
    const cov = new Float64Array(L * L);
    for (let i = 0; i < N; i++)
      for (let a = 0; a < L; a++) {
        const da = means[i * L + a] - center[a];
        for (let b = 0; b < L; b++) cov[a * L + b] += da * (means[i * L + b] - center[b]);
      }
    const vecs = [];
    for (let k = 0; k < 2; k++) {
      let v = new Float64Array(L).map((_, j) => 1 + j * 0.01 * (k + 1));
      for (let it = 0; it < 200; it++) {
        const w = new Float64Array(L);
        for (let a = 0; a < L; a++) for (let b = 0; b < L; b++) w[a] += cov[a * L + b] * v[b];
        for (const u of vecs) { let d = 0; for (let a = 0; a < L; a++) d += w[a] * u[a]; for (let a = 0; a < L; a++) w[a] -= d * u[a]; }
        const n = Math.hypot(...w) || 1;
        v = w.map((x) => x / n);
      }
      vecs.push(v);
    }
    return vecs;
  }
  const views = [];
  if (L === 2) views.push({ name: "latent (z0, z1)", dims: [0, 1] });
  if (L > 2 && N > 2) views.push({ name: "principal components of the means", pcs: principal() });
  for (let a = 0; a < Math.min(L, 8); a++)
    for (let b = a + 1; b < Math.min(L, 8); b++)
      if (!(L === 2 && a === 0 && b === 1)) views.push({ name: "z" + a + " vs z" + b, dims: [a, b] });
  let view = views[0];
  function project(z) {
    if (view.dims) return [z[view.dims[0]], z[view.dims[1]]];
    const [u, v] = view.pcs;
    let p = 0, q = 0;
    for (let j = 0; j < L; j++) { const d = z[j] - center[j]; p += d * u[j]; q += d * v[j]; }
    return [p, q];
  }
  function unproject(p, q, base) { // base with its projection moved to (p, q)
    const z = Float32Array.from(base);
    if (view.dims) { z[view.dims[0]] = p; z[view.dims[1]] = q; return z; }
    const [bp, bq] = project(base), [u, v] = view.pcs;
    for (let j = 0; j < L; j++) z[j] += (p - bp) * u[j] + (q - bq) * v[j];
    return z;
  }

  // ------------------------------------------------------------ state and drawing
  const state = { z: new Float32Array(L), label: 0, alpha: 0, base: new Float32Array(L),
                  picked: -1, a: null, b: null };
  const image = D.image; // [rows, cols] or null: tabular
  const dec = $("decoded"), dctx = dec.getContext("2d");
  const map = $("map"), mctx = map.getContext("2d");
  let scale = 1, ox = 0, oy = 0;

  function fitMap() {
    let lo = [-3, -3], hi = [3, 3];
    for (let i = 0; i < N; i++) {
      const [p, q] = project(point(i));
      lo = [Math.min(lo[0], p), Math.min(lo[1], q)]; hi = [Math.max(hi[0], p), Math.max(hi[1], q)];
    }
    const span = Math.max(hi[0] - lo[0], hi[1] - lo[1]) * 1.05;
    scale = map.width / span;
    ox = (lo[0] + hi[0]) / 2; oy = (lo[1] + hi[1]) / 2;
  }
  const toScreen = (p, q) => [map.width / 2 + (p - ox) * scale, map.height / 2 - (q - oy) * scale];
  const toPlane = (x, y) => [(x - map.width / 2) / scale + ox, -(y - map.height / 2) / scale + oy];

  let mapLayer = null; // the points, drawn once per view
  function drawPoints() {
    mapLayer = document.createElement("canvas");
    mapLayer.width = map.width; mapLayer.height = map.height;
    const g = mapLayer.getContext("2d");
    g.fillStyle = "#fff"; g.fillRect(0, 0, map.width, map.height);
    g.strokeStyle = "#eceff1";
    for (let t = -3; t <= 3; t++) {
      const [x0, y0] = toScreen(t, -3), [x1, y1] = toScreen(t, 3);
      g.beginPath(); g.moveTo(x0, y0); g.lineTo(x1, y1); g.stroke();
      const [a0, b0] = toScreen(-3, t), [a1, b1] = toScreen(3, t);
      g.beginPath(); g.moveTo(a0, b0); g.lineTo(a1, b1); g.stroke();
    }
    if (!$("showpts").checked) return;
    g.globalAlpha = 0.75;
    for (let i = 0; i < N; i++) {
      const [x, y] = toScreen(...project(point(i)));
      g.fillStyle = color(labels ? labels[i] : null);
      g.fillRect(x - 1.5, y - 1.5, 3, 3);
    }
  }
  function drawMap() {
    mctx.drawImage(mapLayer, 0, 0);
    const mark = (z, c, r) => {
      const [x, y] = toScreen(...project(z));
      mctx.strokeStyle = c; mctx.lineWidth = 2;
      mctx.beginPath(); mctx.arc(x, y, r, 0, 2 * Math.PI); mctx.stroke();
    };
    if (state.a) mark(state.a, "#43a047", 6);
    if (state.b) mark(state.b, "#e53935", 6);
    if (state.picked >= 0) mark(point(state.picked), "#000", 5);
    mark(current(), "#1e88e5", 8);
  }

  // the point decoded: the base z plus the attribute vector times its amount
  let attr = new Float32Array(L);
  function current() {
    const z = new Float32Array(L);
    for (let j = 0; j < L; j++) z[j] = state.z[j] + state.alpha * attr[j];
    return z;
  }

  const pixels = image ? dctx.createImageData(image[1], image[0]) : null;
  const small = image ? document.createElement("canvas") : null;
  if (small) { small.width = image[1]; small.height = image[0]; }
  function paint(ctx, values, w, h) { // an image of values in [0,1] (or a bar chart) into ctx
    if (image) {
      const id = ctx === dctx ? pixels : ctx.createImageData(image[1], image[0]);
      for (let i = 0; i < dim; i++) {
        const v = 255 - Math.max(0, Math.min(255, Math.round(values[i] * 255)));
        id.data[4 * i] = id.data[4 * i + 1] = id.data[4 * i + 2] = v; id.data[4 * i + 3] = 255;
      }
      const sctx = small.getContext("2d");
      sctx.putImageData(id, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(small, 0, 0, w, h);
      return;
    }
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
    let lo = 0, hi = 0;
    for (let i = 0; i < dim; i++) { lo = Math.min(lo, values[i]); hi = Math.max(hi, values[i]); }
    const zero = h * hi / ((hi - lo) || 1), bw = w / dim;
    ctx.fillStyle = "#1e88e5";
    for (let i = 0; i < dim; i++) {
      const v = values[i] * (h - 14) / ((hi - lo) || 1);
      ctx.fillRect(i * bw + 1, Math.min(zero, zero - v), Math.max(1, bw - 2), Math.abs(v));
    }
  }

  const timing = { decodes: 0, ms: 0, frames: 0, recent: 0 };
  let pending = false;
  function render() { // at most once per frame: decode, paint, mark
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const t = performance.now();
      const x = decode(current(), state.label);
      const took = performance.now() - t;
      timing.ms += took; timing.decodes++;
      timing.recent = timing.decodes < 10 ? took : 0.9 * timing.recent + 0.1 * took; // past the JIT's warm-up
      paint(dctx, x, dec.width, dec.height);
      drawMap();
      syncSliders();
      timing.frames++;
      $("stats").textContent = "decode " + timing.recent.toFixed(3) + " ms, weights " + D.weights.dtype;
      $("cursor").textContent = "z = (" + Array.from(current().slice(0, 4), (v) => v.toFixed(2)).join(", ") +
        (L > 4 ? ", ..." : "") + ")";
    });
  }

  // ------------------------------------------------------------ controls
  const sliders = [];
  for (let j = 0; j < L; j++) {
    const lab = document.createElement("label"), s = document.createElement("input"), v = document.createElement("span");
    lab.textContent = "z" + j; lab.htmlFor = s.id = "z" + j;
    s.type = "range"; s.min = -3; s.max = 3; s.step = 0.01; s.value = 0;
    v.className = "num";
    s.addEventListener("input", () => { state.z[j] = +s.value - state.alpha * attr[j]; render(); });
    $("sliders").append(lab, s, v);
    sliders.push([s, v]);
  }
  function syncSliders() {
    const z = current();
    for (let j = 0; j < L; j++) {
      if (document.activeElement !== sliders[j][0]) sliders[j][0].value = z[j];
      sliders[j][1].textContent = z[j].toFixed(2);
    }
  }

  let dragging = false;
  function moveTo(ev) {
    const r = map.getBoundingClientRect();
    const [p, q] = toPlane((ev.clientX - r.left) * map.width / r.width, (ev.clientY - r.top) * map.height / r.height);
    state.z = unproject(p, q, state.z);
    render();
  }
  map.addEventListener("pointerdown", (ev) => {
    dragging = true; map.setPointerCapture(ev.pointerId);
    const hit = nearestOnScreen(ev);
    if (hit >= 0) pick(hit); else moveTo(ev);
  });
  map.addEventListener("pointermove", (ev) => { if (dragging || ev.buttons === 0 && ev.shiftKey) moveTo(ev); });
  map.addEventListener("pointerup", () => { dragging = false; });
  map.addEventListener("keydown", (ev) => { // keyboard: arrows move the point in the plane
    const step = (ev.shiftKey ? 0.5 : 0.1);
    const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] }[ev.key];
    if (!d) return;
    ev.preventDefault();
    const [p, q] = project(state.z);
    state.z = unproject(p + d[0], q + d[1], state.z);
    render();
  });
  function nearestOnScreen(ev) { // a data point within 5 pixels of the pointer, or -1
    const r = map.getBoundingClientRect();
    const x = (ev.clientX - r.left) * map.width / r.width, y = (ev.clientY - r.top) * map.height / r.height;
    let best = -1, bd = 25;
    if (!$("showpts").checked) return -1;
    for (let i = 0; i < N; i++) {
      const [px, py] = toScreen(...project(point(i)));
      const d = (px - x) ** 2 + (py - y) ** 2;
      if (d < bd) { bd = d; best = i; }
    }
    return best;
  }

  // thumbnails: the data points' images, cut from the sprite sheet
  let sheet = null;
  if (N && D.points.thumbs) { sheet = new Image(); sheet.src = D.points.thumbs; }
  function thumb(i, title) {
    const c = document.createElement("canvas");
    c.width = image[1]; c.height = image[0]; c.title = title;
    const per = D.points.sheet_cols;
    c.getContext("2d").drawImage(sheet, (i % per) * image[1], Math.floor(i / per) * image[0], image[1], image[0], 0, 0, image[1], image[0]);
    return c;
  }
  function decodedThumb(z, label, title) {
    const c = document.createElement("canvas");
    c.width = image[1]; c.height = image[0]; c.title = title;
    paint(c.getContext("2d"), decode(z, label, new Float32Array(dim)), image[1], image[0]);
    return c;
  }
  function pick(i) { // a data point: it, its reconstruction and its k nearest neighbours
    state.picked = i;
    state.z = Float32Array.from(point(i));
    if (C && labels) { state.label = labels[i]; $("label").value = labels[i]; }
    const k = 8, zi = point(i), dist = [];
    for (let n = 0; n < N; n++) {
      if (n === i) continue;
      let d = 0; const zn = point(n);
      for (let j = 0; j < L; j++) d += (zn[j] - zi[j]) ** 2;
      dist.push([d, n]);
    }
    dist.sort((a, b) => a[0] - b[0]);
    const nb = dist.slice(0, k).map((e) => e[1]);
    const name = (n) => (labels ? (names[labels[n]] || "class " + labels[n]) : "");
    $("picked").textContent = "point " + (i + 1) + (labels ? " (" + name(i) + ")" : "") +
      (image ? ": the image, its reconstruction, then its " + k + " nearest neighbours" : "") +
      "; neighbours: " + nb.map((n) => n + 1).join(", ");
    const box = $("neighbours");
    box.replaceChildren();
    if (image) {
      if (sheet) box.append(thumb(i, "point " + (i + 1)));
      box.append(decodedThumb(zi, labels ? labels[i] : 0, "reconstruction"));
      if (sheet) for (const n of nb) box.append(thumb(n, "point " + (n + 1) + " " + name(n)));
    }
    box.dataset.neighbours = nb.join(",");
    render();
  }

  // attribute vectors: the difference of two classes' mean latent points
  function classMean(k) {
    const m = new Float32Array(L); let count = 0;
    for (let i = 0; i < N; i++) if (labels[i] === k) { count++; for (let j = 0; j < L; j++) m[j] += means[i * L + j]; }
    return m.map((v) => v / (count || 1));
  }
  function updateAttr() {
    if (!labels) return;
    const a = classMean(+$("attrA").value), b = classMean(+$("attrB").value);
    attr = b.map((v, j) => v - a[j]);
    render();
  }

  // interpolation strip: linear (top) and spherical (bottom), 10 frames from A to B
  function slerp(a, b, t) {
    const na = Math.hypot(...a), nb = Math.hypot(...b);
    let dot = 0; for (let j = 0; j < L; j++) dot += a[j] * b[j];
    const omega = Math.acos(Math.max(-1, Math.min(1, dot / (na * nb || 1))));
    if (omega < 1e-4) return a.map((v, j) => v + t * (b[j] - v));
    const s = Math.sin(omega);
    return a.map((v, j) => (Math.sin((1 - t) * omega) * v + Math.sin(t * omega) * b[j]) / s);
  }
  function drawStrip() {
    if (!state.a || !state.b) return;
    const steps = 10, strip = $("strip");
    const w = image ? image[1] * 2 : 60, h = image ? image[0] * 2 : 40;
    strip.width = steps * w; strip.height = 2 * h;
    const g = strip.getContext("2d");
    for (let s = 0; s < steps; s++) {
      const t = s / (steps - 1);
      const lin = state.a.map((v, j) => v + t * (state.b[j] - v));
      for (const [row, z] of [[0, lin], [1, slerp(state.a, state.b, t)]]) {
        const c = document.createElement("canvas"); c.width = w; c.height = h;
        paint(c.getContext("2d"), decode(z, state.label, new Float32Array(dim)), w, h);
        g.drawImage(c, s * w, row * h);
      }
    }
    $("abinfo").textContent = "|B - A| = " + Math.hypot(...state.b.map((v, j) => v - state.a[j])).toFixed(2);
  }

  // ------------------------------------------------------------ wiring
  $("about").textContent = D.title + " — " + D.description;
  for (const [i, v] of views.entries()) $("proj").add(new Option(v.name, i));
  $("proj").addEventListener("change", () => { view = views[+$("proj").value]; fitMap(); drawPoints(); render(); });
  $("showpts").addEventListener("change", () => { drawPoints(); render(); });
  if (C) {
    $("labelrow").hidden = false;
    for (let c = 0; c < C; c++) $("label").add(new Option(names[c] || "class " + c, c));
    $("label").addEventListener("change", () => { state.label = +$("label").value; render(); drawStrip(); });
  }
  if (labels) {
    const seen = [...new Set(labels)].sort((a, b) => a - b);
    for (const k of seen) {
      const item = document.createElement("span");
      const dot = document.createElement("i"); dot.style.background = color(k);
      item.append(dot, names[k] || "class " + k);
      $("legend").append(item);
      $("attrA").add(new Option(names[k] || "class " + k, k));
      $("attrB").add(new Option(names[k] || "class " + k, k));
    }
    if (seen.length > 1) $("attrB").value = seen[1];
    $("attrA").addEventListener("change", updateAttr);
    $("attrB").addEventListener("change", updateAttr);
    updateAttr();
  } else {
    for (const id of ["attrA", "attrB", "alpha"]) $(id).disabled = true;
  }
  $("alpha").addEventListener("input", () => { state.alpha = +$("alpha").value; $("alphaval").textContent = state.alpha.toFixed(2); render(); });
  $("reset").addEventListener("click", () => { state.z.fill(0); render(); });
  let seed = 1;
  $("random").addEventListener("click", () => { // a draw from the prior (Box-Muller)
    for (let j = 0; j < L; j++) {
      seed = (seed * 16807) % 2147483647; const u = seed / 2147483647;
      seed = (seed * 16807) % 2147483647; const v = seed / 2147483647;
      state.z[j] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    }
    render();
  });
  $("pickA").addEventListener("click", () => { state.a = current(); drawStrip(); render(); });
  $("pickB").addEventListener("click", () => { state.b = current(); drawStrip(); render(); });

  fitMap();
  drawPoints();
  render();

  // for tests and the curious: the decoder and the state, from the console
  window.vaeExplorer = {
    decode: (z, label) => Array.from(decode(Float32Array.from(z), label || 0, new Float32Array(dim))),
    state, timing, views, pick,
    pointOnScreen: (i) => { // where point i is drawn, in page coordinates
      const r = map.getBoundingClientRect(), [x, y] = toScreen(...project(point(i)));
      return [r.left + x * r.width / map.width, r.top + y * r.height / map.height];
    },
    benchmark: (n) => { // mean milliseconds per decode of n random points
      const z = new Float32Array(L), into = new Float32Array(dim);
      const t = performance.now();
      for (let i = 0; i < n; i++) { z[i % L] = Math.sin(i); decode(z, 0, into); }
      return (performance.now() - t) / n;
    },
  };
})();
