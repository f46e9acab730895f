// Developers › API reference: "Copy as curl" buttons (templates/dashboard/developers/api_reference.html).
// A static file, not inline script, so the dashboard's Content-Security-Policy needs no 'unsafe-inline'.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy-curl");
  if (!button) {
    return;
  }
  const source = document.getElementById(button.dataset.copy);
  const status = button.parentElement.querySelector(".copy-status");
  try {
    await navigator.clipboard.writeText(source.textContent);
    status.textContent = "Copied to the clipboard.";
  } catch (error) {
    // No clipboard access (an insecure origin, or permission refused): select the command to copy by hand.
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    status.textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
  }
});
