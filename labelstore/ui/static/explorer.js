// The label explorer's page: hash routes, each drawing one view from the JSON endpoints under /api/.
"use strict";

const main = document.getElementById("main");
let meta = null;

// DOM in code, never HTML strings: entity ids and payloads are user data.
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "onclick") node.addEventListener("click", value);
    else if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function api(path) {
  const answer = await fetch(path);
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error || answer.statusText);
  return body;
}

// Times are UTC to the millisecond, as the warehouse keeps them.
function time(iso) {
  if (!iso) return "-";
  return new Date(iso).toISOString().replace("T", " ").replace("Z", "");
}

function value(text) {
  if (text === null || text === undefined) return h("span", {class: "value-null"}, "null");
  return h("span", {class: `value-${text}`}, text);
}

function table(id, headers, rows) {
  return h("table", {id}, h("thead", {}, h("tr", {}, headers.map((name) => h("th", {}, name)))), h("tbody", {}, rows));
}

function figure(name, number, cls) {
  return h("div", {class: `figure ${cls || ""}`}, h("b", {"data-figure": name}, number), name);
}

async function chart(container, spec) {
  await vegaEmbed(container, {$schema: "https://vega.github.io/schema/vega-lite/v6.json", ...spec},
                  {renderer: "svg", actions: false});
  container.dataset.rendered = "true";
}

function params() {
  const query = location.hash.split("?")[1] || "";
  return Object.fromEntries(new URLSearchParams(query));
}

function go(page, values) {
  location.hash = `#/${page}?${new URLSearchParams(values)}`;
}

function select(id, options, chosen) {
  return h("select", {id}, options.map((o) => {
    const [val, text] = Array.isArray(o) ? o : [o, o];
    const node = h("option", {value: val}, text);
    if (String(val) === String(chosen)) node.selected = true;
    return node;
  }));
}

function field(label, control) {
  return h("label", {}, label, control);
}

// ---- entities: search, then one entity's timeline ----

async function entitiesPage() {
  const p = params();
  const type = p.type || meta.entity_types[0];
  const prefix = h("input", {id: "entity-prefix", placeholder: "id prefix", value: p.prefix || ""});
  const search = () => go("entities", {type: document.getElementById("entity-type").value, prefix: prefix.value});
  prefix.addEventListener("keydown", (event) => event.key === "Enter" && search());
  main.replaceChildren(h("section", {}, h("h2", {}, "Entities"),
    h("div", {class: "controls"}, field("entity type", select("entity-type", meta.entity_types, type)),
      field("id starts with", prefix), h("button", {id: "search-button", onclick: search}, "Search")),
    h("div", {id: "search-results"})));
  if (p.type === undefined) return;
  const found = await api(`/api/entities/${encodeURIComponent(type)}?prefix=${encodeURIComponent(p.prefix || "")}`);
  const rows = found.entities.map((e) => h("tr", {class: "entity"},
    h("td", {}, h("a", {class: "entity-link", href: `#/entity?type=${encodeURIComponent(type)}&id=${encodeURIComponent(e.entity_id)}`}, e.entity_id)),
    h("td", {class: "num"}, e.events), h("td", {}, time(e.first_business_time)), h("td", {}, time(e.last_recorded_at)),
    h("td", {}, Object.entries(e.labels).map(([label, v]) => h("span", {}, `${label}=`, value(v), " ")))));
  document.getElementById("search-results").replaceChildren(
    table("entities", ["entity", "events", "first event (business time)", "last recorded", "latest labels"], rows),
    found.more ? h("p", {class: "muted"}, "more match: type more of the id") : "",
    found.entities.length ? "" : h("p", {class: "muted"}, "no entity matches"));
}

function versionRows(versions, clock) {
  return versions.map((v) => h("tr", {class: "version", "data-event-id": v.event_id},
    h("td", {}, v.label), h("td", {class: "rule-version"}, `v${v.rule_version}`),
    h("td", {class: "change"}, value(v.previous_value), " → ", value(v.value)),
    h("td", {class: "at"}, time(v[clock])),
    h("td", {}, h("a", {class: "cause", href: "javascript:void(0)", onclick: () => showEvent(v.event_id)},
      `${v.cause_topic}/${v.cause_partition}@${v.cause_offset}`))));
}

