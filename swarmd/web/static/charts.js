// The job-metrics chart: runs per time bucket for the busiest classes (data from a JSON block).
(function () {
  "use strict";
  var el = document.getElementById("runs");
  var source = document.getElementById("runs-data");
  if (!el || !source || !window.uPlot) { return; }
  var d = JSON.parse(source.textContent);
  var colors = ["#2f5fd0", "#b42318", "#067647", "#b54708", "#7a5af8", "#0e9384", "#c11574", "#475467"];
  var series = [{}];
  var data = [d.times];
  d.series.forEach(function (s, i) {
    series.push({ label: s.name, stroke: colors[i % colors.length], width: 2 });
    data.push(s.runs);
  });
  new uPlot({
    width: Math.max(300, el.clientWidth - 16), height: 240,
    series: series, axes: [{}, { size: 60, label: "runs" }], scales: { x: { time: true } },
  }, data, el);
  el.dataset.ready = "1";
})();
