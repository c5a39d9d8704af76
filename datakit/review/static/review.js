// datakit review: lists findings a page at a time, shows one record, sends decisions. Dataset text reaches the page
// only through textContent (never innerHTML), so a record cannot inject markup or script.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const PAGE = 50;
const ACTION_WORDS = {accept: "repair accepted", keep: "kept as is", drop: "dropped", edit: "edited"};
const state = {filter: {rule: "", severity: "", label: "", status: "all", q: ""}, offset: 0, total: 0, items: [],
               selected: -1, record: null, editing: false, busy: false, asked: 0, loading: null};
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, body) {
  const options = {headers: {"X-Review-Token": TOKEN}, credentials: "same-origin"};
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const text = await response.text();
  let data = null;
  try { data = JSON.parse(text); } catch (e) { data = null; }
  if (!response.ok) throw new Error((data && data.error) || text || response.statusText);
  return data;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function setProgress(p) {
  if (!p) return;
  $("progress-text").textContent = `${p.decided} of ${p.flagged} flagged records decided`;
  $("progress-bar").max = Math.max(p.flagged, 1);
  $("progress-bar").value = p.decided;
}

// --- the URL's hash keeps the filter and the record shown, so a reload continues where the reviewer was -------------

function saveHash() {
  const h = new URLSearchParams();
  for (const [k, v] of Object.entries(state.filter)) if (v && !(k === "status" && v === "all")) h.set(k, v);
  if (state.offset) h.set("offset", state.offset);
  const item = state.items[state.selected];
  if (item) h.set("item", item.id);
  history.replaceState(null, "", location.pathname + location.search + (h.toString() ? "#" + h.toString() : ""));
}

function loadHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  for (const k of Object.keys(state.filter)) if (h.get(k)) state.filter[k] = h.get(k);
  state.offset = Number(h.get("offset")) || 0;
  return h.get("item");
}

// --- the list -----------------------------------------------------------------------------------------------------

function query() {
  const q = new URLSearchParams({offset: state.offset, limit: PAGE});
  for (const [k, v] of Object.entries(state.filter)) if (v) q.set(k, v);
  return q.toString();
}

async function loadItems(select) {
  const data = await api("/api/items?" + query());
  state.total = data.total;
  state.items = data.items;
  setProgress(data.progress);
  renderItems();
  if (select === "first") selectItem(state.items.length ? 0 : -1);
  else if (select === "last") selectItem(state.items.length - 1);
  else if (typeof select === "string") {
    const at = state.items.findIndex((it) => String(it.id) === select);
    selectItem(at);
  } else saveHash();
}

function decisionBadge(decision) {
  if (!decision) return el("span", {class: "badge open"}, "undecided");
  return el("span", {class: `badge ${decision.action}`}, ACTION_WORDS[decision.action] || decision.action);
}

function renderItems() {
  const list = $("items");
  list.replaceChildren();
  let rule = null;
  state.items.forEach((item, i) => {
    if (item.rule !== rule) {
      rule = item.rule;
      list.append(el("li", {class: "rule-head"}, el("code", {}, rule)));
    }
    const row = el("li", {class: "item" + (i === state.selected ? " selected" : ""), "data-line": item.line,
                          "data-rule": item.rule, tabindex: "-1", onclick: () => selectItem(i)},
      el("span", {class: "line"}, `line ${item.line}`), " ",
      el("span", {class: `sev ${item.severity}`}, item.severity), " ",
      decisionBadge(item.decision),
      item.findings > 1 ? el("span", {class: "muted"}, ` ×${item.findings}`) : null,
      el("div", {class: "message"}, item.message));
    list.append(row);
  });
  const first = state.total ? state.offset + 1 : 0;
  const what = state.filter.rule ? "flagged records" : "entries (a record once per rule)";
  $("list-status").textContent = `${first}–${state.offset + state.items.length} of ${state.total} ${what}`;
  $("prev").disabled = state.offset === 0;
  $("next").disabled = state.offset + state.items.length >= state.total;
}

async function selectItem(i) {
  const same = i === state.selected && state.record && state.items[i] && state.record.line === state.items[i].line;
  if (same && state.editing) return;  // a click on the record being edited keeps the edit
  state.selected = i;
  document.querySelectorAll("#items li.item").forEach((li, k) => li.classList.toggle("selected", k === i));
  saveHash();
  if (i < 0 || !state.items[i]) {
    $("record").hidden = true;
    $("record-empty").hidden = false;
    state.record = null;
    return;
  }
  const row = document.querySelectorAll("#items li.item")[i];
  if (row) row.scrollIntoView({block: "nearest"});
  await loadRecord(state.items[i].line).catch((e) => {
    $("record").hidden = false;
    showError(`line ${state.items[i].line}: ${e.message}`);
  });
}

