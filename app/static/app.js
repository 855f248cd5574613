/* Swirl page: the schedule, the forward process, an animated reverse chain and the model's facts.
   Vanilla JS drawing on <canvas>; every number comes from the server's JSON API. */
"use strict";

(() => {
  const AXIS = 3; // scatter plots show the fixed square [-AXIS, AXIS]²
  const FORWARD_N = 1500;
  const FORWARD_SEED = 7;
  const REFERENCE_N = 2000;
  const REFERENCE_SEED = 2024;
  const TARGET_FRAMES = 40; // reverse-chain frames to ask for (k = 1 when steps ≤ 50)
  const POINT_BUDGET = 1_000_000; // n × (frames + 1) per /sample answer: keeps big n animatable
  const ANIMATION_MS = 3600; // one pass of the reverse chain
  const FIRST_FRAME_HOLD_MS = 500; // linger on x_T before denoising starts
  const FORWARD_THROTTLE_MS = 40;

  const COLORS = {
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
  const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';

  const $ = (id) => document.getElementById(id);

  // State exposed for tests and curious visitors.
  const swirl = {
    T: null,
    schedule: null,
    model: null,
    ready: { schedule: false, model: false, forward: false, reference: false, sample: false },
    forwardRequests: 0,
    forwardResponses: 0,
    forwardDraws: 0,
    forwardT: null, // t of the points on screen
    sliderT: null,
    sampleRequests: 0,
    sampleResponses: 0,
    lastSample: null, // {n, seed, sampler, steps, eta} of the animation on screen
    frameIndex: 0,
    frameCount: 0,
    frameT: null,
    framesDrawn: 0,
    playing: false,
    sampleDone: false,
    errors: {},
  };
  window.swirl = swirl;

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.name = "ApiError";
      this.status = status;
    }
  }

  function explain(status, detail, retryAfter) {
    if (status === 422) return `the server rejected a setting — ${detail}`;
    if (status === 503) {
      const wait = retryAfter ? ` Try again in ${retryAfter} s.` : " Try again shortly.";
      return `the server is busy or shutting down (${detail}).${wait}`;
    }
    if (status === 429) {
      const wait = retryAfter ? ` Try again in ${retryAfter} s.` : " Try again shortly.";
      return `you have reached this server's rate limit (${detail}).${wait}`;
    }
    if (status === 504) return `the server took too long (${detail}). Try fewer points or fewer steps.`;
    if (status === 413) return `the request was too large (${detail}).`;
    return `the server answered with an error (HTTP ${status}): ${detail}`;
  }

  async function api(path, signal) {
    let response;
    try {
      response = await fetch(path, { signal, headers: { Accept: "application/json" } });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError("could not reach the server (network error). Is it still running?", 0);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      body = null;
    }
    if (!response.ok) {
      const detail = body && typeof body.error === "string" && body.error ? body.error : `${response.status} ${response.statusText}`.trim();
      throw new ApiError(explain(response.status, detail, response.headers.get("Retry-After")), response.status);
    }
    if (body === null) throw new ApiError("the server sent a reply that is not valid JSON.", response.status);
    return body;
  }

  const isAbort = (err) => err && err.name === "AbortError";

  // ---------------------------------------------------------------- errors

  const ERROR_LABELS = {
    schedule: "Loading the noise schedule failed",
    model: "Loading the model facts failed",
    forward: "The forward process failed",
    reference: "Loading the reference swiss roll failed",
    sample: "Sampling failed",
    page: "Something went wrong on this page",
  };

  function showError(source, err) {
    const message = err instanceof ApiError ? err.message : `unexpected problem: ${err && err.message ? err.message : String(err)}`;
    swirl.errors[source] = message;
    renderErrors();
  }

  function clearError(source) {
    if (source in swirl.errors) {
      delete swirl.errors[source];
      renderErrors();
    }
  }

  function renderErrors() {
    const area = $("error");
    const entries = Object.entries(swirl.errors);
    area.replaceChildren();
    area.hidden = entries.length === 0;
    if (!entries.length) return;
    const list = document.createElement("ul");
    for (const [source, message] of entries) {
      const item = document.createElement("li");
      const label = document.createElement("strong");
      label.textContent = `${ERROR_LABELS[source] || "Error"}: `;
      item.append(label, document.createTextNode(message));
      list.append(item);
    }
    const dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.textContent = "Dismiss";
    dismiss.addEventListener("click", () => {
      swirl.errors = {};
      renderErrors();
    });
    area.append(list, dismiss);
  }

  // ---------------------------------------------------------------- drawing helpers

  function prepare(canvas) {
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

  function niceStep(range, count) {
    const raw = range / Math.max(1, count);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const unit = raw / power;
    const nice = unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 2.5 ? 2.5 : unit <= 5 ? 5 : 10;
    return nice * power;
  }

  function ticks(max, count) {
    const step = niceStep(max, count);
    const out = [];
    for (let v = 0; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  }

  function fmt(value, digits = 3) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    return Number(value).toFixed(digits);
  }

  function fmtTick(v) {
    if (v === 0) return "0";
    if (Math.abs(v) >= 1) return String(Number(v.toFixed(2)));
    return String(Number(v.toPrecision(3)));
  }

  const escapeHtml = (text) =>
    String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  const MINUS = "−";
  const signed = (v) => (v < 0 ? MINUS + Math.abs(v) : String(v));

  // Scatter plot on the fixed square [-AXIS, AXIS]²; layers are drawn in order.
  function drawScatter(canvas, layers, label) {
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
      ctx.font = `600 12.5px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif`;
      ctx.textAlign = "left";
      ctx.textBaseline = "top";
      const width = ctx.measureText(label).width;
      ctx.fillStyle = "rgba(255,255,255,0.88)";
      ctx.fillRect(x0 + 6, y0 + 6, width + 12, 20);
      ctx.fillStyle = COLORS.ink;
      ctx.fillText(label, x0 + 12, y0 + 10);
    }
  }

  // ---------------------------------------------------------------- 1. schedule

  function drawSchedule() {
    const canvas = $("schedule-canvas");
    const { ctx, w, h } = prepare(canvas);
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
    const betaLabels = ticks(betaTop, 4);
    for (const b of betaLabels) ctx.fillText(fmtTick(b), padL + pw + 6, YB(b));
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
  }

  async function loadSchedule() {
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
      return s;
    } catch (err) {
      $("schedule-caption").textContent = "The schedule could not be loaded.";
      showError("schedule", err);
      return null;
    }
  }

  // ---------------------------------------------------------------- 2. forward process

  let forwardPoints = null;
  let forwardController = null;
  let forwardSeq = 0;
  let forwardShownSeq = 0;
  let forwardTimer = null;
  let forwardLastSent = 0;

  function alphaBar(t) {
    if (!swirl.schedule || t <= 0) return 1;
    return swirl.schedule.alpha_bar[Math.min(t, swirl.T) - 1];
  }

  function updateForwardReadout(t) {
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
  }

  function drawForward() {
    const label = swirl.forwardT === null ? "" : `t = ${swirl.forwardT}`;
    drawScatter($("forward-canvas"), [{ points: forwardPoints, color: COLORS.forward, alpha: 0.55, radius: 1.6 }], label);
    if (forwardPoints) swirl.forwardDraws += 1;
  }

  async function requestForward(t) {
    if (forwardController) forwardController.abort(); // the slider has moved on: cancel the stale request
    const controller = new AbortController();
    forwardController = controller;
    const seq = ++forwardSeq;
    forwardLastSent = performance.now();
    swirl.forwardRequests += 1;
    try {
      const body = await api(`forward?t=${t}&n=${FORWARD_N}&seed=${FORWARD_SEED}`, controller.signal);
      if (seq <= forwardShownSeq) return; // an older answer arriving late: ignore it
      forwardShownSeq = seq;
      swirl.forwardResponses += 1;
      forwardPoints = body.points;
      swirl.forwardT = body.t;
      swirl.ready.forward = true;
      clearError("forward");
      drawForward();
    } catch (err) {
      if (isAbort(err)) return;
      showError("forward", err);
    } finally {
      if (forwardController === controller) forwardController = null;
    }
  }

  function onSlider() {
    const t = Number($("t-slider").value);
    swirl.sliderT = t;
    updateForwardReadout(t);
    drawSchedule();
    // throttle while dragging (latest value wins), always finishing on the final position
    clearTimeout(forwardTimer);
    const wait = Math.max(0, FORWARD_THROTTLE_MS - (performance.now() - forwardLastSent));
    forwardTimer = setTimeout(() => requestForward(t), wait);
  }

  // ---------------------------------------------------------------- 3. sampling

  let referencePoints = null;
  let frames = [];
  let sampleController = null;
  let animationHandle = null;
  let lastFrameAt = 0;

  function currentSampler() {
    return $("sampler-select").value;
  }

  const SAMPLER_LABELS = { ddpm: "DDPM", ddim: "DDIM", dpmpp2m: "DPM-Solver++ (2M)", student: "Student (distilled)" };

  // The samplers this model takes (GET /model): a distilled student adds "student", whose
  // steps must be one of its trained step counts; it is preselected, since that is what it is for.
  function syncSamplerOptions(m) {
    const select = $("sampler-select");
    const offered = Array.isArray(m.samplers) && m.samplers.length ? m.samplers : ["ddpm", "ddim", "dpmpp2m"];
    const current = select.value;
    select.replaceChildren(
      ...offered.map((name) => {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = SAMPLER_LABELS[name] || name;
        return option;
      }),
    );
    swirl.studentSteps = Array.isArray(m.student_steps) ? m.student_steps : [];
    select.value = swirl.studentSteps.length ? "student" : offered.includes(current) ? current : offered[0];
    syncSamplerControls();
  }

  let rememberedSteps = null; // the user's last steps for ddim / dpmpp2m
  function syncSamplerControls() {
    const sampler = currentSampler();
    const steps = $("steps-input");
    const eta = $("eta-input");
    const T = swirl.T;
    const trained = swirl.studentSteps || [];
    if (sampler === "student") {
      steps.disabled = false;
      if (!trained.includes(Number(steps.value)) && trained.length) steps.value = String(trained[trained.length - 1]);
      steps.title = `a distilled student takes one of its trained step counts: ${trained.join(", ")}`;
    } else if (sampler === "ddpm") {
      steps.disabled = true;
      if (T) steps.value = String(T);
      steps.title = "DDPM always takes all T steps";
    } else {
      if (steps.disabled) {
        steps.disabled = false;
        steps.value = rememberedSteps !== null ? rememberedSteps : String(T ? Math.min(T, 20) : 20);
      }
      if (T) steps.max = String(T);
      steps.title = T ? `network evaluations, 1…${T}` : "network evaluations";
    }
    if (sampler === "ddim") {
      eta.disabled = false;
      eta.title = "0 = deterministic DDIM, 1 = DDPM-like noise";
    } else {
      eta.disabled = true;
      eta.value = "0";
      eta.title = "eta applies to DDIM only";
    }
  }

  function drawSample() {
    const frame = frames[swirl.frameIndex];
    let label = "";
    if (frame) {
      if (swirl.frameIndex === frames.length - 1) label = `t = ${frame.t} · final samples`;
      else if (swirl.frameIndex === 0) label = `t = ${frame.t} · starting noise, N(0, I)`;
      else label = `t = ${frame.t}`;
    }
    drawScatter(
      $("sample-canvas"),
      [
        { points: referencePoints, color: COLORS.ref, alpha: 0.28, radius: 1.3 },
        { points: frame ? frame.points : null, color: COLORS.sample, alpha: 0.6, radius: 1.6 },
      ],
      label,
    );
    if (frame) swirl.framesDrawn += 1;
    updatePlayback();
  }

  function updatePlayback() {
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
        swirl.sampleDone = true;
      }
      drawSample();
    }
    if (swirl.playing) animationHandle = requestAnimationFrame(tick);
  }

  function play() {
    if (!frames.length) return;
    if (swirl.frameIndex >= frames.length - 1) {
      swirl.frameIndex = 0; // replay from x_T
      drawSample();
    }
    swirl.playing = true;
    swirl.sampleDone = false;
    lastFrameAt = performance.now();
    updatePlayback();
    if (animationHandle === null) animationHandle = requestAnimationFrame(tick);
  }

  function pause() {
    swirl.playing = false;
    if (animationHandle !== null) cancelAnimationFrame(animationHandle);
    animationHandle = null;
    updatePlayback();
  }

  // trajectory_every: every step up to 50 steps, else ~TARGET_FRAMES frames; fewer frames for a big n.
  function chooseEvery(steps, n) {
    let every = steps <= 50 ? 1 : Math.ceil(steps / TARGET_FRAMES);
    if (Number.isInteger(n) && n > 0) {
      const maxFrames = Math.floor(POINT_BUDGET / n) - 1;
      while (every < steps && 1 + Math.ceil(steps / every) > maxFrames) every += 1;
    }
    return Math.max(1, Math.min(every, steps));
  }

  async function runSample() {
    const sampler = currentSampler();
    const params = new URLSearchParams();
    const n = $("n-input").value.trim();
    const seed = $("seed-input").value.trim();
    params.set("n", n);
    if (seed !== "") params.set("seed", seed);
    params.set("sampler", sampler);
    let steps = swirl.T || 50;
    if (sampler !== "ddpm") {
      const raw = $("steps-input").value.trim();
      params.set("steps", raw);
      const parsed = Number(raw);
      steps = Number.isInteger(parsed) && parsed >= 1 ? parsed : 1;
    }
    if (sampler === "ddim") params.set("eta", $("eta-input").value.trim() || "0");
    params.set("trajectory_every", String(chooseEvery(steps, Number(n))));

    if (sampleController) sampleController.abort();
    const controller = new AbortController();
    sampleController = controller;
    const button = $("sample-button");
    button.disabled = true;
    button.textContent = "Sampling…";
    $("sample-info").textContent = "Sampling…";
    swirl.sampleRequests += 1;
    const started = performance.now();
    try {
      const body = await api(`sample?${params}`, controller.signal);
      if (sampleController !== controller) return;
      const seconds = (performance.now() - started) / 1000;
      swirl.sampleResponses += 1;
      swirl.lastSample = { n: body.n, seed: body.seed, sampler: body.sampler, steps: body.steps, eta: body.eta };
      pause();
      frames = body.trajectory && body.trajectory.length ? body.trajectory : [{ t: 0, points: body.points }];
      swirl.frameIndex = 0;
      swirl.sampleDone = false;
      swirl.ready.sample = true;
      clearError("sample");
      const names = { ddpm: "DDPM", ddim: "DDIM", dpmpp2m: "DPM-Solver++(2M)", student: "distilled student" };
      const etaText = body.sampler === "ddim" ? `, η = ${body.eta}` : "";
      $("sample-info").textContent =
        `${names[body.sampler] || body.sampler}, ${body.steps} steps${etaText} · n = ${body.n.toLocaleString("en-US")} · seed ${body.seed} · ` +
        `${frames.length} frames · ${seconds.toFixed(2)} s round trip`;
      if (seed === "") $("seed-input").placeholder = `random (last: ${body.seed})`;
      drawSample();
      play();
    } catch (err) {
      if (isAbort(err)) return;
      $("sample-info").textContent = frames.length ? "The last successful run is still shown." : "No samples yet.";
      showError("sample", err);
    } finally {
      if (sampleController === controller) {
        sampleController = null;
        button.disabled = false;
        button.textContent = "Sample";
      }
    }
  }

  async function loadReference() {
    try {
      const body = await api(`forward?t=0&n=${REFERENCE_N}&seed=${REFERENCE_SEED}`);
      referencePoints = body.points;
      swirl.ready.reference = true;
      clearError("reference");
      drawSample();
    } catch (err) {
      showError("reference", err);
    }
  }

  // ---------------------------------------------------------------- 4. model facts

  function fact(label, value, title, className) {
    const wrap = document.createElement("div");
    if (className) wrap.className = className;
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    if (value instanceof Node) dd.append(value);
    else dd.textContent = value;
    if (title) dd.title = title;
    wrap.append(dt, dd);
    return wrap;
  }

  function duration(seconds) {
    if (typeof seconds !== "number") return "–";
    if (seconds < 120) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 120) return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  const num = (v) => (typeof v === "number" ? v.toLocaleString("en-US") : "–");

  // Training loss as a sparkline (no axes: the final value sits next to it).
  function drawLoss() {
    const canvas = $("loss-canvas");
    const curve = swirl.model && swirl.model.training && swirl.model.training.loss_curve;
    if (!canvas || !curve || curve.length < 2) return;
    const { ctx, w, h } = prepare(canvas);
    const s0 = curve[0][0];
    const s1 = curve[curve.length - 1][0];
    const losses = curve.map((p) => p[1]);
    const lo = Math.min(...losses);
    const hi = Math.max(...losses);
    const X = (step) => 1 + ((step - s0) / Math.max(1, s1 - s0)) * (w - 2);
    const Y = (l) => 2 + (1 - (l - lo) / Math.max(1e-12, hi - lo)) * (h - 4);
    ctx.strokeStyle = "#64748b";
    ctx.lineWidth = 1;
    ctx.beginPath();
    curve.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
    ctx.stroke();
  }

  function renderEvaluation(evaluation) {
    const box = $("model-eval");
    box.replaceChildren();
    const samplers = evaluation && evaluation.samplers ? Object.entries(evaluation.samplers) : [];
    if (!samplers.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "not evaluated — run python -m model.evaluate on the checkpoint to add scores.";
      box.append(p);
      return;
    }
    const hasW2 = samplers.some(([, row]) => typeof row.w2 === "number");
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    const headers = ["sampler", "two-sample acc."];
    if (hasW2) headers.push("W2", "W2 / floor");
    for (const text of headers) {
      const th = document.createElement("th");
      th.textContent = text;
      head.append(th);
    }
    const bodyRows = table.createTBody();
    for (const [name, row] of samplers) {
      const tr = bodyRows.insertRow();
      tr.insertCell().textContent = name;
      tr.insertCell().textContent = fmt(row.two_sample_accuracy, 3);
      if (hasW2) {
        tr.insertCell().textContent = typeof row.w2 === "number" ? fmt(row.w2, 4) : "–";
        tr.insertCell().textContent = typeof row.w2_over_floor === "number" ? `${fmt(row.w2_over_floor, 2)}×` : "–";
      }
    }
    if (typeof evaluation.two_sample_accuracy_floor === "number" || typeof evaluation.w2_floor === "number") {
      const tr = table.createTFoot().insertRow();
      tr.insertCell().textContent = "floor (real vs real)";
      tr.insertCell().textContent = fmt(evaluation.two_sample_accuracy_floor, 3);
      if (hasW2) {
        tr.insertCell().textContent = fmt(evaluation.w2_floor, 4);
        tr.insertCell().textContent = "1.00×";
      }
    }
    const note = document.createElement("p");
    note.className = "note";
    const n = typeof evaluation.n === "number" ? ` (${evaluation.n.toLocaleString("en-US")} points)` : "";
    note.textContent =
      `Two-sample acc.: a classifier telling samples from real data (0.5 = indistinguishable). ` +
      `W2: Wasserstein-2 distance to real data${n}. The floor row scores a second real sample.`;
    box.append(table, note);
  }

  async function loadModel() {
    const facts = $("model-facts");
    try {
      const m = await api("model");
      swirl.model = m;
      swirl.ready.model = true;
      clearError("model");
      const net = m.net || {};
      const training = m.training || {};
      const id = typeof m.id === "string" ? m.id : "";
      const idCode = document.createElement("code");
      idCode.textContent = id ? id.slice(0, 12) : "–";
      const width = net.hidden !== undefined && net.depth !== undefined ? `${net.depth} × ${net.hidden}` : "–";
      const extra = [net.activation, net.time_embedding_dim ? `time embedding ${net.time_embedding_dim}` : null, net.prediction ? `predicts ${net.prediction}` : null]
        .filter(Boolean)
        .join(", ");
      const student = m.student && m.student.teacher ? m.student : null;
      const schedule = m.schedule || {};
      const loss = document.createDocumentFragment();
      const lossValue = document.createElement("span");
      lossValue.textContent = typeof training.final_loss === "number" ? fmt(training.final_loss, 4) : "–";
      loss.append(lossValue);
      const hasCurve = Array.isArray(training.loss_curve) && training.loss_curve.length > 1;
      if (hasCurve) {
        const spark = document.createElement("canvas");
        spark.id = "loss-canvas";
        spark.className = "spark";
        spark.setAttribute("aria-label", "Training loss curve");
        loss.append(spark);
      }
      facts.replaceChildren(
        fact("Parameters", num(m.parameter_count)),
        fact("Network", width, `MLP: ${net.depth} hidden layers of width ${net.hidden}${extra ? `, ${extra}` : ""}`),
        fact("Training steps", num(training.steps)),
        fact("Wall time", duration(training.wall_time_s), "training wall-clock time"),
        fact("Device", m.device || "–"),
        fact("Model id", idCode, id ? `sha256 over the weights' canonical form (names, dtypes, shapes, bytes): ${id}` : undefined),
        fact("Final training loss", loss, hasCurve ? "the training loss curve, first to last step" : undefined, "wide with-spark"),
        fact(
          "Few-step",
          student
            ? `student of ${student.teacher.name || "?"}: ${(m.student_steps || []).join(", ")} evaluations`
            : schedule.zero_terminal_snr
              ? "zero terminal SNR: DPM-Solver++ at 20 steps"
              : "–",
          student
            ? `distilled (${student.method}) from ${student.teacher.name} (${String(student.teacher.id || "").slice(0, 12)}); grids ${JSON.stringify(student.grids)}`
            : undefined,
        ),
      );
      syncSamplerOptions(m);
      $("model-name").textContent = m.name ? `“${m.name}”` : "";
      if (hasCurve) drawLoss();
      renderEvaluation(m.evaluation);
    } catch (err) {
      facts.replaceChildren(fact("Status", "unavailable"));
      $("model-name").textContent = "";
      $("model-eval").textContent = "–";
      showError("model", err);
    }
  }

  // ---------------------------------------------------------------- wiring

  function redrawAll() {
    drawSchedule();
    drawForward();
    drawSample();
    drawLoss();
  }

  async function init() {
    $("t-slider").addEventListener("input", onSlider);
    $("sampler-select").addEventListener("change", syncSamplerControls);
    $("steps-input").addEventListener("input", () => {
      if (!$("steps-input").disabled) rememberedSteps = $("steps-input").value;
    });
    $("sample-form").addEventListener("submit", (event) => {
      event.preventDefault();
      runSample();
    });
    $("play").addEventListener("click", play);
    $("pause").addEventListener("click", pause);
    $("scrub").addEventListener("input", () => {
      const index = Number($("scrub").value); // read before pause() re-syncs the slider
      pause();
      swirl.frameIndex = index;
      swirl.sampleDone = swirl.frameIndex === frames.length - 1;
      drawSample();
    });
    let resizeQueued = false;
    window.addEventListener("resize", () => {
      if (resizeQueued) return;
      resizeQueued = true;
      requestAnimationFrame(() => {
        resizeQueued = false;
        redrawAll();
      });
    });

    drawForward();
    drawSample();
    const modelLoaded = loadModel(); // never rejects: it shows its own error
    loadReference();
    const schedule = await loadSchedule();
    const T = schedule ? schedule.timesteps : 50;
    const slider = $("t-slider");
    slider.max = String(T);
    slider.value = String(Math.round(T / 2));
    swirl.sliderT = Number(slider.value);
    updateForwardReadout(swirl.sliderT);
    await modelLoaded; // a distilled student's page starts on its own sampler
    syncSamplerControls();
    drawSchedule();
    requestForward(swirl.sliderT);
    runSample();
  }

  window.addEventListener("error", (event) => showError("page", event.error || new Error(event.message)));
  window.addEventListener("unhandledrejection", (event) => showError("page", event.reason));

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
