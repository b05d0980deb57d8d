// Musubi Tuner: the Jobs sidebar tab (background trainings: docs/background-training.md).
// Everything that must outlive the tab lives at extension level: the job store, the websocket
// listeners ("musubi_tuner.job" for every change, "reconnected" after ComfyUI restarted: fetch
// the list again), the toast when a job ends and the badge with the running count. The tab's
// render() only draws: the frontend mounts it with a new empty div each time it is shown and
// calls destroy() when it is hidden (frontends 1.32 and 1.49 alike).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { JobStore } from "./jobs/store.js";
import { JobsPanel } from "./jobs/panel.js";
import { addStyle } from "./jobs/style.js";
import { language, loadTexts, makeTranslator } from "./jobs/text.js";

const TAB_ID = "musubi-tuner-jobs";
const EVENT = "musubi_tuner.job";
const TOAST_MS = 10000;
const LORA_WAIT_MS = 30000;

function sidebar() {
  return app.extensionManager?.sidebarTab ?? app.extensionManager;
}

// The frontend keeps registered tabs in a reactive list: a change made through that list's
// copy of the tab redraws the sidebar button, a change to our own object would not.
function setBadge(count) {
  const tabs = sidebar()?.sidebarTabs ?? app.extensionManager?.getSidebarTabs?.() ?? [];
  const tab = tabs.find?.((entry) => entry.id === TAB_ID);
  const text = count > 0 ? String(count) : "";
  if (tab && tab.iconBadge !== text) tab.iconBadge = text;
}

function endToast(job, t) {
  const name = job.name || job.id;
  const reason = [job.reason, job.hint && t("hint", { hint: job.hint })].filter(Boolean).join("\n");
  switch (job.state) {
    case "succeeded":
      return { severity: "success", summary: t("toast.succeeded", { name }),
        detail: job.lora?.name ? t("lora", { name: job.lora.name }) : job.run_dir ?? "", life: TOAST_MS };
    case "cancelled":
      return { severity: "warn", summary: t("toast.cancelled", { name }), detail: job.reason ?? "", life: TOAST_MS };
    case "lost":
      return { severity: "error", summary: t("toast.lost", { name }), detail: reason || t("lostDetail") };
    default: // failed: it stays until closed, since a user often comes back to it hours later
      return { severity: "error", summary: t("toast.failed", { name }), detail: reason };
  }
}

// The store and its listeners are made when the frontend imports this module: both frontends
// open the websocket after importing the extensions but before calling their setup(), and
// only dispatch an event type some listener asked for (else "Unknown message type").
const t = makeTranslator(app);
const texts = loadTexts(api);
const store = new JobStore(api);
const notify = (severity, summary, detail, life) =>
  app.extensionManager?.toast?.add({ severity, summary, detail, ...(life ? { life } : {}) });
const toastEnd = (job) => texts.then(() => {
  const toast = endToast(job, t);
  notify(toast.severity, toast.summary, toast.detail, toast.life);
});
// A finished training's LoRA is delivered (converted, copied to models/loras) just after the job
// ends: its toast waits for the LoRA's name, for LORA_WAIT_MS at most.
const awaitingLora = new Map(); // job id -> timer
store.onEnd = (job) => {
  if (job.state !== "succeeded" || job.kind !== "train" || job.lora) return toastEnd(job);
  awaitingLora.set(job.id, setTimeout(() => {
    awaitingLora.delete(job.id);
    toastEnd(store.jobs.get(job.id) ?? job);
  }, LORA_WAIT_MS));
};
store.subscribe(() => {
  for (const [id, timer] of awaitingLora) {
    const job = store.jobs.get(id);
    if (job?.lora) {
      clearTimeout(timer);
      awaitingLora.delete(id);
      toastEnd(job);
    }
  }
});
api.addEventListener(EVENT, ({ detail }) => store.receive(detail));
api.addEventListener("reconnected", () => {
  store.forgetHistories();
  store.refresh();
});

app.registerExtension({
  name: "musubi_tuner.jobs",
  async setup() {
    await texts;
    addStyle();
    const ui = { store, t, api, notify, lang: () => language(app), expanded: new Map() };
    let panel = null;
    const tab = {
      id: TAB_ID,
      icon: "pi pi-briefcase",
      title: t("tab"),
      label: t("tab"),
      tooltip: t("tabTooltip"),
      type: "custom",
      render(container) {
        panel?.dispose();
        panel = new JobsPanel(container, ui);
        store.refresh();
      },
      destroy() {
        panel?.dispose();
        panel = null;
      },
    };
    const manager = sidebar();
    if (typeof manager?.registerSidebarTab !== "function") {
      console.warn("[musubi-tuner] this ComfyUI frontend has no sidebar tabs; the Jobs panel is not shown");
      return;
    }
    manager.registerSidebarTab(tab);
    store.subscribe(() => setBadge(store.runningCount()));
    await store.refresh();
  },
});
