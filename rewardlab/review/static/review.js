// rewardlab review: video controls for side-by-side comparison and refinement status polling.
// Served as a file (the Content-Security-Policy forbids inline scripts); no dependencies.
(function () {
  "use strict";

  function allVideos() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-compare] figure.video video"));
  }

  function setupCompare() {
    var box = document.querySelector("[data-compare]");
    if (!box) return;
    var speed = box.querySelector("[data-speed]");
    var loop = box.querySelector("[data-loop]");
    function apply() {
      allVideos().forEach(function (v) {
        v.playbackRate = speed ? parseFloat(speed.value) : 1;
        v.loop = loop ? loop.checked : true;
      });
    }
    box.querySelectorAll("[data-action]").forEach(function (button) {
      button.addEventListener("click", function () {
        var action = button.getAttribute("data-action");
        apply();
        allVideos().forEach(function (v) {
          if (action === "pause") { v.pause(); return; }
          if (action === "restart") v.currentTime = 0;
          var p = v.play();
          if (p && p.catch) p.catch(function () {});
        });
      });
    });
    if (speed) speed.addEventListener("change", apply);
    if (loop) loop.addEventListener("change", apply);
    allVideos().forEach(function (v) { v.addEventListener("loadedmetadata", apply); });
    apply();
    var grid = box.querySelector(".compare-grid");
    if (grid && !location.hash) grid.scrollLeft = grid.scrollWidth;  // the newest version is on the right
  }

  function typing() {
    return Array.prototype.some.call(document.querySelectorAll("textarea"), function (t) { return t.value.trim() !== ""; });
  }

  function setupRefineStatus() {
    var box = document.getElementById("refine-status");
    if (!box || box.getAttribute("data-state") !== "running") return;
    var url = box.getAttribute("data-url");
    var log = box.querySelector(".log");
    function poll() {
      fetch(url, { cache: "no-store", credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          if (log && typeof s.log_tail === "string") log.textContent = s.log_tail;
          if (s.state === "running") { setTimeout(poll, 2000); return; }
          box.setAttribute("data-state", s.state);
          box.className = box.className.replace(/state-\w+/, "state-" + s.state);
          var line = box.querySelector(".refine-line");
          if (line) line.textContent = s.state === "done"
            ? "Refinement v" + s.parent + " → v" + s.target + " finished " + s.finished + "."
            : "Refinement v" + s.parent + " → v" + s.target + " stopped (" + s.state + ", exit code " + s.returncode + "); see the log.";
          var done = box.querySelector(".refine-done");
          var link = done && done.querySelector("a");
          if (link && s.target !== null) link.setAttribute("href", link.getAttribute("href") + "#review-v" + s.target);
          if (typing() || !link) { if (done) done.hidden = false; } else { history.replaceState(null, "", link.href); location.reload(); }
        })
        .catch(function () { setTimeout(poll, 4000); });
    }
    setTimeout(poll, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupCompare();
    setupRefineStatus();
  });
})();
