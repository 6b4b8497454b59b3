// odlite browse: the page draws; the server matches boxes and counts errors (reports/error_analysis.py).
"use strict";

const PAGE_SIZE = 120;
const KIND_NAMES = {
  missed: "missed", false_alarm: "false alarm", wrong_class: "wrong class",
  poor_localisation: "poor localisation", found: "found", correct: "correct",
};
const SVG = "http://www.w3.org/2000/svg";
const state = { summary: null, analysis: null, shown: [], limit: PAGE_SIZE, open: null, request: 0 };
const $ = (id) => document.getElementById(id);

function element(tag, attributes = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

function labelName(id) {
  const label = state.summary.labels.find((l) => l.id === id);
  return label ? label.name : `class ${id}`;
}

function labelColour(id) {
  const label = state.summary.labels.find((l) => l.id === id);
  return label ? label.colour : "#999999";
}

function filters() {
  return { cls: $("class-filter").value === "" ? null : Number($("class-filter").value), kind: $("kind-filter").value };
}

function errorsOf(model, index, { cls, kind }) {
  return state.analysis.models[model].images[index].errors.filter(
    ([k, label]) => (cls === null || label === cls) && (kind === "" || kind === "any" || k === kind),
  );
}

function visible(index) {
  const f = filters();
  const image = state.summary.images[index];
  if (f.cls !== null) {
    const hasTruth = image.truth.some((t) => t.label === f.cls);
    const hasFound = state.analysis.models.some((m) => m.images[index].found.some((d) => d.label === f.cls));
    if (!hasTruth && !hasFound) return false;
  }
  if (f.kind === "") return true;
  return state.analysis.models.some((_, m) => errorsOf(m, index, f).length > 0);
}

function ordered() {
  const f = filters();
  const indices = state.summary.images.map((_, i) => i).filter(visible);
  const sort = $("sort").value;
  const names = state.summary.images;
  if (sort === "name") indices.sort((a, b) => names[a].filename.localeCompare(names[b].filename, undefined, { numeric: true }));
  if (sort.startsWith("errors-")) {
    const m = Number(sort.slice(7));
    const count = (i) => errorsOf(m, i, { ...f, kind: f.kind === "any" ? "" : f.kind }).length;
    indices.sort((a, b) => count(b) - count(a) || a - b);
  }
  return indices;
}

function boxes(index, model, cls, labelled) {
  const image = state.summary.images[index];
  const result = state.analysis.models[model].images[index];
  const svg = element("svg:svg", { viewBox: `0 0 ${image.width} ${image.height}`, preserveAspectRatio: "none" });
  image.truth.forEach((t, i) => {
    if (cls !== null && t.label !== cls) return;
    const outcome = result.truth[i];
    const rect = rectangle(t.box, outcome.kind === "found" ? "truth" : "truth error", "#ffffff");
    rect.dataset.kind = outcome.kind;
    rect.append(element("svg:title", { text: `truth ${labelName(t.label)}: ${KIND_NAMES[outcome.kind]}` }));
    svg.append(rect);
  });
  for (const d of result.found) {
    if (cls !== null && d.label !== cls) continue;
    const rect = rectangle(d.box, d.kind === "correct" ? "det" : "det error", labelColour(d.label));
    rect.dataset.kind = d.kind;
    const text = `${labelName(d.label)} ${d.score.toFixed(2)}: ${KIND_NAMES[d.kind]} (IoU ${d.iou.toFixed(2)})`;
    rect.append(element("svg:title", { text }));
    svg.append(rect);
    if (labelled) {
      const size = Math.max(10, Math.round(Math.min(image.width, image.height) / 32));
      svg.append(element("svg:text", {
        x: d.box[0] + 2, y: Math.max(size, d.box[1] - 3), "font-size": size, fill: labelColour(d.label),
        text: `${labelName(d.label)} ${d.score.toFixed(2)}`,
      }));
    }
  }
  return svg;
}

function rectangle([xmin, ymin, xmax, ymax], className, colour) {
  return element("svg:rect", {
    x: xmin, y: ymin, width: Math.max(0, xmax - xmin), height: Math.max(0, ymax - ymin),
    class: className, stroke: colour, "vector-effect": "non-scaling-stroke",
  });
}

function panel(index, model, side) {
  const image = state.summary.images[index];
  const f = filters();
  const source = side ? `/api/image/${image.id}?side=${side}` : `/api/image/${image.id}`;
  const frame = element("div", { class: "frame" },
    element("img", { src: source, alt: image.filename, loading: "lazy", width: image.width, height: image.height }),
    boxes(index, model, f.cls, !side));
  const errors = errorsOf(model, index, { ...f, kind: f.kind === "any" ? "" : f.kind }).length;
  const name = state.summary.models[model].name;
  const short = state.summary.models.length > 1 ? `${"AB"[model]}: ` : "";
  const caption = element("figcaption", { text: `${short}${errors} error${errors === 1 ? "" : "s"}`, title: name });
  return element("figure", { class: "panel", "data-model": model }, frame, caption);
}

function renderGrid() {
  state.shown = ordered();
  const grid = $("grid");
  grid.replaceChildren();
  for (const index of state.shown.slice(0, state.limit)) {
    const image = state.summary.images[index];
    const card = element("article", { class: "card", "data-id": image.id, tabindex: 0 },
      element("h3", { text: image.filename }),
      element("div", { class: "panels" }, ...state.summary.models.map((_, m) => panel(index, m, 320))));
    card.addEventListener("click", () => openViewer(state.shown.indexOf(index)));
    card.addEventListener("keydown", (e) => { if (e.key === "Enter") openViewer(state.shown.indexOf(index)); });
    grid.append(card);
  }
  const total = state.summary.images.length;
  $("shown-count").textContent = `${state.shown.length} of ${total} images`;
  $("more").hidden = state.shown.length <= state.limit;
}

function renderCounts() {
  const kinds = state.summary.kinds;
  const tables = state.analysis.models.map((model, m) => {
    const head = element("tr", {}, element("th", { text: "class" }),
      ...kinds.map((k) => element("th", { text: KIND_NAMES[k] })), element("th", { text: "all" }));
    const rows = state.summary.labels.map((label) => {
      const counts = model.counts[label.name];
      const cells = kinds.map((k) => {
        const cell = element("td", { class: "count", "data-class": label.id, "data-kind": k, text: counts[k] });
        cell.title = `show the images with ${KIND_NAMES[k]} ${label.name}`;
        cell.addEventListener("click", () => {
          $("class-filter").value = String(label.id);
          $("kind-filter").value = k;
          $("sort").value = `errors-${m}`;
          state.limit = PAGE_SIZE;
          renderGrid();
        });
        return cell;
      });
      const all = kinds.reduce((sum, k) => sum + counts[k], 0);
      return element("tr", {}, element("th", { text: label.name }), ...cells, element("td", { text: all }));
    });
    const prefix = state.summary.models.length > 1 ? `${"AB"[m]}: ` : "";
    const caption = element("caption", { text: `${prefix}${state.summary.models[m].name}: errors per class` });
    return element("table", { class: "counts" }, caption, element("thead", {}, head), element("tbody", {}, ...rows));
  });
  $("counts").replaceChildren(...tables);
}

async function refresh() {
  const threshold = Number($("threshold").value);
  $("threshold-value").textContent = threshold.toFixed(2);
  const request = ++state.request;
  const analysis = await getJSON(`/api/analysis?threshold=${threshold}`);
  if (request !== state.request) return; // a later move of the slider already asked
  state.analysis = analysis;
  renderCounts();
  renderGrid();
  if (state.open !== null) renderViewer();
  document.body.dataset.threshold = threshold.toFixed(2);
}

function boxTable(index, model) {
  const image = state.summary.images[index];
  const result = state.analysis.models[model].images[index];
  const fmt = (box) => box.map((v) => v.toFixed(0)).join(", ");
  const rows = [];
  image.truth.forEach((t, i) => {
    const o = result.truth[i];
    rows.push(["truth", labelName(t.label), "", o.iou.toFixed(2), KIND_NAMES[o.kind], fmt(t.box), o.kind !== "found"]);
  });
  for (const d of result.found) {
    rows.push(["detection", labelName(d.label), d.score.toFixed(3), d.iou.toFixed(2), KIND_NAMES[d.kind], fmt(d.box),
      d.kind !== "correct"]);
  }
  const head = element("tr", {}, ...["box", "class", "score", "IoU", "outcome", "xmin, ymin, xmax, ymax"].map(
    (name) => element("th", { text: name })));
  const body = rows.map(([what, cls, score, iou, outcome, box, wrong]) => element("tr", { class: wrong ? "wrong" : "" },
    ...[what, cls, score, iou, outcome, box].map((v) => element("td", { text: v }))));
  const caption = element("caption", { text: `${state.summary.models[model].name} at score ≥ ${state.analysis.threshold}` });
  return element("table", { class: "boxes", "data-model": model }, caption, element("thead", {}, head),
    element("tbody", {}, ...body));
}

function renderViewer() {
  const index = state.shown[state.open];
  if (index === undefined) return closeViewer();
  const image = state.summary.images[index];
  $("viewer-title").textContent = `${image.filename} (${image.width}×${image.height})`;
  $("viewer-panels").replaceChildren(...state.summary.models.map((_, m) => panel(index, m, null)));
  $("viewer-tables").replaceChildren(...state.summary.models.map((_, m) => boxTable(index, m)));
}

function openViewer(position) {
  state.open = position;
  renderViewer();
  if (!$("viewer").open) $("viewer").showModal();
}

function closeViewer() {
  state.open = null;
  if ($("viewer").open) $("viewer").close();
}

function step(by) {
  if (state.open === null) return;
  state.open = Math.min(state.shown.length - 1, Math.max(0, state.open + by));
  renderViewer();
}

function metricTable(metrics) {
  const names = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100"];
  const fmt = (v) => (typeof v === "number" && v >= 0 ? v.toFixed(3) : "n/a");
  const rows = names.filter((n) => n in metrics).map((n) => element("tr", {},
    element("th", { text: n }), element("td", { text: fmt(metrics[n]) })));
  const perClass = Object.entries(metrics.per_class || {}).map(([name, v]) => element("tr", {},
    element("th", { text: name }), element("td", { text: v.ground_truth }), element("td", { text: fmt(v.AP) }),
    element("td", { text: fmt(v.AP50) })));
  const classHead = element("tr", {}, ...["class", "boxes", "AP", "AP50"].map((n) => element("th", { text: n })));
  return [
    element("table", { class: "metrics" }, element("tbody", {}, ...rows)),
    element("table", { class: "per-class" }, element("thead", {}, classHead), element("tbody", {}, ...perClass)),
  ];
}

function renderReport() {
  const columns = state.summary.models.map((model, m) => {
    const about = model.metrics.step !== undefined && model.metrics.step !== null ? `step ${model.metrics.step}, ` : "";
    const images = model.metrics.images ? `${model.metrics.images} images` : "no metrics.json";
    const pictures = model.pictures.map((p) => element("img", { src: `/api/report/${m}/${p}`, alt: p, class: "plot" }));
    return element("div", { class: "report-column" },
      element("h2", { text: state.summary.models.length > 1 ? `${"AB"[m]}: ${model.name}` : model.name }),
      element("p", { text: `${about}${images}; report in ${model.report}. AP is mAP@0.5:0.95, AP50 mAP@0.5.` }),
      ...(model.metrics.AP !== undefined ? metricTable(model.metrics) : []),
      ...pictures);
  });
  $("report-view").replaceChildren(...columns);
}

function showTab(name) {
  $("images-view").hidden = name !== "images";
  $("report-view").hidden = name !== "report";
  $("tab-images").classList.toggle("active", name === "images");
  $("tab-report").classList.toggle("active", name === "report");
}

async function start() {
  state.summary = await getJSON("/api/summary");
  const models = state.summary.models;
  $("model-names").textContent = models.length > 1 ? `A: ${models[0].name}  vs  B: ${models[1].name}` : models[0].name;
  $("threshold").value = state.summary.threshold;
  for (const label of state.summary.labels) {
    $("class-filter").append(element("option", { value: label.id, text: label.name }));
  }
  for (const kind of state.summary.kinds) $("kind-filter").append(element("option", { value: kind, text: KIND_NAMES[kind] }));
  state.summary.models.forEach((model, m) => {
    const name = state.summary.models.length > 1 ? `most errors first (${"AB"[m]}: ${model.name})` : "most errors first";
    $("sort").append(element("option", { value: `errors-${m}`, text: name }));
  });
  let timer = null;
  $("threshold").addEventListener("input", () => {
    $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
    clearTimeout(timer);
    timer = setTimeout(refresh, 120);
  });
  for (const id of ["class-filter", "kind-filter", "sort"]) {
    $(id).addEventListener("change", () => { state.limit = PAGE_SIZE; renderGrid(); });
  }
  $("more").addEventListener("click", () => { state.limit += PAGE_SIZE; renderGrid(); });
  $("tab-images").addEventListener("click", () => showTab("images"));
  $("tab-report").addEventListener("click", () => showTab("report"));
  $("close").addEventListener("click", closeViewer);
  $("previous").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("viewer").addEventListener("close", () => { state.open = null; });
  document.addEventListener("keydown", (e) => {
    if (state.open === null) return;
    if (e.key === "ArrowLeft") step(-1);
    if (e.key === "ArrowRight") step(1);
  });
  renderReport();
  await refresh();
  document.body.dataset.ready = "true";
}

start().catch((error) => {
  document.body.prepend(element("p", { class: "failure", text: `The page could not load: ${error.message}` }));
});
