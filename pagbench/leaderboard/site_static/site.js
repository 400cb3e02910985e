// pagbench leaderboard: sort a table by a column header, filter its rows by regime,
// architecture and text. Reads only data-* attributes written by `pagbench leaderboard build`;
// never inserts HTML (textContent only), so the page's data stays data.
"use strict";
(function () {
  function sortValue(row, index) {
    var raw = row.cells[index].getAttribute("data-sort");
    return raw === null || raw === "" ? null : parseFloat(raw);
  }

  function sortTable(table, index, header) {
    var body = table.tBodies[0];
    var current = header.getAttribute("aria-sort");
    var bestFirst = header.getAttribute("data-better") === "lower" ? "ascending" : "descending";
    var order = current === null || current === "none" ? bestFirst : (current === "ascending" ? "descending" : "ascending");
    var sign = order === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = sortValue(a, index), y = sortValue(b, index);
      if (x === null && y === null) { return parseInt(a.getAttribute("data-rank"), 10) - parseInt(b.getAttribute("data-rank"), 10); }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      if (x !== y) { return sign * (x - y); }
      return parseInt(a.getAttribute("data-rank"), 10) - parseInt(b.getAttribute("data-rank"), 10);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      if (cell.hasAttribute("data-sortable")) { cell.setAttribute("aria-sort", "none"); }
    });
    header.setAttribute("aria-sort", order);
  }

  function applyFilters(form) {
    var table = document.getElementById(form.getAttribute("data-table"));
    var regime = form.querySelector("[data-filter=regime]").value;
    var architecture = form.querySelector("[data-filter=architecture]").value;
    var terms = form.querySelector("[data-filter=text]").value.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = table.tBodies[0].rows, shown = 0;
    Array.prototype.forEach.call(rows, function (row) {
      var search = row.getAttribute("data-search") || "";
      var keep = (!regime || row.getAttribute("data-regime") === regime) &&
        (!architecture || row.getAttribute("data-architecture") === architecture) &&
        terms.every(function (term) { return search.indexOf(term) !== -1; });
      row.hidden = !keep;
      if (keep) { shown += 1; }
    });
    form.querySelector("[data-count]").textContent = shown + " of " + rows.length + " rows";
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("table.board"), function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
        var button = header.querySelector("button");
        if (header.hasAttribute("data-sortable") && button) {
          button.addEventListener("click", function () { sortTable(table, index, header); });
        }
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll("form.filters"), function (form) {
      form.addEventListener("submit", function (event) { event.preventDefault(); });
      Array.prototype.forEach.call(form.querySelectorAll("[data-filter]"), function (control) {
        control.addEventListener("input", function () { applyFilters(form); });
        control.addEventListener("change", function () { applyFilters(form); });
      });
    });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
}());
