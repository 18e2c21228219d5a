// rewardlab review: synchronized video playback, honest media states, sortable tables, chart
// smoothing and hover values, refinement status polling.
// Served as a file (the Content-Security-Policy forbids inline scripts); no dependencies.
(function () {
  "use strict";

  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  // ------------------------------------------------------------------ videos

  var SHORT_CLIP_S = 4;  // clips shorter than this play at half speed by default

  function markBroken(video, why) {
    var fig = video.closest("figure.video");
    if (!fig || fig.getAttribute("data-state") === "broken") return;
    fig.setAttribute("data-state", "broken");
    fig.className = fig.className.replace(/state-\w+/, "state-broken");
    var p = fig.querySelector(".media-state");
    if (p) { p.textContent = "Broken video: " + why; p.hidden = false; }
    video.hidden = true;
  }

  function setupVideos() {
    var box = document.querySelector("[data-compare]");
    if (!box) return;
    var videos = $all("figure.video video", box);
    var speed = box.querySelector("[data-speed]");
    var loop = box.querySelector("[data-loop]");
    var sync = box.querySelector("[data-sync]");

    function rateOf(v) {
      var chosen = speed ? speed.value : "auto";
      if (chosen !== "auto") return parseFloat(chosen);
      return v.duration && isFinite(v.duration) && v.duration < SHORT_CLIP_S ? 0.5 : 1;
    }
    function apply() {
      videos.forEach(function (v) {
        v.playbackRate = rateOf(v);
        v.loop = loop ? loop.checked : true;
        var label = v.closest("figure").querySelector(".rate");
        if (label) {
          label.hidden = v.playbackRate === 1;
          label.textContent = v.playbackRate + "×" + (speed && speed.value === "auto" ? " (short clip: slow motion)" : "");
        }
      });
    }
    function others(v) { return videos.filter(function (o) { return o !== v && !o.hidden; }); }
    function play(v) { var p = v.play(); if (p && p.catch) p.catch(function () {}); }
    function synced() { return sync && sync.checked; }

    // Each handler only moves the videos that differ, so the events they cause find nothing to do.
    videos.forEach(function (v) {
      v.addEventListener("loadedmetadata", apply);
      v.addEventListener("error", function () {
        var codes = { 1: "loading was aborted", 2: "a network error", 3: "the file cannot be decoded", 4: "the format is not supported or the file is incomplete" };
        markBroken(v, "the browser cannot play it (" + (v.error ? codes[v.error.code] || "error " + v.error.code : "unknown error") + ")");
      });
      v.addEventListener("play", function () { if (synced()) others(v).forEach(function (o) { if (o.paused) play(o); }); });
      v.addEventListener("pause", function () { if (synced()) others(v).forEach(function (o) { if (!o.paused) o.pause(); }); });
      v.addEventListener("seeked", function () {
        if (!synced()) return;
        others(v).forEach(function (o) {
          var t = o.duration ? Math.min(v.currentTime, o.duration) : v.currentTime;
          if (Math.abs(o.currentTime - t) > 0.1) o.currentTime = t;
        });
      });
    });
    // A file that yields no data for a long time says so, but is not called broken: a slow
    // connection or a loaded machine is not a broken file (those are marked by their error event
    // or by the server), so the player stays and the note goes once the data arrives.
    setTimeout(function () {
      videos.forEach(function (v) {
        if (v.hidden || v.readyState !== 0) return;
        var fig = v.closest("figure.video");
        var p = fig && fig.querySelector(".media-state");
        if (!p) return;
        p.textContent = "No video data has arrived yet (still loading).";
        p.hidden = false;
        v.addEventListener("loadedmetadata", function () {
          if (fig.getAttribute("data-state") !== "broken") p.hidden = true;
        }, { once: true });
      });
    }, 20000);
    $all("[data-action]", box).forEach(function (button) {
      button.addEventListener("click", function () {
        var action = button.getAttribute("data-action");
        apply();
        videos.forEach(function (v) {
          if (v.hidden) return;
          if (action === "pause") { v.pause(); return; }
          if (action === "restart") v.currentTime = 0;
          play(v);
        });
      });
    });
    if (speed) speed.addEventListener("change", apply);
    if (loop) loop.addEventListener("change", apply);
    apply();
  }

  // ------------------------------------------------------------------ sortable tables

  function setupSorting() {
    $all("table[data-sortable]").forEach(function (table) {
      var heads = $all("thead th", table);
      heads.forEach(function (th, index) {
        var kind = th.getAttribute("data-sort");
        if (!kind) return;
        th.classList.add("sortable-head");
        th.setAttribute("tabindex", "0");
        th.setAttribute("role", "button");
        function sort() {
          var dir = th.getAttribute("aria-sort") === "descending" ? 1 : -1;  // numbers start high-first
          if (kind === "text" && !th.getAttribute("aria-sort")) dir = 1;
          heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
          th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
          var body = table.tBodies[0];
          var rows = Array.prototype.slice.call(body.rows);
          rows.sort(function (a, b) {
            var x = a.cells[index].getAttribute("data-value"), y = b.cells[index].getAttribute("data-value");
            var empty = (x === "" || x === null) - (y === "" || y === null);
            if (empty) return empty;  // missing values last either way
            if (kind === "num") return dir * (parseFloat(x) - parseFloat(y));
            return dir * String(x).localeCompare(String(y));
          });
          rows.forEach(function (r) { body.appendChild(r); });
        }
        th.addEventListener("click", sort);
        th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
      });
    });
  }

  // ------------------------------------------------------------------ charts

  var SVGNS = "http://www.w3.org/2000/svg";

  function chartInfo(svg) {
    var n = function (k) { return parseFloat(svg.getAttribute("data-" + k)); };
    return { left: n("left"), top: n("top"), w: n("w"), h: n("h"), x0: n("x0"), x1: n("x1"), y0: n("y0"), y1: n("y1") };
  }

  function seriesData(g) {
    if (!g._xy) {
      g._xy = (g.getAttribute("data-xy") || "").split(" ").filter(Boolean).map(function (p) {
        var xy = p.split(","); return [parseFloat(xy[0]), parseFloat(xy[1])];
      });
      g._shown = g._xy;
    }
    return g._shown;
  }

  function ema(points, weight) {
    if (!weight) return points;
    var last = 0, out = [];
    points.forEach(function (p, i) {
      last = last * weight + (1 - weight) * p[1];
      out.push([p[0], last / (1 - Math.pow(weight, i + 1))]);
    });
    return out;
  }

  function redraw(svg, weight) {
    var c = chartInfo(svg);
    $all("g.series", svg).forEach(function (g) {
      seriesData(g);
      g._shown = ema(g._xy, weight);
      var px = g._shown.map(function (p) {
        return [c.left + (p[0] - c.x0) / (c.x1 - c.x0) * c.w, c.top + (1 - (p[1] - c.y0) / (c.y1 - c.y0)) * c.h];
      });
      var line = g.querySelector("polyline");
      if (line) line.setAttribute("points", px.map(function (q) { return q[0].toFixed(1) + "," + q[1].toFixed(1); }).join(" "));
      $all("circle", g).forEach(function (dot, i) { if (px[i]) { dot.setAttribute("cx", px[i][0].toFixed(1)); dot.setAttribute("cy", px[i][1].toFixed(1)); } });
    });
  }

  function fmt(x) {
    var a = Math.abs(x);
    if (a >= 1e6) return (x / 1e6).toPrecision(3) + "M";
    if (a >= 1e3) return (x / 1e3).toPrecision(3) + "k";
    return Number(x.toPrecision(4)).toString();
  }

  function nearest(points, x) {
    var lo = 0, hi = points.length - 1;
    if (hi < 0) return null;
    while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (points[mid][0] < x) lo = mid; else hi = mid; }
    return Math.abs(points[lo][0] - x) <= Math.abs(points[hi][0] - x) ? points[lo] : points[hi];
  }

  function setupHover(svg) {
    var wrap = svg.parentNode;
    var tip = document.createElement("div");
    tip.className = "chart-tip";
    tip.hidden = true;
    wrap.appendChild(tip);
    var guide = document.createElementNS(SVGNS, "line");
    guide.setAttribute("class", "guide");
    guide.style.display = "none";
    svg.appendChild(guide);
    svg.addEventListener("mousemove", function (e) {
      var c = chartInfo(svg);
      var pt = svg.createSVGPoint();
      pt.x = e.clientX; pt.y = e.clientY;
      var loc = pt.matrixTransform(svg.getScreenCTM().inverse());
      if (loc.x < c.left || loc.x > c.left + c.w) { tip.hidden = true; guide.style.display = "none"; return; }
      var x = c.x0 + (loc.x - c.left) / c.w * (c.x1 - c.x0);
      var rows = [], at = null;
      $all("g.series", svg).forEach(function (g) {
        var p = nearest(seriesData(g), x);
        if (!p) return;
        if (at === null || Math.abs(p[0] - x) < Math.abs(at - x)) at = p[0];
        rows.push({ name: g.getAttribute("data-name"), color: g.getAttribute("data-color"), x: p[0], y: p[1] });
      });
      if (!rows.length) return;
      rows.sort(function (a, b) { return b.y - a.y; });
      tip.textContent = "";
      var head = document.createElement("div");
      head.className = "tip-head";
      head.textContent = "at " + fmt(at) + " steps";
      tip.appendChild(head);
      rows.slice(0, 14).forEach(function (r) {
        var line = document.createElement("div");
        var dot = document.createElement("span");
        dot.className = "tip-dot";
        dot.style.background = r.color;
        line.appendChild(dot);
        line.appendChild(document.createTextNode(r.name + ": " + fmt(r.y) + (r.x !== at ? " (at " + fmt(r.x) + ")" : "")));
        tip.appendChild(line);
      });
      if (rows.length > 14) { var more = document.createElement("div"); more.textContent = "+ " + (rows.length - 14) + " more"; tip.appendChild(more); }
      var gx = c.left + (at - c.x0) / (c.x1 - c.x0) * c.w;
      guide.setAttribute("x1", gx); guide.setAttribute("x2", gx);
      guide.setAttribute("y1", c.top); guide.setAttribute("y2", c.top + c.h);
      guide.style.display = "";
      tip.hidden = false;
      var box = wrap.getBoundingClientRect();
      var left = e.clientX - box.left + 14;
      if (left + tip.offsetWidth > box.width) left = e.clientX - box.left - tip.offsetWidth - 14;
      tip.style.left = Math.max(0, left) + "px";
      tip.style.top = Math.max(0, e.clientY - box.top - 10) + "px";
    });
    svg.addEventListener("mouseleave", function () { tip.hidden = true; guide.style.display = "none"; });
  }

  function setupCharts() {
    var svgs = $all("svg.plot");
    svgs.forEach(setupHover);
    var slider = document.querySelector("[data-smoothing]");
    var out = document.querySelector("[data-smoothing-value]");
    if (!slider) return;
    slider.addEventListener("input", function () {
      var w = parseFloat(slider.value) || 0;
      if (out) out.textContent = w.toFixed(2);
      $all("#curves svg.plot").forEach(function (svg) { if (svg.closest("[data-chart]").getAttribute("data-chart") !== "lineage") redraw(svg, w); });
    });
  }

  // ------------------------------------------------------------------ refinement status

  function typing() {
    return $all("textarea").some(function (t) { return t.value.trim() !== ""; });
  }

  function setupRefineStatus() {
    var box = document.getElementById("refine-status");
    if (!box || box.getAttribute("data-state") !== "running") return;
    var url = box.getAttribute("data-url");
    var log = box.querySelector(".log");
    // Once a form is sent (Cancel, a review), its answer is the next page: the poll must not
    // reload the page under it, or the answer's notice is lost (a race that load decides).
    var leaving = false;
    document.addEventListener("submit", function () { leaving = true; }, true);
    function poll() {
      if (leaving) return;
      fetch(url, { cache: "no-store", credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          if (leaving) return;
          if (log && typeof s.log_tail === "string") log.textContent = s.log_tail;
          var phase = box.querySelector(".phase");
          if (phase && s.phase) phase.textContent = s.phase;
          var bar = box.querySelector(".train-progress");
          var text = box.querySelector(".progress-text");
          if (bar && typeof s.steps === "number") {
            bar.value = s.steps;
            if (text) text.textContent = s.steps.toLocaleString("en-US") + (s.budget ? " / " + s.budget.toLocaleString("en-US") : "") + " steps";
          }
          if (s.state === "running") { setTimeout(poll, 2000); return; }
          box.setAttribute("data-state", s.state);
          box.className = box.className.replace(/state-\w+/, "state-" + s.state);
          var line = box.querySelector(".refine-line");
          if (line) line.textContent = s.state === "done"
            ? "Refinement v" + s.parent + " → v" + s.target + " finished " + s.finished + "."
            : "Refinement v" + s.parent + " → v" + s.target + " stopped (" + s.state + ", exit code " + s.returncode + "); see the log.";
          var cancel = box.querySelector("form.cancel");
          if (cancel) cancel.hidden = true;
          var done = box.querySelector(".refine-done");
          var link = done && done.querySelector("a");
          if (link && s.target !== null) link.setAttribute("href", link.getAttribute("href") + "?v=" + s.parent + "&v=" + s.target + "#review-v" + s.target);
          if (typing() || !link) { if (done) done.hidden = false; } else { history.replaceState(null, "", link.href); location.reload(); }
        })
        .catch(function () { setTimeout(poll, 4000); });
    }
    setTimeout(poll, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupVideos();
    setupSorting();
    setupCharts();
    setupRefineStatus();
  });
})();
