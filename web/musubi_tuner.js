// Musubi Tuner: room on a Musubi node for its progress text (status line and the log's last
// lines; the frontend gives that text widget two lines), grown as the text grows. Listening to
// the pack's progress event is also what keeps the frontend from logging it as unknown.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const TEXT_WIDGET = "$$node-text-preview";
const LINE_HEIGHT = 16;
const MAX_HEIGHT = 216; // the frontend's text box scrolls beyond 200 px plus its padding

function fitProgressText(node) {
  const widget = node?.widgets?.find((w) => w.name === TEXT_WIDGET);
  if (!widget?.options) return;
  const lines = String(widget.value ?? "").split("\n").length;
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
  },
});
