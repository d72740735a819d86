// The admin dialog (user menu → users and usage, admins only): every account with a button to disable or
// enable it, and the usage per user, source and model.
import { t } from "/static/js/i18n.js";
import { api } from "/static/chat/api.js";
import { $, el, errorText, formatDate, formatMs, toast } from "/static/chat/ui.js";
import { closeMenu } from "/static/chat/layout.js";
import { state } from "/static/chat/state.js";

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

export function wireAdmin() {
  $("menu-admin").addEventListener("click", openAdmin);
}
