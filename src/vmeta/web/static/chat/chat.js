// The chat page of `vmeta serve` (thesis §4.5, Fig. 4.3): model picker top-left, user menu top-right,
// conversation in the middle with model and response times under each answer, input with video upload at the
// bottom, history in the sidebar. Plain ES modules, no build step; the server does all the work (docs/serve-api.md).
import { initialLanguage, setLanguage, t, toggleLanguage } from "/static/js/i18n.js";
import { ApiError, api, hasSessionCookie, setCsrf, streamPost, uploadFile } from "/static/chat/api.js";
import {
  $, confirmDialog, el, errorText, formatBytes, formatDate, formatDuration, formatMs, formatRemaining, formError,
  promptDialog, show, toast,
} from "/static/chat/ui.js";

const MODEL_KEY = "vmeta_chat_model";
const LAST_KEY = "vmeta_chat_last";
const PAGE = 30;
const phone = window.matchMedia("(max-width: 760px)");
const EMPTY = document.getElementById("empty-state"); // kept: it is taken out of the page while messages show

const state = {
  me: null,
  models: [],
  unavailable: [],
  model: null,
  convId: null,
  convTitle: "",
  messages: [],
  list: { items: [], q: "", next: null, seq: 0 },
  history: { items: [], q: "", next: null, seq: 0 },
  streaming: null,          // {controller, msg}
  attachments: [],          // {key, file, status: uploading|done|error, loaded, upload, error, abort}
};

// ================================================================================== session & accounts
function lastKey() { return `${LAST_KEY}:${state.me?.user.id ?? ""}`; }

function rememberConversation(id) {
  try { if (id) localStorage.setItem(lastKey(), id); else localStorage.removeItem(lastKey()); } catch { /* private */ }
}

function rememberedConversation() {
  try { return localStorage.getItem(lastKey()); } catch { return null; }
}

function handleAuthLoss(err) {
  if (err instanceof ApiError && err.status === 401 && state.me) {
    toast(err.detail || t("chat.session_ended"), true);
    showWelcome();
    return true;
  }
  return false;
}

function showWelcome() {
  abortStreaming();
  state.me = null;
  state.convId = null;
  state.messages = [];
  setCsrf("");
  for (const a of state.attachments) a.abort?.();
  state.attachments = [];
  $("messages").replaceChildren(EMPTY);
  for (const f of ["login-form", "register-form"]) $(f).reset();
  formError("login-error", null);
  formError("register-error", null);
  show($("app"), false);
  show($("welcome"), true);
  closeMenu();
  document.title = t("chat.title");
  $("login-email").focus();
}

async function enterApp(me) {
  // Everything is loaded before the app shows, so nothing typed meanwhile races the restore.
  state.me = me;
  setCsrf(me.csrf_token);
  renderUser();
  await loadModels();
  await loadList(false);
  const remembered = rememberedConversation();
  const target = remembered || state.list.items[0]?.id;
  let opened = false;
  if (target) {
    opened = await openConversation(target, { quiet: true });
    if (!opened && remembered && state.list.items[0] && state.list.items[0].id !== remembered) {
      opened = await openConversation(state.list.items[0].id, { quiet: true });
    }
  }
  if (!state.me) return; // the session ended while loading
  if (!opened) newChat();
  show($("welcome"), false);
  show($("app"), true);
  updateSendState();
  $("input").focus();
}

function renderUser() {
  const { user, avatar_url: avatarUrl } = state.me;
  const name = user.is_guest ? t("chat.guest") : (user.name || user.email || "");
  $("user-name").textContent = name;
  $("menu-name").textContent = name;
  $("menu-email").textContent = user.is_guest || name === user.email ? "" : (user.email || "");
  const avatar = $("avatar");
  avatar.replaceChildren();
  if (avatarUrl) {
    const img = el("img");
    img.alt = "";
    img.src = avatarUrl;
    avatar.append(img);
  } else {
    avatar.textContent = (name || "?").trim().slice(0, 1).toUpperCase();
  }
  show($("guest-banner"), user.is_guest);
  $("guest-text").textContent = user.is_guest
    ? t("chat.guest_banner", { when: formatRemaining(user.guest_expires_at) }) : "";
  show($("menu-register"), user.is_guest);
  show($("menu-password"), !user.is_guest);
  show($("menu-admin"), user.is_admin);
  document.body.classList.toggle("is-guest", user.is_guest);
}

