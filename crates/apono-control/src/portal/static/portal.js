// The portal's progressive enhancement. Every page works without it; with it:
// copy buttons, a ticking "time left", live status (long poll of the page's watch URL), and
// the request form's dry-run problems next to the fields as they are typed.
"use strict";

function span(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

function tick() {
  for (const el of document.querySelectorAll("[data-expires]")) {
    const left = (Number(el.dataset.expires) - Date.now()) / 1000;
    el.textContent = left > 0 ? span(left) + " left" : "ending";
  }
}

function copyButtons() {
  for (const button of document.querySelectorAll("button.copy[data-copy]")) {
    const source = document.getElementById(button.dataset.copy);
    if (!source) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      const label = button.textContent;
      try {
        await navigator.clipboard.writeText(source.value);
      } catch (_) {
        source.select();
        document.execCommand("copy");
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = label; }, 2000);
    });
  }
}

// Waits for the watched object's next version and reloads the page when it changes. A form
// submitted meanwhile wins: the watch stops, so a reload never replaces the form's answer (the
// reveal's answer is the only place the one-time credentials are shown).
async function live(main) {
  const note = document.querySelector(".live");
  const version = main.dataset.version;
  const stop = new AbortController();
  document.addEventListener("submit", () => stop.abort(), { capture: true });
  if (note) note.textContent = "(live)";
  while (!stop.signal.aborted) {
    try {
      const url = main.dataset.watch + "?wait=25&after=" + encodeURIComponent(version);
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store", signal: stop.signal });
      const next = (response.headers.get("ETag") || "").replace(/"/g, "");
      if (!response.ok || response.redirected || !next) {
        // Signed out meanwhile (redirected to the sign-in page), or gone: stop asking.
        if (note) note.textContent = "(live updates stopped)";
        return;
      }
      if (next !== version && !stop.signal.aborted) {
        window.location.reload();
        return;
      }
    } catch (_) {
      if (stop.signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

const FIELD_OF = {
  unknown_integration: "integration",
  no_resource: "resources", unknown_resource: "resources",
  too_many_resources: "resources", duplicate_resource: "resources",
  unknown_permission: "permission", no_matching_flow: "permission",
  invalid_duration: "duration", duration_over_max: "duration",
  justification_required: "justification", justification_too_long: "justification",
};

function requestForm(form) {
  const integration = form.querySelector("#integration");
  const type = form.querySelector("#resource_type");
  const permission = form.querySelector("#permission");
  const summary = form.querySelector("#dry-run-summary");
  const maxNote = form.querySelector("#duration-max");
  const maxDefault = maxNote ? maxNote.textContent : "";

  // Only the choices of the chosen integration and resource type.
  function filter() {
    const i = integration.value;
    for (const o of type.querySelectorAll("option[data-integration]")) {
      o.hidden = o.disabled = i !== "" && o.dataset.integration !== i;
      if (o.disabled && o.selected) type.value = "";
    }
    const t = type.value;
    for (const c of form.querySelectorAll(".choice")) {
      const show = (i === "" || c.dataset.integration === i) && (t === "" || c.dataset.resourceType === t);
      c.hidden = !show;
      const box = c.querySelector("input");
      if (!show && box.checked) box.checked = false;
    }
    for (const o of permission.querySelectorAll("option[data-integration]")) {
      o.hidden = o.disabled = (i !== "" && o.dataset.integration !== i) || (t !== "" && o.dataset.resourceType !== t);
      if (o.disabled && o.selected) permission.value = "";
    }
  }

  function show(problems) {
    const byField = {};
    for (const p of problems) {
      const field = FIELD_OF[p.code] || "permission";
      (byField[field] = byField[field] || []).push(p.message);
    }
    for (const field of ["integration", "resources", "permission", "duration", "justification"]) {
      const list = document.getElementById(field + "-problems");
      if (!list) continue;
      list.replaceChildren(...(byField[field] || []).map((m) => {
        const li = document.createElement("li");
        li.textContent = m;
        return li;
      }));
      const input = document.getElementById(field);
      if (input) input.setAttribute("aria-invalid", byField[field] ? "true" : "false");
    }
  }

  let timer = null;
  let sequence = 0;
  async function check() {
    if (!integration.value || !type.value) return;
    const body = {
      integration: integration.value,
      resource_type: type.value,
      resource_ids: [...form.querySelectorAll("input[name=resource]:checked")].map((b) => b.value),
      permission: permission.value,
      justification: form.querySelector("#justification").value.trim() || null,
      duration: form.querySelector("#duration").value.trim() || null,
    };
    const mine = ++sequence;
    try {
      const response = await fetch(form.dataset.dryRun, {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": form.dataset.csrf },
        body: JSON.stringify(body),
      });
      if (!response.ok || mine !== sequence) return;
      const result = await response.json();
      show(result.problems || []);
      if (maxNote) {
        maxNote.textContent = result.max_duration ? "(at most " + result.max_duration + ")" : maxDefault;
      }
      if (summary) {
        summary.textContent = result.allowed
          ? "Allowed by flow " + result.flow + (result.approval_required ? "; needs approval." : "; granted without approval.")
          : "";
      }
    } catch (_) {
      // The form still submits; the server shows the same problems.
    }
  }
  function soon() {
    clearTimeout(timer);
    timer = setTimeout(check, 250);
  }
  integration.addEventListener("change", () => { filter(); soon(); });
  type.addEventListener("change", () => { filter(); soon(); });
  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
  filter();
}

document.addEventListener("DOMContentLoaded", () => {
  copyButtons();
  tick();
  setInterval(tick, 1000);
  const main = document.querySelector("main[data-watch]");
  if (main) live(main);
  const form = document.getElementById("request-form");
  if (form) requestForm(form);
});
