// jobq dashboard: live refresh with plain polling; no build step, no inline scripts (CSP).
(function () {
  "use strict";

  // Run fn every ms milliseconds while the page is visible, one call at a time.
  // fn returns false to stop.
  function every(ms, fn) {
    let busy = false;
    const timer = setInterval(async function () {
      if (busy || document.hidden) return;
      busy = true;
      try {
        if ((await fn()) === false) clearInterval(timer);
      } catch (err) {
        // The dashboard restarted or the network blinked: try again at the next tick.
      } finally {
        busy = false;
      }
    }, ms);
  }

  // Overview: re-fetch the server-rendered live fragment.
  document.querySelectorAll("[data-refresh]").forEach(function (el) {
    every(Number(el.dataset.interval || 3000), async function () {
      const response = await fetch(el.dataset.refresh, { cache: "no-store" });
      if (response.ok) el.innerHTML = await response.text();
    });
  });

  // Job page: follow the log tail, the progress bar and the state.
  const log = document.getElementById("log");
  if (log && log.dataset.finished !== "true") {
    let offset = Number(log.dataset.offset || 0);
    const shownState = log.dataset.state;
    const follow = document.getElementById("follow");
    every(1500, async function () {
      const response = await fetch(log.dataset.logUrl + "?offset=" + offset, { cache: "no-store" });
      if (response.status === 404) return false; // purged: nothing more to follow
      if (!response.ok) return true;
      const data = await response.json();
      if (data.reset) log.textContent = data.text;
      else if (data.text) log.textContent += data.text;
      offset = data.offset;
      if (data.text && (!follow || follow.checked)) log.scrollTop = log.scrollHeight;
      updateProgress(data);
      if (data.state !== shownState) {
        // Show the new state, result or error (without the last action's message).
        window.location.replace(window.location.pathname);
        return false;
      }
      return true;
    });
  }

  function updateProgress(data) {
    const box = document.getElementById("progress-box");
    const bar = document.getElementById("progress");
    const text = document.getElementById("progress-text");
    if (!box || !data.progress) return;
    box.classList.remove("hidden");
    bar.value = data.percent === null ? 0 : data.percent;
    const p = data.progress;
    text.textContent = p.done + (p.total ? "/" + p.total : "") + " " + (p.message || "");
  }

  // Filters: a changed queue selector submits its form.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      select.form.submit();
    });
  });
})();
