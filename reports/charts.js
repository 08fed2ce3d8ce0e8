// Draws a page's charts in the browser with uPlot, from the JSON data block #tunelab-charts that
// reports/charts.py prepares: every point is computed there; this only maps a chart to uPlot's options.
// Each element with data-chart="NAME" gets the chart NAME; the drawn plots stay in window.tunelabCharts.
(function () {
  "use strict";
  var source = document.getElementById("tunelab-charts");
  if (!source || typeof uPlot === "undefined") {
    return;
  }
  var charts = JSON.parse(source.textContent);
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
  var WIDTH = 560;

  // Four significant digits, as the tables show them; "--" where a series has no point.
  function number(value) {
    return value == null ? "--" : String(Number(value.toPrecision(4)));
  }

  function ticks(self, splits) {
    return splits.map(number);
  }

  function textWidth(texts, px) {
    var longest = texts.reduce(function (most, text) { return Math.max(most, String(text).length); }, 0);
    return Math.ceil(longest * px * 0.6);
  }

  // Room for the longest tick label of an axis, so that small learning rates are not cut off.
  function axisSize(self, values, axis, cycle) {
    var axisOptions = self.axes[axis];
    if (cycle > 1) {
      return axisOptions._size;
    }
    var size = (axisOptions.ticks.size || 0) + (axisOptions.gap || 0) + 20;
    return size + textWidth(values || [], 12);
  }

  function lineChart(spec, box) {
    var series = [{ label: spec.xlabel, value: function (self, value) { return number(value); } }];
    spec.series.forEach(function (line, index) {
      series.push({
        label: line.label,
        stroke: COLORS[index % COLORS.length],
        width: 1.5,
        spanGaps: true,  // validation loss has points at some steps only
        points: { show: line.points },  // decided in charts.py: every point of a sparse series
        value: function (self, value) { return number(value); },
      });
    });
    var options = {
      title: spec.title,
      width: Math.min(box.clientWidth || WIDTH, WIDTH),
      height: 300,
      scales: { x: { time: false }, y: spec.logy ? { distr: 3 } : {} },
      axes: [{ label: spec.xlabel }, { label: spec.ylabel, size: axisSize, values: ticks }],
      series: series,
      legend: { live: true },
    };
    var data = [spec.x].concat(spec.series.map(function (line) { return line.y; }));
    return new uPlot(options, data, box);
  }

  // Points without a line, one per run; x is a number, or the place of a text value among spec.categories.
  function scatterChart(spec, box) {
    var color = COLORS[0];
    // The legend names the run under the cursor with its x value.
    var xvalue = function (self, value, seriesIndex, index) {
      if (value == null) { return "--"; }
      var shown = spec.categories.length ? (spec.categories[value] || "") : number(value);
      return index == null ? shown : shown + " (" + spec.labels[index] + ")";
    };
    var series = [
      { label: spec.xlabel, value: xvalue },
      { label: spec.ylabel, stroke: color, fill: color, paths: function () { return null; },
        points: { show: true, size: 8, stroke: color, fill: color },
        value: function (self, value) { return number(value); } },
    ];
    var xaxis = { label: spec.xlabel };
    if (spec.categories.length) {
      xaxis.splits = function () { return spec.categories.map(function (_, i) { return i; }); };
      xaxis.values = function (self, splits) { return splits.map(function (i) { return spec.categories[i] || ""; }); };
    } else {
      xaxis.values = ticks;
    }
    var range = spec.categories.length ? [-0.5, spec.categories.length - 0.5] : null;
    var options = {
      title: spec.title,
      width: Math.min(box.clientWidth || WIDTH, WIDTH),
      height: 260,
      scales: { x: range ? { time: false, range: range } : (spec.logx ? { time: false, distr: 3 } : { time: false }) },
      axes: [xaxis, { label: spec.ylabel, size: axisSize, values: ticks }],
      series: series,
      legend: { live: true },
    };
    var data = [spec.x, spec.y];
    return new uPlot(options, data, box);
  }

  // Horizontal bars, one per label, first label on top; a reference series shows as a marker.
  function barChart(spec, box) {
    var labels = spec.labels;
    var index = labels.map(function (_, position) { return position; });
    var series = [{ label: "subject", value: function (self, position) {
      return position == null ? "--" : labels[position];
    } }];
    spec.series.forEach(function (bars, position) {
      var color = COLORS[position % COLORS.length];
      series.push(bars.marker ? {
        label: bars.label, stroke: color, fill: color, paths: function () { return null; },
        points: { show: true, size: 8, stroke: color, fill: color },
        value: function (self, value) { return number(value); },
      } : {
        label: bars.label, stroke: color, fill: color + "cc",
        paths: uPlot.paths.bars({ size: [0.7, 24] }), points: { show: false },
        value: function (self, value) { return number(value); },
      });
    });
    var labelWidth = textWidth(labels, 11) + 16;
    var options = {
      title: spec.title,
      width: Math.min(Math.max(box.clientWidth, 400) || WIDTH + 120, WIDTH + 120),
      height: labels.length * 16 + 110,
      scales: {
        x: { time: false, ori: 1, dir: -1, range: [-0.5, labels.length - 0.5] },
        y: { ori: 0, dir: 1, range: [0, 1] },
      },
      axes: [
        {
          scale: "x", side: 3, size: labelWidth, gap: 4, font: "11px system-ui, sans-serif",
          splits: function () { return index; },
          values: function (self, splits) { return splits.map(function (p) { return labels[p] || ""; }); },
          grid: { show: false }, ticks: { show: false },
        },
        { scale: "y", side: 2, label: spec.xlabel },
      ],
      series: series,
      legend: { live: true },
      cursor: { points: { show: false } },
    };
    var data = [index].concat(spec.series.map(function (bars) { return bars.values; }));
    return new uPlot(options, data, box);
  }

  // The legend stays under the plot, as wide as the chart: long series names (runs of a sweep) wrap there
  // instead of widening the chart beyond its plot or the page.
  function keepLegendUnder(plot) {
    plot.root.style.width = plot.width + "px";
    return plot;
  }

  window.tunelabCharts = {};
  Array.prototype.forEach.call(document.querySelectorAll("[data-chart]"), function (box) {
    var name = box.getAttribute("data-chart");
    var spec = charts[name];
    if (spec) {
      var draw = spec.kind === "bars" ? barChart : spec.kind === "scatter" ? scatterChart : lineChart;
      window.tunelabCharts[name] = keepLegendUnder(draw(spec, box));
    }
  });
})();
