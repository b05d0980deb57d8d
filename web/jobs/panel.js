// Musubi Tuner Jobs panel: draws the store's jobs into the sidebar tab's container, one card per
// job, updated in place when the store changes (so an open log, the scroll position and a loaded
// sample image survive progress events). It keeps no state of its own beyond the elements: the
// frontend gives render() a new empty div each time the tab is shown and drops it when hidden.

import { RUNNING } from "./store.js";
import { lossCurve } from "./chart.js";
import { clock, duration, loss, rate } from "./text.js";

const VIDEO = /\.(mp4|webm|mov|mkv)$/i;
const CONFIRM_MS = 4000;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function setText(node, text) {
  const value = text ?? "";
  if (node.textContent !== value) node.textContent = value;
  node.hidden = !value;
}

export class JobsPanel {
  /** `ui`: {store, t, lang, api, expanded (Map id -> bool), notify(severity, summary, detail)} */
  constructor(container, ui) {
    this.ui = ui;
    this.cards = new Map();
    this.root = el("div", "musubi-jobs");
    const head = el("div", "musubi-jobs-head");
    this.heading = el("div", "musubi-jobs-title", ui.t("heading"));
    this.summary = el("div", "musubi-jobs-summary");
    const refresh = el("button", "musubi-jobs-button musubi-jobs-refresh", ui.t("refresh"));
    refresh.addEventListener("click", () => ui.store.refresh());
    head.append(this.heading, refresh, this.summary);
    this.message = el("div", "musubi-jobs-message");
    this.list = el("div", "musubi-jobs-list");
    this.root.append(head, this.message, this.list);
    container.replaceChildren(this.root);
    this.unsubscribe = ui.store.subscribe(() => this.draw());
    this.draw();
  }

  dispose() {
    this.unsubscribe();
    this.cards.clear();
  }

  draw() {
    const { store, t } = this.ui;
    const jobs = store.list();
    const queued = jobs.filter((j) => j.state === "queued").length;
    setText(this.summary, jobs.length ? t("summary", { running: store.runningCount(), queued, total: jobs.length }) : "");
    const message = store.error ? t("listFailed", { error: store.error })
      : !store.loaded ? t("loading") : jobs.length ? "" : t("empty");
    setText(this.message, message);
    this.message.classList.toggle("musubi-jobs-error", Boolean(store.error));

    const wanted = new Set(jobs.map((j) => j.id));
    for (const [id, card] of this.cards) {
      if (!wanted.has(id)) {
        card.root.remove();
        this.cards.delete(id);
      }
    }
    jobs.forEach((job, index) => {
      let card = this.cards.get(job.id);
      if (!card) {
        card = new JobCard(this, job.id);
        this.cards.set(job.id, card);
      }
      if (this.list.children[index] !== card.root) this.list.insertBefore(card.root, this.list.children[index] ?? null);
      // open at first: a job that runs, or the newest one unless it only waits
      if (!this.ui.expanded.has(job.id)) {
        this.ui.expanded.set(job.id, RUNNING.has(job.state) || (index === 0 && job.state !== "queued"));
      }
      card.update(job);
    });
  }
}

class JobCard {
  constructor(panel, id) {
    this.panel = panel;
    this.id = id;
    const t = panel.ui.t;
    this.root = el("div", "musubi-job");
    this.root.dataset.jobId = id;
    const head = el("div", "musubi-job-head");
    head.title = t("toggle");
    head.addEventListener("click", () => {
      panel.ui.expanded.set(id, !panel.ui.expanded.get(id));
      this.update(this.job);
    });
    this.name = el("span", "musubi-job-name");
    this.state = el("span", "musubi-job-state");
    head.append(this.name, this.state);
    this.sub = el("div", "musubi-job-sub");
    this.bar = el("div", "musubi-job-bar");
    this.fill = el("div", "musubi-job-fill");
    this.bar.append(this.fill);
    this.line = el("div", "musubi-job-line");
    this.problem = el("div", "musubi-job-problem");
    this.hint = el("div", "musubi-job-hint");
    this.lora = el("div", "musubi-job-lora");

    this.body = el("div", "musubi-job-body");
    this.curve = el("div", "musubi-job-curve");
    this.sample = el("div", "musubi-job-sample");
    this.log = el("details", "musubi-job-section");
    this.log.append(el("summary", null, t("log")));
    this.logText = el("pre", "musubi-job-log");
    this.log.append(this.logText);
    // the newest lines in view once opened (a closed <details> has no layout to scroll)
    this.log.addEventListener("toggle", () => { this.logText.scrollTop = this.logText.scrollHeight; });
    this.folder = this.copyable(t("runFolder"), "musubi-job-folder");
    this.command = el("details", "musubi-job-section");
    this.command.append(el("summary", null, t("command")));
    this.commandText = this.copyable(null, "musubi-job-command");
    this.command.append(this.commandText.row);
    this.body.append(this.curve, this.sample, this.log, this.folder.row, this.command);

    this.actions = el("div", "musubi-job-actions");
    this.stop = el("button", "musubi-jobs-button musubi-job-stop");
    this.stop.addEventListener("click", () => this.onStop());
    this.remove = el("button", "musubi-jobs-button musubi-job-remove", t("remove"));
    this.remove.addEventListener("click", () => this.onRemove());
    this.actions.append(this.stop, this.remove);
    this.root.append(head, this.sub, this.bar, this.line, this.problem, this.hint, this.lora, this.body, this.actions);
    this.confirming = null;
    this.busy = false;
  }

