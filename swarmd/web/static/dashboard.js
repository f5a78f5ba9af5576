// The dashboard's live graph (polls stats.json) and its history chart. Loaded from a file: the
// Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  function width(el) { return Math.max(300, el.clientWidth - 16); }

  var live = document.getElementById("live");
  if (live && window.uPlot) {
    var every = Math.max(1, Math.min(60, parseFloat(live.dataset.interval) || 2)) * 1000;
    var data = [[], [], []];
    var last = null;
    var plot = new uPlot({
      width: width(live), height: 220,
      series: [{}, { label: "Processed/s", stroke: "#2f5fd0", width: 2 },
                   { label: "Failed/s", stroke: "#b42318", width: 2 }],
      axes: [{}, { size: 60 }],
      // At least the last minute (however few points there are yet), at most the last five.
      scales: { x: { time: true, range: function (u, min, max) {
        return [Math.max(Math.min(min, max - 60), max - 300), max];
      } } },
    }, data, live);
    live.dataset.ready = "1";
    var ids = ["processed", "failed", "enqueued", "retries", "scheduled", "dead"];
    function poll() {
      fetch(live.dataset.src, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) {
          if (!s) { return; }
          ids.forEach(function (id) {
            var el = document.getElementById("stat-" + id);
            if (el && typeof s[id] === "number") { el.textContent = s[id].toLocaleString("en-US"); }
          });
          if (last) {
            var dt = Math.max(0.001, s.time - last.time);
            data[0].push(s.time);
            data[1].push(Math.max(0, (s.processed - last.processed) / dt));
            data[2].push(Math.max(0, (s.failed - last.failed) / dt));
            if (data[0].length > 150) { data.forEach(function (a) { a.shift(); }); }
            plot.setData(data);
            live.dataset.points = String(data[0].length);
          }
          last = s;
        })
        .catch(function () { /* the next poll tries again */ });
    }
    poll();
    setInterval(poll, every);
    window.addEventListener("resize", function () { plot.setSize({ width: width(live), height: 220 }); });
  }

  var history = document.getElementById("history");
  var source = document.getElementById("history-data");
  if (history && source && window.uPlot) {
    var h = JSON.parse(source.textContent);
    var xs = h.days.map(function (d) { return Date.parse(d + "T00:00:00Z") / 1000; });
    new uPlot({
      width: width(history), height: 200,
      series: [{}, { label: "Processed", stroke: "#2f5fd0", fill: "rgba(47,95,208,0.08)" },
                   { label: "Failed", stroke: "#b42318" }],
      axes: [{}, { size: 70 }],
      scales: { x: { time: true } },
    }, [xs, h.processed, h.failed], history);
  }
})();