function showEvent(eventId) {
  document.querySelectorAll("tr.highlight").forEach((row) => row.classList.remove("highlight"));
  const row = document.querySelector(`tr.event[data-event-id="${CSS.escape(eventId)}"]`);
  row.classList.add("highlight");
  row.scrollIntoView({block: "center"});
}

async function timelinePage() {
  const p = params();
  const t = await api(`/api/entities/${encodeURIComponent(p.type)}/${encodeURIComponent(p.id)}/timeline`);
  const events = t.events.map((e) => h("tr", {class: "event", "data-event-id": e.event_id},
    h("td", {class: "num"}, e.seq), h("td", {class: "event-type"}, e.event_type),
    h("td", {class: "event-time"}, time(e.event_time)), h("td", {class: "recorded-at"}, time(e.recorded_at)),
    h("td", {class: "mono"}, `${e.partition}@${e.offset}`), h("td", {class: "mono state"}, JSON.stringify(e.payload)),
    h("td", {class: "mono state"}, JSON.stringify(e.state)),
    h("td", {class: "caused"}, e.caused.map((c) => h("div", {}, `${c.label} v${c.rule_version} → `, value(c.value))))));
  const rules = t.valid_rules.map((r) => `${r.label} v${r.version}`).join(", ");
  const plot = h("div", {id: "timeline-chart", class: "chart"});
  main.replaceChildren(h("section", {id: "timeline"},
    h("h2", {}, `${t.entity_type} `, h("span", {id: "timeline-entity"}, t.entity_id)),
    plot,
    h("h3", {}, "Events, in log order, with the state after each"),
    table("events", ["#", "event", "business time", "recorded at", "partition@offset", "payload", "state after", "labels it changed"], events),
    h("div", {class: "columns"},
      h("div", {}, h("h3", {}, "Label versions as known (recorded_at, what the processor emitted)"),
        table("known-versions", ["label", "rule", "change", "recorded at", "caused by"], versionRows(t.known, "recorded_at"))),
      h("div", {}, h("h3", {}, `Label versions as valid (event_time, re-folded with ${rules})`),
        table("valid-versions", ["label", "rule", "change", "business time", "caused by"], versionRows(t.valid, "event_time"))))));
  const marks = [
    ...t.known.map((v) => ({axis: "known (recorded_at)", at: v.recorded_at, row: v.label, value: v.value ?? "null", rule: `v${v.rule_version}`})),
    ...t.valid.map((v) => ({axis: "valid (event_time)", at: v.event_time, row: v.label, value: v.value ?? "null", rule: `v${v.rule_version}`})),
    ...t.events.flatMap((e) => [["known (recorded_at)", e.recorded_at], ["valid (event_time)", e.event_time]].map(
      ([axis, at]) => ({axis, at, row: "events", value: e.event_type, rule: "event"}))),
  ];
  // Each axis its own time scale: a burst published today and business times months ago share no range.
  await chart(plot, {data: {values: marks}, width: 900, height: 90, resolve: {scale: {x: "independent"}},
    mark: {type: "point", filled: true, size: 90},
    encoding: {x: {field: "at", type: "temporal", title: null}, y: {field: "row", type: "nominal", title: null},
      color: {field: "value", type: "nominal"}, shape: {field: "rule", type: "nominal"},
      row: {field: "axis", type: "nominal", title: null},
      tooltip: [{field: "row"}, {field: "value"}, {field: "rule"}, {field: "at", type: "temporal", format: "%Y-%m-%d %H:%M:%S.%L"}]}});
}

// ---- rule diff: two versions of one label, on either time axis ----

