/* Panel 3, lower half: the reverse chain on #sample-canvas, drawn over the true swiss roll (the
   reference points), and its playback (#play, #pause, #scrub, #frame-label). Holds the frames of
   the chain on screen; the sampler (sample.js) feeds a chain in with beginChain, addFrame and
   finishChain (or abandonChain). Only a finished chain's last frame is labelled "final samples".
   addOverlay(fn) draws fn(ctx, view) over the frame, addUnderlay(fn) under it (see drawScatter). */

import { api } from "./api.js";
import { clearError, showError } from "./errors.js";
import { COLORS, drawScatter } from "./draw.js";
import { $, swirl } from "./state.js";

const REFERENCE_N = 2000;
const REFERENCE_SEED = 2024;
const ANIMATION_MS = 3600; // one pass of the reverse chain
const FIRST_FRAME_HOLD_MS = 500; // linger on x_T before denoising starts

let referencePoints = null;
let frames = []; // {t, points}, x_T first
let previous = null; // the chain shown before the one now arriving, back on screen if that one fails
let animationHandle = null;
let lastFrameAt = 0;
const overlays = [];
const underlays = [];

export function addOverlay(overlay) {
  overlays.push(overlay);
  draw();
}

// fn(ctx, view) drawn under the points (behind the samples), as addOverlay draws over them.
export function addUnderlay(underlay) {
  underlays.push(underlay);
  draw();
}

export function mount() {
  $("play").addEventListener("click", play);
  $("pause").addEventListener("click", pause);
  $("scrub").addEventListener("input", () => {
    const index = Number($("scrub").value); // read before pause() re-syncs the slider
    pause();
    swirl.frameIndex = index;
    swirl.sampleDone = swirl.chainDone && swirl.frameIndex === frames.length - 1;
    draw();
  });
  draw();
}

export async function loadReference() {
  try {
    const body = await api(`forward?t=0&n=${REFERENCE_N}&seed=${REFERENCE_SEED}`);
    referencePoints = body.points;
    swirl.ready.reference = true;
    clearError("reference");
    draw();
  } catch (err) {
    showError("reference", err);
  }
}

// ---------------------------------------------------------------- a chain arriving

// The first frame of a new chain: the animation on screen gives way to it, drawn live.
export function beginChain() {
  pause();
  if (previous === null) previous = { frames, done: swirl.chainDone }; // else a chain cut short by a newer click: keep the older whole one
  frames = [];
  swirl.chainDone = false;
  swirl.sampleDone = false;
}

export function addFrame(frame) {
  frames.push(frame);
  swirl.frameIndex = frames.length - 1;
  draw();
}

// The stream said "done": the chain is whole; replay it from x_T.
export function finishChain() {
  previous = null;
  swirl.chainDone = true;
  swirl.frameIndex = 0;
  draw();
  play();
}

// The stream failed part-way: the last whole chain comes back.
export function abandonChain() {
  if (previous === null) return;
  frames = previous.frames;
  swirl.chainDone = previous.done;
  swirl.frameIndex = Math.max(0, frames.length - 1);
  swirl.sampleDone = swirl.chainDone;
  previous = null;
  draw();
}

export const frameCount = () => frames.length;

// ---------------------------------------------------------------- drawing and playback

function labelFor(index) {
  const frame = frames[index];
  if (!frame) return "";
  if (index === 0) return `t = ${frame.t} · starting noise, N(0, I)`;
  if (swirl.chainDone && index === frames.length - 1) return `t = ${frame.t} · final samples`;
  return `t = ${frame.t}`;
}

export function draw() {
  const frame = frames[swirl.frameIndex];
  swirl.frameLabel = labelFor(swirl.frameIndex);
  drawScatter(
    $("sample-canvas"),
    [
      { points: referencePoints, color: COLORS.ref, alpha: 0.28, radius: 1.3 },
      { points: frame ? frame.points : null, color: COLORS.sample, alpha: 0.6, radius: 1.6 },
    ],
    swirl.frameLabel,
    overlays,
    underlays,
  );
  if (frame) swirl.framesDrawn += 1;
  updateControls();
}

function updateControls() {
  const count = frames.length;
  const scrub = $("scrub");
  scrub.max = String(Math.max(0, count - 1));
  scrub.value = String(swirl.frameIndex);
  scrub.disabled = count === 0;
  $("play").disabled = count === 0 || swirl.playing;
  $("pause").disabled = !swirl.playing;
  const frame = frames[swirl.frameIndex];
  swirl.frameCount = count;
  swirl.frameT = frame ? frame.t : null;
  $("frame-label").textContent = frame ? `frame ${swirl.frameIndex + 1} / ${count} · t = ${frame.t}` : "–";
}

function frameDuration() {
  return Math.min(250, Math.max(45, ANIMATION_MS / Math.max(1, frames.length - 1)));
}

function tick(now) {
  animationHandle = null;
  if (!swirl.playing) return;
  const hold = swirl.frameIndex === 0 ? FIRST_FRAME_HOLD_MS : frameDuration();
  if (now - lastFrameAt >= hold) {
    swirl.frameIndex = Math.min(frames.length - 1, swirl.frameIndex + 1);
    lastFrameAt = now;
    if (swirl.frameIndex >= frames.length - 1) {
      swirl.playing = false;
      swirl.sampleDone = swirl.chainDone; // the end of a chain still arriving is not the end
    }
    draw();
  }
  if (swirl.playing) animationHandle = requestAnimationFrame(tick);
}

export function play() {
  if (!frames.length) return;
  if (swirl.frameIndex >= frames.length - 1) {
    swirl.frameIndex = 0; // replay from x_T
    draw();
  }
  swirl.playing = true;
  swirl.sampleDone = false;
  lastFrameAt = performance.now();
  updateControls();
  if (animationHandle === null) animationHandle = requestAnimationFrame(tick);
}

export function pause() {
  swirl.playing = false;
  if (animationHandle !== null) cancelAnimationFrame(animationHandle);
  animationHandle = null;
  updateControls();
}