async function submitAuth(kind) {
  const form = $(`${kind}-form`);
  const email = form.querySelector("[name=email]").value.trim();
  const password = form.querySelector("[name=password]").value;
  const errorBox = `${kind}-error`;
  if (!email || !password) return formError(errorBox, () => t("chat.fill_in"));
  if (kind === "register" && password.length < 8) return formError(errorBox, () => t("chat.password_short"));
  formError(errorBox, null);
  const button = $(`${kind}-submit`);
  button.disabled = true;
  try {
    const body = kind === "login" ? { email, password } : { email, password, name: $("register-name").value.trim() };
    const me = await api(`/api/auth/${kind}`, { method: "POST", body });
    form.reset();
    await enterApp(me);
  } catch (err) {
    formError(errorBox, err);
  } finally {
    button.disabled = false;
  }
}

async function startGuest() {
  $("guest-start").disabled = true;
  try {
    await enterApp(await api("/api/guest", { method: "POST" }));
  } catch (err) {
    toast(errorText(err), true);
  } finally {
    $("guest-start").disabled = false;
  }
}

async function upgradeGuest() {
  const email = $("upgrade-email").value.trim();
  const password = $("upgrade-password").value;
  if (!email || !password) return formError("upgrade-error", () => t("chat.fill_in"));
  if (password.length < 8) return formError("upgrade-error", () => t("chat.password_short"));
  $("upgrade-submit").disabled = true;
  try {
    const me = await api("/api/auth/register", { method: "POST", body: { email, password } });
    state.me = me;
    setCsrf(me.csrf_token);
    renderUser();
    $("dlg-register").close();
    $("upgrade-form").reset();
    formError("upgrade-error", null);
    toast(t("chat.registered_kept"));
  } catch (err) {
    if (!handleAuthLoss(err)) formError("upgrade-error", err);
  } finally {
    $("upgrade-submit").disabled = false;
  }
}

async function logout() {
  closeMenu();
  abortStreaming();
  try { await api("/api/auth/logout", { method: "POST" }); } catch { /* the session is gone either way */ }
  showWelcome();
}

async function changePassword() {
  const current = $("pw-current").value;
  const next = $("pw-new").value;
  if (!current || !next) return formError("password-error", () => t("chat.fill_in"));
  if (next.length < 8) return formError("password-error", () => t("chat.password_short"));
  if (next !== $("pw-repeat").value) return formError("password-error", () => t("chat.password_mismatch"));
  try {
    await api("/api/auth/password", { method: "POST", body: { current_password: current, new_password: next } });
    $("dlg-password").close();
    $("password-form").reset();
    formError("password-error", null);
    toast(t("chat.password_changed"));
  } catch (err) {
    if (!handleAuthLoss(err)) formError("password-error", err);
  }
}

async function changeAvatar(file) {
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const res = await api("/api/users/me/avatar", { method: "POST", body: form });
    state.me.avatar_url = `${res.url}?v=${Date.now()}`;
    state.me.user.avatar_id = res.id;
    renderUser();
    toast(t("chat.avatar_changed"));
  } catch (err) {
    if (!handleAuthLoss(err)) toast(errorText(err), true);
  } finally {
    $("avatar-input").value = "";
  }
}

// ============================================================================================= models
async function loadModels() {
  let all = [];
  try {
    all = await api("/api/models");
  } catch (err) {
    if (handleAuthLoss(err)) return;
    toast(errorText(err), true);
  }
  state.models = all.filter((m) => m.available !== false);
  state.unavailable = all.filter((m) => m.available === false); // shown greyed out, with the reason
  let saved = null;
  try { saved = localStorage.getItem(MODEL_KEY); } catch { /* private */ }
  const ids = state.models.map((m) => m.id);
  state.model = ids.includes(saved) ? saved : (state.models.find((m) => m.default)?.id ?? ids[0] ?? null);
  renderModels();
}

function renderModels() {
  const select = $("model-select");
  select.replaceChildren();
  for (const m of state.models) {
    const opt = el("option", null, `${m.id} · ${t(`chat.kind.${m.kind}`)}`);
    opt.value = m.id;
    if (m.description) opt.title = m.description;
    select.append(opt);
  }
  for (const m of state.unavailable) {
    const opt = el("option", null, `${m.id} · ${t("chat.unavailable")}`);
    opt.value = m.id;
    opt.disabled = true;
    opt.title = m.reason || "";
    select.append(opt);
  }
  if (!state.models.length) select.append(el("option", null, t("chat.no_models")));
  select.disabled = !state.models.length;
  if (state.model) select.value = state.model;
}

// ====================================================================================== conversations
async function fetchPage(q, offset) {
  const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
  if (q) params.set("q", q);
  return api(`/api/conversations?${params}`);
}

async function loadList(more) {
  const list = state.list;
  const seq = ++list.seq;
  try {
    const page = await fetchPage(list.q, more ? list.next ?? 0 : 0);
    if (seq !== list.seq) return;
    list.items = more ? [...list.items, ...page.items] : page.items;
    list.next = page.next_offset;
  } catch (err) {
    if (!handleAuthLoss(err)) toast(errorText(err), true);
    return;
  }
  renderList();
}

