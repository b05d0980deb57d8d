// Musubi Tuner: opening a workflow saved before the Train node's advanced inputs moved to the options
// nodes. The frontend gives a node's saved widget values to its widgets by position, so a Train node
// of version 0.1.0 (32 values) would put them into the wrong inputs. Before the graph is built
// (beforeConfigureGraph), each such node gets its values by name, and every value that differs from
// its default goes onto a new options node of its subject, chained into the Train node's options
// input: the workflow trains exactly as before. Pure data: the workflow JSON in, changed in place.

export const TRAIN = "MusubiTrainLoRA";
export const OPTIONS_TYPE = "MUSUBI_TRAINING_OPTIONS";
export const OPTION_NODES = ["MusubiOptimizerOptions", "MusubiMemoryOptions", "MusubiTimestepOptions",
  "MusubiSampleOptions", "MusubiLaunchOptions"];
// The Train node's widgets in version 0.1.0, in order.
export const TRAIN_0_1_0 = ["output_name", "network_dim", "network_alpha", "learning_rate", "optimizer_type",
  "optimizer_custom", "optimizer_args", "lr_scheduler", "lr_warmup_steps", "max_train_epochs", "max_train_steps",
  "save_every_n_epochs", "seed", "attention", "mixed_precision", "fp8", "blocks_to_swap", "gradient_checkpointing",
  "timestep_sampling", "discrete_flow_shift", "sample_prompts", "sample_every_n_epochs", "sample_every_n_steps",
  "sample_at_first", "sample_prompts_file", "initial_weights", "resume", "launcher", "num_processes", "gpu_ids",
  "extra_args", "dry_run"];
const WIDGET_TYPES = new Set(["INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"]);
const GAP = 30;
const TRAIN_HEIGHT = 480; // the Train node's height with its essentials (0.1.0 saved about 900)

function specs(def) {
  return { ...(def?.input?.required ?? {}), ...(def?.input?.optional ?? {}) };
}

// A node definition's widget inputs, in order (what its saved widgets_values follow).
export function widgetNames(def) {
  return Object.entries(specs(def))
    .filter(([, spec]) => Array.isArray(spec?.[0]) || WIDGET_TYPES.has(spec?.[0]))
    .map(([name]) => name);
}

export function defaultOf(def, name) {
  const spec = specs(def)[name];
  if (!spec) return undefined;
  if (spec[1] && "default" in spec[1]) return spec[1].default;
  return Array.isArray(spec[0]) ? spec[0][0] : undefined;
}

function heightOf(def) {
  return 60 + widgetNames(def).length * 24;
}

function idState(data) {
  const state = data.state && typeof data.state === "object" ? data.state : null;
  const maxId = (list) => Math.max(0, ...list.map((x) => Number(Array.isArray(x) ? x[0] : x?.id) || 0));
  return {
    node: Math.max(Number(state?.lastNodeId ?? data.last_node_id ?? 0) || 0, maxId(data.nodes)),
    link: Math.max(Number(state?.lastLinkId ?? data.last_link_id ?? 0) || 0, maxId(data.links ?? [])),
    save(node, link) {
      if (state) Object.assign(state, { lastNodeId: node, lastLinkId: link });
      if (state === null || "last_node_id" in data) Object.assign(data, { last_node_id: node, last_link_id: link });
    },
  };
}

function addLink(data, id, from, to, toSlot) {
  data.links ??= [];
  const objects = data.links.length > 0 && !Array.isArray(data.links[0]);
  data.links.push(objects
    ? { id, origin_id: from, origin_slot: 0, target_id: to, target_slot: toSlot, type: OPTIONS_TYPE }
    : [id, from, 0, to, toSlot, OPTIONS_TYPE]);
}

// Rewrites every Train node of version 0.1.0 in `data` (a workflow as saved); `defs` maps node ids
// to their definitions (/object_info). Returns [{node, added: [option node types]}].
export function migrateWorkflow(data, defs) {
  const train = defs?.[TRAIN];
  if (!train || !Array.isArray(data?.nodes)) return [];
  const ids = idState(data);
  let lastNode = ids.node;
  let lastLink = ids.link;
  const done = [];
  for (const node of [...data.nodes]) {
    const values = node?.widgets_values;
    if (node?.type !== TRAIN || !Array.isArray(values) || values.length !== TRAIN_0_1_0.length) continue;
    if ((node.inputs ?? []).some((input) => input?.name === "options")) continue;
    const old = Object.fromEntries(TRAIN_0_1_0.map((name, i) => [name, values[i]]));
    node.widgets_values = widgetNames(train).map((name) => (name in old ? old[name] : defaultOf(train, name)));

    const chain = [];
    for (const type of OPTION_NODES) {
      const def = defs[type];
      const names = widgetNames(def);
      if (!def || !names.some((name) => name in old && old[name] !== defaultOf(def, name))) continue;
      chain.push({ type, def, values: names.map((name) => (name in old ? old[name] : defaultOf(def, name))) });
    }
    const pos = Array.isArray(node.pos) ? node.pos : [node.pos?.[0] ?? 0, node.pos?.[1] ?? 0];
    const width = Math.max(Array.isArray(node.size) ? node.size[0] : 0, 440);
    node.size = [width, TRAIN_HEIGHT];
    let y = pos[1] + TRAIN_HEIGHT + GAP;
    let previous = null; // [node id, link id into its successor]
    node.inputs ??= [];
    for (const [index, item] of chain.entries()) {
      const id = ++lastNode;
      const inLink = previous ? previous[1] : null;
      const outLink = ++lastLink;
      const last = index === chain.length - 1;
      data.nodes.push({
        id, type: item.type, pos: [pos[0], y], size: [width, heightOf(item.def)], flags: {}, order: node.order ?? 0,
        mode: 0, inputs: [{ name: "options", type: OPTIONS_TYPE, link: inLink, shape: 7 }],
        outputs: [{ name: "options", type: OPTIONS_TYPE, links: [outLink], slot_index: 0 }],
        properties: { "Node name for S&R": item.type }, widgets_values: item.values,
      });
      if (previous) addLink(data, previous[1], previous[0], id, 0);
      if (last) {
        node.inputs.push({ name: "options", type: OPTIONS_TYPE, link: outLink, shape: 7 });
        addLink(data, outLink, id, node.id, node.inputs.length - 1);
      }
      previous = [id, outLink];
      y += heightOf(item.def) + GAP;
    }
    done.push({ node: node.id, added: chain.map((item) => item.type) });
  }
  ids.save(lastNode, lastLink);
  return done;
}
