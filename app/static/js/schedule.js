/* Panel 1, the noise schedule: loads GET /schedule into swirl.schedule and swirl.T, draws β_t and
   ᾱ_t against t on #schedule-canvas with the forward slider's t marked, and writes #schedule-caption.
   Redraws when the slider moves ("t"). */

import { api } from "./api.js";
import { clearError, showError } from "./errors.js";
import { COLORS, FONT, escapeHtml, fmt, fmtTick, niceStep, prepare, ticks } from "./draw.js";
import { $, emit, on, swirl } from "./state.js";

export function mount() {
  on("t", draw);
}

export async function load() {
  try {
    const s = await api("schedule");
    swirl.schedule = s;
    swirl.T = s.timesteps;
    swirl.ready.schedule = true;
    clearError("schedule");
    const aT = s.alpha_bar_final;
    $("schedule-caption").innerHTML =
      `${escapeHtml(s.kind)} schedule, T = ${s.timesteps}, β ${fmtTick(s.beta_start)} → ${fmtTick(s.beta_end)}. ` +
      `At t = T, ᾱ<sub>T</sub> = ${fmt(aT, 3)}: x<sub>T</sub> keeps ${Math.round(Math.sqrt(aT) * 100)}% of the data’s amplitude, ` +
      `noise σ = ${fmt(Math.sqrt(1 - aT), 2)}.`;
    emit("schedule", s);
    draw();
    return s;
  } catch (err) {
    $("schedule-caption").textContent = "The schedule could not be loaded.";
    showError("schedule", err);
    return null;
  }
}

export function draw() {
  const { ctx, w, h } = prepare($("schedule-canvas"));
  const s = swirl.schedule;
  if (!s) return;
  const T = s.timesteps;
  const padL = 34;
  const padR = 50;
  const padT = 10;
  const padB = 26;
  const pw = w - padL - padR;
  const ph = h - padT - padB;
  const betaMax = Math.max(...s.beta);
  const betaTicks = ticks(betaMax, 4);
  const betaTop = betaTicks[betaTicks.length - 1] < betaMax ? betaTicks[betaTicks.length - 1] + niceStep(betaMax, 4) : betaTicks[betaTicks.length - 1];
  const X = (t) => padL + (t / T) * pw;
  const YA = (a) => padT + (1 - a) * ph;
  const YB = (b) => padT + (1 - b / betaTop) * ph;

  // grid + left axis (ᾱ)
  ctx.lineWidth = 1;
  ctx.textBaseline = "middle";
  for (const a of [0, 0.25, 0.5, 0.75, 1]) {
    const y = Math.round(YA(a)) + 0.5;
    ctx.strokeStyle = a === 0 ? COLORS.axis : COLORS.grid;
    ctx.beginPath();
    ctx.moveTo(padL, y);
    ctx.lineTo(padL + pw, y);
    ctx.stroke();
    ctx.fillStyle = COLORS.alpha;
    ctx.textAlign = "right";
    ctx.fillText(fmtTick(a), padL - 6, y);
  }
  // right axis (β)
  ctx.fillStyle = COLORS.beta;
  ctx.textAlign = "left";
  for (const b of ticks(betaTop, 4)) ctx.fillText(fmtTick(b), padL + pw + 6, YB(b));
  // x axis
  ctx.fillStyle = COLORS.muted;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of ticks(T, 5)) ctx.fillText(String(t), X(t), padT + ph + 5);
  ctx.fillText("t", padL + pw + 22, padT + ph + 5);
  ctx.strokeStyle = COLORS.axis;
  ctx.beginPath();
  ctx.moveTo(padL + 0.5, padT);
  ctx.lineTo(padL + 0.5, padT + ph);
  ctx.moveTo(padL + pw + 0.5, padT);
  ctx.lineTo(padL + pw + 0.5, padT + ph);
  ctx.stroke();

  // current t on the forward slider
  const now = swirl.sliderT;
  if (now !== null) {
    ctx.save();
    ctx.strokeStyle = COLORS.now;
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(Math.round(X(now)) + 0.5, padT);
    ctx.lineTo(Math.round(X(now)) + 0.5, padT + ph);
    ctx.stroke();
    ctx.restore();
  }

  // β_t (t = 1..T)
  ctx.lineWidth = 2;
  ctx.strokeStyle = COLORS.beta;
  ctx.beginPath();
  s.beta.forEach((b, i) => (i ? ctx.lineTo(X(i + 1), YB(b)) : ctx.moveTo(X(i + 1), YB(b))));
  ctx.stroke();
  // ᾱ_t (t = 0..T, ᾱ_0 = 1)
  ctx.strokeStyle = COLORS.alpha;
  ctx.beginPath();
  ctx.moveTo(X(0), YA(1));
  s.alpha_bar.forEach((a, i) => ctx.lineTo(X(i + 1), YA(a)));
  ctx.stroke();

  // ᾱ_T marker
  const aT = s.alpha_bar[T - 1];
  ctx.fillStyle = COLORS.alpha;
  ctx.beginPath();
  ctx.arc(X(T), YA(aT), 4, 0, 2 * Math.PI);
  ctx.fill();
  ctx.font = `600 ${FONT}`;
  const text = `ᾱ(T) = ${fmt(aT, 3)}`;
  // below the point unless that would leave the plot (then above it)
  const below = aT > 0.25;
  ctx.textAlign = "right";
  ctx.textBaseline = below ? "top" : "bottom";
  ctx.strokeStyle = "rgba(255,255,255,0.95)";
  ctx.lineWidth = 4;
  ctx.lineJoin = "round";
  ctx.strokeText(text, X(T) - 4, YA(aT) + (below ? 6 : -8));
  ctx.fillText(text, X(T) - 4, YA(aT) + (below ? 6 : -8));

  // ᾱ at the slider's t
  if (now !== null) {
    const a = now === 0 ? 1 : s.alpha_bar[now - 1];
    ctx.fillStyle = COLORS.now;
    ctx.beginPath();
    ctx.arc(X(now), YA(a), 3.5, 0, 2 * Math.PI);
    ctx.fill();
  }
  swirl.scheduleDraws += 1;
}