function renderList() {
  const box = $("conv-list");
  box.replaceChildren();
  if (!state.list.items.length) {
    box.append(el("p", "muted small list-empty", state.list.q ? t("chat.no_results") : t("chat.no_conversations")));
  }
  for (const c of state.list.items) {
    const item = el("button", "conv-item");
    item.type = "button";
    item.dataset.id = c.id;
    if (c.id === state.convId) {
      item.classList.add("active");
      item.setAttribute("aria-current", "true");
    }
    item.append(el("span", "conv-item-title", c.title || t("chat.untitled")), el("span", "conv-item-date", formatDate(c.updated_at)));
    item.addEventListener("click", () => {
      openConversation(c.id);
      closeSidebar();
    });
    box.append(item);
  }
  show($("conv-more"), state.list.next != null);
}

async function openConversation(id, { quiet = false } = {}) {
  if (state.streaming) abortStreaming();
  let conv;
  try {
    conv = await api(`/api/conversations/${encodeURIComponent(id)}`);
  } catch (err) {
    if (handleAuthLoss(err)) return false;
    if (!quiet) toast(errorText(err), true);
    if (err instanceof ApiError && err.status === 404 && rememberedConversation() === id) rememberConversation(null);
    return false;
  }
  state.convId = conv.id;
  state.convTitle = conv.title;
  state.messages = conv.messages;
  rememberConversation(conv.id);
  renderConversation();
  renderList();
  return true;
}

function newChat() {
  abortStreaming();
  state.convId = null;
  state.convTitle = "";
  state.messages = [];
  renderConversation();
  renderList();
  closeSidebar();
  $("input").focus();
}

function renderConvHead() {
  const has = Boolean(state.convId);
  show($("conv-head"), has);
  $("conv-title").textContent = state.convTitle || t("chat.untitled");
  document.title = has ? `${state.convTitle || t("chat.untitled")} · ${t("chat.title")}` : t("chat.title");
  if (has) {
    const base = `/api/conversations/${encodeURIComponent(state.convId)}/export`;
    $("conv-export-md").href = `${base}?format=md`;
    $("conv-export-json").href = `${base}?format=json`;
  }
}

async function renameConversation(id, current) {
  const title = await promptDialog(current);
  if (!title) return;
  try {
    const conv = await api(`/api/conversations/${encodeURIComponent(id)}`, { method: "PATCH", body: { title } });
    if (id === state.convId) { state.convTitle = conv.title; renderConvHead(); }
    for (const l of [state.list, state.history]) for (const c of l.items) if (c.id === id) c.title = conv.title;
    renderList();
    renderHistory();
  } catch (err) {
    if (!handleAuthLoss(err)) toast(errorText(err), true);
  }
}

async function deleteConversation(id, title) {
  if (!(await confirmDialog(t("chat.delete_confirm", { title: title || t("chat.untitled") }), t("chat.delete")))) return;
  try {
    await api(`/api/conversations/${encodeURIComponent(id)}`, { method: "DELETE" });
  } catch (err) {
    if (!handleAuthLoss(err)) toast(errorText(err), true);
    return;
  }
  state.list.items = state.list.items.filter((c) => c.id !== id);
  state.history.items = state.history.items.filter((c) => c.id !== id);
  if (id === state.convId) { rememberConversation(null); newChat(); }
  renderList();
  renderHistory();
  toast(t("chat.deleted"));
}

// ---------------------------------------------------------------------------------- history dialog
async function loadHistory(more) {
  const h = state.history;
  const seq = ++h.seq;
  try {
    const page = await fetchPage(h.q, more ? h.next ?? 0 : 0);
    if (seq !== h.seq) return;
    h.items = more ? [...h.items, ...page.items] : page.items;
    h.next = page.next_offset;
  } catch (err) {
    if (!handleAuthLoss(err)) toast(errorText(err), true);
    return;
  }
  renderHistory();
}

