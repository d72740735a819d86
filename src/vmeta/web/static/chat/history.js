// Conversation history: the sidebar list (search, load more), the history dialog (the same list with rename,
// export and delete per row), and opening, starting, renaming and deleting a conversation.
import { t } from "/static/js/i18n.js";
import { ApiError, api } from "/static/chat/api.js";
import { $, confirmDialog, debounce, el, errorText, formatDate, promptDialog, show, toast } from "/static/chat/ui.js";
import { closeMenu, closeSidebar } from "/static/chat/layout.js";
import { renderConvHead, renderConversation } from "/static/chat/messages.js";
import { handleAuthLoss } from "/static/chat/session.js";
import { abortStreaming, rememberConversation, rememberedConversation, state } from "/static/chat/state.js";

const PAGE = 30;

async function fetchPage(q, offset) {
  const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
  if (q) params.set("q", q);
  return api(`/api/conversations?${params}`);
}

export async function loadList(more) {
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

export function renderList() {
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

export async function openConversation(id, { quiet = false } = {}) {
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

export function newChat() {
  abortStreaming();
  state.convId = null;
  state.convTitle = "";
  state.messages = [];
  renderConversation();
  renderList();
  closeSidebar();
  $("input").focus();
}

export async function renameConversation(id, current) {
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

export async function deleteConversation(id, title) {
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

export function renderHistory() {
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

export function wireHistory() {
  $("new-chat").addEventListener("click", newChat);
  $("conv-search").addEventListener("input", debounce((e) => { state.list.q = e.target.value.trim(); loadList(false); }, 250));
  $("conv-more").addEventListener("click", () => loadList(true));
  $("menu-history").addEventListener("click", openHistory);
  $("history-search").addEventListener("input", debounce((e) => { state.history.q = e.target.value.trim(); loadHistory(false); }, 250));
  $("history-more").addEventListener("click", () => loadHistory(true));
  $("conv-rename").addEventListener("click", () => state.convId && renameConversation(state.convId, state.convTitle));
  $("conv-delete").addEventListener("click", () => state.convId && deleteConversation(state.convId, state.convTitle));
}
