/* SalesFlow: the little script the pages use (the CSP allows no inline script).
   The process diagram: fit to its box, zoom (buttons, ctrl/⌘ + wheel, pinch), pan (drag), and
   scroll to the current step. Without script the diagram simply scrolls in its box. */
(function () {
  "use strict";

  function setupDiagram(box) {
    var svg = box.querySelector("svg");
    if (!svg) return;
    var vb = (svg.getAttribute("viewBox") || "").split(/\s+/).map(Number);
    if (vb.length !== 4 || !vb[2] || !vb[3]) return;
    var width = vb[2], height = vb[3], scale = 1;
    var tools = box.parentNode.querySelector("[data-diagram-tools]");
    if (tools) tools.hidden = false;
    box.classList.add("zoomable");

    function apply(s, cx, cy) {
      var old = scale;
      scale = Math.max(0.2, Math.min(3, s));
      var ax = cx === undefined ? box.clientWidth / 2 : cx, ay = cy === undefined ? box.clientHeight / 2 : cy;
      var px = (box.scrollLeft + ax) / old, py = (box.scrollTop + ay) / old;
      svg.setAttribute("width", Math.round(width * scale));
      svg.setAttribute("height", Math.round(height * scale));
      box.scrollLeft = px * scale - ax;
      box.scrollTop = py * scale - ay;
    }
    function fit() {
      var s = Math.min(box.clientWidth / width, 1);
      apply(s);
      box.scrollLeft = 0;
      box.scrollTop = 0;
    }
    function current() {
      var el = svg.querySelector("g.active") || svg.querySelector("g.completed:last-of-type");
      if (!el || !el.getBBox) return;
      if (scale < 0.45) apply(0.45);  // readable, yet as much as possible in view
      var b = el.getBBox();
      box.scrollLeft = (b.x - vb[0] + b.width / 2) * scale - box.clientWidth / 2;
      box.scrollTop = (b.y - vb[1] + b.height / 2) * scale - box.clientHeight / 2;
    }
    if (tools) {
      tools.addEventListener("click", function (ev) {
        var what = ev.target.getAttribute && ev.target.getAttribute("data-zoom");
        if (what === "in") apply(scale * 1.25);
        else if (what === "out") apply(scale / 1.25);
        else if (what === "fit") fit();
        else if (what === "current") current();
      });
    }
    box.addEventListener("wheel", function (ev) {
      if (!ev.ctrlKey && !ev.metaKey) return;
      ev.preventDefault();
      var r = box.getBoundingClientRect();
      apply(scale * (ev.deltaY < 0 ? 1.1 : 1 / 1.1), ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    var drag = null;
    box.addEventListener("pointerdown", function (ev) {
      if (ev.pointerType !== "mouse" || ev.button !== 0 || ev.target.closest("a")) return;
      drag = { x: ev.clientX, y: ev.clientY, left: box.scrollLeft, top: box.scrollTop };
      box.classList.add("dragging");
    });
    window.addEventListener("pointermove", function (ev) {
      if (!drag) return;
      box.scrollLeft = drag.left - (ev.clientX - drag.x);
      box.scrollTop = drag.top - (ev.clientY - drag.y);
    });
    window.addEventListener("pointerup", function () { drag = null; box.classList.remove("dragging"); });
    fit();
    if (svg.querySelector("g.active")) current();
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-diagram]"), setupDiagram);
  });
})();