function renderHistory() {
  const ul = $("history-list");
  ul.replaceChildren();
  if (!state.history.items.length) {
    ul.append(el("li", "muted small list-empty", state.history.q ? t("chat.no_results") : t("chat.no_conversations")));
  }
  for (const c of state.history.items) {
    const li = el("li", "history-row");
    li.dataset.id = c.id;
    const open = el("button", "history-open");
    open.type = "button";
    open.append(el("span", "conv-item-title", c.title || t("chat.untitled")), el("span", "conv-item-date", formatDate(c.updated_at)));
    open.addEventListener("click", () => { $("dlg-history").close(); openConversation(c.id); });
    const actions = el("span", "history-actions");
    const rename = el("button", "btn small-btn", t("chat.rename"));
    rename.type = "button";
    rename.addEventListener("click", () => renameConversation(c.id, c.title));
    const base = `/api/conversations/${encodeURIComponent(c.id)}/export`;
    const md = el("a", "btn small-btn", "Markdown");
    md.href = `${base}?format=md`;
    md.download = "";
    md.title = t("chat.export_md");
    const json = el("a", "btn small-btn", "JSON");
    json.href = `${base}?format=json`;
    json.download = "";
    json.title = t("chat.export_json");
    const del = el("button", "btn danger small-btn", t("chat.delete"));
    del.type = "button";
    del.addEventListener("click", () => deleteConversation(c.id, c.title));
    actions.append(rename, md, json, del);
    li.append(open, actions);
    ul.append(li);
  }
  show($("history-more"), state.history.next != null);
}

function openHistory() {
  closeMenu();
  state.history.q = "";
  $("history-search").value = "";
  $("dlg-history").showModal();
  loadHistory(false);
}

// ============================================================================================ messages
function renderConversation() {
  const box = $("messages");
  box.replaceChildren();
  if (!state.messages.length) box.append(EMPTY);
  for (const m of state.messages) box.append(messageNode(m));
  renderConvHead();
  scrollToBottom(true);
}

function messageNode(m) {
  return m.role === "user" ? userNode(m) : assistantNode(m);
}

function userNode(m) {
  const node = el("div", "msg user");
  const bubble = el("div", "bubble");
  for (const p of m.parts || []) {
    if (p.type !== "video") continue;
    const fig = el("figure", "video-att");
    const video = el("video");
    video.controls = true;
    video.preload = "metadata";
    video.playsInline = true;
    video.src = `/api/uploads/${encodeURIComponent(p.upload_id)}`;
    video.setAttribute("aria-label", p.filename || "video");
    fig.append(video, el("figcaption", null, p.filename || ""));
    bubble.append(fig);
  }
  if (m.content) bubble.append(el("div", "text", m.content));
  node.append(bubble);
  return node;
}

function assistantNode(m) {
  const node = el("div", "msg assistant");
  node._msg = m;
  const bot = el("div", "bot-avatar", "喻");
  bot.setAttribute("aria-hidden", "true");
  const body = el("div", "answer");
  const bubble = el("div", "bubble");
  const text = el("div", "text");
  text.append(document.createTextNode(m.content || ""));
  bubble.append(text, el("div", "blank-note hidden"), el("div", "status-line hidden"));
  body.append(bubble, el("div", "notice-slot"), el("div", "answer-meta"));
  node.append(bot, body);
  decorate(node);
  return node;
}

/** No visible text yet: empty, or only spaces and newlines (an untrained model's answer). */
function isBlank(m) { return !(m.content || "").trim(); }

/** (Re)draw everything language-dependent of an assistant message: status line, notice, meta line. */
function decorate(node) {
  const m = node._msg;
  node.dataset.status = m.status;
  // A blank answer is a short muted note, not a bubble stretched by newlines.
  const blank = isBlank(m);
  node.classList.toggle("blank", blank);
  const note = node.querySelector(".blank-note");
  const noted = blank && (m.status === "complete" || m.status === "interrupted");
  note.textContent = noted ? t(m.content ? "chat.blank_answer" : "chat.empty_answer") : "";
  show(note, noted);
  const status = node.querySelector(".status-line");
  status.replaceChildren();
  status.classList.remove("queued");
  if (m.status === "streaming" && blank) {
    if (m.queuePosition) {
      status.classList.add("queued");
      status.append(el("span", "queue-text", t("chat.queued", { n: m.queuePosition })));
    } else if (m.stage) {
      status.append(el("span", "typing", ""), el("span", "stage-text", stageText(m.stage)));
    } else {
      status.append(el("span", "typing", ""), el("span", null, t("chat.thinking")));
    }
    show(status, true);
  } else {
    show(status, false);
  }
  const slot = node.querySelector(".notice-slot");
  slot.replaceChildren();
  if (m.status === "error") {
    slot.append(el("div", "notice bad answer-notice", `${t("chat.answer_error")}${errorText(m.error || { detail: m.timings?.error, i18n: m.timings?.error_i18n })}`));
  } else if (m.status === "interrupted") {
    slot.append(el("div", "notice answer-notice", m.networkLost ? t("chat.answer_lost") : t("chat.answer_interrupted")));
  }
  const meta = node.querySelector(".answer-meta");
  meta.replaceChildren();
  if (m.status === "streaming") return;
  if (m.model) {
    const label = el("span", "meta-model", m.model);
    label.title = [m.base_model && `${t("chat.base_model")}: ${m.base_model}`, m.adapter && `${t("chat.adapter")}: ${m.adapter}`]
      .filter(Boolean).join(" · ") || m.model;
    meta.append(label);
    if (m.adapter && !m.model.includes(m.adapter)) meta.append(el("span", "meta-adapter", `${t("chat.adapter")} ${m.adapter}`));
  }
  if (m.ttft_ms != null) meta.append(el("span", "meta-ttft", `${t("chat.ttft")} ${formatMs(m.ttft_ms)}`));
  if (m.total_ms != null) meta.append(el("span", "meta-total", `${t("chat.total")} ${formatMs(m.total_ms)}`));
  const read = { frames: m.frames ?? m.timings?.frames, visual: m.visual_tokens ?? m.timings?.visual_tokens,
    cached: m.cached_tokens ?? m.timings?.cached_tokens };
  if (read.frames) meta.append(el("span", "meta-frames", t("chat.meta_frames", { n: read.frames })));
  if (read.visual) meta.append(el("span", "meta-visual", t("chat.meta_visual", { n: read.visual.toLocaleString() })));
  if (read.cached) {
    const cached = el("span", "meta-cached", t("chat.meta_cached", { n: read.cached.toLocaleString() }));
    cached.title = t("chat.meta_cached_title");
    meta.append(cached);
  }
}