  copyable(label, className) {
    const row = el("div", `musubi-job-copyable ${className}`);
    const text = el("code");
    const button = el("button", "musubi-jobs-button musubi-job-copy", this.panel.ui.t("copy"));
    button.addEventListener("click", async (event) => {
      event.stopPropagation();
      try {
        await navigator.clipboard.writeText(text.textContent);
        button.textContent = this.panel.ui.t("copied");
      } catch {
        window.getSelection()?.selectAllChildren(text); // no clipboard over plain http: select it
      }
      setTimeout(() => { button.textContent = this.panel.ui.t("copy"); }, 1500);
    });
    if (label) row.append(el("span", "musubi-job-label", label));
    row.append(text, button);
    return { row, text };
  }

  update(job) {
    this.job = job;
    const { t, lang, store, expanded } = this.panel.ui;
    const p = job.progress ?? {};
    this.root.dataset.state = job.state;
    setText(this.name, job.name || job.id);
    setText(this.state, t(`state.${job.state}`, {}, job.state));
    this.state.className = `musubi-job-state musubi-job-state-${job.state}`;

    const times = [];
    if (job.architecture) times.push(job.architecture);
    if (job.gpus?.length) times.push(t("gpus", { gpus: job.gpus.join(", ") }));
    if (job.state === "queued" && job.position != null) times.push(t("position", { n: job.position }));
    const started = Date.parse(job.started_at ?? "");
    const ended = Date.parse(job.ended_at ?? "");
    if (job.ended_at) times.push(t("endedAt", { time: clock(job.ended_at, lang()) }));
    else if (job.started_at) times.push(t("startedAt", { time: clock(job.started_at, lang()) }));
    else if (job.queued_at) times.push(t("queuedAt", { time: clock(job.queued_at, lang()) }));
    if (!Number.isNaN(started)) {
      times.push(t("elapsed", { time: duration(((Number.isNaN(ended) ? Date.now() : ended) - started) / 1000) }));
    }
    setText(this.sub, times.join(" · "));

    const fraction = p.total > 0 && Number.isFinite(p.step) ? Math.min(1, p.step / p.total)
      : job.state === "succeeded" ? 1 : null;
    this.bar.hidden = fraction == null && job.state === "queued";
    this.fill.style.width = `${Math.round((fraction ?? 0) * 1000) / 10}%`;
    this.bar.title = fraction == null ? "" : `${Math.round(fraction * 100)} %`;

    const parts = [];
    const moving = RUNNING.has(job.state);
    if (p.phase && moving) parts.push(t(`phase.${p.phase}`, {}, p.phase.replace(/_/g, " ")));
    if (p.epochs) parts.push(t("epoch", { n: p.epoch ?? "?", total: p.epochs }));
    if (p.total) parts.push(t("step", { n: p.step ?? 0, total: p.total }));
    if (moving && rate(p.rate)) parts.push(rate(p.rate));
    if (moving && Number.isFinite(p.eta)) parts.push(t("eta", { time: duration(p.eta) }));
    if (loss(p.loss)) parts.push(t("loss", { value: loss(p.loss) }));
    setText(this.line, parts.join(" · "));
    const trouble = job.state === "failed" || job.state === "lost";
    setText(this.problem, trouble ? job.reason || t(`state.${job.state}`) : job.state === "cancelled" ? job.reason : "");
    setText(this.hint, trouble && job.hint ? t("hint", { hint: job.hint }) : "");
    setText(this.lora, job.lora?.name ? t("lora", { name: job.lora.name }) : "");

    const open = Boolean(expanded.get(job.id));
    this.root.classList.toggle("musubi-job-open", open);
    this.body.hidden = !open;
    if (open) this.updateBody(job, store.history(job.id));

    this.stop.hidden = !job.can_stop || job.state === "queued"; // a queued job has Remove
    this.remove.hidden = !job.can_remove;
    if (!this.confirming) this.stop.textContent = job.state === "stopping" ? t("stopping") : t("stop");
    this.stop.disabled = this.busy || job.state === "stopping";
    this.remove.disabled = this.busy;
    this.actions.hidden = this.stop.hidden && this.remove.hidden;
  }

