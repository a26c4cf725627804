// vaultd console: the one script. It refreshes the Jobs table while a job runs, from
// /console/api/jobs (same origin, the session cookie, no other data). No framework, no build.
"use strict";

(function () {
  const box = document.getElementById("jobs");
  if (!box) return;
  const url = box.dataset.poll;

  function text(row, selector, value) {
    const cell = row.querySelector(selector);
    if (cell && cell.textContent !== value) cell.textContent = value;
  }

  function update(job) {
    const row = box.querySelector(`tr[data-job="${CSS.escape(job.id)}"]`);
    if (!row) return false; // a job this page does not show yet: reload the table
    const state = row.querySelector(".state");
    text(row, ".state", job.state);
    if (state) state.dataset.state = job.state;
    const bar = row.querySelector("progress");
    if (bar) {
      bar.max = Math.max(job.objects_total, 1);
      bar.value = job.objects_done;
    }
    text(row, ".count", `${job.objects_done} / ${job.objects_total}`);
    text(row, ".rate", `${job.rate}/s`);
    text(row, ".eta", job.eta_seconds === null ? "" : `${job.eta_seconds} s`);
    text(row, ".error", job.error);
    return true;
  }

  async function poll() {
    let running = false;
    try {
      const reply = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (reply.status === 403 || reply.redirected) {
        window.location.reload(); // signed out or session over: show the sign-in page
        return;
      }
      if (!reply.ok) throw new Error(`status ${reply.status}`);
      const body = await reply.json();
      for (const job of body.jobs) {
        if (!update(job)) {
          window.location.reload();
          return;
        }
        running = running || job.state === "running";
      }
    } catch (err) {
      running = true; // try again: the server may be restarting
    }
    if (running) setTimeout(poll, 1000);
  }

  if (box.querySelector('[data-state="running"]')) setTimeout(poll, 500);
})();