async function move(step) {
  const next = state.selected + step;
  if (next >= 0 && next < state.items.length) return selectItem(next);
  if (step > 0 && state.offset + state.items.length < state.total) {
    state.offset += PAGE;
    return loadItems("first");
  }
  if (step < 0 && state.offset > 0) {
    state.offset = Math.max(0, state.offset - PAGE);
    return loadItems("last");
  }
}

// --- one record ---------------------------------------------------------------------------------------------------

function loadRecord(line) {
  const asked = ++state.asked;  // only the latest request is shown: an earlier answer arriving late is dropped
  state.loading = api(`/api/record/${line}`).then((rec) => {
    if (asked !== state.asked) return;
    showError("");
    state.editing = false;
    state.record = rec;
    renderRecord();
  });
  return state.loading;
}

function diffNodes(segments) {
  // a change of white space alone (a tag replaced by a line break) is shown by a visible mark
  const shown = (text) => text.trim() ? text : text.replace(/\n/g, "↵\n").replace(/ /g, "·");
  return segments.map(([op, text]) => op === "=" ? document.createTextNode(text)
    : el(op === "-" ? "del" : "ins", {}, shown(text)));
}

function fieldBox(f, body) {
  return el("div", {class: "field"}, el("div", {class: "field-name"}, f.field, " ", el("span", {class: "role"}, f.role)),
            el("div", {class: "text"}, ...body));
}

function renderRecord() {
  const rec = state.record;
  $("record-empty").hidden = true;
  $("record").hidden = false;
  $("record-title").textContent = `line ${rec.line}` + (rec.format ? ` · ${rec.format}` : "");
  const d = rec.decision;
  const status = $("record-decision");
  status.replaceChildren(decisionBadge(d));
  if (d && d.note) status.append(" ", el("span", {class: "note"}, `note: ${d.note}`));
  if (d && d.stale) status.append(" ", el("span", {class: "warning"}, "made on another version of this record: decide again"));
  $("record-findings").replaceChildren(...rec.findings.map((f) => el("li", {"data-rule": f.rule},
    el("code", {}, f.rule), " ", el("span", {class: `sev ${f.severity}`}, f.severity),
    f.field ? el("span", {class: "muted"}, ` (${f.field})`) : null, " ", f.message)));
  const proposal = rec.proposal;
  $("act-accept").disabled = !proposal || !proposal.changes.length;
  $("act-edit").disabled = !rec.fields.length || !!rec.unusable;  // no training record: it can only be dropped
  $("act-keep").disabled = !rec.fields.length || !!rec.unusable;
  $("proposal").hidden = !proposal;
  if (proposal) {
    const body = proposal.changes.map((c) => fieldBox(c, diffNodes(c.diff)));
    if (proposal.note) body.push(el("p", {class: "muted"}, proposal.note));
    $("proposal-body").replaceChildren(el("p", {class: "muted"}, "datakit fix would apply: ", proposal.rules.join(", ")), ...body);
  }
  const shown = d && d.action === "edit" && d.fields ? d.fields : rec.fields;
  const fields = shown.map((f) => fieldBox(f, [f.text]));
  if (rec.raw !== undefined) fields.push(el("div", {class: "field"}, el("div", {class: "field-name"}, "raw text",
    rec.error ? el("span", {class: "role"}, ` cannot be read: ${rec.error}`) : null), el("div", {class: "text"}, rec.raw)));
  if (d && d.action === "edit") fields.unshift(el("p", {class: "muted"}, "The record as edited:"));
  $("fields").replaceChildren(...fields);
  $("editor").hidden = true;
  $("recheck").replaceChildren();
  if (d && d.action === "edit" && d.fields) recheck(d.fields.map((f) => f.text), $("fields"));
  renderGroups(rec.groups);
}

