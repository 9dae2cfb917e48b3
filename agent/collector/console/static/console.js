// Draws the asset page's charts from the JSON the server put in #chart-data,
// with the plotly.js served by the console itself. Each chart's data stays on
// its element (el.data), which the browser tests read back.
(function () {
  var data = JSON.parse(document.getElementById("chart-data").textContent);
  var pick = document.getElementById("metric");
  function draw(id, x, s, kind) {
    var el = document.getElementById(id);
    if (!s) { el.textContent = "No usage recorded yet."; return; }
    Plotly.react(el, [{x: x, y: s.y, type: kind, name: s.label}],
      {margin: {t: 10, r: 10, b: 40, l: 60}, height: 300,
       yaxis: {title: {text: s.label + " (" + s.unit + ")"}}},
      {displaylogo: false, responsive: true});
  }
  function all() {
    var k = pick.value || data["default"];
    draw("daily", data.daily.days, data.daily.series[k], "bar");
    draw("intervals", data.intervals.t, data.intervals.series[k], "scatter");
    document.body.setAttribute("data-charts", "drawn");
  }
  pick.addEventListener("change", all);
  all();
})();
