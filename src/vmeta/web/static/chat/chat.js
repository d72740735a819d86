// The chat page of `vmeta serve` (thesis §4.5, Fig. 4.3): model picker top-left, user menu top-right,
// conversation in the middle with model and response times under each answer, input with video upload at the
// bottom, history in the sidebar. Plain ES modules, no build step; the server does all the work (docs/serve-api.md).
//
// This entry module only starts the page; each job is a module of its own (imports point downwards):
//   auth.js         accounts: enter the app, login / register / guest, password, avatar, logout
//   stream.js       sending a message and streaming the answer; the composer's keys and Stop
//   history.js      the sidebar list and the history dialog; open / new / rename / delete a conversation
//   attachments.js  video uploads with progress, drag and drop
//   admin.js        the admin dialog (users and usage)
//   models.js       the model picker
//   session.js      the signed-out page and what a 401 does
//   messages.js     the open conversation: its head, messages, an answer's status and meta line
//   composer.js     the message box: height, Send enabled, busy
//   layout.js       user menu, phone drawer, language buttons, dialog buttons
//   state.js        the shared state, the remembered conversation
//   api.js, ui.js   HTTP (JSON, uploads, SSE) and DOM helpers
import { initialLanguage, setLanguage, t } from "/static/js/i18n.js";
import { api, hasSessionCookie } from "/static/chat/api.js";
import { toast } from "/static/chat/ui.js";
import { wireAdmin } from "/static/chat/admin.js";
import { renderAttachments, wireAttachments } from "/static/chat/attachments.js";
import { enterApp, renderUser, wireAuth } from "/static/chat/auth.js";
import { renderHistory, renderList, wireHistory } from "/static/chat/history.js";
import { wireLayout } from "/static/chat/layout.js";
import { decorate, renderConvHead } from "/static/chat/messages.js";
import { renderModels, wireModels } from "/static/chat/models.js";
import { showWelcome } from "/static/chat/session.js";
import { state } from "/static/chat/state.js";
import { wireComposer } from "/static/chat/stream.js";

/** Language switch: draw again what was drawn from JS (the HTML's data-i18n texts follow by themselves). */
function redrawForLanguage() {
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
}

async function init() {
  wireLayout();
  wireAuth();
  wireModels();
  wireHistory();
  wireAdmin();
  wireComposer();
  wireAttachments();
  document.addEventListener("vmeta:language", redrawForLanguage);
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
