// Musubi Tuner Jobs panel: its CSS, added to the page once. Colours come from the frontend's
// palette variables (both bundled frontends define them), so light and dark themes both work.

const CSS = `
.musubi-jobs { box-sizing: border-box; height: 100%; overflow-y: auto; padding: 10px 10px 24px;
  font-size: 13px; color: var(--fg-color, #ddd); }
.musubi-jobs [hidden] { display: none !important; }
.musubi-jobs-head { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 8px; margin-bottom: 8px; }
.musubi-jobs-title { font-size: 15px; font-weight: 600; flex: 1; }
.musubi-jobs-summary { flex-basis: 100%; color: var(--descrip-text, #999); }
.musubi-jobs-message { color: var(--descrip-text, #999); margin: 6px 0 10px; line-height: 1.45; }
.musubi-jobs-error { color: var(--error-text, #ff4444); }
.musubi-jobs-button { font: inherit; font-size: 12px; cursor: pointer; padding: 3px 10px; border-radius: 6px;
  color: var(--fg-color, #ddd); background: var(--comfy-input-bg, #222); border: 1px solid var(--border-color, #4e4e4e); }
.musubi-jobs-button:hover:not(:disabled) { filter: brightness(1.3); }
.musubi-jobs-button:disabled { opacity: 0.5; cursor: default; }
.musubi-job { border: 1px solid var(--border-color, #4e4e4e); border-radius: 8px; padding: 8px 10px; margin-bottom: 8px;
  background: var(--comfy-menu-secondary-bg, transparent); }
.musubi-job-head { display: flex; align-items: baseline; gap: 8px; cursor: pointer; }
.musubi-job-name { flex: 1; font-weight: 600; overflow-wrap: anywhere; }
.musubi-job-state { font-size: 11px; padding: 1px 8px; border-radius: 10px; white-space: nowrap;
  background: var(--comfy-input-bg, #222); border: 1px solid var(--border-color, #4e4e4e); }
.musubi-job-state-running, .musubi-job-state-starting { border-color: #3b82f6; color: #93c5fd; }
.musubi-job-state-stopping { border-color: #d97706; color: #fcd34d; }
.musubi-job-state-succeeded { border-color: #16a34a; color: #86efac; }
.musubi-job-state-failed, .musubi-job-state-lost { border-color: #dc2626; color: #fca5a5; }
.musubi-job-state-cancelled { color: var(--descrip-text, #999); }
.musubi-job-sub, .musubi-job-line, .musubi-job-lora { color: var(--descrip-text, #999); font-size: 12px; margin-top: 3px; }
.musubi-job-line { color: var(--fg-color, #ddd); font-variant-numeric: tabular-nums; }
.musubi-job-bar { height: 6px; border-radius: 3px; margin-top: 6px; overflow: hidden; background: var(--comfy-input-bg, #222); }
.musubi-job-fill { height: 100%; width: 0; background: #3b82f6; transition: width 0.4s; }
.musubi-job[data-state=succeeded] .musubi-job-fill { background: #16a34a; }
.musubi-job[data-state=failed] .musubi-job-fill, .musubi-job[data-state=lost] .musubi-job-fill { background: #dc2626; }
.musubi-job[data-state=cancelled] .musubi-job-fill, .musubi-job[data-state=stopping] .musubi-job-fill { background: #78716c; }
.musubi-job-problem { color: var(--error-text, #ff4444); margin-top: 4px; overflow-wrap: anywhere; }
.musubi-job[data-state=cancelled] .musubi-job-problem { color: var(--descrip-text, #999); }
.musubi-job-hint { margin-top: 2px; font-size: 12px; overflow-wrap: anywhere; }
.musubi-job-body { margin-top: 6px; }
.musubi-job-curve svg { display: block; width: 100%; height: auto; margin-top: 4px; }
.musubi-jobs-curve-bg { fill: var(--comfy-input-bg, #222); }
.musubi-jobs-curve-line { fill: none; stroke: #f59e0b; stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.musubi-jobs-curve-epoch { stroke: var(--border-color, #4e4e4e); stroke-dasharray: 2 3; }
.musubi-jobs-curve-text { fill: var(--descrip-text, #999); font-size: 9px; }
.musubi-job-sample { margin-top: 6px; }
.musubi-job-sample img, .musubi-job-sample video { display: block; max-width: 100%; max-height: 240px; border-radius: 4px; }
.musubi-job-caption { font-size: 11px; color: var(--descrip-text, #999); overflow-wrap: anywhere; }
.musubi-job-section { margin-top: 6px; }
.musubi-job-section > summary { cursor: pointer; color: var(--descrip-text, #999); font-size: 12px; }
.musubi-job-log { margin: 4px 0 0; padding: 6px; max-height: 180px; overflow: auto; font-size: 11px; line-height: 1.35;
  white-space: pre-wrap; overflow-wrap: anywhere; background: var(--comfy-input-bg, #222); border-radius: 4px; }
.musubi-job-copyable { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 2px 6px; margin-top: 6px; font-size: 12px; }
.musubi-job-copyable code { flex: 1; overflow-wrap: anywhere; white-space: pre-wrap; font-size: 11px; }
.musubi-job-label { color: var(--descrip-text, #999); flex-basis: 100%; }
.musubi-job-copy { padding: 1px 6px; font-size: 11px; }
.musubi-job-actions { display: flex; gap: 8px; margin-top: 8px; }
.musubi-job-stop { border-color: #dc2626; }
.musubi-job-confirm { background: #dc2626; color: #fff; }
`;

export function addStyle(id = "musubi-jobs-style") {
  if (document.getElementById(id)) return;
  const style = document.createElement("style");
  style.id = id;
  style.textContent = CSS;
  document.head.append(style);
}
