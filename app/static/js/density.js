/* Panel 5, the model as a density: a heatmap of the model's log p(x) over [−3, 3]², from POST /log_prob
   on a GRID × GRID lattice (the probability-flow ODE, 2T − 1 network evaluations per point), with the
   true roll's 90% region outlined on top. The true density is computed here, by quadrature over the
   roll's parameter t, from the model's data constants (GET /model: noise, mean, scale): the roll is
   c(t) + noise·N(0, I), t ~ U(1.5π, 4.5π), c(t) = (t cos t, t sin t), normalised as (raw − mean)/scale. */

import { api } from "./api.js";
import { clearError, showError } from "./errors.js";
import { AXIS, drawScatter, fmt } from "./draw.js";
import { $, on, swirl } from "./state.js";

const GRID = 48; // the model's lattice: 2,304 points in one POST /log_prob
const TRUE_GRID = 96; // the true density's lattice, for its contour
const T_NODES = 1200; // midpoint rule over t: nodes 0.008 apart, against a Gaussian at least 0.035 wide in t
const MASS = 0.9; // the outlined region holds this share of the roll's mass
const RANGE = 10; // the colour scale spans the top RANGE nats of log p
const CONTOUR_COLOR = "#111827";
const STOPS = [
  [0.0, [247, 251, 255]],
  [0.35, [158, 202, 225]],
  [0.65, [66, 146, 198]],
  [0.85, [8, 81, 156]],
  [1.0, [8, 29, 88]],
];

let heat = null; // {logProb, hi, model}
let contour = null; // [[x1, y1, x2, y2], …] in the model's space

export function mount() {
  on("model", load);
  draw();
}

export function draw() {
  const label = heat ? `log p, ${swirl.model ? swirl.model.name : "model"}` : "";
  drawScatter($("density-canvas"), [], label, [drawHeat, drawContour]);
  if (heat) swirl.densityDraws += 1;
}

function lattice(n) {
  const points = [];
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) points.push([-AXIS + (2 * AXIS * c) / (n - 1), -AXIS + (2 * AXIS * r) / (n - 1)]);
  return points;
}

async function load(model) {
  if (!model || !model.data) return;
  contour = trueContour(model.data);
  draw();
  if (model.student_steps && model.student_steps.length) {
    const teacher = model.student && model.student.teacher ? model.student.teacher.name : "its teacher";
    $("density-info").textContent = `A distilled student knows only the few steps of its grids, so it has no density of its own: ask ${teacher}.`;
    return;
  }
  $("density-info").textContent = "Computing log p on the lattice (POST /log_prob)…";
  try {
    const started = performance.now();
    const body = await api("log_prob", undefined, { points: lattice(GRID), model: model.name });
    let hi = -Infinity;
    for (const v of body.log_prob) hi = Math.max(hi, v);
    heat = { logProb: body.log_prob, hi, model: body.model_name };
    swirl.density = { grid: GRID, logProb: body.log_prob, evaluations: body.evaluations };
    swirl.ready.density = true;
    clearError("density");
    const seconds = (performance.now() - started) / 1000;
    $("density-info").textContent =
      `log p(x) of the ${body.model_name} model at ${(GRID * GRID).toLocaleString("en-US")} points ` +
      `(${body.evaluations} network evaluations each, ${fmt(seconds, 1)} s); darker is likelier, ` +
      `the scale spans ${fmt(hi - RANGE, 1)} to ${fmt(hi, 1)}. The line encloses ${Math.round(MASS * 100)}% of the true roll's mass.`;
    draw();
  } catch (err) {
    showError("density", err);
  }
}

function colour(value) {
  const x = Math.max(0, Math.min(1, value));
  for (let i = 1; i < STOPS.length; i++) {
    if (x <= STOPS[i][0]) {
      const [a, ca] = STOPS[i - 1];
      const [b, cb] = STOPS[i];
      const w = (x - a) / (b - a);
      return `rgb(${ca.map((v, k) => Math.round(v + w * (cb[k] - v))).join(",")})`;
    }
  }
  return `rgb(${STOPS[STOPS.length - 1][1].join(",")})`;
}