async function diffPage() {
  const p = params();
  const rules = (await api("/api/rules")).rules;
  const labels = [...new Set(rules.map((r) => r.name))];
  const label = p.label || labels.find((l) => rules.filter((r) => r.name === l).length > 1) || labels[0];
  const versions = rules.filter((r) => r.name === label).map((r) => [r.version, `v${r.version}${r.active ? " (online)" : ""}`]);
  const a = p.a || versions[0][0], b = p.b || versions[versions.length - 1][0], axis = p.axis || "valid";
  const run = () => go("diff", {label: document.getElementById("diff-label").value,
    a: document.getElementById("diff-a").value, b: document.getElementById("diff-b").value,
    axis: document.getElementById("diff-axis").value});
  const labelSelect = select("diff-label", labels, label);
  labelSelect.addEventListener("change", () => go("diff", {label: labelSelect.value}));
  main.replaceChildren(h("section", {}, h("h2", {}, "Rule diff"),
    h("div", {class: "controls"}, field("label", labelSelect), field("version A", select("diff-a", versions, a)),
      field("version B", select("diff-b", versions, b)),
      field("time axis", select("diff-axis", [["valid", "valid (business time)"], ["known", "known (recorded_at)"]], axis)),
      h("button", {id: "diff-run", onclick: run}, "Compare")),
    h("div", {id: "diff-result"})));
  if (!p.label) return;
  const d = await api(`/api/labels/${encodeURIComponent(label)}/diff?a=${a}&b=${b}&axis=${axis}`);
  drawDiff(d);
  const expression = (v) => rules.find((r) => r.name === label && String(r.version) === String(v));
  document.getElementById("diff-result").append(h("h3", {}, "The two versions"), h("div", {class: "columns", id: "diff-rules"},
    [a, b].map((v) => h("div", {}, h("b", {}, `v${v}`), " ", h("span", {class: "muted"}, expression(v).description),
      h("pre", {class: "mono"}, expression(v).expression)))));
}

function drawDiff(d) {
  const values = [...new Set(d.confusion.flatMap((c) => [c.a, c.b]))].sort((x, y) => (x === null) - (y === null) || String(x).localeCompare(String(y)));
  const count = (x, y) => (d.confusion.find((c) => c.a === x && c.b === y) || {entities: 0}).entities;
  const matrix = values.map((x) => h("tr", {}, h("th", {}, `v${d.version_a}: `, value(x)), values.map((y) =>
    h("td", {class: `num ${x === y ? "diagonal" : count(x, y) ? "off-diagonal" : ""}`, "data-a": x ?? "null", "data-b": y ?? "null"}, count(x, y)))));
  const differing = d.differing.map((e) => h("tr", {},
    h("td", {}, h("a", {class: "differing-entity", href: "javascript:void(0)", onclick: () => drawHistories(d, e.entity_id)}, e.entity_id)),
    h("td", {}, time(e.first_divergence)), h("td", {}, value(e.final_a)), h("td", {}, value(e.final_b))));
  const perDay = h("div", {id: "divergence-chart", class: "chart"});
  document.getElementById("diff-result").replaceChildren(
    h("div", {class: "figures", id: "diff-summary"}, figure("entities", d.entities), figure("differing entities", d.differing_entities, "bad"),
      figure(`first divergence (${d.clock})`, time(d.first_divergence))),
    h("div", {class: "columns"},
      h("div", {}, h("h3", {}, "Final labels (entities)"),
        h("table", {id: "confusion"}, h("tr", {}, h("th", {}, `v${d.version_a} \\ v${d.version_b}`), values.map((y) => h("th", {}, `v${d.version_b}: `, value(y)))), matrix)),
      h("div", {}, h("h3", {}, `First divergence per day (${d.clock})`), perDay)),
    h("h3", {}, `Entities that differ (first ${d.differing.length} by first divergence)`),
    table("differing", ["entity", `first divergence (${d.clock})`, `final v${d.version_a}`, `final v${d.version_b}`], differing),
    h("div", {id: "diff-histories"}));
  chart(perDay, {data: {values: d.divergences_by_day}, width: 380, height: 160, mark: "bar",
    encoding: {x: {field: "day", type: "temporal", timeUnit: "yearmonthdate", title: null},
      y: {field: "entities", type: "quantitative", axis: {tickMinStep: 1, format: "d"}}, tooltip: [{field: "day"}, {field: "entities"}]}});
}

