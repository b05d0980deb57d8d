// Musubi Tuner: the Train node's frontend. Real recommended values on the Train node and the options
// nodes (train/follow.js), the sample prompt box's hint, and workflows saved with the Train node of
// version 0.1.0 opened with their settings moved onto options nodes (train/migrate.js).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { FOLLOWERS, refreshNode } from "./train/follow.js";
import { OPTION_NODES, TRAIN, migrateWorkflow } from "./train/migrate.js";
import { loadTexts, t } from "./train/text.js";

const MIN_WIDTH = 440;
const OPTIONS_MIN_WIDTH = 400;
const defs = {}; // the definitions of the Train node and the options nodes, as registered
let migrated = [];
let scheduled = null;

// A node's id in the node definitions; in nodeCreated the frontend has not set node.type yet.
function kind(node) {
  return node?.comfyClass ?? node?.constructor?.comfyClass ?? node?.type ?? "";
}

function graphNodes() {
  return app.graph?._nodes ?? app.graph?.nodes ?? [];
}

// Every follower again, once, after the current event (links and values settle first).
function refreshAll() {
  if (scheduled) return;
  scheduled = setTimeout(async () => {
    scheduled = null;
    for (const node of graphNodes()) {
      if (FOLLOWERS.has(node.type)) await refreshNode(app, api, node);
    }
  }, 0);
}

function samplePlaceholder(node) {
  const widget = node.widgets?.find((w) => w.name === "sample_prompts");
  if (!widget) return;
  const text = t(app, "samplePlaceholder");
  widget.options ??= {};
  widget.options.placeholder = text;
  const element = widget.inputEl ?? widget.element;
  if (element && "placeholder" in element) element.placeholder = text;
}

function chainConnections(nodeType) {
  const original = nodeType.prototype.onConnectionsChange;
  nodeType.prototype.onConnectionsChange = function (...args) {
    refreshAll();
    return original?.apply(this, args);
  };
}

app.registerExtension({
  name: "musubi_tuner.train",
  async setup() {
    await loadTexts(api);
    for (const node of graphNodes()) if (kind(node) === TRAIN) samplePlaceholder(node);
    refreshAll();
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const name = nodeData?.name ?? "";
    if (name === TRAIN || OPTION_NODES.includes(name)) defs[name] = nodeData;
    if (FOLLOWERS.has(name) || name.startsWith("MusubiModels")) chainConnections(nodeType);
  },
  nodeCreated(node) {
    if (kind(node) === TRAIN) samplePlaceholder(node);
    // room for "2e-4 (recommended for Wan 2.1 / 2.2)" beside the input's name
    const width = kind(node) === TRAIN ? MIN_WIDTH : OPTIONS_MIN_WIDTH;
    if (FOLLOWERS.has(kind(node)) && node.size?.[0] < width) node.setSize?.([width, node.size[1]]);
    if (FOLLOWERS.has(kind(node))) refreshAll();
    if (kind(node).startsWith("MusubiModels")) {
      // a new task or model version may change the recommendation
      for (const widget of node.widgets ?? []) {
        const callback = widget.callback;
        widget.callback = function (...args) {
          refreshAll();
          return callback?.apply(this, args);
        };
      }
    }
  },
  async beforeConfigureGraph(graphData) {
    migrated = migrateWorkflow(graphData, defs);
  },
  async afterConfigureGraph() {
    refreshAll();
    const added = migrated.flatMap((m) => m.added);
    if (migrated.length) {
      const names = [...new Set(added)].map((type) => defs[type]?.display_name ?? type).join(", ") || "-";
      app.extensionManager?.toast?.add?.({
        severity: "info", summary: t(app, "migratedTitle"), detail: t(app, "migrated", { nodes: names }), life: 12000,
      });
    }
    migrated = [];
  },
});
