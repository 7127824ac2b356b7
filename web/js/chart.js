// Charts with uPlot (vendored under /vendor/uplot, MIT): loaded on first
// use so the sign-in page does not pay for it.

let loading = null;

function load() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const css = document.createElement('link');
      css.rel = 'stylesheet';
      css.href = '/vendor/uplot/uPlot.min.css';
      document.head.append(css);
      const s = document.createElement('script');
      s.src = '/vendor/uplot/uPlot.iife.min.js';
      s.onload = () => resolve(window.uPlot);
      s.onerror = () => reject(new Error('chart library failed to load'));
      document.head.append(s);
    });
  }
  return loading;
}

/// Draws (or redraws) a time series chart into `el`.
/// `series`: [{label, color, values}], `times`: seconds since the epoch;
/// `utc`: label the time axis in UTC instead of the browser's zone.
export async function lineChart(el, title, times, series, { utc = false } = {}) {
  const uPlot = await load();
  el.replaceChildren();
  const width = Math.max(260, el.clientWidth || 320);
  const opts = {
    title, width, height: 180,
    ...(utc ? { tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC') } : {}),
    scales: { x: { time: true } },
    axes: [{}, { size: 50 }],
    // Dashes as well as colours: colour is never the only signal.
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, dash: s.dash, points: { show: false } }))],
  };
  const plot = new uPlot(opts, [times, ...series.map((s) => s.values)], el);
  // Charts are pictures to a screen reader: the summary next to them carries the numbers.
  plot.root.setAttribute('aria-hidden', 'true');
  return plot;
}
