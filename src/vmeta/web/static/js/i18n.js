// Shared i18n ES module (review page and chat app). Chinese by default, English switchable.
// Messages live in /static/i18n/{lang}.json — the same files the Python side reads (vmeta.web.common.messages).
// Markup: <el data-i18n="key">, data-i18n-placeholder="key", data-i18n-title="key", data-i18n-aria-label="key".

export const LANGUAGES = ["zh", "en"];
export const DEFAULT_LANGUAGE = "zh";
const STORAGE_KEY = "vmeta_lang";
const BASE = "/static/i18n/";

let current = DEFAULT_LANGUAGE;
let table = {};
const cache = new Map();

async function fetchTable(lang) {
  if (!cache.has(lang)) {
    const res = await fetch(`${BASE}${lang}.json`, { credentials: "same-origin" });
    if (!res.ok) throw new Error(`cannot load messages for ${lang}: HTTP ${res.status}`);
    cache.set(lang, await res.json());
  }
  return cache.get(lang);
}

/** The language to start with: the user's saved choice, then ?lang= / <html lang> (set by the server from
 *  ?lang= or the cookie), else Chinese — the default UI language, whatever the browser's locale. */
export function initialLanguage() {
  const saved = (() => { try { return localStorage.getItem(STORAGE_KEY); } catch { return null; } })();
  const query = new URLSearchParams(location.search).get("lang");
  for (const c of [query, saved, document.documentElement.lang]) {
    const code = (c || "").slice(0, 2).toLowerCase();
    if (LANGUAGES.includes(code)) return code;
  }
  return DEFAULT_LANGUAGE;
}

export function currentLanguage() { return current; }

/** Translate `key`, replacing {name} with params.name. Unknown keys come back as the key itself. */
export function t(key, params = {}) {
  let text = table[key] ?? key;
  for (const [k, v] of Object.entries(params)) text = text.replaceAll(`{${k}}`, String(v));
  return text;
}

/** Fill every data-i18n* element under `root`. */
export function applyTranslations(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n-aria-label]")) el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
}

/** Load `lang` (missing keys fall back to Chinese), apply it, remember it, and fire "vmeta:language". */
export async function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) lang = DEFAULT_LANGUAGE;
  const base = await fetchTable(DEFAULT_LANGUAGE);
  table = lang === DEFAULT_LANGUAGE ? base : { ...base, ...(await fetchTable(lang)) };
  current = lang;
  document.documentElement.lang = lang === "zh" ? "zh-CN" : lang;
  try { localStorage.setItem(STORAGE_KEY, lang); } catch { /* private mode */ }
  document.cookie = `${STORAGE_KEY}=${lang}; path=/; SameSite=Lax; max-age=31536000`;
  applyTranslations();
  document.dispatchEvent(new CustomEvent("vmeta:language", { detail: { lang } }));
  return lang;
}

export function toggleLanguage() {
  return setLanguage(current === "zh" ? "en" : "zh");
}