function drawHeat(ctx, view) {
  if (!heat) return;
  const step = (2 * AXIS) / (GRID - 1);
  const size = (step / (2 * AXIS)) * view.size + 0.6; // a hair over one cell: no seams
  for (let r = 0; r < GRID; r++) {
    for (let c = 0; c < GRID; c++) {
      const value = heat.logProb[r * GRID + c];
      ctx.fillStyle = colour((value - (heat.hi - RANGE)) / RANGE);
      ctx.fillRect(view.sx(-AXIS + c * step) - size / 2, view.sy(-AXIS + r * step) - size / 2, size, size);
    }
  }
}

function drawContour(ctx, view) {
  if (!contour) return;
  ctx.strokeStyle = CONTOUR_COLOR;
  ctx.lineWidth = 1.3;
  ctx.beginPath();
  for (const [x1, y1, x2, y2] of contour) {
    ctx.moveTo(view.sx(x1), view.sy(y1));
    ctx.lineTo(view.sx(x2), view.sy(y2));
  }
  ctx.stroke();
}

// The true density of the roll in the model's space on a TRUE_GRID² lattice (x fastest), per unit area.
function trueDensity(data) {
  const { noise, mean, scale } = data;
  const low = 1.5 * Math.PI;
  const width = 3 * Math.PI;
  const cx = new Float64Array(T_NODES);
  const cy = new Float64Array(T_NODES);
  for (let i = 0; i < T_NODES; i++) {
    const t = low + ((i + 0.5) * width) / T_NODES;
    cx[i] = t * Math.cos(t);
    cy[i] = t * Math.sin(t);
  }
  const norm = (scale * scale) / (T_NODES * 2 * Math.PI * noise * noise);
  const inv = 1 / (2 * noise * noise);
  const out = new Float64Array(TRUE_GRID * TRUE_GRID);
  for (let r = 0; r < TRUE_GRID; r++) {
    const y = (-AXIS + (2 * AXIS * r) / (TRUE_GRID - 1)) * scale + mean[1];
    for (let c = 0; c < TRUE_GRID; c++) {
      const x = (-AXIS + (2 * AXIS * c) / (TRUE_GRID - 1)) * scale + mean[0];
      let sum = 0;
      for (let i = 0; i < T_NODES; i++) {
        const dx = x - cx[i];
        const dy = y - cy[i];
        const d2 = dx * dx + dy * dy;
        if (d2 < 60 * noise * noise) sum += Math.exp(-d2 * inv);
      }
      out[r * TRUE_GRID + c] = sum * norm;
    }
  }
  return out;
}

// The level whose super-level set holds MASS of the mass on the lattice, and its contour by marching squares.
function trueContour(data) {
  const p = trueDensity(data);
  const sorted = Array.from(p).sort((a, b) => b - a);
  const total = sorted.reduce((s, v) => s + v, 0);
  let level = sorted[0];
  let acc = 0;
  for (const v of sorted) {
    acc += v;
    level = v;
    if (acc >= MASS * total) break;
  }
  const step = (2 * AXIS) / (TRUE_GRID - 1);
  const at = (r, c) => p[r * TRUE_GRID + c];
  const segments = [];
  for (let r = 0; r < TRUE_GRID - 1; r++) {
    for (let c = 0; c < TRUE_GRID - 1; c++) {
      // corners counter-clockwise from (c, r); a crossing on each edge whose ends straddle the level
      const corners = [
        [c, r],
        [c + 1, r],
        [c + 1, r + 1],
        [c, r + 1],
      ];
      const crossings = [];
      for (let e = 0; e < 4; e++) {
        const [c1, r1] = corners[e];
        const [c2, r2] = corners[(e + 1) % 4];
        const v1 = at(r1, c1) - level;
        const v2 = at(r2, c2) - level;
        if (v1 >= 0 === v2 >= 0) continue;
        const w = v1 / (v1 - v2);
        crossings.push([-AXIS + (c1 + w * (c2 - c1)) * step, -AXIS + (r1 + w * (r2 - r1)) * step]);
      }
      for (let k = 0; k + 1 < crossings.length; k += 2) segments.push([...crossings[k], ...crossings[k + 1]]);
    }
  }
  swirl.trueLevel = level;
  return segments;
}
