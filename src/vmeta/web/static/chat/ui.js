// Small DOM helpers of the chat page: element creation (text only — never innerHTML with user data),
// number formatting, a toast, confirm/prompt dialogs, form error boxes, a debounce.
import { currentLanguage, t } from "/static/js/i18n.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

export function show(node, visible = true) { node.classList.toggle("hidden", !visible); }

export function formatBytes(n) {
  if (n == null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

/** 812 -> "812 ms", 5120 -> "5.12 s". */
export function formatMs(ms) {
  if (ms == null || Number.isNaN(ms)) return "–";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

export function formatDuration(seconds) {
  if (seconds == null) return "";
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export function formatDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const now = new Date();
  const locale = currentLanguage() === "zh" ? "zh-CN" : "en-GB";
  if (d.toDateString() === now.toDateString()) {
    return d.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
  }
  return d.toLocaleDateString(locale, { month: "short", day: "numeric" });
}

/** A human "in N hours/minutes" for the guest banner. */
export function formatRemaining(iso) {
  if (!iso) return "";
  const minutes = Math.max(0, Math.round((new Date(iso) - Date.now()) / 60000));
  if (minutes >= 120) return t("chat.in_hours", { n: Math.round(minutes / 60) });
  return t("chat.in_minutes", { n: minutes });
}

let toastTimer = null;
export function toast(text, bad = false) {
  const node = $("toast");
  node.textContent = text;
  node.classList.toggle("bad", bad);
  node.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => node.classList.remove("show"), bad ? 6000 : 2000);
}

/** Show `message` in a modal with OK/Cancel; resolves true on OK. */
export function confirmDialog(message, okLabel) {
  const dlg = $("dlg-confirm");
  $("confirm-text").textContent = message;
  $("confirm-ok").textContent = okLabel || t("chat.confirm");
  dlg.returnValue = "";
  dlg.showModal();
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
  });
}

/** Ask for a text in the rename dialog; resolves the trimmed text or null. */
export function promptDialog(value) {
  const dlg = $("dlg-rename");
  const input = $("rename-input");
  input.value = value || "";
  dlg.returnValue = "";
  dlg.showModal();
  input.select();
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => {
      const v = input.value.trim();
      resolve(dlg.returnValue === "ok" && v ? v : null);
    }, { once: true });
  });
}

/** Put an error into a form's error box (or hide it with null): a text, an ApiError, or a function giving the
 *  text. Errors and functions are drawn again when the language changes. */
export function formError(id, what) {
  const box = $(id);
  box._error = what && typeof what !== "string" ? what : null;
  const text = !what || typeof what === "string" ? what : typeof what === "function" ? what() : errorText(what);
  box.textContent = text || "";
  show(box, Boolean(text));
}

document.addEventListener("vmeta:language", () => {
  for (const box of document.querySelectorAll(".form-error")) if (box._error) formError(box.id, box._error);
});

/** The text to show for an ApiError (or {detail, i18n}): the server's sentence in the page's current language
 *  when the server sent every language, else as sent; or the network notice. */
export function errorText(err) {
  if (err && err.status === 0) return t("common.network_error");
  return (err && (err.i18n?.[currentLanguage()] || err.detail || err.message)) || t("common.error");
}

/** `fn` called once `ms` after the last of a burst of calls (search boxes). */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}
