/* Charts over the vendored uPlot: one small function per chart shape the pages draw.
   Each call replaces whatever chart its container held (charts are cheap to rebuild and
   the documents replace state wholesale, so there is nothing to patch incrementally). */
"use strict";

const Charts = (() => {
  const COLOURS = ["#2f5fb3", "#c62828", "#1a7f37", "#b26b00", "#7b3fb3", "#00838f",
                   "#5d4037", "#ad1457"];
  const live = new Map();  // container id -> uPlot instance

  function place(id, title, opts, data) {
    const el = document.getElementById(id);
    if (!el) return;
    const old = live.get(id);
    if (old) old.destroy();
    el.innerHTML = `<div class="title">${title}</div>`;
    const width = Math.max(300, (el.clientWidth || 600) - 12);
    live.set(id, new uPlot(Object.assign({width, height: 200}, opts), data, el));
  }

  function empty(id, title, why) {
    const el = document.getElementById(id);
    if (!el) return;
    const old = live.get(id);
    if (old) { old.destroy(); live.delete(id); }
    el.innerHTML = `<div class="title">${title}</div><div class="empty">${why}</div>`;
  }

  /** Lines over time: series = [{label, points: [[t, v], ...]}]. */
  function lines(id, title, series, {points = false} = {}) {
    const usable = series.filter(s => s.points.some(p => typeof p[1] === "number"));
    if (!usable.length) return empty(id, title, "no data yet");
    const tables = usable.map(s => [s.points.map(p => p[0]),
                                    s.points.map(p => (typeof p[1] === "number" ? p[1] : null))]);
    const data = uPlot.join(tables);
    place(id, title, {
      series: [{}, ...usable.map((s, i) => ({
        label: s.label, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: true,
        paths: points ? () => null : undefined,
        points: points ? {show: true, size: 7, fill: COLOURS[i % COLOURS.length]} : {}}))],
      scales: {x: {time: true, range: (u, lo, hi) => (hi - lo < 1 ? [lo - 30, hi + 30]
                                                                  : [lo, hi])}},
    }, data);
  }

  /** A histogram from Prometheus buckets: le (upper bounds, s) with cumulative counts. */
  function histogram(id, title, le, cumulative) {
    if (!le.length || !cumulative.length || !cumulative[cumulative.length - 1]) {
      return empty(id, title, "no requests observed yet");
    }
    const counts = cumulative.map((c, i) => c - (i ? cumulative[i - 1] : 0));
    const labels = le.map(b => (b === null || b === Infinity || b === "+Inf" ? "+Inf"
                                : `≤${+(b * 1000).toPrecision(3)}ms`));
    const xs = counts.map((_, i) => i);
    place(id, title, {
      scales: {x: {time: false, range: [-0.5, xs.length - 0.5]}},
      axes: [{values: (u, ticks) => ticks.map(t => labels[t] ?? ""), space: 40},
             {}],
      series: [{label: "bucket", value: (u, v) => (v == null ? "" : labels[v])},
               {label: "requests", fill: "rgba(47,95,179,.35)", stroke: COLOURS[0],
                paths: uPlot.paths.bars({size: [0.7, 60]}), points: {show: false}}],
    }, [xs, counts]);
  }

  return {lines, histogram, empty};
})();