/** What the engine is doing before the first word, with the time since the answer started (ticking). */
function stageText(stage) {
  const f = stage.facts;
  const what = {
    frames: () => t("chat.stage_frames", { frames: f.frames }),
    encoding: () => t("chat.stage_encoding", { done: f.done ?? 0, frames: f.frames }),
    reading: () => t("chat.stage_reading", { done: f.done, total: f.total }),
    writing: () => t("chat.stage_writing"),
  }[stage.name];
  const seconds = (stage.elapsed_ms + (performance.now() - stage.at)) / 1000;
  return `${what ? what() : stage.name} · ${t("chat.elapsed", { s: seconds.toFixed(1) })}`;
}

function nearBottom() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 120;
}

function scrollToBottom(force = false) {
  const box = $("messages");
  if (force || nearBottom()) box.scrollTop = box.scrollHeight;
}

function appendMessage(m) {
  const box = $("messages");
  EMPTY.remove();
  const node = messageNode(m);
  box.append(node);
  state.messages.push(m);
  scrollToBottom(true);
  return node;
}

// ============================================================================================ sending
function setBusy(busy) {
  show($("stop-btn"), busy);
  show($("send-btn"), !busy);
  $("messages").setAttribute("aria-busy", String(busy));
  updateSendState();
}

function updateSendState() {
  const uploading = state.attachments.some((a) => a.status === "uploading");
  const ready = state.attachments.some((a) => a.status === "done");
  $("send-btn").disabled = Boolean(state.streaming) || uploading || (!$("input").value.trim() && !ready)
    || !state.models.length;
}

function abortStreaming() {
  if (state.streaming) state.streaming.controller.abort();
}