async function drawHistories(d, entityId) {
  const q = `a=${d.version_a}&b=${d.version_b}&axis=${d.axis}`;
  const e = await api(`/api/labels/${encodeURIComponent(d.label)}/diff/${encodeURIComponent(entityId)}?${q}`);
  const rows = (history) => history.map((v) => h("tr", {class: "step"}, h("td", {class: "at"}, time(v.at)),
    h("td", {class: "change"}, value(v.previous_value), " → ", value(v.value))));
  const link = `#/entity?type=${encodeURIComponent(d.entity_type)}&id=${encodeURIComponent(entityId)}`;
  document.getElementById("diff-histories").replaceChildren(h("section", {},
    h("h3", {}, `${d.label} of `, h("a", {id: "histories-entity", href: link}, entityId), ` under both versions (${e.clock})`),
    h("div", {class: "columns"},
      h("div", {}, h("h3", {}, `v${e.version_a}`), table("history-a", [e.clock, "change"], rows(e.history_a))),
      h("div", {}, h("h3", {}, `v${e.version_b}`), table("history-b", [e.clock, "change"], rows(e.history_b))))));
}

// ---- labels: distribution, positive rate and drift over time ----

async function labelsPage() {
  const p = params();
  const labels = Object.keys(meta.labels);
  const label = p.label || labels[0], axis = p.axis || "valid", win = p.window || "day";
  const run = () => go("labels", {label: document.getElementById("monitor-label").value,
    axis: document.getElementById("monitor-axis").value, window: document.getElementById("monitor-window").value});
  main.replaceChildren(h("section", {}, h("h2", {}, "Labels"),
    h("div", {class: "controls"}, field("label", select("monitor-label", labels, label)),
      field("time axis", select("monitor-axis", [["valid", "valid (business time)"], ["known", "known (recorded_at)"]], axis)),
      field("window", select("monitor-window", ["hour", "day", "week"], win)),
      h("button", {id: "monitor-run", onclick: run}, "Show")),
    h("div", {id: "monitor-result"})));
  const r = await api(`/api/labels/${encodeURIComponent(label)}/monitor?axis=${axis}&window=${win}`);
  const rates = h("div", {id: "rate-chart", class: "chart"}), shares = h("div", {id: "distribution-chart", class: "chart"});
  const crossed = r.drift.filter((d) => d.crossed);
  const drift = r.drift.map((d) => h("tr", {class: d.crossed ? "drift crossed" : "drift"},
    h("td", {}, d.rule_version === null ? "all versions" : `v${d.rule_version}`), h("td", {}, d.statistic), h("td", {}, `${time(d.reference[0])} – ${time(d.reference[1])}`),
    h("td", {}, `${time(d.current[0])} – ${time(d.current[1])}`), h("td", {class: "num"}, d.value.toFixed(4)),
    h("td", {class: "num"}, d.threshold), h("td", {class: "num"}, d.p_value === null ? "-" : d.p_value.toExponential(2)),
    h("td", {}, d.crossed ? h("b", {class: "value-positive"}, "drift") : "ok")));
  document.getElementById("monitor-result").replaceChildren(
    h("div", {class: "figures"}, figure("windows", new Set(r.rates.map((x) => x.window_start)).size),
      figure("drift markers", crossed.length, crossed.length ? "bad" : "good")),
    h("h3", {}, `Positive rate per ${r.window} (${r.axis} axis); red rules: drift`), rates,
    h("h3", {}, "Distribution of values (share of labelled entities)"), shares,
    h("h3", {}, "Drift checks"), table("drift", ["rule", "statistic", "reference", "current", "value", "threshold", "p", ""], drift));
  await chart(rates, {width: 900, height: 200, layer: [
    {data: {values: r.rates}, mark: {type: "line", point: true},
      encoding: {x: {field: "window_start", type: "temporal", title: null}, y: {field: "positive_rate", type: "quantitative"},
        color: {field: "rule_version", type: "nominal", title: "rule"},
        tooltip: ["window_start", "rule_version", "positive_rate", "labelled", "unlabelled", "coverage", "new_labels", "flips"].map((f) => ({field: f}))}},
    {data: {values: crossed.map((d) => ({at: d.current[0], what: `${d.statistic} ${d.value.toFixed(3)} > ${d.threshold}`}))},
      mark: {type: "rule", color: "#b3261e", strokeDash: [4, 3], strokeWidth: 2},
      encoding: {x: {field: "at", type: "temporal"}, tooltip: [{field: "what"}]}}]});
  await chart(shares, {data: {values: r.distribution.filter((d) => d.labels > 0)},  // no empty pieces
    width: 900, height: 160, mark: "bar",
    encoding: {x: {field: "window_start", type: "temporal", title: null}, y: {field: "share", type: "quantitative", stack: "normalize"},
      color: {field: "value", type: "nominal"}, tooltip: ["window_start", "rule_version", "value", "labels", "share"].map((f) => ({field: f}))}});
}

