// Arbiter's small progressive enhancements. Every page works without them; none builds HTML from data.
(function () {
  "use strict";

  // Policy editor: keep the line-number gutter in step with the text and its scrolling.
  function renumber(editor) {
    var area = editor.querySelector("textarea");
    var gutter = editor.querySelector(".gutter");
    if (!area || !gutter) return;
    var count = area.value.split("\n").length;
    if (gutter.children.length === count) return;
    var marked = {};
    gutter.querySelectorAll(".ln.err").forEach(function (el) { marked[el.dataset.line] = true; });
    var fragment = document.createDocumentFragment();
    for (var n = 1; n <= count; n++) {
      var span = document.createElement("span");
      span.className = marked[n] ? "ln err" : "ln";
      span.dataset.line = String(n);
      span.textContent = String(n);
      fragment.appendChild(span);
    }
    gutter.replaceChildren(fragment);
    gutter.scrollTop = area.scrollTop;
  }

  function sync(area) {
    var gutter = area.closest("[data-editor]").querySelector(".gutter");
    if (gutter) gutter.scrollTop = area.scrollTop;
  }

  function goToLine(area, line) {
    var lines = area.value.split("\n");
    var start = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    area.focus();
    area.setSelectionRange(start, start + (lines[line - 1] || "").length);
    var lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 20;
    area.scrollTop = Math.max(0, (line - 5) * lineHeight);
    sync(area);
  }

  document.addEventListener("input", function (event) {
    var editor = event.target.closest && event.target.closest("[data-editor]");
    if (editor) renumber(editor);
  });
  document.addEventListener("scroll", function (event) {
    var target = event.target;
    if (target.tagName === "TEXTAREA" && target.closest("[data-editor]")) sync(target);
  }, true);
  document.addEventListener("htmx:afterSettle", function () {
    document.querySelectorAll("[data-editor]").forEach(renumber);
  });

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a.line-ref[data-line]");
    if (!link) return;
    var area = document.querySelector("[data-editor] textarea");
    if (!area) return;
    event.preventDefault();
    goToLine(area, parseInt(link.dataset.line, 10));
  });

  // Review queue: a "select all" box for the rows shown.
  document.addEventListener("change", function (event) {
    if (!event.target.matches || !event.target.matches("[data-select-all]")) return;
    document.querySelectorAll('input[type="checkbox"][name="jobs"]').forEach(function (box) {
      box.checked = event.target.checked;
    });
  });
})();
