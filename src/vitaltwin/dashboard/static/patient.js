// The patient view: vitals (1 Hz) with the twin's forecast bands, hidden physiology, risk,
// timeline, alerts with actions, what-if. Everything comes from the service's JSON API.
"use strict";
(() => {
  const root = document.getElementById("patient");
  if (!root) return;
  const pid = root.dataset.patient;
  const api = (path) => `/v1/patients/${encodeURIComponent(pid)}${path}`;
  const CODES = { HR: ["8867-4"], MAP: ["8478-0"], SpO2: ["59408-5", "2708-6"], RR: ["9279-1"] };
  const LABS = { "2524-7": ["Lactate", "mmol/L"], "32693-4": ["Lactate", "mmol/L"],
                 "6690-2": ["WBC", "10^3/µL"], "718-7": ["Hb", "g/dL"], "8310-5": ["Temp", "°C"] };
  const WINDOW_S = 30 * 60;
  const FORECAST_H = 6;  // the horizon the service forecasts (compiled at start-up)
  const SHOW_AHEAD_MIN = 120;
  const series = {};  // vital -> {t: [], v: []}
  const charts = {};
  let forecast = null;  // {from (s), bands: {vital: rows}}
  let lastTime = null;
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const fmtTime = (iso) => { const d = new Date(iso); return `<time datetime="${esc(iso)}" title="${esc(d.toISOString())} (UTC)">${esc(d.toLocaleString())}</time>`; };

  const breakGlass = root.dataset.breakGlass;
  const cookie = (name) => (document.cookie.split("; ").find((c) => c.startsWith(`${name}=`)) || "").slice(name.length + 1);

  async function getJSON(url, opts) {
    // the session's CSRF token on every unsafe request; the break-glass reason when the
    // chart was opened so (every call for this patient is then recorded with it)
    opts = { ...(opts || {}) };
    const headers = { ...(opts.headers || {}) };
    if (opts.method && opts.method !== "GET") headers["x-csrf-token"] = decodeURIComponent(cookie("vt_csrf"));
    if (breakGlass) headers["x-break-glass"] = breakGlass;
    opts.headers = headers;
    const r = await fetch(url, opts);
    if (r.status === 401) { location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`); }
    if (!r.ok) { const e = new Error(`${url}: ${r.status}`); e.status = r.status; try { e.detail = (await r.json()).detail; } catch (_) {} throw e; }
    return r.json();
  }

  function chartData(name) {
    // one x axis, ascending (uPlot needs it): the measured values and the forecast's minutes,
    // merged — the twin's "now" may lag the newest data, so the two can interleave
    const s = series[name] || { t: [], v: [] };
    const rows = s.t.map((t, i) => [t, s.v[i], null, null, null, null, null]);
    if (forecast && forecast.bands[name]) {
      for (const b of forecast.bands[name]) {
        rows.push([forecast.from + b.minute * 60, null, b.q05, b.q25, b.q50, b.q75, b.q95]);
      }
    }
    rows.sort((a, b) => a[0] - b[0]);
    const data = [0, 1, 2, 3, 4, 5, 6].map((k) => rows.map((r) => r[k]));
    return { data };
  }

  function makeChart(el, name, unit) {
    const w = Math.max(360, el.clientWidth || 420);
    const opts = {
      width: w, height: 180, legend: { show: false },
      scales: { x: { time: true }, y: { auto: true } },
      axes: [{}, { label: unit, size: 50 }],
      series: [
        {},
        { label: `${name} measured`, stroke: "#1b1f24", width: 0, points: { show: true, size: 3, fill: "#1b1f24" } },
        { label: "5 %", stroke: "rgba(26,86,219,0.25)", spanGaps: true },
        { label: "25 %", stroke: "rgba(26,86,219,0.5)", spanGaps: true },
        { label: "median", stroke: "#1a56db", width: 2, spanGaps: true },
        { label: "75 %", stroke: "rgba(26,86,219,0.5)", spanGaps: true },
        { label: "95 %", stroke: "rgba(26,86,219,0.25)", spanGaps: true },
      ],
      bands: [
        { series: [6, 2], fill: "rgba(26,86,219,0.10)" },
        { series: [5, 3], fill: "rgba(26,86,219,0.22)" },
      ],
      hooks: { draw: [(u) => {
        if (!forecast) return;
        const x = u.valToPos(forecast.from, "x", true);
        const ctx = u.ctx; ctx.save(); ctx.strokeStyle = "#8a5a00"; ctx.setLineDash([4, 3]);
        ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke(); ctx.restore();
      }] },
    };
    const { data } = chartData(name);
    charts[name] = new uPlot(opts, data, el);
  }

  function redraw() {
    for (const name of Object.keys(CODES)) {
      if (!charts[name]) continue;
      charts[name].setData(chartData(name).data);
      const s = series[name];
      const el = document.getElementById(`latest-${name}`);
      if (s && s.v.length) el.textContent = `latest ${s.v[s.v.length - 1].toFixed(0)}`;
    }
  }

  async function pollVitals() {
    const codes = Object.values(CODES).flat();
    const start = lastTime ? new Date(lastTime * 1000 + 1).toISOString() : null;
    let url = api(`/observations?${codes.map((c) => `code=${c}`).join("&")}&limit=5000`);
    if (start) url += `&start=${encodeURIComponent(start)}`;
    const rows = await getJSON(url);
    const byCode = {};
    for (const [name, cs] of Object.entries(CODES)) for (const c of cs) byCode[c] = name;
    for (const r of rows) {
      const name = byCode[r.loinc]; if (!name || r.value === null) continue;
      const t = Date.parse(r.effective_time) / 1000;
      const s = series[name] || (series[name] = { t: [], v: [] });
      if (s.t.length && t <= s.t[s.t.length - 1]) continue;
      s.t.push(t); s.v.push(r.value);
      lastTime = Math.max(lastTime || 0, t);
    }
    for (const s of Object.values(series)) {
      const cut = (lastTime || 0) - WINDOW_S;
      while (s.t.length && s.t[0] < cut) { s.t.shift(); s.v.shift(); }
    }
    if (!start && lastTime === null) lastTime = Date.now() / 1000 - WINDOW_S;
    redraw();
  }

  async function pollForecast() {
    try {
      const f = await getJSON(api(`/twin/forecast?hours=${FORECAST_H}`));
      const bands = {};
      for (const row of f.bands) if (row.minute <= SHOW_AHEAD_MIN) (bands[row.observable] || (bands[row.observable] = [])).push(row);
      forecast = { from: Date.parse(f.from) / 1000, bands };
      const p = Object.entries(f.event_probabilities).map(([k, v]) => `${k.replaceAll("_", " ")} ${(v * 100).toFixed(0)} %`).join(" · ");
      document.getElementById("forecast-note").innerHTML = `Forecast from ${fmtTime(f.from)} (model ${esc(f.model_version)}; the charts show its first ${SHOW_AHEAD_MIN / 60} h): chance within ${FORECAST_H} h — ${esc(p)}.`;
      redraw();
    } catch (e) {
      document.getElementById("forecast-note").textContent = e.status === 404 ? "No twin for this patient yet." : `Forecast unavailable: ${e.detail || e.message}`;
    }
  }

  async function pollTwin() {
    try {
      const t = await getJSON(api("/twin"));
      const st = document.getElementById("twin-status");
      st.textContent = `twin: ${t.status}${t.learning ? " (learning the patient)" : ""}`;
      st.title = t.reason || "";
      st.classList.toggle("degraded", String(t.status).startsWith("degraded"));
      if (!t.parameters) return;
      const rows = t.parameters.map((p) => `<tr><th scope="row">${esc(p.parameter)}</th><td class="num">${p.mean.toPrecision(3)}</td><td class="num">${p.q05.toPrecision(3)}–${p.q95.toPrecision(3)}</td><td>${esc(p.unit)}</td></tr>`).join("");
      document.getElementById("physiology").innerHTML = `<table><thead><tr><th scope="col">Parameter</th><th scope="col">Mean</th><th scope="col">90 % interval</th><th scope="col">Unit</th></tr></thead><tbody>${rows}</tbody></table>`;
    } catch (e) {
      document.getElementById("physiology").textContent = `Twin unavailable: ${e.detail || e.message}`;
    }
  }

  let hasRiskModel = false;
  async function pollRisk() {
    const parts = [];
    try {
      const ward = await getJSON("/v1/ward");
      const bed = ward.beds.find((b) => b.patient_id === pid);
      const d = bed && bed.deterioration;
      hasRiskModel = Boolean(bed && bed.risk_model);
      if (d) {
        parts.push(`<p>Deterioration risk <strong>${(d.probability * 100).toFixed(0)} %</strong> (${esc(d.event.replaceAll("_", " "))}, within the forecast horizon) · model ${esc(d.model_version)} · ${fmtTime(d.time)}</p>`);
        parts.push(`<p class="small">History (last ${d.trend.length} forecasts): ${d.trend.map((p) => (p * 100).toFixed(0)).join(", ")} %</p>`);
      } else parts.push("<p>No deterioration forecast yet (the twin learns the patient during its first hour).</p>");
    } catch (e) { parts.push(`<p>Ward unavailable: ${esc(e.message)}</p>`); }
    if (hasRiskModel) {
      try {
        const r = await getJSON(api("/risk"));
        if (r.scored) {
          const last = r.history[r.history.length - 1];
          parts.push(`<p>${esc(r.model.task)} risk <strong>${(last.probability * 100).toFixed(0)} %</strong>${last.low_confidence ? " (low confidence)" : ""} · model ${esc(r.model.name)} v${esc(r.model.version)}</p>`);
          parts.push("<p>Top contributing factors:</p><ul>" + r.top_factors.map((f) => `<li>${esc(f.feature)}: ${f.contribution >= 0 ? "raises" : "lowers"} (${f.contribution.toFixed(2)})</li>`).join("") + "</ul>");
        } else parts.push(`<p>Risk model: ${esc(r.reason)}</p>`);
      } catch (e) { parts.push(`<p>Risk model unavailable: ${esc(e.message)}</p>`); }
    } else parts.push("<p class=\"small\">No risk model is registered in this service.</p>");
    document.getElementById("risk").innerHTML = parts.join("");
  }

  function alertCard(a) {
    const also = (a.details.also || []).map((x) => esc(x.rule)).join(", ");
    const acts = [];
    if (!a.acknowledged_at) acts.push(`<button type="button" data-act="acknowledge" data-id="${esc(a.id)}">Acknowledge</button>`);
    acts.push(`<form data-act="snooze" data-id="${esc(a.id)}"><label>Snooze <select name="hours" aria-label="snooze hours">${[1, 2, 4, 8, 12].map((h) => `<option value="${h}">${h} h</option>`).join("")}</select></label> <input name="reason" required maxlength="500" placeholder="reason" aria-label="snooze reason"> <button type="submit">Snooze</button></form>`);
    acts.push(`<button type="button" data-act="escalate" data-id="${esc(a.id)}">Escalate</button>`);
    const who = a.acknowledged_by ? ` · acknowledged by ${esc(a.acknowledged_by)} ${fmtTime(a.acknowledged_at)}` : "";
    const snz = a.snoozed_until ? ` · snoozed until ${fmtTime(a.snoozed_until)}: ${esc(a.snooze_reason)}` : "";
    return `<div class="alert ${esc(a.state)}" data-alert="${esc(a.id)}"><strong>${esc(a.rule)}</strong> <span class="badge ${esc(a.state)}">${esc(a.state)}</span> · score ${(a.score * 100).toFixed(0)} % · model ${esc(a.model_version)} · ${fmtTime(a.time)} · to ${esc(a.role)}${who}${snz}${also ? `<br>also: ${also}` : ""}<br>${acts.join(" ")}<div class="small">${esc(a.decision_support)}</div></div>`;
  }

  async function pollAlerts() {
    try {
      const r = await getJSON(`/v1/alerts?patient=${encodeURIComponent(pid)}`);
      actions = await getJSON(`/v1/alerts/log?patient=${encodeURIComponent(pid)}&limit=200`);
      const box = document.getElementById("alerts");
      if (box.contains(document.activeElement) && document.activeElement.tagName !== "BUTTON") return;  // typing a reason
      box.innerHTML = r.alerts.length ? r.alerts.map(alertCard).join("") : `<p>No alerts${r.shadow_mode ? " shown (alerts run in shadow mode)" : ""}.</p>`;
    } catch (e) { document.getElementById("alerts").textContent = `Alerts unavailable: ${e.message}`; }
    timeline();
  }

  async function act(kind, id, form) {
    let url = `/v1/alerts/${encodeURIComponent(id)}/${kind}`;
    if (kind === "snooze") url += `?hours=${form.hours.value}&reason=${encodeURIComponent(form.reason.value)}`;
    try { await getJSON(url, { method: "POST" }); }
    catch (e) { alert(`${kind}: ${e.detail || e.message}`); }
    document.activeElement.blur();
    await pollAlerts();
  }
  document.getElementById("alerts").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-act]"); if (b) act(b.dataset.act, b.dataset.id);
  });
  document.getElementById("alerts").addEventListener("submit", (ev) => {
    ev.preventDefault(); const f = ev.target; act("snooze", f.dataset.id, f);
  });

  let labs = [], meds = [], actions = [];
  async function pollLabs() {
    try {
      labs = await getJSON(api(`/observations?${Object.keys(LABS).map((c) => `code=${c}`).join("&")}&limit=200`));
      meds = await getJSON(api("/medications?limit=200"));
    } catch (_) { labs = []; meds = []; }
    timeline();
  }

  function timeline() {
    const items = [];
    for (const r of labs) { const [n, u] = LABS[r.loinc]; items.push([r.effective_time, `${esc(n)} ${r.value.toFixed(1)} ${esc(u)}`]); }
    for (const m of meds) {
      const dose = m.dose !== null ? ` ${m.dose} ${esc(m.dose_unit || "")}` : "";
      const rate = m.rate !== null ? ` at ${m.rate} ${esc(m.rate_unit || "")}` : "";
      items.push([m.start_time, `Medication: ${esc(m.drug)}${dose}${rate}`]);
    }
    for (const e of actions) {
      const who = e.who ? ` by ${esc(e.who)}` : "";
      const detail = e.detail ? ` (${esc(e.detail)})` : "";
      items.push([e.time, `Alert ${esc(e.alert_id)} ${esc(e.action)}${who}: ${esc(e.rule)}${detail}`]);
    }
    items.sort((x, y) => Date.parse(y[0]) - Date.parse(x[0]));
    document.getElementById("timeline").innerHTML = items.slice(0, 200).map(([t, s]) => `<li>${fmtTime(t)} ${s}</li>`).join("") || "<li>Nothing yet.</li>";
  }

  function plansFromForm() {
    const rows = document.querySelectorAll("#whatif-form tbody tr");
    const plans = [];
    for (const tr of rows) {
      const get = (n) => tr.querySelector(`[name=${n}]`).value.trim();
      const name = get("name"); if (!name) continue;
      const plan = { name, fluid_ml: Number(get("fluid_ml") || 0), fluid_over_min: Number(get("fluid_over_min") || 30) };
      if (get("ne_ug_kg_min") !== "") plan.ne_ug_kg_min = Number(get("ne_ug_kg_min"));
      if (get("antibiotic_at_min") !== "") plan.antibiotic_at_min = Number(get("antibiotic_at_min"));
      plans.push(plan);
    }
    return plans;
  }

  async function whatif(plans) {
    const out = document.getElementById("whatif-result");
    out.innerHTML = "<p>Running the twin forward under each plan…</p>";
    const hours = document.getElementById("whatif-hours").value || 6;
    try {
      const r = await getJSON(api(`/whatif?hours=${hours}`), { method: "POST", headers: { "content-type": "application/json" }, body: plans ? JSON.stringify(plans) : "null" });
      const cols = Object.keys(r.plans[0] || {}).filter((k) => !["summary", "plan"].includes(k));
      const head = `<tr><th scope="col">Rank</th><th scope="col">Plan</th>${cols.map((c) => `<th scope="col">${esc(c.replaceAll("_", " "))}</th>`).join("")}<th scope="col">Explanation</th></tr>`;
      const body = r.plans.map((p, i) => `<tr><td${i === 0 ? ' class="best"' : ""}>${i + 1}</td><td>${esc(p.plan ?? p.name ?? "")}</td>${cols.map((c) => `<td class="num">${typeof p[c] === "number" ? p[c].toPrecision(3) : esc(p[c] ?? "")}</td>`).join("")}<td>${esc(p.summary || "")}</td></tr>`).join("");
      out.innerHTML = `<p>From ${fmtTime(r.from)}, ${r.hours} h ahead, model ${esc(r.model_version)}; ranked by expected cost (lower is better).</p><table class="ranked" id="whatif-table"><thead>${head}</thead><tbody>${body}</tbody></table><p class="support">${esc(r.decision_support)}</p>`;
    } catch (e) { out.innerHTML = `<p>What-if failed: ${esc(e.detail ? JSON.stringify(e.detail) : e.message)}</p>`; }
  }
  document.getElementById("whatif-form").addEventListener("submit", (ev) => { ev.preventDefault(); whatif(plansFromForm()); });
  document.getElementById("rank").addEventListener("click", () => whatif(null));

  window.vitaltwin = { charts, series };  // for the browser tests and the curious
  document.addEventListener("DOMContentLoaded", () => {
    for (const [name] of Object.entries(CODES)) {
      const fig = document.getElementById(`chart-${name}`);
      makeChart(fig, name, fig.dataset.unit);
    }
    const every = (f, ms) => { f(); setInterval(f, ms); };
    every(pollVitals, 1000);
    every(pollForecast, 5000);
    every(pollTwin, 5000);
    every(pollRisk, 5000);
    every(pollAlerts, 2000);
    every(pollLabs, 15000);
  });
})();