  updateBody(job, points) {
    const { t, api } = this.panel.ui;
    const curveKey = `${points.length}:${points[points.length - 1]?.step}`;
    if (this.curve.dataset.key !== curveKey) {
      this.curve.dataset.key = curveKey;
      const svg = lossCurve(points, { label: t("lossLabel"), format: (v) => loss(v) ?? String(v) });
      this.curve.replaceChildren(...(svg ? [svg] : []));
    }
    this.curve.hidden = !this.curve.firstChild;

    const s = job.latest_sample;
    const url = s?.filename ? api.apiURL(`/view?${new URLSearchParams({ filename: s.filename,
      subfolder: s.subfolder ?? "", type: s.type ?? "output" })}`) : "";
    if (this.sample.dataset.url !== url) {
      this.sample.dataset.url = url;
      if (!url) this.sample.replaceChildren();
      else {
        const media = VIDEO.test(s.filename) ? el("video") : el("img");
        Object.assign(media, VIDEO.test(s.filename) ? { muted: true, loop: true, autoplay: true, playsInline: true } : {});
        // a sample read while musubi still writes it fails to decode: ask again a few times
        let tries = 0;
        media.addEventListener("error", () => {
          if (tries < 5) setTimeout(() => { media.src = `${url}&retry=${++tries}`; }, 1000);
        });
        media.src = url;
        media.title = t("sample", { name: s.filename });
        media.alt = media.title;
        this.sample.replaceChildren(media, el("div", "musubi-job-caption", s.filename));
      }
    }
    this.sample.hidden = !url;

    const tail = (job.log_tail ?? []).join("\n");
    this.log.hidden = !tail;
    if (tail && !this.log.dataset.opened) { // once; then it stays as the user leaves it
      this.log.dataset.opened = "1";
      this.log.open = job.state !== "succeeded" && job.state !== "cancelled";
    }
    const box = this.logText;
    const atEnd = !box.textContent || box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    setText(box, tail);
    if (atEnd) box.scrollTop = box.scrollHeight; // follow the newest line unless scrolled up
    setText(this.folder.text, job.run_dir);
    this.folder.row.hidden = !job.run_dir;
    setText(this.commandText.text, job.command);
    this.command.hidden = !job.command;
  }

  // Stop asks once more on the button itself: hours of training are one click away.
  async onStop() {
    const { t, store } = this.panel.ui;
    if (!this.confirming) {
      this.stop.textContent = t("stopConfirm");
      this.stop.classList.add("musubi-job-confirm");
      this.confirming = setTimeout(() => this.endConfirm(), CONFIRM_MS);
      return;
    }
    this.endConfirm();
    await this.act(() => store.stop(this.id), "stopFailed");
  }

  endConfirm() {
    clearTimeout(this.confirming);
    this.confirming = null;
    this.stop.classList.remove("musubi-job-confirm");
    if (this.job) this.update(this.job);
  }

  async onRemove() {
    await this.act(() => this.panel.ui.store.remove(this.id), "removeFailed");
  }

  async act(call, failure) {
    const { t, notify } = this.panel.ui;
    this.busy = true;
    this.update(this.job);
    try {
      await call();
    } catch (error) {
      notify("error", t(failure, { name: this.job?.name || this.id }), String(error?.message ?? error));
    } finally {
      this.busy = false;
      if (this.job) this.update(this.job);
    }
  }
}