// ---- health: processor and materializer lag ----

async function healthPage() {
  if (!document.getElementById("health")) {  // a refresh keeps the last answer until the next one is in
    main.replaceChildren(h("section", {}, h("h2", {}, "Health"), h("p", {class: "muted"}, "asking the cluster…")));
  }
  const report = await api("/api/health");
  const parts = report.parts.map((part) => {
    if (part.error) return h("section", {class: "part", "data-name": part.name}, h("h3", {}, part.name), h("p", {class: "error"}, part.error));
    const ago = part.last_progress_at ? `${Math.max(0, report.checked_at - part.last_progress_at).toFixed(0)} s ago` : "never";
    const partitions = part.partitions.map((x) => h("tr", {class: x.lag ? "behind" : ""}, h("td", {}, `${x.topic}/${x.partition}`),
      h("td", {class: "num"}, x.end), h("td", {class: "num"}, x.position ?? "-"), h("td", {class: "num lag"}, x.lag), h("td", {}, x.owner || "")));
    const members = part.members.map((m) => h("tr", {}, h("td", {}, m.client_id), h("td", {}, m.host), h("td", {class: "num"}, m.partitions.length),
      h("td", {}, m.status ? String(m.status.healthy) : (m.error || "-"))));
    return h("section", {class: "part", "data-name": part.name},
      h("h3", {}, part.name, part.state ? ` (group ${part.state})` : ""),
      h("div", {class: "figures"}, figure("lag", part.lag, part.lag ? "bad" : "good"), figure("last progress", ago)),
      table(`${part.name}-partitions`, ["partition", "end", "position", "lag", "owner"], partitions),
      part.name === "processor" ? (members.length ? table("workers", ["worker", "host", "partitions", "healthy"], members)
        : h("p", {class: "muted"}, "no worker in the processor's group")) : "");
  });
  const w = report.warehouse;
  main.replaceChildren(h("section", {id: "health"}, h("h2", {}, "Health ", h("span", {class: "muted"},
    `checked ${time(new Date(report.checked_at * 1000).toISOString())}, every ${REFRESH_S} s`)), h("div", {class: "columns"}, ...parts),
    h("section", {}, h("h3", {}, "warehouse"), h("p", {}, `${w.path}: last commit ${w.last_commit ?? "none"}, complete through `,
      w.complete_through_ms ? time(new Date(w.complete_through_ms).toISOString()) : "-"))));
}

const REFRESH_S = 10;  // the health page asks the cluster again while it is shown
let refresh = null;

const pages = {entities: entitiesPage, entity: timelinePage, labels: labelsPage, diff: diffPage, health: healthPage};

async function route() {
  const page = (location.hash.slice(2).split("?")[0]) || "entities";
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("current", a.dataset.page === (page === "entity" ? "entities" : page)));
  try {
    meta = meta || await api("/api/meta");
    document.getElementById("project").textContent = `${meta.project} explorer`;
    document.getElementById("warehouse").textContent = meta.warehouse;
    await (pages[page] || entitiesPage)();
  } catch (error) {
    main.append(h("p", {class: "error", id: "error"}, error.message));
  }
  document.body.dataset.page = page;
  clearTimeout(refresh);
  if (page === "health") refresh = setTimeout(route, REFRESH_S * 1000);
}

window.addEventListener("hashchange", route);
route();
