// The meter curve of a session as an SVG line chart: energy delivered (kWh, left axis) and
// power (kW, right axis) over time. Drawn from the samples; no charting library.

import { h } from "./ui.js";

const W = 640, H = 260, PAD = { l: 52, r: 52, t: 24, b: 30 };

function ticks(max, n) {
  const step = max / n;
  return Array.from({ length: n + 1 }, (_, i) => i * step);
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= value) return m * p;
  return 10 * p;
}

export function meterChart(points) {
  const samples = points.filter((p) => p.sampledAt);
  const svg = h("svg", {
    class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "data-testid": "meter-chart",
    "data-points": samples.length,
    "aria-label": samples.length
      ? `Meter curve: ${samples.length} samples, ${Number(samples[samples.length - 1].energyKWh || 0).toFixed(3)} kWh delivered`
      : "Meter curve: no samples yet",
  });
  const x0 = PAD.l, x1 = W - PAD.r, y0 = H - PAD.b, y1 = PAD.t;
  if (!samples.length) {
    svg.append(h("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "No meter values yet"));
    return svg;
  }
  const times = samples.map((p) => new Date(p.sampledAt).getTime());
  const tMin = Math.min(...times), tMax = Math.max(...times, tMin + 1000);
  const eMax = niceMax(Math.max(...samples.map((p) => p.energyKWh || 0)));
  const pMax = niceMax(Math.max(...samples.map((p) => p.powerKW || 0)));
  const x = (t) => x0 + ((t - tMin) / (tMax - tMin)) * (x1 - x0);
  const yE = (e) => y0 - (e / eMax) * (y0 - y1);
  const yP = (p) => y0 - (p / pMax) * (y0 - y1);
  for (const v of ticks(eMax, 4)) {
    svg.append(h("line", { class: "grid", x1: x0, x2: x1, y1: yE(v), y2: yE(v) }));
    svg.append(h("text", { x: x0 - 6, y: yE(v) + 4, "text-anchor": "end" }, v.toFixed(eMax < 2 ? 2 : 1)));
  }
  for (const v of ticks(pMax, 4)) svg.append(h("text", { x: x1 + 6, y: yP(v) + 4 }, v.toFixed(1)));
  svg.append(h("text", { x: x0 - 6, y: 12, "text-anchor": "end" }, "kWh"), h("text", { x: x1 + 6, y: 12 }, "kW"));
  svg.append(h("line", { class: "axis", x1: x0, x2: x1, y1: y0, y2: y0 }));
  const label = (t) => new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  svg.append(h("text", { x: x0, y: H - 8 }, label(tMin)), h("text", { x: x1, y: H - 8, "text-anchor": "end" }, label(tMax)));
  const line = (cls, y, key) => h("polyline", {
    class: cls,
    points: samples.filter((p) => p[key] !== null && p[key] !== undefined).map((p) => `${x(new Date(p.sampledAt).getTime()).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" "),
  });
  svg.append(line("power", yP, "powerKW"), line("energy", yE, "energyKWh"));
  return svg;
}
