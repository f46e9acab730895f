// Behaviour of the dashboard, admin and account pages, kept out of the markup: their Content-Security-Policy
// (app/headers.py) refuses inline scripts, inline event handlers and htmx's evaluated attributes. Listeners
// sit on the document, so content htmx swaps in later is covered too.
"use strict";

// <input data-select-on-focus>: a shown-once secret is selected whole when focused, ready to copy.
document.addEventListener("focusin", (event) => {
  if (event.target.matches("input[data-select-on-focus]")) {
    event.target.select();
  }
});

// <div data-error-target="id">: the element with that id is shown when an htmx request from inside the div
// fails (an error answer or no answer at all) and hidden again when the next one starts.
function errorTarget(event) {
  const area = event.target.closest("[data-error-target]");
  return area && document.getElementById(area.dataset.errorTarget);
}

document.addEventListener("htmx:beforeRequest", (event) => {
  // [data-poll-when-visible]: a poller asks only while the tab is visible (no requests from background tabs).
  if (event.target.matches("[data-poll-when-visible]") && document.visibilityState !== "visible") {
    event.preventDefault();
    return;
  }
  const target = errorTarget(event);
  if (target) target.hidden = true;
});

for (const name of ["htmx:responseError", "htmx:sendError"]) {
  document.addEventListener(name, (event) => {
    const target = errorTarget(event);
    if (target) target.hidden = false;
  });
}

// Dispute evidence (templates/dashboard/disputes/detail.html): a file chosen in the evidence form uploads at once
// with its progress shown, and the form keeps the uploaded file's id for "Save draft". Without this script the
// chosen files simply go with "Save draft".
document.addEventListener("change", (event) => {
  const input = event.target;
  if (!input.matches("input[type=file][data-upload-for]")) return;
  const form = input.closest("form[data-upload-url]");
  const file = input.files && input.files[0];
  if (!form || !file) return;
  const field = input.dataset.uploadFor;
  const kept = form.querySelector(`input[data-file-field="${field}"]`);
  const progress = document.getElementById(`ev-${field}-progress`);
  const current = document.getElementById(`ev-${field}-current`);
  const body = new FormData();
  body.append("file", file);
  const request = new XMLHttpRequest();
  request.open("POST", form.dataset.uploadUrl);
  request.setRequestHeader("X-CSRFToken", form.querySelector("input[name=csrf_token]").value);
  request.responseType = "json";
  progress.hidden = false;
  progress.value = 0;
  current.textContent = `Uploading ${file.name}…`;
  request.upload.addEventListener("progress", (progressEvent) => {
    if (progressEvent.lengthComputable) progress.value = Math.round((100 * progressEvent.loaded) / progressEvent.total);
  });
  request.addEventListener("load", () => {
    const answer = request.response || {};
    input.value = ""; // uploaded (or refused): not sent again with the form
    if (request.status === 200 && answer.id) {
      kept.value = answer.id;
      progress.value = 100;
      current.textContent = `${answer.filename || answer.id} uploaded (${answer.type.toUpperCase()}). Save the draft to keep it.`;
    } else {
      progress.hidden = true;
      current.textContent = answer.error || "The upload failed.";
    }
  });
  request.addEventListener("error", () => {
    progress.hidden = true;
    current.textContent = "The upload failed: check your connection and try again.";
  });
  request.send(body);
});
