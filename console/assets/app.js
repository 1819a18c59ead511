// The console's behaviour: live refresh of the alert queue, select-all,
// and charts. Data arrives as escaped HTML from the server or as JSON in
// data attributes; nothing here builds markup from record values.
(function () {
  "use strict";

  function liveQueue() {
    var body = document.getElementById("alert-rows");
    if (!body) return;
    var url = body.getAttribute("data-rows");
    var total = document.getElementById("alert-total");
    var live = document.getElementById("live");
    function refresh() {
      // Keep what the analyst ticked across refreshes.
      var ticked = {};
      body.querySelectorAll("input[name=ids]:checked").forEach(function (c) { ticked[c.value] = true; });
      fetch(url, { credentials: "same-origin", headers: { "accept": "text/html" } })
        .then(function (r) {
          if (r.redirected || !r.ok) throw new Error(String(r.status));
          if (total && r.headers.get("x-total") !== null) total.textContent = r.headers.get("x-total");
          return r.text();
        })
        .then(function (html) {
          // Server-rendered rows: every value in them is already escaped.
          body.innerHTML = html;
          body.querySelectorAll("input[name=ids]").forEach(function (c) { if (ticked[c.value]) c.checked = true; });
          if (live) live.classList.remove("stale");
        })
        .catch(function () { if (live) live.classList.add("stale"); });
    }
    setInterval(refresh, 5000);
  }

  function selectAll() {
    var all = document.getElementById("select-all");
    if (!all) return;
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=ids]").forEach(function (c) { c.checked = all.checked; });
    });
  }

  // A time filter: a choice of the list clears typed ends; typing an end
  // makes the choice "custom" (typed ends win on the server too).
  function ranges() {
    document.querySelectorAll("select[data-range]").forEach(function (sel) {
      var ends = sel.form ? sel.form.querySelectorAll("input[data-range-end]") : [];
      sel.addEventListener("change", function () {
        if (sel.value !== "custom") ends.forEach(function (e) { e.value = ""; });
      });
      ends.forEach(function (e) {
        e.addEventListener("input", function () { sel.value = "custom"; });
      });
    });
  }

  var COLORS = ["#8b0000", "#c0392b", "#d68910", "#2874a6", "#5d6d7e", "#17a589", "#7d3c98", "#a04000", "#1f618d", "#b7950b", "#566573", "#239b56"];

  function charts() {
    if (typeof Chart === "undefined") return;
    document.querySelectorAll("canvas[data-chart]").forEach(function (el) {
      var spec;
      try { spec = JSON.parse(el.getAttribute("data-chart")); } catch (e) { return; }
      if (!spec || !spec.labels) return;
      var kind = spec.type;
      var type = kind === "stacked" || kind === "hbar" ? "bar" : kind;
      var datasets = spec.datasets.map(function (d, i) {
        var colour = kind === "doughnut" ? COLORS : COLORS[i % COLORS.length];
        return { label: d.label, data: d.data, backgroundColor: colour };
      });
      var options = { responsive: true, animation: false, plugins: { legend: { display: kind !== "hbar" } } };
      if (kind === "stacked") options.scales = { x: { stacked: true }, y: { stacked: true, beginAtZero: true } };
      if (kind === "hbar") options.indexAxis = "y";
      new Chart(el, { type: type, data: { labels: spec.labels, datasets: datasets }, options: options });
      el.setAttribute("data-drawn", "1");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    liveQueue();
    selectAll();
    ranges();
    charts();
  });
})();
