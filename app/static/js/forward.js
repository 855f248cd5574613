/* Panel 2, the forward process: the t slider (#t-slider), its readout (signal √ᾱ_t, noise √(1−ᾱ_t),
   the mix bar) and #forward-canvas, FORWARD_N points from GET /forward at the slider's t (fixed seed,
   so they move smoothly). Emits "t" when the slider moves and "forward" when new points are on
   screen; addOverlay(fn) draws fn(ctx, view) over the points (see drawScatter). */

import { api, isAbort } from "./api.js";
import { clearError, showError } from "./errors.js";
import { COLORS, drawScatter, fmt } from "./draw.js";
import { $, emit, swirl } from "./state.js";

const FORWARD_N = 1500;
const FORWARD_SEED = 7;
const THROTTLE_MS = 40;

let points = null;
let controller = null;
let seq = 0;
let shownSeq = 0;
let timer = null;
let lastSent = 0;
const overlays = [];

export function addOverlay(overlay) {
  overlays.push(overlay);
  draw();
}

export function mount() {
  $("t-slider").addEventListener("input", onSlider);
  draw();
}

// Once the schedule is known: the slider spans 0…T and starts in the middle.
export function start(T) {
  const slider = $("t-slider");
  slider.max = String(T);
  slider.value = String(Math.round(T / 2));
  setT(Number(slider.value));
  request(swirl.sliderT);
}

export function draw() {
  const label = swirl.forwardT === null ? "" : `t = ${swirl.forwardT}`;
  drawScatter($("forward-canvas"), [{ points, color: COLORS.forward, alpha: 0.55, radius: 1.6 }], label, overlays);
  if (points) swirl.forwardDraws += 1;
}

function alphaBar(t) {
  if (!swirl.schedule || t <= 0) return 1;
  return swirl.schedule.alpha_bar[Math.min(t, swirl.T) - 1];
}

function setT(t) {
  swirl.sliderT = t;
  const a = alphaBar(t);
  const signal = Math.sqrt(a);
  const noise = Math.sqrt(1 - a);
  $("forward-t").textContent = swirl.T ? `${t} / ${swirl.T}` : String(t);
  $("forward-signal").textContent = fmt(signal, 3);
  $("forward-noise").textContent = fmt(noise, 3);
  const total = signal + noise;
  $("mix-signal").style.width = `${(100 * signal) / total}%`;
  $("mix-noise").style.width = `${(100 * noise) / total}%`;
  $("forward-info").textContent =
    t === 0
      ? `${FORWARD_N.toLocaleString("en-US")} clean swiss-roll points (seed ${FORWARD_SEED}).`
      : `${FORWARD_N.toLocaleString("en-US")} points (seed ${FORWARD_SEED}) drawn from q(xₜ | x₀) = N(${fmt(signal, 3)} x₀, ${fmt(noise, 3)}² I).`;
  emit("t", t);
}

async function request(t) {
  if (controller) controller.abort(); // the slider has moved on: cancel the stale request
  const mine = new AbortController();
  controller = mine;
  const id = ++seq;
  lastSent = performance.now();
  swirl.forwardRequests += 1;
  try {
    const body = await api(`forward?t=${t}&n=${FORWARD_N}&seed=${FORWARD_SEED}`, mine.signal);
    if (id <= shownSeq) return; // an older answer arriving late: ignore it
    shownSeq = id;
    swirl.forwardResponses += 1;
    points = body.points;
    swirl.forwardT = body.t;
    swirl.ready.forward = true;
    clearError("forward");
    draw();
    emit("forward", { t: body.t, points });
  } catch (err) {
    if (isAbort(err)) return;
    showError("forward", err);
  } finally {
    if (controller === mine) controller = null;
  }
}

function onSlider() {
  const t = Number($("t-slider").value);
  setT(t);
  // throttle while dragging (latest value wins), always finishing on the final position
  clearTimeout(timer);
  const wait = Math.max(0, THROTTLE_MS - (performance.now() - lastSent));
  timer = setTimeout(() => request(t), wait);
}
