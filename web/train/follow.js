// Musubi Tuner: real recommended values on the Train node and the options nodes. An input left at
// its "follow the recommendation" value (0, or "(recommended)") shows what the architecture of the
// wired Models node recommends, read from GET /musubi-tuner/recommended. Numbers take that value
// (so the arrows start from it) and keep following it - through a switch of the Models node or its
// task - until the user changes them; the values the node put there are kept in the node's
// properties, so a saved workflow keeps following. Lists keep "(recommended)" and show what it
// means. Without a wired Models node an unset number says "recommended for the architecture".

import { t } from "./text.js";

export const FOLLOWERS = new Set(["MusubiTrainLoRA", "MusubiOptimizerOptions", "MusubiMemoryOptions",
  "MusubiTimestepOptions", "MusubiSampleOptions", "MusubiLaunchOptions"]);
export const UNSET_CHOICE = "(recommended)";
// The inputs that follow a recommendation when unset (nodes/recommend.py: NUMBERS, CHOICES).
export const KNOWN_NUMBERS = new Set(["max_train_epochs", "network_dim", "network_alpha", "learning_rate",
  "lr_warmup_steps", "discrete_flow_shift"]);
export const KNOWN_CHOICES = new Set(["optimizer_type", "lr_scheduler", "fp8", "mixed_precision", "attention",
  "timestep_sampling"]);
const PUT = "musubi_recommended"; // node.properties: input -> the value this extension put there
const cache = new Map(); // query -> Promise of the route's answer (or null)
let applying = false; // this extension is setting a value: not the user's change

// 2e-4 rather than 0.00020, as musubi's docs write learning rates.
export function formatNumber(value) {
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  if (n !== 0 && Math.abs(n) < 1e-3) {
    const short = n.toExponential(0);
    if (Number(short) === n) return short.replace("e-0", "e-").replace("e+0", "e+");
    return String(n);
  }
  return String(Math.round(n * 1e6) / 1e6);
}

function same(a, b) {
  return Math.abs(Number(a) - Number(b)) <= 1e-12 * Math.max(1, Math.abs(Number(b)));
}

function inputNode(node, name) {
  const slot = node.inputs?.findIndex((input) => input.name === name) ?? -1;
  if (slot < 0) return null;
  let source = node.getInputNode?.(slot) ?? null;
  for (let hops = 0; source && source.type === "Reroute" && hops < 50; hops++) source = source.getInputNode?.(0);
  return source;
}

function linkOf(graph, id) {
  return graph?.getLink?.(id) ?? graph?.links?.get?.(id) ?? graph?.links?.[id] ?? null;
}

// The Musubi Models node a Train node reads, or that an options node's chain ends in.
export function modelsNodeOf(node) {
  const seen = new Set();
  let current = node;
  while (current && !seen.has(current.id)) {
    seen.add(current.id);
    if (current.type === "MusubiTrainLoRA") {
      const models = inputNode(current, "models");
      return models?.type?.startsWith("MusubiModels") ? models : null;
    }
    const link = linkOf(current.graph, current.outputs?.[0]?.links?.[0]);
    current = link ? current.graph.getNodeById(link.target_id) : null;
  }
  return null;
}

async function recommendation(api, models) {
  const query = new URLSearchParams({ node: models.type });
  for (const widget of models.widgets ?? []) {
    if (["string", "boolean"].includes(typeof widget.value) && widget.name !== "node") {
      query.set(widget.name, String(widget.value));
    }
  }
  const key = query.toString();
  if (!cache.has(key)) {
    cache.set(key, api.fetchApi(`/musubi-tuner/recommended?${key}`)
      .then((response) => (response.ok ? response.json() : null))
      .catch(() => null));
  }
  return cache.get(key);
}

function nativeDisplay(widget) {
  for (let proto = Object.getPrototypeOf(widget); proto; proto = Object.getPrototypeOf(proto)) {
    const found = Object.getOwnPropertyDescriptor(proto, "_displayValue");
    if (found?.get) return found.get;
  }
  return null;
}

