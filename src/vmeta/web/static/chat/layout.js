// The page's frame: the user menu (top right), the history drawer on a phone-sized screen, the language
// buttons, the dialogs' close buttons and the rename dialog's submit (ui.js promptDialog).
import { toggleLanguage } from "/static/js/i18n.js";
import { $, show } from "/static/chat/ui.js";

const phone = window.matchMedia("(max-width: 760px)");

export function openMenu() {
  show($("user-dropdown"), true);
  $("user-btn").setAttribute("aria-expanded", "true");
  $("user-dropdown").querySelector("button:not(.hidden)")?.focus();
}

export function closeMenu() {
  show($("user-dropdown"), false);
  $("user-btn").setAttribute("aria-expanded", "false");
}

export function openSidebar() {
  $("sidebar").classList.add("open");
  show($("backdrop"), true);
  $("sidebar-open").setAttribute("aria-expanded", "true");
  $("conv-search").focus();
}

export function closeSidebar() {
  if (!$("sidebar").classList.contains("open")) return;
  $("sidebar").classList.remove("open");
  show($("backdrop"), false);
  $("sidebar-open").setAttribute("aria-expanded", "false");
}

export function wireLayout() {
  for (const b of document.querySelectorAll(".lang-toggle")) b.addEventListener("click", () => { closeMenu(); toggleLanguage(); });
  $("user-btn").addEventListener("click", (e) => {
    e.stopPropagation();
    if ($("user-dropdown").classList.contains("hidden")) openMenu(); else closeMenu();
  });
  document.addEventListener("click", (e) => { if (!e.target.closest(".user-menu")) closeMenu(); });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      if (!$("user-dropdown").classList.contains("hidden")) { closeMenu(); $("user-btn").focus(); }
      closeSidebar();
    }
  });
  $("rename-form").addEventListener("submit", (e) => { e.preventDefault(); $("dlg-rename").close("ok"); });
  for (const b of document.querySelectorAll("dialog [data-close]")) b.addEventListener("click", () => b.closest("dialog").close());
  $("sidebar-open").addEventListener("click", openSidebar);
  $("sidebar-close").addEventListener("click", closeSidebar);
  $("backdrop").addEventListener("click", closeSidebar);
  phone.addEventListener("change", closeSidebar);
}
