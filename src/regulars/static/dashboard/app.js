// regulars dashboard: draws every [data-chart] element with ECharts, on load and after each
// htmx swap. The server writes the whole ECharts option as JSON in the attribute.
(function () {
  "use strict";
  function draw(root) {
    if (!window.echarts) return;
    root.querySelectorAll("[data-chart]").forEach(function (element) {
      if (element.dataset.drawn) return;
      element.dataset.drawn = "1";
      var option = JSON.parse(element.dataset.chart);
      var chart = window.echarts.init(element, null, { renderer: "svg" });
      chart.setOption(option);
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function (event) { draw(event.target); });
})();
