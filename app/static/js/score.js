/* The learned score on the forward panel: GET /score at the slider's t (throttled while dragging, a
   stale request aborted), drawn by overlay() as arrows over the noised points. The score
   ∇ log p_t(x) ≈ −ε̂(x, t)/σ_t points from each place towards where q(x_t) is denser: the field
   that pulls noise back to the roll. Its size grows like 1/σ_t² as t falls, so the arrows are
   scaled at each t (the median arrow spans half a cell, none more than a cell; the caption gives
   the scale). No arrows at t = 0. */

import { api, isAbort } from "./api.js";
import { clearError, showError } from "./errors.js";
import { fmt } from "./draw.js";
import { $, emit, on, swirl } from "./state.js";

const GRID = 17; // arrows per side over [−3, 3]²
const THROTTLE_MS = 60;
const ARROW_COLOR = "#0f766e";

let field = null; // {t, points, score, longest}
let controller = null;
let timer = null;
let lastSent = 0;

let modelKnown = false; // a distilled student's page must not ask: wait for GET /model first

export function mount() {
  on("t", onT);
  on("model", () => {
    modelKnown = true;
    onT(swirl.sliderT);
  });
}

function onT(t) {
  clearTimeout(timer);
  if (!modelKnown) return;
  if (!t || swirl.studentSteps.length) {
    // t = 0, or a distilled student: it knows only its grid's steps, and /score refuses it
    if (controller) controller.abort();
    field = null;
    swirl.scoreT = null;
    caption();
    emit("score", null);
    return;
  }
  const wait = Math.max(0, THROTTLE_MS - (performance.now() - lastSent));
  timer = setTimeout(() => request(t), wait);
}

async function request(t) {
  if (controller) controller.abort();
  const mine = new AbortController();
  controller = mine;
  lastSent = performance.now();
  swirl.scoreRequests += 1;
  try {
    const body = await api(`score?t=${t}&grid=${GRID}`, mine.signal);
    if (t !== swirl.sliderT) return; // the slider has moved on
    const norms = body.score.map((s) => Math.hypot(s[0], s[1])).sort((a, b) => a - b);
    const median = norms[Math.floor(norms.length / 2)];
    field = { t: body.t, points: body.points, score: body.score, median };
    swirl.scoreT = body.t;
    clearError("score");
    caption();
    emit("score", field); // the forward panel redraws with the arrows (app.js wires overlay() in)
  } catch (err) {
    if (isAbort(err)) return;
    showError("score", err);
  } finally {
    if (controller === mine) controller = null;
  }
}

function caption() {
  const info = $("score-info");
  if (!info) return;
  info.textContent = field
    ? `Arrows: the learned score −ε̂(x, t)/σₜ at t = ${field.t} on a ${GRID} × ${GRID} lattice; an arrow half a cell long is |∇ log p| = ${fmt(field.median, 1)} (the median), none is longer than a cell.`
    : swirl.studentSteps.length
      ? "A distilled student has no score field of its own (it knows only its grid's steps)."
      : "Arrows: the learned score appears for t ≥ 1.";
}

// Drawn by the forward panel over its points (drawScatter's overlay contract: data coordinates via view).
export function overlay(ctx, view) {
  if (!field || field.t !== swirl.forwardT) return; // only with the points of the same t
  const cell = ((2 * 3) / (GRID - 1)) * (view.size / 6); // pixels between lattice points
  const unit = (0.5 * cell) / Math.max(field.median, 1e-12); // the median arrow: half a cell
  ctx.strokeStyle = ARROW_COLOR;
  ctx.fillStyle = ARROW_COLOR;
  ctx.globalAlpha = 0.85;
  ctx.lineWidth = 1.2;
  for (let i = 0; i < field.points.length; i++) {
    const [x, y] = field.points[i];
    const [u, v] = field.score[i];
    const norm = Math.hypot(u, v);
    const length = Math.min(norm * unit, cell); // the far corners' arrows would cross the plot
    if (length < 1.5) continue;
    const x0 = view.sx(x);
    const y0 = view.sy(y);
    const dx = (u / norm) * length; // canvas y runs down: flip the score's y
    const dy = -(v / norm) * length;
    const x1 = x0 + dx;
    const y1 = y0 + dy;
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.stroke();
    const head = Math.min(5, 0.35 * length);
    const angle = Math.atan2(dy, dx);
    ctx.beginPath();
    ctx.moveTo(x1, y1);
    ctx.lineTo(x1 - head * Math.cos(angle - 0.45), y1 - head * Math.sin(angle - 0.45));
    ctx.lineTo(x1 - head * Math.cos(angle + 0.45), y1 - head * Math.sin(angle + 0.45));
    ctx.closePath();
    ctx.fill();
  }
  swirl.scoreDraws += 1;
}
