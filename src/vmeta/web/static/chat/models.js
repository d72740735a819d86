// The model picker (top left): the models the server offers, unavailable ones greyed out with the reason, and
// the choice remembered in localStorage.
import { t } from "/static/js/i18n.js";
import { api } from "/static/chat/api.js";
import { $, el, errorText, toast } from "/static/chat/ui.js";
import { handleAuthLoss } from "/static/chat/session.js";
import { state } from "/static/chat/state.js";

const MODEL_KEY = "vmeta_chat_model";

export async function loadModels() {
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

export function renderModels() {
  const select = $("model-select");
  select.replaceChildren();
  for (const m of state.models) {
    const reads = (m.context || []).map((k) => ` · ${t(`chat.model_context.${k}`)}`).join("");
    const opt = el("option", null, `${m.id} · ${t(`chat.kind.${m.kind}`)}${reads}`);
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

export function wireModels() {
  $("model-select").addEventListener("change", (e) => {
    state.model = e.target.value;
    try { localStorage.setItem(MODEL_KEY, state.model); } catch { /* private */ }
  });
}
