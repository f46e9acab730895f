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
