// The signed-out page: `showWelcome` clears everything of the last user and shows the login card;
// `handleAuthLoss` does that when a request answers 401 (the session ended or was revoked), so every module
// can hand it an error first.
import { t } from "/static/js/i18n.js";
import { ApiError, setCsrf } from "/static/chat/api.js";
import { $, formError, show, toast } from "/static/chat/ui.js";
import { closeMenu } from "/static/chat/layout.js";
import { EMPTY } from "/static/chat/messages.js";
import { abortStreaming, state } from "/static/chat/state.js";

export function handleAuthLoss(err) {
  if (err instanceof ApiError && err.status === 401 && state.me) {
    toast(err.detail || t("chat.session_ended"), true);
    showWelcome();
    return true;
  }
  return false;
}

export function showWelcome() {
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
