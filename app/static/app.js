/* Swirl page, the entry module: the schedule, the forward process with the learned score, an animated
   reverse chain, the model's facts and its density, each panel its own module in js/ (native ES modules, no build step, nothing from a CDN).
   Owns only the wiring: which panels exist, the order they start in, redraws on resize, and page errors.

   A panel module exports mount() (wire its DOM once; optional) and draw() (repaint its canvas, called
   on resize); it hears about the others through on()/emit() in js/state.js, never by importing them.
   To add one: write js/<panel>.js, give it a <section> in index.html and add it to PANELS below. */

import * as density from "./js/density.js";
import { showError } from "./js/errors.js";
import * as forward from "./js/forward.js";
import * as guidance from "./js/guidance.js";
import * as model from "./js/model.js";
import * as playback from "./js/playback.js";
import * as sample from "./js/sample.js";
import * as schedule from "./js/schedule.js";
import * as score from "./js/score.js";
import { on } from "./js/state.js";

const PANELS = [schedule, forward, score, sample, playback, guidance, model, density];

window.addEventListener("error", (event) => showError("page", event.error || new Error(event.message)));
window.addEventListener("unhandledrejection", (event) => showError("page", event.reason));

function redrawAll() {
  for (const panel of PANELS) panel.draw?.();
}

function watchResize() {
  let queued = false;
  window.addEventListener("resize", () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      redrawAll();
    });
  });
}

async function start() {
  for (const panel of PANELS) panel.mount?.();
  forward.addOverlay(score.overlay); // the score's arrows over the forward panel's points
  on("score", () => forward.draw());
  watchResize();
  const modelLoaded = model.load(); // never rejects: it shows its own error
  playback.loadReference();
  const loaded = await schedule.load();
  forward.start(loaded ? loaded.timesteps : 50);
  await modelLoaded; // a distilled student's page starts on its own sampler
  sample.start();
}

start();