async function send() {
  if (state.streaming) return;
  const text = $("input").value;
  if (state.attachments.some((a) => a.status === "uploading")) return toast(t("chat.wait_upload"));
  const ready = state.attachments.filter((a) => a.status === "done");
  if (!text.trim() && !ready.length) return;
  const model = state.model;
  const controller = new AbortController();
  const asst = { role: "assistant", content: "", status: "streaming", model };
  state.streaming = { controller, msg: asst };
  setBusy(true);
  if (!state.convId) {
    try {
      const conv = await api("/api/conversations", { method: "POST", body: {} });
      state.convId = conv.id;
      state.convTitle = conv.title;
      rememberConversation(conv.id);
    } catch (err) {
      state.streaming = null;
      setBusy(false);
      if (!handleAuthLoss(err)) toast(errorText(err), true);
      return;
    }
  }
  const convId = state.convId;
  const user = {
    role: "user",
    content: text,
    parts: ready.map((a) => ({ type: "video", upload_id: a.upload.id, filename: a.upload.filename })),
  };
  appendMessage(user);
  if (!state.convTitle) state.convTitle = (text.trim().split("\n")[0] || user.parts[0]?.filename || "").slice(0, 60);
  const listed = state.list.items.find((c) => c.id === convId);
  if (listed) listed.updated_at = new Date().toISOString();
  if (!state.list.q) {
    state.list.items = [listed || { id: convId, title: state.convTitle, updated_at: new Date().toISOString() },
      ...state.list.items.filter((c) => c.id !== convId)];
    renderList();
  }
  $("input").value = "";
  autosize();
  state.attachments = state.attachments.filter((a) => a.status !== "done");
  renderAttachments();
  const node = appendMessage(asst);
  const textNode = node.querySelector(".text").firstChild;
  renderConvHead();
  let started = false;
  let stageTicker = null;
  const onEvent = (event, data) => {
    if (event === "start") {
      started = true;
      user.id = data.user_message_id;
    } else if (event === "queued") {
      asst.queuePosition = data.position;
      decorate(node);
    } else if (event === "stage") {
      const { name, elapsed_ms: elapsedMs, ...facts } = data;
      asst.queuePosition = null;
      asst.stage = { name, facts, elapsed_ms: elapsedMs, at: performance.now() };
      decorate(node);
      if (!stageTicker) stageTicker = setInterval(() => { if (isBlank(asst) && asst.status === "streaming") decorate(node); }, 200);
    } else if (event === "token") {
      const wasEmpty = !asst.content;
      const wasBlank = isBlank(asst);
      const stick = nearBottom();
      asst.content += data.text;
      textNode.appendData(data.text);
      if (wasEmpty) asst.queuePosition = null;
      if (wasEmpty || (wasBlank && !isBlank(asst))) decorate(node);
      if (stick) scrollToBottom(true);
    } else if (event === "done") {
      Object.assign(asst, data, { id: data.message_id, status: "complete" });
      decorate(node);
    } else if (event === "error") {
      Object.assign(asst, { id: data.message_id, status: "error", error: { detail: data.detail, i18n: data.detail_i18n } });
      decorate(node);
    }
  };
  try {
    await streamPost(`/api/conversations/${encodeURIComponent(convId)}/messages`, { text, upload_ids: user.parts.map((p) => p.upload_id), model }, onEvent, controller.signal);
    if (asst.status === "streaming") Object.assign(asst, { status: "interrupted", networkLost: true });
  } catch (err) {
    if (err.name === "AbortError") {
      asst.status = "interrupted";
    } else if (handleAuthLoss(err)) {
      return;
    } else if (!started) {
      Object.assign(asst, { status: "error", error: err });
      if (!$("input").value) { $("input").value = text; autosize(); }
    } else {
      Object.assign(asst, { status: "interrupted", networkLost: true });
    }
  } finally {
    if (state.streaming?.msg === asst) state.streaming = null;
    clearInterval(stageTicker);
    stageTicker = null;
    setBusy(false);
  }
  if (node.isConnected) decorate(node);
  scrollToBottom();
  if (convId === state.convId) {
    await loadList(false);
    const item = state.list.items.find((c) => c.id === convId);
    if (item) { state.convTitle = item.title; renderConvHead(); }
  }
}

// ============================================================================================ uploads
let attachmentKey = 0;

function addFiles(files) {
  for (const file of files) {
    const a = { key: ++attachmentKey, file, status: "uploading", loaded: 0, upload: null, error: null, abort: null };
    state.attachments.push(a);
    // Naming the selected model lets the server read the video (and the conversation so far) while the
    // question is typed; the answer then only reads the question.
    const ahead = new URLSearchParams();
    if (state.model) ahead.set("model", state.model);
    if (state.convId) ahead.set("conversation_id", state.convId);
    const job = uploadFile(`/api/uploads${ahead.size ? `?${ahead}` : ""}`, file, (loaded, total) => {
      a.loaded = loaded;
      a.total = total;
      updateProgress(a);
    });
    a.abort = job.abort;
    job.promise.then((upload) => {
      Object.assign(a, { status: "done", upload });
    }).catch((err) => {
      if (err.name === "AbortError") return;
      if (handleAuthLoss(err)) return;
      Object.assign(a, { status: "error", error: err }); // drawn by errorText: follows the language
    }).finally(() => { renderAttachments(); updateSendState(); });
  }
  renderAttachments();
  updateSendState();
}

function updateProgress(a) {
  const node = document.querySelector(`.attachment[data-key="${a.key}"]`);
  if (!node) return;
  const bar = node.querySelector("progress");
  if (bar && a.total) { bar.max = a.total; bar.value = a.loaded; }
  const pct = node.querySelector(".att-status");
  if (pct && a.total) pct.textContent = `${t("chat.uploading")} ${Math.floor((100 * a.loaded) / a.total)}%`;
}

