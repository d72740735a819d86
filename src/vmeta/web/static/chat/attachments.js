// Videos attached to the next message: chosen with the upload button or dropped on the page, uploaded at once
// with a progress bar (naming the selected model and conversation so the server reads ahead), removable.
import { t } from "/static/js/i18n.js";
import { api, uploadFile } from "/static/chat/api.js";
import { $, el, errorText, formatBytes, formatDuration, show } from "/static/chat/ui.js";
import { updateSendState } from "/static/chat/composer.js";
import { handleAuthLoss } from "/static/chat/session.js";
import { state } from "/static/chat/state.js";

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

export function renderAttachments() {
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

export function wireAttachments() {
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
}
