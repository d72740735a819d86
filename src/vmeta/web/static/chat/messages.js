// The open conversation in the middle: its head (title, rename, export, delete), the messages, and each
// answer's status line, notices and meta line (model, response times, frames and tokens read). `decorate`
// draws an answer's language-dependent parts again after a language switch or a streamed event.
import { t } from "/static/js/i18n.js";
import { $, el, errorText, formatMs, show } from "/static/chat/ui.js";
import { state } from "/static/chat/state.js";

export const EMPTY = document.getElementById("empty-state"); // kept: it is taken out of the page while messages show

export function renderConvHead() {
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

export function renderConversation() {
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
export function isBlank(m) { return !(m.content || "").trim(); }

/** (Re)draw everything language-dependent of an assistant message: status line, notice, meta line. */
export function decorate(node) {
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
  const contextText = m.context_text ?? m.timings?.context_text;
  if (contextText) {
    const shown = el("span", "meta-context", t("chat.meta_context"));
    shown.title = contextText;
    meta.append(shown);
  }
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
    context: () => t("chat.stage_context", { what: (f.kinds || []).map((k) => t(`chat.context.${k}`)).join(" · ") }),
  }[stage.name];
  const seconds = (stage.elapsed_ms + (performance.now() - stage.at)) / 1000;
  return `${what ? what() : stage.name} · ${t("chat.elapsed", { s: seconds.toFixed(1) })}`;
}

export function nearBottom() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 120;
}

export function scrollToBottom(force = false) {
  const box = $("messages");
  if (force || nearBottom()) box.scrollTop = box.scrollHeight;
}

export function appendMessage(m) {
  const box = $("messages");
  EMPTY.remove();
  const node = messageNode(m);
  box.append(node);
  state.messages.push(m);
  scrollToBottom(true);
  return node;
}
