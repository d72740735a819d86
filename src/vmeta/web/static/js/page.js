// What the token-guarded pages without a login share (the review page, the rating page): element helpers, a
// JSON API client that sends the page's token and language, a toast, and slot-highlighted text. Plain ES module.
import { currentLanguage, t } from "/static/js/i18n.js";

export const $ = (id) => document.getElementById(id);
export const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";

export class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

/** fetch() for a JSON API: a body is sent as JSON with the page's token in `tokenHeader`; errors throw ApiError
 * with the server's sentence (or a network message). */
export function makeApi(tokenHeader, token) {
  return async function api(path, { method = "GET", body } = {}) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json", "X-Vmeta-Lang": currentLanguage() } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.headers[tokenHeader] = token;
      init.body = JSON.stringify(body);
    }
    let res;
    try { res = await fetch(path, init); } catch { throw new ApiError(0, t("common.network_error")); }
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new ApiError(res.status, data.detail || `HTTP ${res.status}`);
    return data;
  };
}

let toastTimer = null;
export function toast(text, bad = false) {
  const box = $("toast");
  box.textContent = text;
  box.classList.toggle("bad", bad);
  box.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => box.classList.remove("show"), bad ? 5000 : 1500);
}

export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Text cut into slot-tagged segments ({text, slot?}) into `target`, each slot highlighted — textContent only. */
export function renderSegments(target, segments) {
  target.replaceChildren();
  for (const seg of segments) {
    if (seg.slot) {
      const span = el("span", `slot slot-${seg.slot}`, seg.text);
      span.title = t(`review.slot.${seg.slot}`);
      span.dataset.slot = seg.slot;
      target.append(span);
    } else {
      target.append(document.createTextNode(seg.text));
    }
  }
}
