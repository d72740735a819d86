// Sending a message and streaming the answer (Server-Sent Events): the user's message and an empty answer are
// shown at once, then the answer follows the events — queued (position), stage (what the engine does before
// the first word, ticking), token, done (times and counts) or error; Stop aborts it.
import { t } from "/static/js/i18n.js";
import { api, streamPost } from "/static/chat/api.js";
import { $, errorText, toast } from "/static/chat/ui.js";
import { renderAttachments } from "/static/chat/attachments.js";
import { autosize, setBusy } from "/static/chat/composer.js";
import { loadList, renderList } from "/static/chat/history.js";
import { appendMessage, decorate, isBlank, nearBottom, renderConvHead, scrollToBottom } from "/static/chat/messages.js";
import { handleAuthLoss } from "/static/chat/session.js";
import { abortStreaming, rememberConversation, state } from "/static/chat/state.js";

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

export function wireComposer() {
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
}
