/* Drawing helpers shared by the panels: the palette, a HiDPI-ready canvas (prepare), axis ticks,
   number formats, and the scatter plot on the fixed square [-AXIS, AXIS]² that the forward and
   reverse panels use. drawScatter takes overlays and underlays: functions drawn over (or under) the points, in data coordinates. */

export const AXIS = 3; // scatter plots show the fixed square [-AXIS, AXIS]²

export const COLORS = {
  ink: "#1c2430",
  muted: "#5f6b7a",
  grid: "#edf0f3",
  axis: "#cdd3db",
  frame: "#d5dae1",
  alpha: "#2563eb",
  beta: "#d9480f",
  now: "#7c3aed",
  forward: "#2563eb",
  sample: "#d9480f",
  ref: "#9aa3af",
};
export const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';
const LABEL_FONT = '600 12.5px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';

// Sizes the canvas to its CSS box at the device's pixel ratio and clears it; draw in CSS pixels.
export function prepare(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  const pw = Math.max(1, Math.round(w * dpr));
  const ph = Math.max(1, Math.round(h * dpr));
  if (canvas.width !== pw || canvas.height !== ph) {
    canvas.width = pw;
    canvas.height = ph;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = FONT;
  return { ctx, w, h };
}

export function niceStep(range, count) {
  const raw = range / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const unit = raw / power;
  const nice = unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 2.5 ? 2.5 : unit <= 5 ? 5 : 10;
  return nice * power;
}

export function ticks(max, count) {
  const step = niceStep(max, count);
  const out = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

export function fmt(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toFixed(digits);
}

export function fmtTick(v) {
  if (v === 0) return "0";
  if (Math.abs(v) >= 1) return String(Number(v.toFixed(2)));
  return String(Number(v.toPrecision(3)));
}

export const escapeHtml = (text) =>
  String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const MINUS = "−";
const signed = (v) => (v < 0 ? MINUS + Math.abs(v) : String(v));

// Scatter plot on the fixed square [-AXIS, AXIS]². layers ({points, color, alpha, radius}) are drawn
// in order, then each overlay(ctx, view) inside the square's clip, then the label in the corner.
// view = {sx, sy, size, x0, y0, scale}: sx(x), sy(y) map data coordinates to canvas pixels.
export function drawScatter(canvas, layers, label, overlays = [], underlays = []) {
  const { ctx, w, h } = prepare(canvas);
  const padL = 24;
  const padB = 20;
  const padT = 6;
  const padR = 6;
  const size = Math.max(10, Math.min(w - padL - padR, h - padT - padB));
  const x0 = padL + (w - padL - padR - size) / 2;
  const y0 = padT;
  const sx = (x) => x0 + ((x + AXIS) / (2 * AXIS)) * size;
  const sy = (y) => y0 + ((AXIS - y) / (2 * AXIS)) * size;

  ctx.fillStyle = "#fff";
  ctx.fillRect(x0, y0, size, size);
  ctx.lineWidth = 1;
  for (let v = -AXIS; v <= AXIS; v += 1) {
    ctx.strokeStyle = v === 0 ? COLORS.axis : COLORS.grid;
    ctx.beginPath();
    ctx.moveTo(Math.round(sx(v)) + 0.5, y0);
    ctx.lineTo(Math.round(sx(v)) + 0.5, y0 + size);
    ctx.moveTo(x0, Math.round(sy(v)) + 0.5);
    ctx.lineTo(x0 + size, Math.round(sy(v)) + 0.5);
    ctx.stroke();
  }
  ctx.strokeStyle = COLORS.frame;
  ctx.strokeRect(x0 + 0.5, y0 + 0.5, size - 1, size - 1);

  ctx.fillStyle = COLORS.muted;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let v = -AXIS; v <= AXIS; v += 1) ctx.fillText(signed(v), sx(v), y0 + size + 5);
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let v = -AXIS; v <= AXIS; v += 1) ctx.fillText(signed(v), x0 - 6, sy(v));

  ctx.save();
  ctx.beginPath();
  ctx.rect(x0, y0, size, size);
  ctx.clip();
  const scale = size / 420; // dots grow a little on big canvases
  const view = { sx, sy, size, x0, y0, scale };
  for (const underlay of underlays) {
    ctx.save();
    underlay(ctx, view);
    ctx.restore();
  }
  for (const layer of layers) {
    if (!layer.points) continue;
    const r = layer.radius * Math.max(0.8, Math.min(1.4, scale));
    ctx.fillStyle = layer.color;
    ctx.globalAlpha = layer.alpha;
    if (layer.points.length > 20000) {
      // many points: squares are much cheaper than circles
      const d = Math.max(1, r * 1.4);
      for (const p of layer.points) ctx.fillRect(sx(p[0]) - d / 2, sy(p[1]) - d / 2, d, d);
    } else {
      for (const p of layer.points) {
        ctx.beginPath();
        ctx.arc(sx(p[0]), sy(p[1]), r, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }
  ctx.globalAlpha = 1;
  for (const overlay of overlays) {
    ctx.save();
    overlay(ctx, view);
    ctx.restore();
  }
  ctx.restore();
  ctx.globalAlpha = 1;

  // say so when points fall off the fixed axes (e.g. an untrained or diverging model)
  const main = layers[layers.length - 1];
  let outside = 0;
  if (main && main.points) {
    for (const p of main.points) if (!(Math.abs(p[0]) <= AXIS && Math.abs(p[1]) <= AXIS)) outside += 1;
  }
  if (outside > 0) {
    const note = `${outside.toLocaleString("en-US")} of ${main.points.length.toLocaleString("en-US")} points outside the plotted square`;
    ctx.font = FONT;
    ctx.textAlign = "right";
    ctx.textBaseline = "bottom";
    const width = ctx.measureText(note).width;
    ctx.fillStyle = "rgba(255,255,255,0.9)";
    ctx.fillRect(x0 + size - width - 14, y0 + size - 22, width + 8, 17);
    ctx.fillStyle = outside / main.points.length < 0.02 ? COLORS.muted : "#9f1d14"; // a few tail points are normal noise
    ctx.fillText(note, x0 + size - 10, y0 + size - 8);
  }

  if (label) {
    ctx.font = LABEL_FONT;
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    const width = ctx.measureText(label).width;
    ctx.fillStyle = "rgba(255,255,255,0.88)";
    ctx.fillRect(x0 + 6, y0 + 6, width + 12, 20);
    ctx.fillStyle = COLORS.ink;
    ctx.fillText(label, x0 + 12, y0 + 10);
  }
  return view;
}
