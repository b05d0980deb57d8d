// Musubi Tuner Jobs panel: the small loss curve (SVG, scaled to the panel's width). x = step,
// y = musubi's avr_loss; the lowest and highest loss label the axis, epochs are faint lines.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 300;
const HEIGHT = 90;
const PAD = { left: 4, right: 4, top: 12, bottom: 12 };
const MAX_POINTS = 400; // enough for a 300-unit wide line; a long run is thinned evenly

function element(name, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function thinned(points) {
  if (points.length <= MAX_POINTS) return points;
  const stride = points.length / MAX_POINTS;
  const out = [];
  for (let i = 0; i < MAX_POINTS; i += 1) out.push(points[Math.floor(i * stride)]);
  out.push(points[points.length - 1]);
  return out;
}

/** An <svg> of `points` ({step, loss, epoch}); null when there are fewer than two. */
export function lossCurve(points, { label = "loss", format = (v) => String(v) } = {}) {
  if (!points || points.length < 2) return null;
  const shown = thinned(points);
  const steps = shown.map((p) => p.step);
  const losses = shown.map((p) => p.loss);
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)];
  let [y0, y1] = [Math.min(...losses), Math.max(...losses)];
  if (y1 - y0 < 1e-12) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const innerW = WIDTH - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const x = (step) => PAD.left + ((step - x0) / Math.max(x1 - x0, 1)) * innerW;
  const y = (value) => PAD.top + (1 - (value - y0) / (y1 - y0)) * innerH;

  const svg = element("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "musubi-jobs-curve", role: "img" });
  svg.append(element("title", {}, `${label}: ${format(losses[0])} → ${format(losses[losses.length - 1])}`));
  svg.append(element("rect", { x: 0, y: 0, width: WIDTH, height: HEIGHT, class: "musubi-jobs-curve-bg" }));
  // an epoch boundary where the epoch number changes
  for (let i = 1; i < shown.length; i += 1) {
    if (shown[i].epoch != null && shown[i - 1].epoch != null && shown[i].epoch !== shown[i - 1].epoch) {
      const at = x(shown[i].step).toFixed(1);
      svg.append(element("line", { x1: at, x2: at, y1: PAD.top, y2: HEIGHT - PAD.bottom, class: "musubi-jobs-curve-epoch" }));
    }
  }
  const path = shown.map((p, i) => `${i ? "L" : "M"}${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join("");
  svg.append(element("path", { d: path, class: "musubi-jobs-curve-line" }));
  svg.append(element("text", { x: PAD.left, y: 9, class: "musubi-jobs-curve-text" }, `${label} ${format(y1)}`));
  svg.append(element("text", { x: PAD.left, y: HEIGHT - 2, class: "musubi-jobs-curve-text" }, format(y0)));
  svg.append(element("text", { x: WIDTH - PAD.right, y: HEIGHT - 2, class: "musubi-jobs-curve-text", "text-anchor": "end" },
    `step ${x1}`));
  return svg;
}