function renderAttachments() {
  const box = $("attachments");
  box.replaceChildren();
  for (const a of state.attachments) {
    const node = el("div", `attachment ${a.status}`);
    node.dataset.key = String(a.key);
    const ext = (a.file.name.match(/\.([a-z0-9]{1,5})$/i)?.[1] || "video").toUpperCase();
    const icon = el("span", "att-icon", ext);
    icon.setAttribute("aria-hidden", "true");
    const info = el("div", "att-info");
    const size = a.upload?.size_bytes ?? a.file.size;
    const line = el("div", "att-line");
    line.append(el("span", "att-name", a.file.name), el("span", "att-size", formatBytes(size)));
    if (a.upload?.duration_s != null) line.append(el("span", "att-size", formatDuration(a.upload.duration_s)));
    info.append(line);
    if (a.status === "uploading") {
      const bar = el("progress");
      bar.max = a.total || 1;
      bar.value = a.loaded || 0;
      bar.setAttribute("aria-label", t("chat.uploading"));
      info.append(bar, el("span", "att-status small", t("chat.uploading")));
    } else if (a.status === "done") {
      info.append(el("span", "att-status small ok", t("chat.uploaded")));
    } else {
      info.append(el("span", "att-error small", errorText(a.error)));
    }
    const remove = el("button", "icon-btn att-remove", "✕");
    remove.type = "button";
    remove.setAttribute("aria-label", `${t("chat.remove")} ${a.file.name}`);
    remove.addEventListener("click", () => {
      a.abort?.();
      if (a.status === "done" && a.upload) api(`/api/uploads/${encodeURIComponent(a.upload.id)}`, { method: "DELETE" }).catch(() => {});
      state.attachments = state.attachments.filter((x) => x !== a);
      renderAttachments();
      updateSendState();
    });
    node.append(icon, info, remove);
    box.append(node);
  }
  show(box, state.attachments.length > 0);
}

// ============================================================================================== admin
async function openAdmin() {
  closeMenu();
  $("dlg-admin").showModal();
  const users = $("admin-users");
  const usage = $("admin-usage");
  try {
    const [rows, use] = await Promise.all([api("/api/admin/users"), api("/api/admin/usage")]);
    users.replaceChildren(tableRow("th", [t("chat.email"), t("chat.role"), t("chat.created"), ""]));
    for (const u of rows) {
      const btn = el("button", `btn small-btn ${u.disabled ? "" : "danger"}`, u.disabled ? t("chat.enable") : t("chat.disable"));
      btn.type = "button";
      btn.disabled = u.id === state.me.user.id;
      btn.addEventListener("click", async () => {
        try {
          await api(`/api/admin/users/${encodeURIComponent(u.id)}`, { method: "PATCH", body: { disabled: !u.disabled } });
          openAdminRefresh();
        } catch (err) { toast(errorText(err), true); }
      });
      const role = [u.is_admin ? t("chat.role_admin") : t("chat.role_user"), u.disabled ? t("chat.disabled") : ""].filter(Boolean).join(" · ");
      users.append(tableRow("td", [u.email || "", role, formatDate(u.created_at), btn]));
    }
    usage.replaceChildren(tableRow("th", [t("chat.email"), t("chat.source"), t("chat.model"), t("chat.requests"), t("chat.tokens"), t("chat.ttft"), t("chat.total")]));
    for (const r of use) {
      usage.append(tableRow("td", [r.email || t("chat.guest"), r.source, r.model, String(r.requests),
        `${r.prompt_tokens} / ${r.completion_tokens}`, formatMs(r.avg_ttft_ms), formatMs(r.avg_total_ms)]));
    }
  } catch (err) {
    toast(errorText(err), true);
  }
}

function openAdminRefresh() { $("dlg-admin").close(); openAdmin(); }

function tableRow(cell, values) {
  const tr = el("tr");
  for (const v of values) {
    const c = el(cell);
    if (v instanceof Node) c.append(v); else c.textContent = v;
    tr.append(c);
  }
  return tr;
}

// ======================================================================================= menu, drawer
function openMenu() {
  show($("user-dropdown"), true);
  $("user-btn").setAttribute("aria-expanded", "true");
  $("user-dropdown").querySelector("button:not(.hidden)")?.focus();
}

function closeMenu() {
  show($("user-dropdown"), false);
  $("user-btn").setAttribute("aria-expanded", "false");
}

function openSidebar() {
  $("sidebar").classList.add("open");
  show($("backdrop"), true);
  $("sidebar-open").setAttribute("aria-expanded", "true");
  $("conv-search").focus();
}

function closeSidebar() {
  if (!$("sidebar").classList.contains("open")) return;
  $("sidebar").classList.remove("open");
  show($("backdrop"), false);
  $("sidebar-open").setAttribute("aria-expanded", "false");
}

