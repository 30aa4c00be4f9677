/* What the project's pages share: the palette (read from page.css), quality states and
   indices, number and time formatting, errors written into the page, small DOM and canvas
   helpers. Everything is in one object, `Page`, so a page's own script says where a name
   comes from.

   One style for every page script:
   - "use strict"; `const`, or `let` for what changes; never `var`.
   - Plain functions and plain objects: no classes, no `this`, no prototypes. Arrow
     functions for short callbacks only.
   - No framework, no library, no request to any address but the page's own service: a page
     is one self-contained document.
   - Times are UTC everywhere a person reads one ("12:34:56 UTC"); numbers are drawn from
     the data as given, formatted by `Page.fmt`.
   - A script error is written into the page (`data-errors` on <body>), never only to the
     console. */
"use strict";

const Page = (() => {
  /* ---- Errors ---------------------------------------------------------------------- */

  const errors = [];

  /* Writes `message` into the page: body[data-errors], which page.css shows as a banner
     and the tests read. */
  function fail(message) {
    errors.push(String(message));
    document.body.setAttribute("data-errors", errors.join(" | "));
  }

  function failures() {
    return errors.length;
  }

  /* Every uncaught error and rejected promise goes into the page. */
  function catchErrors() {
    if (!document.body.hasAttribute("data-errors")) document.body.setAttribute("data-errors", "");
    window.addEventListener("error", (e) => fail(e.message || "script error"));
    window.addEventListener("unhandledrejection", (e) => fail(e.reason && e.reason.message ? e.reason.message : e.reason));
  }

  /* ---- Palette ----------------------------------------------------------------------- */

  const STATES = ["good", "flatline", "railed", "artifact", "line noise"];
  const INDICES = [
    ["engagement", "engagement β/(α+θ)"],
    ["theta_beta", "θ/β"],
    ["alpha_theta", "α/θ"],
  ];

  let palette = null;

  /* The colours of page.css, read once (after the style sheet is in). */
  function colors() {
    if (palette) return palette;
    const style = getComputedStyle(document.documentElement);
    const read = (name) => {
      const v = style.getPropertyValue(name).trim();
      if (!v) throw new Error("page.css defines no " + name);
      return v;
    };
    const bands = [];
    for (let k = 0; k < 10; k++) bands.push(read("--band-" + k));
    palette = {
      fg: read("--fg"), muted: read("--muted"), line: read("--line"), grid: read("--grid"),
      axis: read("--axis"), bg: read("--bg"), panel: read("--panel"),
      bands: bands,
      states: STATES.map((s) => read("--state-" + s.replace(" ", "-"))),
      indices: INDICES.map((d) => read("--index-" + d[0].replace("_", "-"))),
      fired: read("--fired"), cleared: read("--cleared"), settling: read("--settling"),
    };
    return palette;
  }

  /* The colour of the `k`th band of the config. */
  function bandColor(k) {
    const b = colors().bands;
    return b[k % b.length];
  }

  /* The state (index into STATES) of a channel's quality: the first flag set, else "line
     noise" when the window is not good for that reason alone. */
  function qualityState(q) {
    if (q.good) return 0;
    if (q.flatline) return 1;
    if (q.railed) return 2;
    if (q.artifact) return 3;
    return 4;
  }

  /* ---- Numbers and times ------------------------------------------------------------- */

  /* A number for a person: three significant digits, exponent form when very large or
     small; "–" for what is not a number. */
  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 1e5 || a < 1e-3) return v.toExponential(1);
    return String(Number(v.toPrecision(3)));
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  /* "12:34:56" of Unix time `ms`, in UTC. */
  function utcClock(ms) {
    const d = new Date(ms);
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }

  /* "12:34:56 UTC". */
  function utcTime(ms) {
    return utcClock(ms) + " UTC";
  }

  /* "2024-11-22 12:34:56 UTC". */
  function utcDateTime(ms) {
    return new Date(ms).toISOString().slice(0, 10) + " " + utcTime(ms);
  }

  /* A duration in seconds for a person: "4.2 s", "3 min 05 s", "5 min", "2 h 03 min". */
  function duration(s) {
    if (!isFinite(s)) return "–";
    if (s < 10) return s.toFixed(1) + " s";
    if (s < 60) return Math.round(s) + " s";
    const m = Math.floor(s / 60), rest = Math.floor(s % 60);
    if (m < 60) return m + " min" + (rest ? " " + pad(rest) + " s" : "");
    return Math.floor(m / 60) + " h " + pad(m % 60) + " min";
  }

  /* ---- DOM --------------------------------------------------------------------------- */

  /* An element with attributes and children (strings become text). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  }

  /* A legend of [label, colour] pairs into `box` (page.css draws the swatches). */
  function legend(box, items) {
    box.replaceChildren(...items.map(([label, color]) => {
      const s = el("span", {}, label);
      s.style.setProperty("--c", color);
      return s;
    }));
  }

  /* ---- Canvas ------------------------------------------------------------------------ */

  const FONT = "11px system-ui, sans-serif";

  /* Sizes `c` to w × h CSS pixels at the screen's resolution; its 2-D context, cleared,
     in CSS pixels, with the pages' font when `text` is true. */
  function canvas(c, w, h, text) {
    const r = Math.max(1, Math.min(2, window.devicePixelRatio || 1));
    const cw = Math.round(w * r), ch = Math.round(h * r);
    if (c.width !== cw || c.height !== ch) {
      c.width = cw;
      c.height = ch;
      c.style.width = w + "px";
      c.style.height = h + "px";
    }
    const g = c.getContext("2d");
    g.setTransform(r, 0, 0, r, 0, 0);
    g.clearRect(0, 0, w, h);
    if (text) g.font = FONT;
    return g;
  }

  /* A plot area [left, right] × [top, bottom] of a canvas, with linear scales from
     [x0, x1] and [y0, y1] to it. */
  function frame(left, top, right, bottom, x0, x1, y0, y1) {
    const xs = (right - left) / (x1 > x0 ? x1 - x0 : 1);
    const ys = (bottom - top) / (y1 > y0 ? y1 - y0 : 1);
    return {
      left, top, right, bottom, x0, x1, y0, y1,
      x: (v) => left + (v - x0) * xs,
      y: (v) => bottom - (Math.max(y0, Math.min(y1, v)) - y0) * ys,
    };
  }

  /* Steps for a time axis, seconds. */
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];

  /* Ticks of a UTC time axis over [t0, t1] ms, about one every `px` pixels of `width`:
     [ms, "HH:MM:SS"] at round UTC times. */
  function timeTicks(t0, t1, width, px) {
    const want = (t1 - t0) / 1000 / Math.max(1, width / px);
    const step = (TIME_STEPS.find((s) => s >= want) || 86400) * 1000;
    const out = [];
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push([t, utcClock(t)]);
    return out;
  }

  /* Draws the labels of a UTC time axis under frame `f`, "UTC" at its end, and its grid
     lines unless `grid` is false. */
  function timeAxis(g, f, ticks, grid) {
    const p = colors();
    g.lineWidth = 1;
    g.textBaseline = "top";
    g.fillStyle = p.muted;
    g.textAlign = "right";
    g.fillText("UTC", f.right, f.bottom + 3);
    const room = f.right - g.measureText("UTC").width - 6;
    let free = -Infinity;
    g.textAlign = "left";
    for (const [t, label] of ticks) {
      const x = Math.round(f.x(t)) + 0.5;
      if (grid !== false) {
        g.strokeStyle = p.grid;
        g.beginPath(); g.moveTo(x, f.top); g.lineTo(x, f.bottom); g.stroke();
      }
      /* Centred under its tick, inside the frame, never over the label before it. */
      const w = g.measureText(label).width, at = Math.max(f.left, x - w / 2);
      if (at + w > room || at < free) continue;
      g.fillText(label, at, f.bottom + 3);
      free = at + w + 8;
    }
  }

  /* Round values of a log10 axis over [lo, hi] (log10 units): [log10 v, label], labels as
     short as they can be ("1e-9", not "1.0e-9"). At most `most` of them when it is given:
     then every decade, or every second, third… */
  function logTicks(lo, hi, most) {
    const at = (mult, every) => {
      const out = [];
      for (let d = Math.floor(lo); d <= Math.ceil(hi); d++) {
        if (d % every !== 0) continue;
        for (const m of mult) {
          const v = Math.log10(m) + d;
          if (v >= lo - 1e-9 && v <= hi + 1e-9) out.push([v, fmt(Math.pow(10, v)).replace(".0e", "e")]);
        }
      }
      return out;
    };
    let out = at(hi - lo > 3 ? [1] : hi - lo > 1.2 ? [1, 3] : [1, 2, 5], 1);
    for (let every = 1; most && out.length > most; every++) out = at([1], every);
    return out;
  }

  /* About `n` round values of a linear axis over [lo, hi]: [v, label]. */
  function linearTicks(lo, hi, n) {
    const raw = (hi - lo) / Math.max(1, n);
    if (!(raw > 0) || !isFinite(raw)) return [];
    const p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
    const step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
    const out = [];
    for (let k = Math.ceil(lo / step); k * step <= hi + step * 1e-9; k++) out.push([k * step, fmt(k * step)]);
    return out;
  }

  /* Draws the labels of a y axis left of frame `f` at `ticks` ([v, label], as from
     logTicks or linearTicks), and their grid lines unless `grid` is false. */
  function yAxis(g, f, ticks, grid) {
    const p = colors();
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    g.fillStyle = p.muted;
    g.strokeStyle = p.grid;
    for (const [v, label] of ticks) {
      const y = Math.round(f.y(v)) + 0.5;
      if (grid !== false) { g.beginPath(); g.moveTo(f.left, y); g.lineTo(f.right, y); g.stroke(); }
      g.fillText(label, f.left - 4, y);
    }
  }

  /* The border of frame `f`. */
  function outline(g, f) {
    g.lineWidth = 1;
    g.strokeStyle = colors().axis;
    g.strokeRect(f.left + 0.5, f.top + 0.5, f.right - f.left - 1, f.bottom - f.top);
  }

  /* Trigger events across frame `f`: `marks` are [ms, fired] pairs; a fired event is a
     solid line, a cleared one dashed. Those before the frame are left out. */
  function triggerMarks(g, f, marks) {
    const p = colors();
    g.lineWidth = 1;
    for (const [t, fired] of marks) {
      const x = Math.round(f.x(t)) + 0.5;
      if (x < f.left) continue;
      g.strokeStyle = fired ? p.fired : p.cleared;
      g.setLineDash(fired ? [] : [3, 3]);
      g.beginPath(); g.moveTo(x, f.top); g.lineTo(x, f.bottom); g.stroke();
    }
    g.setLineDash([]);
  }

  /* A polyline of (xs[i], value(i)) in frame `f`; a value that is null or not finite, or
     breaks[i], starts a new stretch. The number of points drawn. */
  function polyline(g, f, xs, value, color, breaks, width) {
    let drawing = false, drawn = 0;
    g.strokeStyle = color;
    g.lineWidth = width || 1.2;
    g.lineJoin = "round";
    g.beginPath();
    for (let i = 0; i < xs.length; i++) {
      const v = value(i);
      if (v === null || !isFinite(v)) { drawing = false; continue; }
      if (breaks && breaks[i]) drawing = false;
      const x = f.x(xs[i]), y = f.y(v);
      if (drawing) g.lineTo(x, y);
      else { g.moveTo(x, y); g.lineTo(x + 0.01, y); drawing = true; }
      drawn++;
    }
    g.stroke();
    return drawn;
  }

  return Object.freeze({
    fail, failures, catchErrors,
    STATES, INDICES, colors, bandColor, qualityState,
    fmt, utcClock, utcTime, utcDateTime, duration,
    el, legend,
    canvas, frame, timeTicks, timeAxis, logTicks, linearTicks, yAxis, outline, triggerMarks, polyline,
  });
})();