function renderGroups(groups) {
  $("groups").replaceChildren(...groups.map((g) => {
    const columns = g.members.map((m) => el("div", {class: "member" + (m.line === state.record.line ? " current" : ""),
                                                     "data-line": m.line},
      el("div", {class: "member-head"}, `line ${m.line}` + (m.line === g.anchor ? " (first seen)" : ""), " ", decisionBadge(m.decision)),
      ...m.fields.map((f) => fieldBox(f, f.diff ? diffNodes(f.diff) : [f.text])),
      el("div", {class: "member-actions"},
        el("button", {type: "button", class: "keep-only", onclick: () => keepOnly(g, m.line)}, "Keep only this"),
        el("button", {type: "button", class: "drop-one", onclick: () => decide("drop", m.line)}, "Drop this"))));
    const more = g.size > g.members.length ? el("p", {class: "muted"}, `${g.size - g.members.length} more not shown`) : null;
    return el("section", {class: "group", "data-rule": g.rule},
      el("h3", {}, `${g.kind}: ${g.size} records `, el("code", {}, g.rule)),
      el("div", {class: "members"}, ...columns), more);
  }));
}

// --- decisions ----------------------------------------------------------------------------------------------------

async function post(path, body) {
  // one state-changing request at a time; the answer carries the new progress
  if (state.busy) return null;
  state.busy = true;
  showError("");
  try {
    const data = await api(path, body);
    setProgress(data.progress);
    return data;
  } catch (e) {
    showError(e.message);
    return null;
  } finally {
    state.busy = false;
  }
}

function currentRule() {
  const item = state.items[state.selected];
  return item ? item.rule : null;
}

async function decide(action, line) {
  if (!state.record) return;
  const target = line || state.record.line;
  const note = $("note").value.trim() || undefined;
  const done = await post("/api/decide", {decisions: [{line: target, action, rule: currentRule(), note}]});
  if (!done) return;
  $("note").value = "";
  await refresh(target === state.record.line && !line);
}

async function keepOnly(group, line) {
  // every member of the group is decided on the server, the ones not shown here included
  if (await post("/api/pick", {rule: group.rule, line: group.anchor, keep: [line]})) await refresh(false);
}

async function refresh(advance) {
  const line = state.record && state.record.line;
  const at = Math.max(state.selected, 0);
  await loadItems(null);
  state.selected = Math.min(at, state.items.length - 1);
  if (state.filter.status === "open") return selectItem(state.selected);  // the decided item left the list
  if (advance) return move(1);
  document.querySelectorAll("#items li.item").forEach((li, k) => li.classList.toggle("selected", k === state.selected));
  if (line) await loadRecord(line);
}

async function undo() {
  const data = await post("/api/undo", {});
  if (!data) return;
  $("list-status").dataset.undone = data.lines.join(" ");
  await refresh(false);
}

// --- editing ------------------------------------------------------------------------------------------------------

function startEdit() {
  const rec = state.record;
  if (!rec || !rec.fields.length) return;
  state.editing = true;
  const d = rec.decision;
  const shown = d && d.action === "edit" && d.fields ? d.fields : rec.fields;
  $("editor-fields").replaceChildren(...shown.map((f, i) => el("label", {class: "edit-field"},
    el("span", {class: "field-name"}, f.field, " ", el("span", {class: "role"}, f.role)),
    el("textarea", {"data-index": i, rows: Math.min(12, Math.max(2, Math.ceil(f.text.length / 80)))}))));
  $("editor-fields").querySelectorAll("textarea").forEach((t, i) => { t.value = shown[i].text; });
  $("recheck").replaceChildren();
  $("editor").hidden = false;
  $("editor-fields").querySelector("textarea").focus();
}

function editedTexts() {
  return Array.from($("editor-fields").querySelectorAll("textarea"), (t) => t.value);
}

async function recheck(texts, into) {
  const box = into === $("fields") ? el("div", {class: "recheck"}) : $("recheck");
  if (into === $("fields")) into.append(box);
  box.replaceChildren(el("p", {class: "muted"}, "checking…"));
  try {
    const data = await api("/api/recheck", {line: state.record.line, texts});
    box.replaceChildren(el("h4", {}, data.findings.length ? "Findings of the edited record" : "The edited record has no findings"),
      el("ul", {class: "recheck-findings"}, ...data.findings.map((f) => el("li", {"data-rule": f.rule},
        el("code", {}, f.rule), " ", f.message))));
  } catch (e) {
    box.replaceChildren(el("p", {class: "error"}, e.message));
  }
}

async function saveEdit() {
  const edit = {line: state.record.line, action: "edit", rule: currentRule(), texts: editedTexts(),
                note: $("note").value.trim() || undefined};
  const done = await post("/api/decide", {decisions: [edit]});
  if (!done) return;
  state.editing = false;
  $("note").value = "";
  await refresh(false);
}

// --- bulk ---------------------------------------------------------------------------------------------------------

