// profkit's report page: sortable tables, JSON links, and the plots, drawn as SVG from the
// page's embedded JSON blocks. Text from a capture is only ever set with textContent (never as
// markup), so a kernel or range named like a script tag stays text. Nothing is fetched.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#3b6fb6", "#e07b39", "#4a9d5b", "#c0504d", "#8064a2", "#4bacc6", "#9c8451", "#d67fb0"];
  const PLOT_ROWS = 20;

  function el(tag, attrs, parent, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function tip(node, text) { el("title", {}, node, text); return node; }
  function get(row, key) {  // "run.summary.median_ms" reads nested keys
    let v = row;
    for (const part of key.split(".")) { if (v === null || v === undefined) return null; v = v[part]; }
    return typeof v === "number" && isFinite(v) ? v : null;
  }
  function fmt(v) {
    if (v === null) return "—";
    const a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toPrecision(2);
  }
  function tick(v, step) { return v.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9))); }
  function short(text, n) { text = String(text); return text.length > n ? text.slice(0, n - 1) + "…" : text; }
  function niceStep(max, n) {
    const raw = max / n, p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }
  function data(id) { return JSON.parse(document.getElementById("data-" + id).textContent); }
  function svgFor(fig, w, h) {
    const canvas = fig.querySelector(".canvas");
    canvas.textContent = "";
    return el("svg", {viewBox: `0 0 ${w} ${h}`, width: "100%", role: "img", class: "chart"}, canvas);
  }
  function legend(svg, names, x, y) {
    names.forEach((n, i) => {
      el("rect", {x: x, y: y + i * 16, width: 10, height: 10, fill: COLORS[i % COLORS.length]}, svg);
      el("text", {x: x + 14, y: y + i * 16 + 9, class: "legend"}, svg, n);
    });
  }

  // Horizontal bars: one row per label; several series side by side or stacked, or one bar per
  // value of `group` (long-form rows, as report compare's JSON).
  function bars(fig, spec, doc) {
    let rows = spec.path ? doc[spec.path] : doc;
    if (spec.filter === "top-level") rows = rows.filter(r => !String(r[spec.label]).includes("/"));
    if (spec.ids) { const keep = new Set(spec.ids); rows = rows.filter(r => keep.has(r.point_id)); }
    if (spec.status) rows = rows.filter(r => r.status === spec.status);
    // a label from several keys ("seq_len 256, head_dim 16"), else one key's value
    const lab = r => spec.labels ? spec.labels.map(k => `${k} ${r[k]}`).join(", ") || "all" : r[spec.label];
    const scale = spec.scale || 1;
    let labels, series, value;
    if (spec.group) {
      labels = [...new Set(rows.map(lab))];
      series = [...new Set(rows.map(r => r[spec.group]))].map(g => ({name: String(g), g: g}));
      const key = spec.series[0].key;
      value = (label, s) => {
        const r = rows.find(x => lab(x) === label && x[spec.group] === s.g);
        return r ? get(r, key) : null;
      };
    } else {
      if (spec.sort) rows = rows.slice().sort((a, b) => (get(b, spec.sort) || 0) - (get(a, spec.sort) || 0));
      labels = rows.map(lab);
      series = spec.series;
      value = (label, s, i) => {
        const r = rows[i];
        if (s.derive === "idle") {
          const span = get(r, "gpu_span_ns"), busy = get(r, "gpu_busy_ns");
          return span === null || busy === null ? null : span - busy;
        }
        return get(r, s.key);
      };
    }
    labels = labels.slice(0, spec.rows || PLOT_ROWS);  // a figure may ask for more rows (a sweep's every point)
    const n = labels.length, k = series.length, stacked = !!spec.stacked;
    const band = stacked || k === 1 ? 18 : 10 * k + 6;
    const labelW = 300, w = 900, top = 8 + (k > 1 ? k * 16 + 4 : 0), h = top + n * band + 30;
    const vals = labels.map((l, i) => series.map(s => { const v = value(l, s, i); return v === null ? 0 : v * scale; }));
    const max = Math.max(1e-12, ...vals.map(v => stacked ? v.reduce((a, b) => a + b, 0) : Math.max(...v)));
    const svg = svgFor(fig, w, h), plotW = w - labelW - 20, x = v => labelW + plotW * v / max;
    if (k > 1) legend(svg, series.map(s => s.name), labelW, 4);
    const step = niceStep(max, 5);
    for (let t = 0; t <= max * 1.0001; t += step) {
      el("line", {x1: x(t), x2: x(t), y1: top, y2: top + n * band, class: "grid"}, svg);
      el("text", {x: x(t), y: top + n * band + 14, class: "tick", "text-anchor": "middle"}, svg, tick(t, step));
    }
    el("text", {x: labelW + plotW / 2, y: h - 2, class: "axis", "text-anchor": "middle"}, svg, spec.unit || "");
    labels.forEach((label, i) => {
      const y0 = top + i * band, name = spec.names && spec.names[label] ? spec.names[label] : String(label);
      tip(el("text", {x: labelW - 6, y: y0 + band / 2 + 4, class: "label", "text-anchor": "end"}, svg,
             short(name, 44)), String(label));
      let acc = 0;
      series.forEach((s, j) => {
        const v = vals[i][j];
        const bx = stacked ? x(acc) : labelW, by = stacked || k === 1 ? y0 + 2 : y0 + 3 + j * 10;
        const bh = stacked || k === 1 ? band - 4 : 9;
        tip(el("rect", {x: bx, y: by, width: Math.max(0, x(v) - labelW), height: bh, class: "mark",
                        fill: COLORS[j % COLORS.length]}, svg), `${label}\n${s.name}: ${fmt(v)} ${spec.unit || ""}`);
        acc += v;
      });
    });
  }

  // One bar per measured step, the median as a line.
  function steps(fig, spec, doc) {
    const ys = doc[spec.path], n = ys.length, w = 900, h = 200, left = 60, bottom = 30, top = 10;
    const max = Math.max(...ys, spec.median) * 1.1, svg = svgFor(fig, w, h), plotW = w - left - 10;
    const y = v => top + (h - top - bottom) * (1 - v / max), bw = plotW / n;
    const step = niceStep(max, 4);
    for (let t = 0; t <= max; t += step) {
      el("line", {x1: left, x2: w - 10, y1: y(t), y2: y(t), class: "grid"}, svg);
      el("text", {x: left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end"}, svg, tick(t, step));
    }
    ys.forEach((v, i) => {
      tip(el("rect", {x: left + i * bw + bw * 0.1, y: y(v), width: bw * 0.8, height: y(0) - y(v), class: "mark",
                      fill: COLORS[0]}, svg), `step ${i}: ${v.toFixed(3)} ${spec.unit}`);
      if (n <= 40) el("text", {x: left + (i + 0.5) * bw, y: h - bottom + 14, class: "tick", "text-anchor": "middle"},
                      svg, String(i));
    });
    tip(el("line", {x1: left, x2: w - 10, y1: y(spec.median), y2: y(spec.median), class: "median"}, svg),
        `median ${spec.median.toFixed(3)} ${spec.unit}`);
    el("text", {x: left + plotW / 2, y: h - 2, class: "axis", "text-anchor": "middle"}, svg, "measured step");
  }

  // Log-log roofline: the roofs min(rate, intensity x bandwidth), one point per row.
  function roofline(fig, spec, doc) {
    const rows = doc[spec.path].filter(r => get(r, spec.x) > 0 && get(r, spec.y) > 0);
    const w = 900, h = 460, left = 70, right = 20, top = 10, bottom = 40;
    const ridge = Math.max(...spec.roofs.map(r => r.rate / r.bandwidth));
    const xs = rows.map(r => get(r, spec.x)), ys = rows.map(r => get(r, spec.y));
    const x0 = Math.pow(10, Math.floor(Math.log10(Math.min(ridge / 100, ...xs)))),
          x1 = Math.pow(10, Math.ceil(Math.log10(Math.max(ridge * 10, ...xs))));
    const ymax = Math.max(...spec.roofs.map(r => r.rate / 1e12)) * 2;
    const y0 = Math.pow(10, Math.floor(Math.log10(Math.min(ymax / 1e4, ...ys)))),
          y1 = Math.pow(10, Math.ceil(Math.log10(ymax)));
    const svg = svgFor(fig, w, h), pw = w - left - right, ph = h - top - bottom;
    const X = v => left + pw * Math.log10(v / x0) / Math.log10(x1 / x0);
    const Y = v => top + ph * (1 - Math.log10(v / y0) / Math.log10(y1 / y0));
    for (let e = Math.log10(x0); e <= Math.log10(x1) + 1e-9; e++) {
      const v = Math.pow(10, e);
      el("line", {x1: X(v), x2: X(v), y1: top, y2: top + ph, class: "grid"}, svg);
      el("text", {x: X(v), y: top + ph + 14, class: "tick", "text-anchor": "middle"}, svg, String(v));
    }
    for (let e = Math.log10(y0); e <= Math.log10(y1) + 1e-9; e++) {
      const v = Math.pow(10, e);
      el("line", {x1: left, x2: left + pw, y1: Y(v), y2: Y(v), class: "grid"}, svg);
      el("text", {x: left - 6, y: Y(v) + 4, class: "tick", "text-anchor": "end"}, svg, String(v));
    }
    el("text", {x: left + pw / 2, y: h - 4, class: "axis", "text-anchor": "middle"}, svg, "FLOP per byte");
    el("text", {x: 14, y: top + ph / 2, class: "axis", "text-anchor": "middle", transform: `rotate(-90 14 ${top + ph / 2})`},
       svg, "TFLOP/s");
    spec.roofs.forEach((roof, j) => {
      const at = v => `${X(v)},${Y(Math.max(y0, Math.min(roof.rate, v * roof.bandwidth) / 1e12))}`;
      const knee = roof.rate / roof.bandwidth;  // the ridge point: the corner is drawn exactly
      const pts = [at(Math.max(x0, y0 * 1e12 / roof.bandwidth)), at(knee), at(x1)];  // where it enters the plot
      tip(el("polyline", {points: pts.join(" "), class: "roof" + (j ? " second" : "")}, svg),
          `${roof.name}: ${(roof.rate / 1e12).toFixed(1)} TFLOP/s, ${(roof.bandwidth / 1e12).toFixed(2)} TB/s`);
    });
    legend(svg, spec.roofs.map(r => r.name), left + 10, top + 6);
    const big = Math.max(1, ...rows.map(r => get(r, spec.size) || 0));
    rows.forEach(r => {
      const size = get(r, spec.size) || 0;
      tip(el("circle", {cx: X(get(r, spec.x)), cy: Y(get(r, spec.y)), r: 2 + 12 * Math.sqrt(size / big),
                        class: "mark point"}, svg),
          `${r[spec.label]}\n${fmt(get(r, spec.y))} TFLOP/s at ${fmt(get(r, spec.x))} FLOP/B, ${fmt(size / 1e6)} ms`);
    });
  }

  // Waterfall: each row a bar starting where the previous ended (a negative value steps back),
  // then the total of them all as one bar from zero.
  function waterfall(fig, spec, doc) {
    const rows = doc[spec.path], scale = spec.scale || 1;
    const items = [];
    let acc = 0;
    rows.forEach(r => { const v = (get(r, spec.value) || 0) * scale; items.push({name: String(r[spec.label]), from: acc, to: acc + v}); acc += v; });
    items.push({name: spec.total, from: 0, to: acc, total: true});
    const labelW = 160, w = 900, band = 26, top = 8, h = top + items.length * band + 30, plotW = w - labelW - 80;
    const max = Math.max(1e-12, ...items.map(i => Math.max(i.from, i.to))), min = Math.min(0, ...items.map(i => Math.min(i.from, i.to)));
    const svg = svgFor(fig, w, h), x = v => labelW + plotW * (v - min) / (max - min);
    const step = niceStep(max - min, 5);
    for (let t = Math.ceil(min / step) * step; t <= max * 1.0001; t += step) {
      el("line", {x1: x(t), x2: x(t), y1: top, y2: top + items.length * band, class: "grid"}, svg);
      el("text", {x: x(t), y: top + items.length * band + 14, class: "tick", "text-anchor": "middle"}, svg, tick(t, step));
    }
    el("text", {x: labelW + plotW / 2, y: h - 2, class: "axis", "text-anchor": "middle"}, svg, spec.unit || "");
    items.forEach((it, i) => {
      const y0 = top + i * band, lo = Math.min(it.from, it.to), hi = Math.max(it.from, it.to), v = it.to - it.from;
      el("text", {x: labelW - 6, y: y0 + band / 2 + 4, class: "label", "text-anchor": "end"}, svg, short(it.name, 24));
      tip(el("rect", {x: x(lo), y: y0 + 3, width: Math.max(1, x(hi) - x(lo)), height: band - 6, class: "mark",
                      fill: it.total ? COLORS[0] : i === 0 ? COLORS[2] : v < 0 ? COLORS[3] : COLORS[1]}, svg),
          `${it.name}: ${fmt(v)} ${spec.unit || ""}`);
      el("text", {x: x(hi) + 4, y: y0 + band / 2 + 4, class: "tick"}, svg, fmt(v));
      if (i + 1 < items.length && !items[i + 1].total)
        el("line", {x1: x(it.to), x2: x(it.to), y1: y0 + band - 3, y2: y0 + band + 3, class: "median"}, svg);
    });
  }

  // Memory over time: the phases shaded, allocated as an area, reserved as a line, the peak marked.
  function memory(fig, spec, doc) {
    const line = doc.timeline, phases = doc.phases || [];
    const w = 1000, h = 410, left = 70, right = 10, top = 56, bottom = 40, pw = w - left - right, ph = h - top - bottom;
    const tEnd = Math.max(1, ...line.map(p => p.t_us)), peak = get(doc, spec.peak);
    const yMax = Math.max(1, doc.peak_reserved_bytes || 0, peak || 0, ...line.map(p => p.reserved_bytes)) * 1.05;
    const [unit, div] = yMax >= Math.pow(2, 30) ? ["GiB", Math.pow(2, 30)] : ["MiB", Math.pow(2, 20)];
    const X = t => left + pw * Math.min(Math.max(t, 0), tEnd) / tEnd, Y = b => top + ph * (1 - b / yMax);
    const svg = svgFor(fig, w, h);
    const names = [...new Set(phases.map(p => p.phase))];
    phases.forEach(p => {
      tip(el("rect", {x: X(p.start_us), y: top, width: Math.max(0.5, X(p.end_us) - X(p.start_us)), height: ph,
                      class: "phase", fill: COLORS[names.indexOf(p.phase) % COLORS.length], "fill-opacity": 0.14}, svg),
          `${p.step}/${p.phase}: ${(p.start_us / 1e3).toFixed(3)}-${(p.end_us / 1e3).toFixed(3)} ms`);
    });
    const ystep = niceStep(yMax / div, 5);
    for (let v = 0; v * div <= yMax; v += ystep) {
      el("line", {x1: left, x2: left + pw, y1: Y(v * div), y2: Y(v * div), class: "grid"}, svg);
      el("text", {x: left - 6, y: Y(v * div) + 4, class: "tick", "text-anchor": "end"}, svg, tick(v, ystep));
    }
    const tstep = niceStep(tEnd / 1e3, 6);
    for (let v = 0; v <= tEnd / 1e3 + 1e-9; v += tstep)
      el("text", {x: X(v * 1e3), y: top + ph + 14, class: "tick", "text-anchor": "middle"}, svg, tick(v, tstep));
    el("text", {x: left + pw / 2, y: h - 4, class: "axis", "text-anchor": "middle"}, svg, "ms into the recorded window");
    el("text", {x: 14, y: top + ph / 2, class: "axis", "text-anchor": "middle", transform: `rotate(-90 14 ${top + ph / 2})`},
       svg, unit);
    const pts = [];
    line.forEach((p, i) => { if (i) pts.push(`${X(p.t_us)},${Y(line[i - 1].allocated_bytes)}`); pts.push(`${X(p.t_us)},${Y(p.allocated_bytes)}`); });
    if (pts.length) {
      tip(el("polygon", {points: `${X(0)},${Y(0)} ${pts.join(" ")} ${X(line[line.length - 1].t_us)},${Y(0)}`,
                         class: "mark allocated", fill: COLORS[0], "fill-opacity": 0.8}, svg), "allocated");
      tip(el("polyline", {points: line.map(p => `${X(p.t_us)},${Y(p.reserved_bytes)}`).join(" "), class: "mark reserved",
                          fill: "none", stroke: "#777", "stroke-width": 1.5}, svg), "reserved");
    }
    const t = get(doc, spec.peak_time);
    if (t !== null && peak !== null) {
      el("line", {x1: X(t), x2: X(t), y1: top, y2: top + ph, class: "median"}, svg);
      tip(el("circle", {cx: X(t), cy: Y(peak), r: 5, class: "mark peak", fill: "#c0504d"}, svg),
          `peak ${(peak / div).toFixed(1)} ${unit} at ${(t / 1e3).toFixed(3)} ms in ${doc[spec.peak_path]}`);
    }
    legend(svg, names, left + 6, 4);
  }

  const PLOTS = {bars: bars, steps: steps, roofline: roofline, waterfall: waterfall, memory: memory};

  function sortable(tableEl) {
    const heads = tableEl.tHead.rows[0].cells;
    Array.from(heads).forEach((th, col) => {
      th.tabIndex = 0;
      th.title = "sort";
      const sort = () => {
        const numeric = th.classList.contains("num");
        const now = th.getAttribute("aria-sort");  // first click: numbers largest first, text A to Z
        const asc = now ? now === "descending" : !numeric;
        Array.from(heads).forEach(h => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        const body = tableEl.tBodies[0], rows = Array.from(body.rows);
        const key = r => r.cells[col].dataset.v;
        rows.sort((a, b) => {
          let c;
          if (numeric) {
            const x = parseFloat(key(a)), y = parseFloat(key(b));
            c = (isNaN(x) ? -Infinity : x) - (isNaN(y) ? -Infinity : y);
          } else c = key(a).localeCompare(key(b));
          return asc ? c : -c;
        });
        rows.forEach(r => body.appendChild(r));
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", e => { if (e.key === "Enter") sort(); });
    });
  }

  function jsonLink(a) {
    a.addEventListener("click", e => {
      e.preventDefault();
      const id = a.dataset.json, text = document.getElementById("data-" + id).textContent;
      const link = document.createElement("a");
      link.href = URL.createObjectURL(new Blob([JSON.stringify(JSON.parse(text), null, 1)], {type: "application/json"}));
      link.download = `${document.body.dataset.name}-${id}.json`;
      link.click();
    });
  }

  document.documentElement.classList.add("js");
  document.querySelectorAll("table.sortable").forEach(sortable);
  document.querySelectorAll("a.json").forEach(jsonLink);
  let drawn = 0;
  document.querySelectorAll("figure.plot").forEach(fig => {
    const spec = JSON.parse(fig.dataset.plot);
    try {
      PLOTS[spec.kind](fig, spec, data(spec.data));
      drawn++;
    } catch (err) {
      fig.dataset.error = String(err);
      console.error(`profkit: plot ${spec.kind} of ${spec.data}: ${err}`);
    }
  });
  document.documentElement.dataset.plots = String(drawn);
})();
