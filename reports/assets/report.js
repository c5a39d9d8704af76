/* datakit report: searchable, filterable, paged findings tables. Data is rendered with textContent only. */
(function () {
  "use strict";
  var PAGE = 10;
  var source = document.getElementById("datakit-findings");
  if (!source) return;
  var data = JSON.parse(source.textContent);
  var strings = data.strings;
  var LINE = 2, FIELD = 3, MESSAGE = 4, EXCERPT = 5, RELATED = 6, RELATED_SOURCE = 7, DETAIL = 8;

  var byFamily = {};
  data.rows.forEach(function (row) {
    var family = data.families[row[0]];
    (byFamily[family] = byFamily[family] || []).push(row);
  });

  function str(i) { return i === null || i === undefined ? null : strings[i]; }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== null && text !== undefined) e.textContent = String(text);
    return e;
  }

  function option(select, value, text) {
    var o = el("option", null, text);
    o.value = value;
    select.appendChild(o);
  }

  function haystack(row) {
    return [data.rules[row[0]], str(row[FIELD]), str(row[MESSAGE]), row[EXCERPT], str(row[RELATED_SOURCE]), row[DETAIL]]
      .filter(function (x) { return x !== null && x !== undefined; }).join("\n").toLowerCase();
  }

  // Text with `backticked` spans shown as code (messages name commands that way); still text nodes only.
  function richText(parent, text) {
    text.split("`").forEach(function (part, i) {
      if (!part) return;
      parent.appendChild(i % 2 ? el("code", null, part) : document.createTextNode(part));
    });
  }

  // A rule code that may wrap after its dots rather than mid-word.
  function ruleCode(code) {
    var c = el("code");
    code.split(".").forEach(function (part, i) {
      if (i) { c.appendChild(document.createTextNode(".")); c.appendChild(el("wbr")); }
      c.appendChild(document.createTextNode(part));
    });
    return c;
  }

  function messageCell(message, excerpt) {
    var td = el("td", "msg");
    var at = excerpt ? message.indexOf(excerpt) : -1;
    if (at >= 0) {
      richText(td, message.slice(0, at));
      td.appendChild(el("mark", null, excerpt));
      richText(td, message.slice(at + excerpt.length));
    } else {
      richText(td, message);
      if (excerpt) {
        var box = el("span", "excerpt");
        box.appendChild(el("mark", null, excerpt));
        td.appendChild(box);
      }
    }
    return td;
  }

  function relatedCell(row) {
    var td = el("td", "related");
    var where = row[RELATED] !== null ? "line " + row[RELATED] : "";
    var file = str(row[RELATED_SOURCE]);
    if (file) where = file + (where ? ":" + row[RELATED] : "");
    if (where) td.appendChild(el("span", null, where));
    if (row[DETAIL]) td.appendChild(el("span", "detail", row[DETAIL]));
    return td;
  }

  function rowElement(row) {
    var tr = el("tr");
    tr.appendChild(el("td", "line", row[LINE] === null ? "–" : row[LINE]));
    var rule = el("td", "rule");
    rule.appendChild(ruleCode(data.rules[row[0]]));
    rule.appendChild(document.createTextNode(" "));
    var sev = data.severities[row[1]];
    rule.appendChild(el("span", "sev sev-" + sev, sev));
    tr.appendChild(rule);
    var field = el("td", "field");
    if (str(row[FIELD])) field.appendChild(el("code", null, str(row[FIELD])));
    tr.appendChild(field);
    tr.appendChild(messageCell(str(row[MESSAGE]) || "", row[EXCERPT]));
    tr.appendChild(relatedCell(row));
    return tr;
  }

  function setup(box) {
    var rows = byFamily[box.getAttribute("data-family")] || [];
    var texts = null;
    var state = { query: "", rule: "", severity: "", page: 0 };

    var bar = el("div", "toolbar");
    var search = el("input");
    search.type = "search";
    search.placeholder = "Search text, or a line number";
    search.setAttribute("aria-label", "Search findings");
    var rule = el("select");
    rule.setAttribute("aria-label", "Filter by rule");
    option(rule, "", "All rules");
    var seen = {};
    rows.forEach(function (r) { seen[r[0]] = true; });
    Object.keys(seen).map(Number).sort(function (a, b) { return data.rules[a] < data.rules[b] ? -1 : 1; })
      .forEach(function (i) { option(rule, String(i), data.rules[i]); });
    var severity = el("select");
    severity.setAttribute("aria-label", "Filter by severity");
    option(severity, "", "All severities");
    data.severities.forEach(function (s, i) {
      if (rows.some(function (r) { return r[1] === i; })) option(severity, String(i), s);
    });
    var prev = el("button", null, "‹ Prev");
    var next = el("button", null, "Next ›");
    prev.type = next.type = "button";
    var status = el("span", "status");
    [search, rule, severity, status, prev, next].forEach(function (e) { bar.appendChild(e); });

    var table = el("table", "ftable");
    var cols = el("colgroup");
    ["c-line", "c-rule", "c-field", "c-msg", "c-rel"].forEach(function (c) { cols.appendChild(el("col", c)); });
    table.appendChild(cols);
    var head = el("thead");
    var hr = el("tr");
    ["Line", "Rule", "Field", "Finding", "Related"].forEach(function (h) { hr.appendChild(el("th", null, h)); });
    head.appendChild(hr);
    table.appendChild(head);
    var body = el("tbody");
    table.appendChild(body);
    box.textContent = "";
    box.appendChild(bar);
    box.appendChild(table);

    function matches() {
      var q = state.query.trim().toLowerCase();
      var asLine = /^\d+$/.test(q) ? Number(q) : null;
      if (q && asLine === null && texts === null) texts = rows.map(haystack);
      var out = [];
      for (var i = 0; i < rows.length; i++) {
        var r = rows[i];
        if (state.rule !== "" && r[0] !== Number(state.rule)) continue;
        if (state.severity !== "" && r[1] !== Number(state.severity)) continue;
        if (asLine !== null && r[LINE] !== asLine && r[RELATED] !== asLine) continue;
        if (q && asLine === null && texts[i].indexOf(q) < 0) continue;
        out.push(r);
      }
      return out;
    }

    function render() {
      var found = matches();
      var pages = Math.max(1, Math.ceil(found.length / PAGE));
      state.page = Math.min(state.page, pages - 1);
      var start = state.page * PAGE;
      var frag = document.createDocumentFragment();
      found.slice(start, start + PAGE).forEach(function (r) { frag.appendChild(rowElement(r)); });
      body.textContent = "";
      if (!found.length) {
        var tr = el("tr");
        var td = el("td", "muted", "No finding matches.");
        td.colSpan = 5;
        tr.appendChild(td);
        frag.appendChild(tr);
      }
      body.appendChild(frag);
      status.textContent = found.length
        ? (start + 1).toLocaleString() + "–" + Math.min(start + PAGE, found.length).toLocaleString() + " of " +
          found.length.toLocaleString() + (found.length < rows.length ? " (filtered from " + rows.length.toLocaleString() + ")" : "")
        : "0 of " + rows.length.toLocaleString();
      prev.disabled = state.page === 0;
      next.disabled = state.page >= pages - 1;
    }

    var timer = null;
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { state.query = search.value; state.page = 0; render(); }, 120);
    });
    rule.addEventListener("change", function () { state.rule = rule.value; state.page = 0; render(); });
    severity.addEventListener("change", function () { state.severity = severity.value; state.page = 0; render(); });
    prev.addEventListener("click", function () { state.page -= 1; render(); });
    next.addEventListener("click", function () { state.page += 1; render(); });
    render();
  }

  var boxes = document.querySelectorAll(".findings[data-family]");
  for (var i = 0; i < boxes.length; i++) setup(boxes[i]);
  document.documentElement.setAttribute("data-ready", "1");
})();
