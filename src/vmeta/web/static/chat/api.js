// HTTP helpers of the chat page: JSON requests with the CSRF header, uploads with progress, and the SSE
// reader for streamed answers (EventSource cannot POST, so fetch() + a ReadableStream reader).
// API reference: docs/serve-api.md.

import { currentLanguage } from "/static/js/i18n.js";

let csrfToken = "";
// The server writes its error sentences in this language (English for other API clients).
const LANG_HEADER = "X-Vmeta-Lang";

export function setCsrf(token) { csrfToken = token || ""; }

/** The readable `vmeta_csrf` cookie: present only while a browser session exists (saves a 401 at start). */
export function hasSessionCookie() {
  return document.cookie.split(";").some((c) => c.trim().startsWith("vmeta_csrf="));
}

/** `i18n`: the server's sentence in every language ({en, zh}), so a shown error can follow a language switch. */
export class ApiError extends Error {
  constructor(status, detail, i18n = null) { super(detail); this.status = status; this.detail = detail; this.i18n = i18n; }
}

async function errorOf(res) {
  const data = await res.json().catch(() => null);
  const detail = (data && typeof data.detail === "string" && data.detail) || `HTTP ${res.status}`;
  return new ApiError(res.status, detail, data?.detail_i18n || null);
}

function headers(method, extra = {}) {
  const h = { Accept: "application/json", [LANG_HEADER]: currentLanguage(), ...extra };
  if (method !== "GET" && method !== "HEAD" && csrfToken) h["X-CSRF-Token"] = csrfToken;
  return h;
}

/** fetch a JSON endpoint; throws ApiError(status, detail) on failure (status 0: the network). */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, credentials: "same-origin", headers: headers(method), signal };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try { res = await fetch(path, init); } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, null);
  }
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return null;
  return res.json();
}

/** POST a file as multipart field `file` with upload progress (XMLHttpRequest: fetch has no upload progress).
 *  Returns {promise, abort}; onProgress(loaded, total). */
export function uploadFile(path, file, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open("POST", path);
    xhr.withCredentials = true;
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader(LANG_HEADER, currentLanguage());
    if (csrfToken) xhr.setRequestHeader("X-CSRF-Token", csrfToken);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress?.(e.loaded, e.total); };
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, (data && data.detail) || `HTTP ${xhr.status}`, data?.detail_i18n || null));
    };
    xhr.onerror = () => reject(new ApiError(0, null));
    xhr.onabort = () => reject(new DOMException("aborted", "AbortError"));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}

/** Parse one SSE block ("event: x\ndata: {...}") into {event, data}; null for comments / empty blocks. */
export function parseSSEBlock(block) {
  let event = "message";
  const data = [];
  for (const raw of block.split("\n")) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  const text = data.join("\n");
  try { return { event, data: JSON.parse(text) }; } catch { return { event, data: text }; }
}

/** POST `body` to `path` and call onEvent(event, data) for each Server-Sent Event of the answer.
 *  Errors before the stream starts throw ApiError with the server's detail; abort with `signal`. */
export async function streamPost(path, body, onEvent, signal) {
  let res;
  try {
    res = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: headers("POST", { "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, null);
  }
  if (!res.ok) throw await errorOf(res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const ev = parseSSEBlock(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (ev) onEvent(ev.event, ev.data);
    }
  }
  buffer += decoder.decode();
  const last = parseSSEBlock(buffer.trim());
  if (last) onEvent(last.event, last.data);
}
