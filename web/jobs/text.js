// Musubi Tuner Jobs panel: its texts and number formats. The texts live in the pack's
// locales/<lang>/main.json under "musubiTuner.jobs" (English written by hand, Japanese kept in
// step by .ci/generate_locales.py); ComfyUI serves every pack's locale files merged at GET /i18n.
// The language is the frontend's "Comfy.Locale" setting, read each time a text is looked up, so
// a change applies the next time the panel draws.

const SECTION = ["musubiTuner", "jobs"];
let messages = {}; // language -> the "jobs" section

export async function loadTexts(api) {
  try {
    const response = await api.fetchApi("/i18n");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const all = await response.json();
    messages = {};
    for (const [language, tree] of Object.entries(all ?? {})) {
      const section = SECTION.reduce((node, key) => node?.[key], tree);
      if (section) messages[language] = section;
    }
  } catch (error) {
    console.warn("[musubi-tuner] the Jobs panel's texts did not load (GET /i18n):", error);
  }
}

export function language(app) {
  let chosen;
  try {
    chosen = app.extensionManager?.setting?.get("Comfy.Locale");
  } catch {
    chosen = undefined;
  }
  return String(chosen || navigator.language || "en");
}

function lookup(lang, path) {
  const candidates = [lang, lang.split("-")[0], "en"];
  for (const candidate of candidates) {
    const found = path.split(".").reduce((node, key) => node?.[key], messages[candidate]);
    if (typeof found === "string") return found;
  }
  return undefined;
}

// t("epoch", {n: 2, total: 3}) -> "epoch 2/3": {name} placeholders filled from `values`.
// An unknown key shows `fallback`, else the key itself: a missing text is visible, never blank.
export function makeTranslator(app) {
  return (key, values = {}, fallback = key) => {
    const text = lookup(language(app), key) ?? fallback;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
  };
}

export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const two = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(s % 60)}` : `${two(m)}:${two(s % 60)}`;
}

// The rate is steps per second; training is usually slower than one step a second, where
// tqdm (and so a musubi user) reads seconds per step.
export function rate(stepsPerSecond) {
  if (!Number.isFinite(stepsPerSecond) || stepsPerSecond <= 0) return null;
  return stepsPerSecond >= 1 ? `${stepsPerSecond.toFixed(2)} it/s` : `${(1 / stepsPerSecond).toFixed(2)} s/it`;
}

export function loss(value) {
  if (!Number.isFinite(value)) return null;
  return Math.abs(value) >= 0.01 ? value.toFixed(4) : value.toPrecision(3);
}

export function clock(iso, lang) {
  if (!iso) return null;
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return null;
  const sameDay = when.toDateString() === new Date().toDateString();
  const options = sameDay ? { hour: "2-digit", minute: "2-digit" }
    : { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
  try {
    return when.toLocaleString(lang, options);
  } catch {
    return when.toLocaleString(undefined, options);
  }
}