async function bulk(confirm) {
  const action = $("bulk-action").value;
  const filter = {...state.filter};
  const data = await api("/api/bulk", {filter, action, confirm});
  if (!data.applied) {
    const what = $("bulk-action").selectedOptions[0].textContent;
    $("bulk-question").textContent = `${what}: ${data.count} records listed by this filter. Apply?`;
    $("bulk-confirm").dataset.count = data.count;
    $("bulk-confirm").hidden = false;
    $("bulk-yes").focus();
    return;
  }
  $("bulk-confirm").hidden = true;
  setProgress(data.progress);
  await refresh(false);
}

// --- wiring -------------------------------------------------------------------------------------------------------

function onFilterChange() {
  const wanted = {rule: $("f-rule").value, severity: $("f-severity").value, label: $("f-label").value,
                  status: $("f-status").value, q: $("f-q").value.trim()};
  if (JSON.stringify(wanted) === JSON.stringify(state.filter)) return;
  state.filter = wanted;
  state.offset = 0;
  $("bulk-confirm").hidden = true;
  state.items = [];  // entries of the old filter go at once: a click on one must not race the new list
  renderItems();
  loadItems("first").catch((e) => showError(e.message));
}

function onKey(event) {
  const tag = event.target.tagName;
  if (event.key === "Escape" && state.editing) {
    $("editor").hidden = true;
    state.editing = false;
    return;
  }
  if (["INPUT", "TEXTAREA", "SELECT"].includes(tag) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (tag === "BUTTON" && event.key === "Enter") return;
  const keys = {j: () => move(1), k: () => move(-1), a: () => !$("act-accept").disabled && decide("accept"),
                Enter: () => !$("act-keep").disabled && decide("keep"), d: () => decide("drop"), e: startEdit, u: undo};
  const run = keys[event.key];
  if (!run) return;
  event.preventDefault();
  // an action key waits for the record being loaded, so it never acts on the one shown before
  const ready = "jku".includes(event.key) ? Promise.resolve() : Promise.resolve(state.loading).catch(() => null);
  ready.then(run).catch((e) => showError(e.message));
}

async function start() {
  const summary = await api("/api/summary");
  $("source").textContent = "· " + summary.source;
  document.title = "datakit review · " + summary.source;
  $("decisions-file").textContent = "decisions are saved as you make them in " + summary.decisions;
  if (summary.warnings.length) {
    $("warnings").textContent = summary.warnings.join(" ");
    $("warnings").hidden = false;
  }
  setProgress(summary.progress);
  for (const r of summary.rules) $("f-rule").append(el("option", {value: r.rule}, `${r.rule} (${r.records})`));
  for (const s of summary.severities) $("f-severity").append(el("option", {value: s}, s));
  for (const l of summary.labels) $("f-label").append(el("option", {value: l}, l));
  $("f-label").disabled = !summary.labels.length;
  const item = loadHash();
  $("f-rule").value = state.filter.rule;
  $("f-severity").value = state.filter.severity;
  $("f-label").value = state.filter.label;
  $("f-status").value = state.filter.status;
  $("f-q").value = state.filter.q;
  for (const id of ["f-rule", "f-severity", "f-label", "f-status"]) $(id).addEventListener("change", onFilterChange);
  let typing = null;
  $("f-q").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(onFilterChange, 200); });
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  const page = (offset) => { state.offset = offset; loadItems("first").catch((e) => showError(e.message)); };
  $("prev").addEventListener("click", () => page(Math.max(0, state.offset - PAGE)));
  $("next").addEventListener("click", () => page(state.offset + PAGE));
  $("act-accept").addEventListener("click", () => decide("accept"));
  $("act-keep").addEventListener("click", () => decide("keep"));
  $("act-drop").addEventListener("click", () => decide("drop"));
  $("act-edit").addEventListener("click", startEdit);
  $("act-undo").addEventListener("click", undo);
  $("edit-check").addEventListener("click", () => recheck(editedTexts()));
  $("edit-save").addEventListener("click", saveEdit);
  $("edit-cancel").addEventListener("click", () => { $("editor").hidden = true; state.editing = false; });
  $("bulk-start").addEventListener("click", () => bulk(null).catch((e) => showError(e.message)));
  $("bulk-yes").addEventListener("click", () => bulk(Number($("bulk-confirm").dataset.count)).catch((e) => showError(e.message)));
  $("bulk-no").addEventListener("click", () => { $("bulk-confirm").hidden = true; });
  document.addEventListener("keydown", onKey);
  await loadItems(item || null);
  document.documentElement.dataset.ready = "1";
}

start().catch((e) => {
  document.documentElement.dataset.ready = "error";
  $("progress-text").textContent = "cannot load the review: " + e.message;
});
