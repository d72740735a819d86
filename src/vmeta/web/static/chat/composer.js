// The message box at the bottom: its height follows the text, and Send is enabled only when there is
// something to send (text or an uploaded video), nothing is uploading or streaming, and a model exists.
import { $, show } from "/static/chat/ui.js";
import { state } from "/static/chat/state.js";

export function updateSendState() {
  const uploading = state.attachments.some((a) => a.status === "uploading");
  const ready = state.attachments.some((a) => a.status === "done");
  $("send-btn").disabled = Boolean(state.streaming) || uploading || (!$("input").value.trim() && !ready)
    || !state.models.length;
}

/** While an answer streams: Stop instead of Send. */
export function setBusy(busy) {
  show($("stop-btn"), busy);
  show($("send-btn"), !busy);
  $("messages").setAttribute("aria-busy", String(busy));
  updateSendState();
}

export function autosize() {
  const input = $("input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight + 2, Math.round(window.innerHeight * 0.35))}px`;
  updateSendState();
}
