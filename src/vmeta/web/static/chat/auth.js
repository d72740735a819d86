// Accounts: entering the app after login, registration or "use as guest" (everything loaded before it shows),
// the user menu's name and avatar, registering a guest (keeps its conversations), changing the password or
// avatar, logging out.
import { t } from "/static/js/i18n.js";
import { api, setCsrf } from "/static/chat/api.js";
import { $, el, errorText, formatRemaining, formError, show, toast } from "/static/chat/ui.js";
import { updateSendState } from "/static/chat/composer.js";
import { loadList, newChat, openConversation } from "/static/chat/history.js";
import { closeMenu } from "/static/chat/layout.js";
import { loadModels } from "/static/chat/models.js";
import { handleAuthLoss, showWelcome } from "/static/chat/session.js";
import { abortStreaming, rememberedConversation, state } from "/static/chat/state.js";

export async function enterApp(me) {
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

export function renderUser() {
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

function showTab(which) {
  const login = which === "login";
  $("tab-login").classList.toggle("active", login);
  $("tab-register").classList.toggle("active", !login);
  $("tab-login").setAttribute("aria-selected", String(login));
  $("tab-register").setAttribute("aria-selected", String(!login));
  show($("login-form"), login);
  show($("register-form"), !login);
  $(login ? "login-email" : "register-email").focus();
}

export function wireAuth() {
  // welcome
  $("tab-login").addEventListener("click", () => showTab("login"));
  $("tab-register").addEventListener("click", () => showTab("register"));
  $("login-form").addEventListener("submit", (e) => { e.preventDefault(); submitAuth("login"); });
  $("register-form").addEventListener("submit", (e) => { e.preventDefault(); submitAuth("register"); });
  $("guest-start").addEventListener("click", startGuest);
  // user menu and the guest banner
  $("menu-avatar").addEventListener("click", () => { closeMenu(); $("avatar-input").click(); });
  $("avatar-input").addEventListener("change", (e) => changeAvatar(e.target.files[0]));
  $("menu-password").addEventListener("click", () => { closeMenu(); formError("password-error", null); $("dlg-password").showModal(); });
  $("menu-register").addEventListener("click", () => { closeMenu(); $("dlg-register").showModal(); });
  $("menu-logout").addEventListener("click", logout);
  $("guest-register").addEventListener("click", () => { formError("upgrade-error", null); $("dlg-register").showModal(); });
  $("upgrade-form").addEventListener("submit", (e) => { e.preventDefault(); upgradeGuest(); });
  $("password-form").addEventListener("submit", (e) => { e.preventDefault(); changePassword(); });
}
