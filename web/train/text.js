// Musubi Tuner: the texts of the Train node's frontend (recommended values, the migration notice).
// English and Japanese live in the pack's locales/<lang>/main.json under "musubiTuner.train";
// ComfyUI serves every pack's locale files merged at GET /i18n. The language is the frontend's
// "Comfy.Locale" setting, read at each lookup; a missing text falls back to English below.

const FALLBACK = {
  recommendedFor: "recommended for {arch}",
  musubiDefault: "musubi's default",
  forTheArchitecture: "recommended for the architecture",
  samplePlaceholder: "Empty: one sample from the dataset's first caption, at the architecture's documented "
    + "size and steps (the dry run shows it). Or one prompt per line, e.g. a cat --w 832 --h 480 --s 20",
  migrated: "Musubi Tuner: this workflow's Train node is from version 0.1.0. Its advanced settings now live on "
    + "options nodes: {nodes} were added with the workflow's values.",
  migratedTitle: "Musubi Train LoRA updated",
};
let messages = {};

export async function loadTexts(api) {
  try {
    const response = await api.fetchApi("/i18n");
    if (!response.ok) return;
    const all = await response.json();
    messages = {};
    for (const [language, tree] of Object.entries(all ?? {})) {
      const section = tree?.musubiTuner?.train;
      if (section) messages[language] = section;
    }
  } catch (error) {
    console.warn("[musubi-tuner] the Train node's texts did not load (GET /i18n):", error);
  }
}

function language(app) {
  try {
    return String(app.extensionManager?.setting?.get("Comfy.Locale") || navigator.language || "en");
  } catch {
    return "en";
  }
}

export function t(app, key, values = {}) {
  const lang = language(app);
  const text = [lang, lang.split("-")[0], "en"].map((l) => messages[l]?.[key]).find((v) => typeof v === "string")
    ?? FALLBACK[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}
