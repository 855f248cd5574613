/* The error area at the top of the page (#error): one line per source (a panel, or the page
   itself), in plain words, with a Dismiss button. Panels call showError(source, err) and clearError(source). */

import { ApiError } from "./api.js";
import { $, swirl } from "./state.js";

const LABELS = {
  schedule: "Loading the noise schedule failed",
  model: "Loading the model facts failed",
  forward: "The forward process failed",
  reference: "Loading the reference swiss roll failed",
  sample: "Sampling failed",
  page: "Something went wrong on this page",
};

export function showError(source, err) {
  const message = err instanceof ApiError ? err.message : `unexpected problem: ${err && err.message ? err.message : String(err)}`;
  swirl.errors[source] = message;
  render();
}

export function clearError(source) {
  if (source in swirl.errors) {
    delete swirl.errors[source];
    render();
  }
}

function render() {
  const area = $("error");
  const entries = Object.entries(swirl.errors);
  area.replaceChildren();
  area.hidden = entries.length === 0;
  if (!entries.length) return;
  const list = document.createElement("ul");
  for (const [source, message] of entries) {
    const item = document.createElement("li");
    const label = document.createElement("strong");
    label.textContent = `${LABELS[source] || "Error"}: `;
    item.append(label, document.createTextNode(message));
    list.append(item);
  }
  const dismiss = document.createElement("button");
  dismiss.type = "button";
  dismiss.textContent = "Dismiss";
  dismiss.addEventListener("click", () => {
    swirl.errors = {};
    render();
  });
  area.append(list, dismiss);
}
