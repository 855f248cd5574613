/* Panel 4, the model: loads GET /model into swirl.model, fills #model-facts (size, training, id,
   few-step), the training-loss sparkline (#loss-canvas) and the sample-quality table (#model-eval).
   Emits "model" so the sampler can offer the samplers this model takes. */

import { api } from "./api.js";
import { clearError, showError } from "./errors.js";
import { fmt, prepare } from "./draw.js";
import { $, emit, swirl } from "./state.js";

// Never rejects: a failure shows its own error.
export async function load() {
  const facts = $("model-facts");
  try {
    const m = await api("model");
    swirl.model = m;
    swirl.ready.model = true;
    clearError("model");
    const hasCurve = Array.isArray(m.training && m.training.loss_curve) && m.training.loss_curve.length > 1;
    facts.replaceChildren(...factsOf(m, hasCurve));
    emit("model", m);
    $("model-name").textContent = m.name ? `“${m.name}”` : "";
    if (hasCurve) draw();
    renderEvaluation(m.evaluation);
  } catch (err) {
    facts.replaceChildren(fact("Status", "unavailable"));
    $("model-name").textContent = "";
    $("model-eval").textContent = "–";
    showError("model", err);
  }
}

// Training loss as a sparkline (no axes: the final value sits next to it).
export function draw() {
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

function factsOf(m, hasCurve) {
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
  if (hasCurve) {
    const spark = document.createElement("canvas");
    spark.id = "loss-canvas";
    spark.className = "spark";
    spark.setAttribute("aria-label", "Training loss curve");
    loss.append(spark);
  }
  return [
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
  ];
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
