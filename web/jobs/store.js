// Musubi Tuner Jobs panel: what the browser knows about the pack's background jobs. One store
// per page, made in the extension's setup(): it holds the job JSON the server sends (GET
// /musubi-tuner/jobs, the "musubi_tuner.job" websocket event), the loss history of the jobs the
// panel has shown (GET /musubi-tuner/jobs/{id}), and calls Stop and Remove. It draws nothing;
// the panel and the badge subscribe to it. Shapes: notes in docs/background-training.md.

export const ACTIVE = new Set(["queued", "starting", "running", "stopping"]);
export const FINAL = new Set(["succeeded", "failed", "cancelled", "lost"]);
export const RUNNING = new Set(["starting", "running", "stopping"]);
const ROUTE = "/musubi-tuner/jobs";

function when(job) {
  const time = Date.parse(job.queued_at ?? "");
  return Number.isNaN(time) ? 0 : time;
}

export class JobStore {
  constructor(api) {
    this.api = api;
    this.jobs = new Map(); // id -> job JSON
    this.histories = new Map(); // id -> {points, fetched, final, loading}
    this.removed = new Set(); // ids gone from the server: never shown again
    this.loaded = false;
    this.error = null; // the last failed refresh, shown by the panel
    this.onEnd = () => {}; // (job) => ..., when a job seen unfinished reaches a final state
    this._listeners = new Set();
  }

  subscribe(listener) {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  _changed() {
    for (const listener of this._listeners) {
      try {
        listener();
      } catch (error) {
        console.error("[musubi-tuner] jobs listener failed:", error);
      }
    }
  }

  /** Newest first, as the list route gives them. */
  list() {
    return [...this.jobs.values()].sort((a, b) => when(b) - when(a) || String(b.id).localeCompare(String(a.id)));
  }

  runningCount() {
    let count = 0;
    for (const job of this.jobs.values()) if (RUNNING.has(job.state)) count += 1;
    return count;
  }

  async _call(path, options) {
    const response = await this.api.fetchApi(path, options);
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) throw new Error(body?.error || `HTTP ${response.status} ${response.statusText}`);
    return body;
  }

  /** The whole list again: at start, after a reconnect (ComfyUI restarted), when the panel opens. */
  async refresh() {
    try {
      const body = await this._call(ROUTE);
      const seen = new Set();
      for (const job of body?.jobs ?? []) {
        seen.add(job.id);
        this._merge(job);
      }
      for (const id of [...this.jobs.keys()]) {
        if (!seen.has(id)) this._forget(id);
      }
      this.error = null;
    } catch (error) {
      this.error = String(error?.message ?? error);
    }
    this.loaded = true;
    this._changed();
  }

  /** A job from the websocket event; `removed: true` when it was taken off the queue. */
  receive(job) {
    if (!job?.id) return;
    if (job.removed) this._forget(job.id);
    else this._merge(job);
    this._changed();
  }

  _merge(job) {
    if (this.removed.has(job.id)) return; // a list answer older than the removal
    const before = this.jobs.get(job.id);
    // A final state is final: a list answer that left the server before the job ended must
    // not bring it back to "running".
    if (before && FINAL.has(before.state) && !FINAL.has(job.state)) return;
    this.jobs.set(job.id, job);
    this._extendHistory(job);
    if (before && !FINAL.has(before.state) && FINAL.has(job.state)) this.onEnd(job);
  }

  _forget(id) {
    this.jobs.delete(id);
    this.histories.delete(id);
    this.removed.add(id);
  }

  // Between fetches the curve grows from the events' progress (at most two a second, so a fast
  // run may skip steps there; the full history replaces it when the job ends or is reopened).
  _extendHistory(job) {
    const history = this.histories.get(job.id);
    const { step, loss, epoch } = job.progress ?? {};
    if (!history || !Number.isFinite(step) || !Number.isFinite(loss)) return;
    const last = history.points[history.points.length - 1];
    if (!last || step > last.step) history.points.push({ step, loss, epoch: epoch ?? null });
  }

  /** The loss points known for `id` (possibly none yet). Fetched from the server the first
   * time and once more after the job ended; listeners are notified when they arrive. */
  history(id) {
    let history = this.histories.get(id);
    if (!history) {
      history = { points: [], fetched: false, final: false, loading: null };
      this.histories.set(id, history);
    }
    const ended = FINAL.has(this.jobs.get(id)?.state);
    if (!history.loading && (!history.fetched || (ended && !history.final))) {
      history.loading = this._call(`${ROUTE}/${encodeURIComponent(id)}`)
        .then(({ loss_history: points, resume_points: _, ...job } = {}) => {
          history.points = (points ?? [])
            .map((p) => ({ step: p.step, loss: p.loss, epoch: p.epoch ?? null }))
            .filter((p) => Number.isFinite(p.step) && Number.isFinite(p.loss));
          history.final = FINAL.has(job.state);
          if (job.id) this._merge(job);
        })
        .catch((error) => {
          history.final = true; // not again on every redraw; a reconnect starts afresh
          console.warn(`[musubi-tuner] loss history of job ${id}:`, error);
        })
        .finally(() => {
          history.fetched = true;
          history.loading = null;
          this._changed();
        });
    }
    return history.points;
  }

  forgetHistories() {
    this.histories.clear();
  }

  /** POST .../stop: the answer's job replaces ours. Throws with the server's message. */
  async stop(id) {
    const body = await this._call(`${ROUTE}/${encodeURIComponent(id)}/stop`, { method: "POST" });
    if (body?.job) this.receive(body.job);
  }

  /** POST .../remove (queued jobs only). */
  async remove(id) {
    await this._call(`${ROUTE}/${encodeURIComponent(id)}/remove`, { method: "POST" });
    this._forget(id);
    this._changed();
  }
}