function following(node, widget) {
  if (widget.type === "combo") return widget.value === UNSET_CHOICE;
  const put = node.properties?.[PUT] ?? {};
  return Number(widget.value) === 0 || (widget.name in put && same(widget.value, put[widget.name]));
}

function sourceText(app, state) {
  if (!state.entry) return t(app, "forTheArchitecture");
  return state.entry.source === "recommended" ? t(app, "recommendedFor", { arch: state.arch }) : t(app, "musubiDefault");
}

// What the widget shows in the classic canvas (its _displayValue); null = the frontend's own.
export function shownValue(app, node, widget) {
  const state = widget.__musubi;
  if (!state || !following(node, widget)) return null;
  if (!state.entry) return widget.type === "combo" ? null : t(app, "forTheArchitecture");
  const value = widget.type === "combo" ? state.entry.value : formatNumber(widget.value);
  return `${value} (${sourceText(app, state)})`;
}

// Nodes 2.0 draws its own inputs, not _displayValue, but it shows a widget's label: there the
// note goes into the label; the classic canvas keeps the frontend's label.
function vueNodes() {
  return Boolean(globalThis.LiteGraph?.vueNodesMode);
}

// Through setValue, as the widget's own arrows do: Nodes 2.0 of 1.32 redraws only then.
function setWidgetValue(app, node, widget, value) {
  if (widget.value === value) return;
  applying = true;
  try {
    if (typeof widget.setValue === "function") widget.setValue(value, { e: undefined, node, canvas: app.canvas });
    else widget.value = value;
  } finally {
    applying = false;
  }
}

function labelFor(app, node, widget) {
  const state = widget.__musubi;
  if (!vueNodes() || !following(node, widget) || (widget.type === "combo" && !state.entry)) return state.label;
  const value = widget.type === "combo" ? `${state.entry.value}, ` : "";
  return `${state.label} (${value}${sourceText(app, state)})`;
}

function decorate(app, node, widget) {
  if (widget.__musubi) return;
  widget.__musubi = { entry: null, arch: "", label: widget.label ?? widget.name };
  const native = nativeDisplay(widget);
  try {
    Object.defineProperty(widget, "_displayValue", {
      configurable: true,
      get() {
        if (this.computedDisabled) return "";
        return shownValue(app, node, this) ?? (native ? native.call(this) : String(this.value));
      },
    });
  } catch (error) {
    console.warn("[musubi-tuner] cannot show the recommended value of", widget.name, error);
  }
  const callback = widget.callback;
  widget.callback = function (value, ...rest) {
    // the user changed it: it no longer follows the recommendation (0 follows again)
    if (!applying && node.properties?.[PUT]) delete node.properties[PUT][widget.name];
    return callback?.call(this, value, ...rest);
  };
}

// Bring one node's following inputs up to date with its Models node (or its absence).
export async function refreshNode(app, api, node) {
  if (!FOLLOWERS.has(node?.type)) return;
  const models = modelsNodeOf(node);
  const answer = models ? await recommendation(api, models) : null;
  const values = answer?.values ?? {};
  node.properties ??= {};
  const put = (node.properties[PUT] ??= {});
  for (const widget of node.widgets ?? []) {
    const isNumber = widget.type === "number";
    if (!(isNumber ? KNOWN_NUMBERS : KNOWN_CHOICES).has(widget.name)) continue;
    decorate(app, node, widget);
    const entry = values[widget.name] ?? null;
    widget.__musubi.entry = entry;
    widget.__musubi.arch = answer?.display_name ?? "";
    if (isNumber && following(node, widget)) {
      const target = entry ? Number(entry.value) : 0;
      setWidgetValue(app, node, widget, target);
      if (entry) put[widget.name] = target;
      else delete put[widget.name];
    }
    const label = labelFor(app, node, widget);
    if (widget.label !== label) widget.label = label;
  }
  node.setDirtyCanvas?.(true, true);
}

