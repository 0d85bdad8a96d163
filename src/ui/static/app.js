// alertd web UI: optional niceties. Every page works without this script.
// - The alert list refreshes in place every few seconds, keeping the filter and grouping
//   (they are in the page's address). When the session has ended, the page reloads, which
//   leads to the sign-in page.
// - The silence form previews the alerts its matchers would silence while they are typed, and
//   typing a duration clears the end (and the other way round), so the two never disagree.
// - Forms that expire a silence ask for confirmation; a form's buttons are disabled once it is
//   sent, so a double click sends it once.
"use strict";

// Fetches an HTML fragment; null when it cannot be shown (offline, an error, or a redirect to
// the sign-in page, in which case the page reloads to show it).
async function fragment(url) {
  const r = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
  if (r.redirected || r.status === 401) {
    window.location.reload();
    return null;
  }
  return r.ok ? await r.text() : null;
}

function refreshAlerts(box) {
  const seconds = parseInt(box.dataset.refresh || "0", 10);
  if (!seconds) return;
  const tick = async () => {
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "list");
    try {
      const html = await fragment(url);
      if (html !== null) box.innerHTML = html;
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
        const html = await fragment(url);
        if (html !== null) box.innerHTML = html;
      } catch (e) {
        // The Preview button still works.
      }
    }, 300);
  });
}

function oneOf(a, b) {
  a.addEventListener("input", () => { if (a.value.trim() !== "") b.value = ""; });
  b.addEventListener("input", () => { if (b.value.trim() !== "") a.value = ""; });
}

document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("alert-list");
  if (list) refreshAlerts(list);
  const matchers = document.getElementById("matchers");
  const preview = document.getElementById("preview");
  if (matchers && preview) livePreview(matchers, preview);
  const duration = document.getElementById("duration");
  const ends = document.getElementById("ends");
  if (duration && ends) oneOf(duration, ends);
  for (const f of document.querySelectorAll("form.expire-form")) {
    f.addEventListener("submit", (ev) => {
      if (!window.confirm("Expire this silence now?")) ev.preventDefault();
    });
  }
  for (const f of document.querySelectorAll("form[method=post]")) {
    f.addEventListener("submit", (ev) => {
      if (ev.defaultPrevented) return;
      if (f.dataset.sent) {
        ev.preventDefault();
        return;
      }
      f.dataset.sent = "1";
    });
  }
});

// Back to a page kept in the browser's cache: its forms may be sent again.
window.addEventListener("pageshow", (ev) => {
  if (!ev.persisted) return;
  for (const f of document.querySelectorAll("form[data-sent]")) delete f.dataset.sent;
});
