// Line charts as inline SVG (no library): one series of (step, value) points, axes with min/max labels, a <title>
// and an aria-label naming the series and its last value so the chart reads without seeing it.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text = null) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== null) el.textContent = text;
  return el;
}

function label(value) {
  if (!Number.isFinite(value)) return "";
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e4 || abs < 1e-3)) return value.toExponential(1);
  return Number(value.toPrecision(3)).toString();
}

export function lineChart(name, points, { width = 320, height = 180 } = {}) {
  const pad = { left: 48, right: 12, top: 22, bottom: 28 };
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - Math.abs(y0 || 1) * 0.1, y1 + Math.abs(y1 || 1) * 0.1];
  const sx = (x) => pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const sy = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
  const last = points[points.length - 1];
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
    "aria-label": `${name}: ${points.length} points, last ${label(last[1])} at step ${last[0]}`,
    "data-series": name,
  });
  root.append(svg("title", {}, `${name} by step`));
  root.append(svg("text", { x: pad.left, y: 14, class: "chart-title" }, name));
  const axis = { class: "chart-axis" };
  root.append(svg("line", { ...axis, x1: pad.left, y1: height - pad.bottom, x2: width - pad.right, y2: height - pad.bottom }));
  root.append(svg("line", { ...axis, x1: pad.left, y1: pad.top, x2: pad.left, y2: height - pad.bottom }));
  const tick = { class: "chart-tick" };
  root.append(svg("text", { ...tick, x: pad.left - 4, y: sy(y1) + 4, "text-anchor": "end" }, label(y1)));
  root.append(svg("text", { ...tick, x: pad.left - 4, y: sy(y0) + 4, "text-anchor": "end" }, label(y0)));
  root.append(svg("text", { ...tick, x: sx(x0), y: height - 8, "text-anchor": "start" }, `step ${label(x0)}`));
  root.append(svg("text", { ...tick, x: sx(x1), y: height - 8, "text-anchor": "end" }, label(x1)));
  const path = points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
  root.append(svg("path", { d: path, class: "chart-line" }));
  for (const [x, y] of points) {
    const dot = svg("circle", { cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 2.5, class: "chart-dot" });
    dot.append(svg("title", {}, `step ${x}: ${label(y)}`));
    root.append(dot);
  }
  return root;
}

// Series worth a chart from a trainer log history: losses, perplexity, rewards, accuracies, margins, entropy.
const INTERESTING = /(loss|perplexity|reward|accurac|margin|entropy)/;
const NOISE = /(runtime|per_second|flos|learning_rate|grad_norm)/;

// Series with a single point (an evaluation run once at the end) read better as numbers than as charts: they are
// left out here and listed with the job's latest metrics.
export function seriesFrom(history, minPoints = 2) {
  const series = new Map();
  for (const entry of history || []) {
    const step = entry.step ?? 0;
    for (const [key, value] of Object.entries(entry)) {
      if (key === "step" || key === "epoch" || typeof value !== "number" || !Number.isFinite(value)) continue;
      if (!INTERESTING.test(key) || NOISE.test(key)) continue;
      if (!series.has(key)) series.set(key, []);
      series.get(key).push([step, value]);
    }
  }
  const rank = (key) => [/^loss$|^train_loss$/, /perplexity/, /^eval_loss$/, /reward/].findIndex((re) => re.test(key));
  const order = (key) => (rank(key) < 0 ? 99 : rank(key));
  const kept = [...series.entries()].filter(([, points]) => points.length >= minPoints);
  return new Map(kept.sort(([a], [b]) => order(a) - order(b)));
}
