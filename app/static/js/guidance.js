/* Panel 3, guidance (docs/guidance.md): the arc-position slider (#arc-input: "none", or u in 0…1
   along the roll) and the guidance slider (#guidance-input: w) for a guided model, and the true
   conditional N(c(t(u)), noise² I) drawn faintly behind the samples on the reverse-process canvas, so that guidance
   visibly tightens the blob. Uses the default model when it is guided, else the first guided model
   GET /models lists (its requests then name it); with none, the sliders stay off. Releasing a
   slider samples again. */

import { api } from "./api.js";
import { AXIS } from "./draw.js";
import * as playback from "./playback.js";
import * as sample from "./sample.js";
import { $, on, swirl } from "./state.js";

const NONE = -1; // the arc slider's leftmost position: no condition (the null condition ∅)
const CONDITIONAL_FILL = "rgba(37, 99, 235, 0.16)";
const CONDITIONAL_RING = "rgba(37, 99, 235, 0.55)";

let guided = null; // {name: null (the default model) or a model's name, data: {mean, scale, noise}, condition}

export function mount() {
  for (const id of ["arc-input", "guidance-input"]) {
    $(id).addEventListener("input", update);
    $(id).addEventListener("change", () => {
      update();
      $("sample-form").requestSubmit();
    });
  }
  sample.addParams(addParams);
  playback.addUnderlay(drawConditional);
  on("model", (m) => findGuidedModel(m));
  update();
}

// u from the slider: null for "none", else 0…1 in steps of 0.01.
export function arcPosition() {
  const value = Number($("arc-input").value);
  return value <= NONE ? null : value / 100;
}

function weight() {
  return Number($("guidance-input").value);
}

function update() {
  const u = arcPosition();
  $("arc-output").textContent = u === null ? "none" : u.toFixed(2);
  $("guidance-output").textContent = weight().toFixed(2);
  $("guidance-input").disabled = guided === null || u === null;
  swirl.guidance = { model: guided ? guided.name || swirl.model?.name || null : null, u: guided ? u : null, w: guided && u !== null ? weight() : null };
  playback.draw();
}

// The default model if it takes a condition; otherwise the first guided model the server lists.
async function findGuidedModel(m) {
  let found = m.condition ? { name: null, data: m.data, condition: m.condition } : null;
  if (!found) {
    try {
      const listing = await api("models");
      const item = (listing.models || []).find((entry) => entry.condition && entry.state === "available");
      if (item) {
        const detail = await api(`model?model=${encodeURIComponent(item.name)}`);
        found = { name: item.name, data: detail.data, condition: detail.condition };
      }
    } catch {
      found = null; // the sliders stay off; the sampler works as before
    }
  }
  guided = found;
  const arc = $("arc-input");
  arc.disabled = guided === null;
  arc.title = guided
    ? `arc position along the roll, 0 the inner end, 1 the outer (model ${guided.name || m.name}); leftmost: none (unconditional)`
    : "no guided model is served (GET /models shows each model's condition)";
  if (guided) $("guidance-input").value = String(guided.condition.default_guidance ?? 0.25);
  swirl.ready.guidance = true;
  update();
}

function addParams(params) {
  const u = arcPosition();
  if (guided === null || u === null) return;
  if (guided.name) params.set("model", guided.name);
  params.set("u", String(u));
  params.set("guidance", String(weight()));
}

// The true conditional at the slider's u, in the model's normalised space: a faint disk of 2σ and a
// dashed ring at 1σ, under the samples (the roll's reference points are drawn over it too, faintly).
function drawConditional(ctx, view) {
  const u = arcPosition();
  if (guided === null || u === null) return;
  const { mean, scale, noise } = guided.data;
  const t = 1.5 * Math.PI + 3 * Math.PI * u;
  const cx = view.sx((t * Math.cos(t) - mean[0]) / scale);
  const cy = view.sy((t * Math.sin(t) - mean[1]) / scale);
  const sigma = (noise / scale) * (view.size / (2 * AXIS)); // pixels
  ctx.fillStyle = CONDITIONAL_FILL;
  ctx.beginPath();
  ctx.arc(cx, cy, 2 * sigma, 0, 2 * Math.PI);
  ctx.fill();
  ctx.strokeStyle = CONDITIONAL_RING;
  ctx.setLineDash([3, 3]);
  ctx.beginPath();
  ctx.arc(cx, cy, sigma, 0, 2 * Math.PI);
  ctx.stroke();
  swirl.conditionalDraws = (swirl.conditionalDraws || 0) + 1;
}
