// Times: local time on the page, UTC on hover (every <time datetime="..."> element).
"use strict";
function localTimes(root) {
  for (const el of (root || document).querySelectorAll("time[datetime]")) {
    const d = new Date(el.getAttribute("datetime"));
    if (isNaN(d)) continue;
    el.textContent = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    el.title = d.toISOString().replace(".000Z", "Z") + " (UTC)";
  }
}
function tick() {
  const c = document.getElementById("clock");
  if (c) c.textContent = new Date().toLocaleString();
}
document.addEventListener("DOMContentLoaded", () => { localTimes(); tick(); setInterval(tick, 1000); });
document.addEventListener("htmx:afterSwap", (e) => localTimes(e.target));
document.addEventListener("htmx:oobAfterSwap", (e) => localTimes(e.target));
