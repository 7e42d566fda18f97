// Times: local time on the page, UTC on hover (every <time datetime="..."> element).
"use strict";
function localTimes(root) {
  for (const el of (root || document).querySelectorAll("time[datetime]")) {
    const d = new Date(el.getAttribute("datetime"));
    if (isNaN(d)) continue;
    el.textContent = "day" in el.dataset  // a day and hour (windows), else the time of day
      ? d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })
      : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
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

// Live: the service says on its WebSocket when new data is stored, an alert is raised or a
// forecast is made; the ward refreshes then (at most every 250 ms), and every 2 s regardless.
function live() {
  if (!document.getElementById("beds")) return;
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/live?types=stored,alert,forecast`);
  ws.onmessage = (ev) => {
    const type = JSON.parse(ev.data).type;
    if (type === "stored" || type === "alert" || type === "forecast") {
      document.body.dispatchEvent(new Event("refresh"));
    }
  };
  ws.onclose = () => setTimeout(live, 2000);
}
document.addEventListener("DOMContentLoaded", live);