function autosize() {
  const input = $("input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight + 2, Math.round(window.innerHeight * 0.35))}px`;
  updateSendState();
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// ============================================================================================== wiring
function wire() {
  for (const b of document.querySelectorAll(".lang-toggle")) b.addEventListener("click", () => { closeMenu(); toggleLanguage(); });
  // welcome
  const tab = (which) => {
    const login = which === "login";
    $("tab-login").classList.toggle("active", login);
    $("tab-register").classList.toggle("active", !login);
    $("tab-login").setAttribute("aria-selected", String(login));
    $("tab-register").setAttribute("aria-selected", String(!login));
    show($("login-form"), login);
    show($("register-form"), !login);
    $(login ? "login-email" : "register-email").focus();
  };
  $("tab-login").addEventListener("click", () => tab("login"));
  $("tab-register").addEventListener("click", () => tab("register"));
  $("login-form").addEventListener("submit", (e) => { e.preventDefault(); submitAuth("login"); });
  $("register-form").addEventListener("submit", (e) => { e.preventDefault(); submitAuth("register"); });
  $("guest-start").addEventListener("click", startGuest);
  // top bar
  $("model-select").addEventListener("change", (e) => {
    state.model = e.target.value;
    try { localStorage.setItem(MODEL_KEY, state.model); } catch { /* private */ }
  });
  $("user-btn").addEventListener("click", (e) => {
    e.stopPropagation();
    if ($("user-dropdown").classList.contains("hidden")) openMenu(); else closeMenu();
  });
  document.addEventListener("click", (e) => { if (!e.target.closest(".user-menu")) closeMenu(); });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      if (!$("user-dropdown").classList.contains("hidden")) { closeMenu(); $("user-btn").focus(); }
      closeSidebar();
    }
  });
  $("menu-history").addEventListener("click", openHistory);
  $("menu-avatar").addEventListener("click", () => { closeMenu(); $("avatar-input").click(); });
  $("avatar-input").addEventListener("change", (e) => changeAvatar(e.target.files[0]));
  $("menu-password").addEventListener("click", () => { closeMenu(); formError("password-error", null); $("dlg-password").showModal(); });
  $("menu-register").addEventListener("click", () => { closeMenu(); $("dlg-register").showModal(); });
  $("menu-admin").addEventListener("click", openAdmin);
  $("menu-logout").addEventListener("click", logout);
  $("guest-register").addEventListener("click", () => { formError("upgrade-error", null); $("dlg-register").showModal(); });
  $("upgrade-form").addEventListener("submit", (e) => { e.preventDefault(); upgradeGuest(); });
  $("password-form").addEventListener("submit", (e) => { e.preventDefault(); changePassword(); });
  $("rename-form").addEventListener("submit", (e) => { e.preventDefault(); $("dlg-rename").close("ok"); });
  for (const b of document.querySelectorAll("dialog [data-close]")) b.addEventListener("click", () => b.closest("dialog").close());
  // sidebar
  $("new-chat").addEventListener("click", newChat);
  $("sidebar-open").addEventListener("click", openSidebar);
  $("sidebar-close").addEventListener("click", closeSidebar);
  $("backdrop").addEventListener("click", closeSidebar);
  $("conv-search").addEventListener("input", debounce((e) => { state.list.q = e.target.value.trim(); loadList(false); }, 250));
  $("conv-more").addEventListener("click", () => loadList(true));
  $("history-search").addEventListener("input", debounce((e) => { state.history.q = e.target.value.trim(); loadHistory(false); }, 250));
  $("history-more").addEventListener("click", () => loadHistory(true));
  // conversation head
  $("conv-rename").addEventListener("click", () => state.convId && renameConversation(state.convId, state.convTitle));
  $("conv-delete").addEventListener("click", () => state.convId && deleteConversation(state.convId, state.convTitle));
  // composer
  const input = $("input");
  input.addEventListener("input", autosize);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      if (!$("send-btn").disabled) send();
    }
  });
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  $("stop-btn").addEventListener("click", abortStreaming);
  $("upload-btn").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (e) => { addFiles([...e.target.files]); e.target.value = ""; });
  const main = document.querySelector(".main");
  main.addEventListener("dragover", (e) => { if (state.me) { e.preventDefault(); main.classList.add("dragging"); } });
  main.addEventListener("dragleave", () => main.classList.remove("dragging"));
  main.addEventListener("drop", (e) => {
    main.classList.remove("dragging");
    if (!state.me || !e.dataTransfer?.files?.length) return;
    e.preventDefault();
    addFiles([...e.dataTransfer.files]);
  });
  phone.addEventListener("change", closeSidebar);
  // language: redraw what was drawn from JS
  document.addEventListener("vmeta:language", () => {
    if (state.me) {
      renderUser();
      renderModels();
      renderList();
      renderHistory();
      renderAttachments();
      renderConvHead();
      for (const node of document.querySelectorAll(".msg.assistant")) decorate(node);
    } else {
      document.title = t("chat.title");
    }
  });
}

async function init() {
  wire();
  await setLanguage(initialLanguage());
  let me = null;
  if (hasSessionCookie()) {
    try { me = await api("/api/auth/me"); } catch { me = null; }
  }
  if (me) await enterApp(me); else showWelcome();
  document.body.dataset.ready = "1";
}

init().catch((err) => {
  document.body.dataset.ready = "error";
  toast(`${t("common.error")}${err.message}`, true);
  throw err;
});
