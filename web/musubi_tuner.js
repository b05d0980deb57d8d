// Musubi Tuner: room on a Musubi node for its progress text (status line and the log's last
// lines; the Models nodes' verdict per model file; the Setup Check's report; the frontend gives
// that text widget two lines), grown as the text grows. Listening to the pack's progress event is
// also what keeps the frontend from logging it as unknown.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const TEXT_WIDGET = "$$node-text-preview";
const LINE_HEIGHT = 16;
const MAX_HEIGHT = 216; // the frontend's text box scrolls beyond 200 px plus its padding

function fitProgressText(node) {
  const widget = node?.widgets?.find((w) => w.name === TEXT_WIDGET);
  if (!widget?.options) return;
  // Lines as shown: a long line (a verdict, a log line) wraps at the node's width (about 8 px a character, rounded up).
  const perLine = Math.max(20, Math.floor((node.size[0] - 24) / 8));
  const lines = String(widget.value ?? "").split("\n")
    .reduce((n, line) => n + Math.max(1, Math.ceil(line.length / perLine)), 0);
  const height = Math.min(MAX_HEIGHT, lines * LINE_HEIGHT + 16);
  if (widget.options.getMinHeight?.() >= height) return;
  widget.options.getMinHeight = () => height;
  node.setSize([node.size[0], Math.max(node.size[1], node.computeSize()[1])]);
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "musubi_tuner.progress_text",
  setup() {
    api.addEventListener("musubi_tuner.progress", ({ detail }) => {
      fitProgressText(app.graph?.getNodeById(detail?.node));
    });
    // Text sent once (a Models node's verdicts, a Setup Check report): fit it after the frontend
    // has put it into the widget (its own progress_text listener may run after this one).
    api.addEventListener("progress_text", ({ detail }) => {
      const node = app.graph?.getNodeById(detail?.nodeId);
      if (String(node?.type ?? "").startsWith("Musubi")) {
        requestAnimationFrame(() => fitProgressText(node));
      }
    });
  },
});
