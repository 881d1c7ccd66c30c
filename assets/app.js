// rightsizer dashboard enhancements. Everything works without this file: the server sorts,
// filters and paginates through links. With it, a one-page table sorts in place on a header
// click, and the patch gets a working Copy button.
(function () {
  "use strict";

  function cellValue(row, index, type) {
    var cell = row.cells[index];
    if (!cell) return type === "num" ? 0 : "";
    var raw = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
    return type === "num" ? parseFloat(raw) || 0 : raw.toLowerCase();
  }

  function sortTable(table, th) {
    var index = Array.prototype.indexOf.call(th.parentNode.cells, th);
    var type = th.getAttribute("data-type") || "text";
    // Numbers start biggest-first, names A–Z, as the server's links do.
    var current = th.getAttribute("aria-sort");
    var ascending = current ? current !== "ascending" : type !== "num";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, type), y = cellValue(b, index, type);
      var cmp = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? cmp : -cmp;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(th.parentNode.cells, function (other) {
      other.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var link = th.querySelector("a");
    if (link && window.history && history.replaceState) {
      // Keep the address shareable: it names the same order the server would give.
      var key = th.getAttribute("data-sort");
      var url = new URL(window.location.href);
      url.searchParams.set("sort", key);
      url.searchParams.set("order", ascending ? "asc" : "desc");
      history.replaceState(null, "", url.pathname + url.search);
    }
  }

  function enhanceTables() {
    var tables = document.querySelectorAll("table.sortable");
    Array.prototype.forEach.call(tables, function (table) {
      // With several pages only the server can sort all rows: keep its links.
      if (table.getAttribute("data-pages") !== "1") return;
      var head = table.tHead && table.tHead.rows[0];
      if (!head) return;
      Array.prototype.forEach.call(head.cells, function (th) {
        th.classList.add("js-sortable");
        th.setAttribute("tabindex", "0");
        th.addEventListener("click", function (event) {
          event.preventDefault();
          sortTable(table, th);
        });
        th.addEventListener("keydown", function (event) {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            sortTable(table, th);
          }
        });
      });
    });
  }

  function copyText(text, done) {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text, done); });
    } else {
      fallbackCopy(text, done);
    }
  }

  // Plain http on a LAN address is not a secure context: select and use execCommand.
  function fallbackCopy(text, done) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    done(ok);
  }

  function enhanceCopyButtons() {
    var buttons = document.querySelectorAll("button.copy[data-copy-target]");
    Array.prototype.forEach.call(buttons, function (button) {
      var target = document.getElementById(button.getAttribute("data-copy-target"));
      if (!target) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        copyText(target.textContent, function (ok) {
          button.textContent = ok === false ? "Select and copy" : "Copied";
          setTimeout(function () { button.textContent = "Copy"; }, 1500);
        });
      });
    });
  }

  function start() {
    enhanceTables();
    enhanceCopyButtons();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
