"use strict";
// Shared by the wsloop pages: number formats and a small canvas line chart. No libraries.

const Fmt = {
  // 1234567 -> "1.23M", like the CLI's figures.
  si(v) {
    if (!isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(2) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
    return v.toFixed(a >= 10 ? 1 : 2);
  },
  // Decimal byte units (MB = 10^6 bytes), as --stats prints them.
  bytes(v) {
    if (!isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(2) + " GB";
    if (a >= 1e6) return (v / 1e6).toFixed(2) + " MB";
    if (a >= 1e3) return (v / 1e3).toFixed(1) + " kB";
    return v.toFixed(0) + " B";
  },
  micros(us) {
    if (!isFinite(us)) return "–";
    if (us >= 1e6) return (us / 1e6).toFixed(2) + " s";
    if (us >= 1e3) return (us / 1e3).toFixed(2) + " ms";
    return Math.round(us) + " µs";
  },
  // Axis labels: as few digits as the value needs (10 µs, 2.5 ms, 1 s).
  microsShort(us) {
    if (!isFinite(us)) return "–";
    const trim = (v) => String(Number(v.toPrecision(3)));
    if (us >= 1e6) return trim(us / 1e6) + " s";
    if (us >= 1e3) return trim(us / 1e3) + " ms";
    return trim(us) + " µs";
  },
  seconds(s) {
    if (!isFinite(s)) return "–";
    if (s >= 3600) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    if (s >= 60) return Math.floor(s / 60) + "m " + Math.floor(s % 60) + "s";
    return (s < 10 && !Number.isInteger(s) ? s.toFixed(1) : Math.round(s)) + "s";
  },
  // The label of a "nines" axis position: 0 -> "0%", 1 -> "90%", 2 -> "99%", 3 -> "99.9%", ...
  nines(k) {
    if (k <= 0) return "0%";
    return (100 * (1 - Math.pow(10, -k))).toFixed(Math.max(0, Math.round(k) - 2)) + "%";
  },
};

// Evenly spaced round ticks covering [min, max].
function niceTicks(min, max, count) {
  if (!(max > min)) max = min + 1;
  const raw = (max - min) / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const n = raw / mag;
  const step = (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * mag;
  const lo = Math.floor(min / step + 1e-9) * step;
  const hi = Math.ceil(max / step - 1e-9) * step;
  const ticks = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { lo, hi: hi > lo ? hi : lo + step, ticks };
}

// Ticks 1, 2, 5 x 10^k covering [min, max] (both > 0), in log10 units.
function logTicks(min, max) {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const ticks = [];
  const steps = hi - lo > 2 ? [1] : [1, 2, 5];
  for (let e = lo; e <= hi; e++) {
    for (const m of steps) {
      const v = m * Math.pow(10, e);
      if (v >= Math.pow(10, lo) && v <= Math.pow(10, hi)) ticks.push(v);
    }
  }
  return { lo, hi: hi > lo ? hi : lo + 1, ticks };
}

// A line chart on a <canvas>. Options:
//   yFormat(v), xFormat(x): tick labels;   x: "linear" (default) or "nines" (x is a percentile 0..100,
//   drawn on a log scale of 1/(1-p));      yLog: log10 y axis;   xMin/xMax: fixed x range;
//   bands: [{from, to, label}] shaded x ranges;   empty: text shown without data.
// Series: [{name, color, points: [[x, y], ...], fill: bool}].
class LineChart {
  constructor(canvas, options) {
    this.canvas = canvas;
    this.o = Object.assign({ yFormat: Fmt.si, xFormat: (x) => String(x), x: "linear", yLog: false, bands: [],
      empty: "waiting for data…" }, options || {});
    this.series = [];
    window.addEventListener("resize", () => this.draw());
  }

  set(series) {
    this.series = series;
    this.draw();
  }

  tx(x) {
    return this.o.x === "nines" ? -Math.log10(Math.max(1 - x / 100, 1e-7)) : x;
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    g.font = "11px system-ui, 'DejaVu Sans', sans-serif";
    const o = this.o;
    const style = getComputedStyle(document.documentElement);
    const muted = style.getPropertyValue("--muted").trim() || "#667";
    const line = style.getPropertyValue("--line").trim() || "#ddd";

    let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity, any = false;
    for (const s of this.series) {
      for (const [x, y] of s.points) {
        if (!isFinite(x) || !isFinite(y) || (o.yLog && y <= 0)) continue;
        const X = this.tx(x);
        xmin = Math.min(xmin, X); xmax = Math.max(xmax, X);
        ymin = Math.min(ymin, y); ymax = Math.max(ymax, y);
        any = true;
      }
    }
    if (o.xMin !== undefined) xmin = this.tx(o.xMin);
    if (o.xMax !== undefined) xmax = this.tx(o.xMax);
    if (!any) {
      g.fillStyle = muted;
      g.textAlign = "center";
      g.fillText(o.empty, w / 2, h / 2);
      return;
    }
    // y axis
    let ty, yt;
    if (o.yLog) {
      yt = logTicks(ymin, ymax);
      ty = (v) => Math.log10(v);
    } else {
      yt = niceTicks(Math.min(0, ymin), ymax > 0 ? ymax : 1, 4);
      ty = (v) => v;
    }
    // The left margin fits the widest y label.
    const labelWidth = Math.max(...yt.ticks.map((v) => g.measureText(o.yFormat(v)).width));
    const pad = { l: Math.ceil(labelWidth) + 12, r: 16, t: 22, b: 22 };
    const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
    const Y = (v) => pad.t + ph - ((ty(v) - yt.lo) / (yt.hi - yt.lo)) * ph;
    // x axis
    let xt;
    if (o.x === "nines") {
      const hi = Math.max(1, Math.ceil(xmax - 1e-9));
      xt = { lo: 0, hi, ticks: Array.from({ length: hi + 1 }, (_, k) => k) };
    } else {
      xt = niceTicks(xmin, xmax, Math.max(2, Math.floor(pw / 90)));
      if (o.xMin !== undefined) xt.lo = xmin;
      if (o.xMax !== undefined) xt.hi = xmax;
      xt.ticks = xt.ticks.filter((t) => t >= xt.lo - 1e-9 && t <= xt.hi + 1e-9);
    }
    const X = (x) => pad.l + ((x - xt.lo) / (xt.hi - xt.lo || 1)) * pw;

    // bands (e.g. the warmup)
    for (const b of o.bands) {
      const x0 = Math.max(pad.l, X(this.tx(b.from))), x1 = Math.min(pad.l + pw, X(this.tx(b.to)));
      if (x1 > x0) {
        g.fillStyle = "rgba(120, 130, 150, 0.12)";
        g.fillRect(x0, pad.t, x1 - x0, ph);
        if (b.label) {
          g.fillStyle = muted;
          g.textAlign = "left";
          g.fillText(b.label, x0 + 4, pad.t + 12);
        }
      }
    }
    // grid and labels
    g.strokeStyle = line;
    g.lineWidth = 1;
    g.fillStyle = muted;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (const v of yt.ticks) {
      const y = Math.round(Y(v)) + 0.5;
      g.beginPath(); g.moveTo(pad.l, y); g.lineTo(pad.l + pw, y); g.stroke();
      g.fillText(o.yFormat(v), pad.l - 6, y);
    }
    g.textAlign = "center";
    g.textBaseline = "top";
    for (const t of xt.ticks) {
      const x = Math.round(X(t)) + 0.5;
      g.beginPath(); g.moveTo(x, pad.t + ph); g.lineTo(x, pad.t + ph + 4); g.stroke();
      const label = o.x === "nines" ? Fmt.nines(t) : o.xFormat(t);
      // Keep the outermost labels inside the canvas.
      const half = g.measureText(label).width / 2;
      g.fillText(label, Math.min(Math.max(x, half + 1), w - half - 1), pad.t + ph + 6);
    }
    // series
    g.save();
    g.beginPath(); g.rect(pad.l, pad.t - 2, pw, ph + 4); g.clip();
    for (const s of this.series) {
      const pts = s.points.filter(([x, y]) => isFinite(x) && isFinite(y) && !(o.yLog && y <= 0));
      if (!pts.length) continue;
      g.strokeStyle = s.color;
      g.lineWidth = 1.8;
      g.lineJoin = "round";
      g.setLineDash(s.dash ? [6, 4] : []);
      g.beginPath();
      pts.forEach(([x, y], i) => (i ? g.lineTo(X(this.tx(x)), Y(y)) : g.moveTo(X(this.tx(x)), Y(y))));
      g.stroke();
      g.setLineDash([]);
      if (s.fill && !o.yLog) {
        g.lineTo(X(this.tx(pts[pts.length - 1][0])), Y(Math.max(0, yt.lo)));
        g.lineTo(X(this.tx(pts[0][0])), Y(Math.max(0, yt.lo)));
        g.closePath();
        g.globalAlpha = 0.12;
        g.fillStyle = s.color;
        g.fill();
        g.globalAlpha = 1;
      }
      if (pts.length === 1) {
        g.fillStyle = s.color;
        g.beginPath(); g.arc(X(this.tx(pts[0][0])), Y(pts[0][1]), 2.5, 0, 7); g.fill();
      }
    }
    g.restore();
    // legend: name and latest value of each series
    g.textBaseline = "middle";
    g.textAlign = "left";
    let lx = pad.l;
    for (const s of this.series) {
      const last = s.points.length ? s.points[s.points.length - 1][1] : NaN;
      const text = s.name + (s.noValue ? "" : " " + o.yFormat(last));
      g.fillStyle = s.color;
      if (s.dash) {
        g.fillRect(lx, 7, 4, 3);
        g.fillRect(lx + 6, 7, 4, 3);
      } else {
        g.fillRect(lx, 7, 10, 3);
      }
      g.fillStyle = muted;
      g.fillText(text, lx + 14, 9);
      lx += 14 + g.measureText(text).width + 16;
    }
  }
}

// Horizontal bars in a container: rows of [name, count, bad?].
function renderBars(container, rows) {
  const max = Math.max(1, ...rows.map((r) => r[1]));
  const doc = container.ownerDocument;
  container.textContent = "";
  for (const [name, count, bad] of rows) {
    const row = doc.createElement("div");
    row.className = "row";
    const label = doc.createElement("div");
    label.className = "name";
    label.textContent = name;
    const track = doc.createElement("div");
    track.className = "track";
    const bar = doc.createElement("div");
    bar.className = "bar" + (bad ? " bad" : "");
    bar.style.width = ((100 * count) / max).toFixed(1) + "%";
    track.appendChild(bar);
    const n = doc.createElement("div");
    n.className = "count";
    n.textContent = Fmt.si(count);
    n.dataset.value = String(count);
    row.append(label, track, n);
    container.appendChild(row);
  }
}
