/* Panel 3, upper half: the sampler form (#sample-form: n, seed, sampler, steps, eta) and the request
   it makes, GET /sample/stream, whose frames go to playback.js as they arrive. Offers the samplers
   the model takes (the "model" event; a distilled student starts on its own). addParams(fn) lets
   another control add query parameters: fn(params, sampler) is called for every request. */

import { ApiError, explain, isAbort, stream } from "./api.js";
import { clearError, showError } from "./errors.js";
import * as playback from "./playback.js";
import { $, on, swirl } from "./state.js";

const TARGET_FRAMES = 40; // reverse-chain frames to ask for (k = 1 when steps ≤ 50)
const POINT_BUDGET = 1_000_000; // n × (frames + 1) per answer: keeps big n animatable
const SAMPLER_LABELS = { ddpm: "DDPM", ddim: "DDIM", dpmpp2m: "DPM-Solver++ (2M)", student: "Student (distilled)" };
const SAMPLER_NAMES = { ddpm: "DDPM", ddim: "DDIM", dpmpp2m: "DPM-Solver++(2M)", student: "distilled student" };

let controller = null;
let rememberedSteps = null; // the user's last steps for ddim / dpmpp2m
const paramSources = [];

export function addParams(source) {
  paramSources.push(source);
}

export function mount() {
  $("sampler-select").addEventListener("change", syncControls);
  $("steps-input").addEventListener("input", () => {
    if (!$("steps-input").disabled) rememberedSteps = $("steps-input").value;
  });
  $("sample-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  on("model", syncOptions);
}

// Once the schedule and the model are known: the controls fit them, and the first chain is drawn.
export function start() {
  syncControls();
  run();
}

// The samplers this model takes (GET /model): a distilled student adds "student", whose
// steps must be one of its trained step counts; it is preselected, since that is what it is for.
function syncOptions(m) {
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
  syncControls();
}

function syncControls() {
  const sampler = $("sampler-select").value;
  const steps = $("steps-input");
  const eta = $("eta-input");
  const T = swirl.T;
  const trained = swirl.studentSteps;
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

// trajectory_every: every step up to 50 steps, else ~TARGET_FRAMES frames; fewer frames for a big n.
function chooseEvery(steps, n) {
  let every = steps <= 50 ? 1 : Math.ceil(steps / TARGET_FRAMES);
  if (Number.isInteger(n) && n > 0) {
    const maxFrames = Math.floor(POINT_BUDGET / n) - 1;
    while (every < steps && 1 + Math.ceil(steps / every) > maxFrames) every += 1;
  }
  return Math.max(1, Math.min(every, steps));
}

function requestParams() {
  const sampler = $("sampler-select").value;
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
  for (const source of paramSources) source(params, sampler);
  return { params, seed };
}

function describe(data, seconds) {
  const etaText = data.sampler === "ddim" ? `, η = ${data.eta}` : "";
  const guidedText = data.u !== undefined ? ` · ${data.model_name}, u = ${data.u}, w = ${data.guidance}` : "";
  return (
    `${SAMPLER_NAMES[data.sampler] || data.sampler}, ${data.steps} steps${etaText}${guidedText} · n = ${data.n.toLocaleString("en-US")} · seed ${data.seed} · ` +
    `${playback.frameCount()} frames · ${seconds.toFixed(2)} s round trip`
  );
}

// Asks for a chain (a newer click cancels an older one) and shows its frames as they arrive.
export async function run() {
  const { params, seed } = requestParams();
  if (controller) controller.abort();
  const mine = new AbortController();
  controller = mine;
  const button = $("sample-button");
  button.disabled = true;
  button.textContent = "Sampling…";
  $("sample-info").textContent = "Sampling…";
  swirl.sampleRequests += 1;
  const started = performance.now();
  const timing = { started: 0, firstFrame: null, done: null, frames: 0 };
  let finished = false;
  try {
    await stream(`sample/stream?${params}`, mine.signal, (name, data) => {
      if (controller !== mine) return;
      if (name === "frame") {
        if (timing.firstFrame === null) {
          playback.beginChain();
          swirl.streaming = true;
          timing.firstFrame = performance.now() - started;
        }
        timing.frames += 1;
        $("sample-info").textContent = `Sampling… frame ${timing.frames}, t = ${data.t}`;
        playback.addFrame({ t: data.t, points: data.points });
      } else if (name === "done") {
        finished = true;
        timing.done = performance.now() - started;
        swirl.stream = timing;
        swirl.streaming = false;
        swirl.sampleResponses += 1;
        swirl.lastSample = { n: data.n, seed: data.seed, sampler: data.sampler, steps: data.steps, eta: data.eta };
        if (data.u !== undefined) Object.assign(swirl.lastSample, { model: data.model_name, u: data.u, guidance: data.guidance }); // a guided chain
        swirl.ready.sample = true;
        clearError("sample");
        $("sample-info").textContent = describe(data, timing.done / 1000);
        if (seed === "") $("seed-input").placeholder = `random (last: ${data.seed})`;
        playback.finishChain();
      } else if (name === "error") {
        throw new ApiError(explain(data.status, data.error, null), data.status);
      }
    });
    if (!finished && controller === mine) throw new ApiError("the stream ended before the chain did. Is the server still running?", 0);
  } catch (err) {
    if (isAbort(err)) return;
    swirl.streaming = false;
    playback.abandonChain();
    $("sample-info").textContent = playback.frameCount() ? "The last successful run is still shown." : "No samples yet.";
    showError("sample", err);
  } finally {
    if (controller === mine) {
      controller = null;
      button.disabled = false;
      button.textContent = "Sample";
    }
  }
}
