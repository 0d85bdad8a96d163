// alertd web UI: optional niceties. Every page works without this script.
// - The alert list refreshes in place every few seconds, keeping the filter and grouping
//   (they are in the page's address).
// - The silence form previews the alerts its matchers would silence while they are typed.
// - Forms that expire a silence ask for confirmation.
"use strict";

function refreshAlerts(box) {
  const seconds = parseInt(box.dataset.refresh || "0", 10);
  if (!seconds) return;
  const tick = async () => {
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "list");
    try {
      const r = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (r.ok) box.innerHTML = await r.text();
    } catch (e) {
      // Offline for a moment: keep showing the last list.
    }
    window.setTimeout(tick, seconds * 1000);
  };
  window.setTimeout(tick, seconds * 1000);
}

function livePreview(input, box) {
  let timer = null;
  input.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(async () => {
      const url = new URL("/silences/preview", window.location.origin);
      url.searchParams.set("matchers", input.value);
      try {
        const r = await fetch(url, { credentials: "same-origin" });
        if (r.ok) box.innerHTML = await r.text();
      } catch (e) {
        // The Preview button still works.
      }
    }, 300);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("alert-list");
  if (list) refreshAlerts(list);
  const matchers = document.getElementById("matchers");
  const preview = document.getElementById("preview");
  if (matchers && preview) livePreview(matchers, preview);
  for (const f of document.querySelectorAll("form.expire-form")) {
    f.addEventListener("submit", (ev) => {
      if (!window.confirm("Expire this silence now?")) ev.preventDefault();
    });
  }
});
