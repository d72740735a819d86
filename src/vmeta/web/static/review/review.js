// The review page (vmeta data review). Plain ES module; the server owns all logic (parsing included).
import { initialLanguage, setLanguage, toggleLanguage, t } from "/static/js/i18n.js";
import { $, el, makeApi, meta, renderSegments, toast } from "/static/js/page.js";

const TOKEN = meta("review-token");
const SLOTS = ["content", "concept", "source", "feature", "emotion"];

const state = {
  filter: meta("review-filter") || "pending",
  items: [],      // the queue as loaded (a snapshot: n / N stays stable while deciding)
  index: 0,
  item: null,     // the full record shown
  counts: null,
  busy: false,
  parseSeq: 0,
  acceptArmedAt: 0, // a second Accept within 5 s discards unsaved edits
};

// ------------------------------------------------------------------------------------------ helpers
const api = makeApi("X-Review-Token", TOKEN);

function missingText(analysis) {
  return analysis.missing.map((s) => t(`review.slot.${s}`)).join("、");
}

// ------------------------------------------------------------------------------------------- render
function renderCounts() {
  const box = $("counts");
  box.replaceChildren();
  if (!state.counts) return;
  for (const s of ["pending", "accepted", "edited", "rejected"]) {
    const b = el("span", `badge ${s}`, `${t(`review.status.${s}`)} ${state.counts[s] ?? 0}`);
    b.dataset.count = s;
    box.append(b);
  }
  box.append(el("span", "badge", `${t("review.count.flagged")} ${state.counts.flagged ?? 0}`));
  box.append(el("span", "badge", `${t("review.count.total")} ${state.counts.total ?? 0}`));
}

function renderProgress() {
  const n = state.items.length ? state.index + 1 : 0;
  $("progress").textContent = `${n} / ${state.items.length}`;
  $("btn-prev").disabled = state.index <= 0;
  $("btn-next").disabled = state.index >= state.items.length - 1;
}

function renderMeta(item) {
  const m = item.video_meta || {};
  const dl = $("meta");
  dl.replaceChildren();
  const add = (key, value) => { if (value !== null && value !== undefined && value !== "") dl.append(el("dt", "", t(key)), el("dd", "", String(value))); };
  add("review.meta.duration", m.duration_s != null ? `${Number(m.duration_s).toFixed(1)} s` : null);
  const w = m.display_width ?? m.width, h = m.display_height ?? m.height;
  add("review.meta.resolution", w && h ? `${w}×${h}` : null);
  add("review.meta.fps", m.fps != null ? Number(m.fps).toFixed(2).replace(/\.00$/, "") : null);
  add("review.meta.audio", t(m.has_audio ? "review.meta.yes" : "review.meta.no"));
  add("review.source", item.source ? `${item.source.sheet} · ${t("review.row")} ${item.source.row}` : null);
  add("review.video", item.video);
}

function notice(cls, text, detail) {
  const box = el("div", `notice ${cls}`, text);
  if (detail) box.append(el("span", "notice-detail", detail));
  return box;
}

function renderNotices(item) {
  const box = $("notices");
  box.replaceChildren();
  const a = item.analysis;
  if (item.stripped_note) box.append(notice("", t("review.notice.note_stripped"), item.stripped_note));
  if (a.note) box.append(notice("", t("review.notice.label_note"), a.note));
  if (!a.ok) {
    if (a.missing.length) box.append(notice("bad", t("review.notice.not_conform") + missingText(a)));
    if (a.placeholders.length) box.append(notice("bad", t("review.notice.placeholders") + a.placeholders.join(" ")));
  } else {
    box.append(notice("ok", t("review.notice.conforms")));
  }
  if (a.extra) box.append(notice("info", t("review.notice.extra"), a.extra));
  for (const flag of item.flags) {
    const key = `review.notice.flag.${flag}`;
    const text = t(key);
    box.append(notice("", text === key ? `⚑ ${flag}` : text));
  }
  if (item.rewrite && !item.rewrite.ok) box.append(notice("bad", t("review.notice.rewrite_failed"), item.rewrite.error || ""));
  const r = item.review;
  if (r && r.status !== "pending") {
    const who = [t(`review.status.${r.status}`), r.reviewer, r.at, r.note].filter(Boolean).join(" · ");
    box.append(notice("info", t("review.notice.reviewed") + who));
  }
}

function renderItem() {
  const item = state.item;
  const empty = !item;
  $("main").classList.toggle("hidden", empty);
  $("empty").classList.toggle("hidden", !empty);
  renderProgress();
  if (empty) {
    $("empty").textContent = t("review.empty");
    return;
  }
  $("item-id").textContent = item.id;
  $("item-category").textContent = item.category;
  const status = $("item-status");
  status.className = `badge ${item.status}`;
  status.textContent = t(`review.status.${item.status}`);
  status.dataset.status = item.status;
  $("raw-label").textContent = item.raw_label;
  $("rewrite-label").textContent = item.rewrite ? item.rewrite.text : t("review.no_rewrite");
  $("rewrite-label").classList.toggle("muted", !item.rewrite);
  $("label-origin").textContent = t(`review.origin.${item.label_origin}`);
  renderSegments($("current-label"), item.analysis.segments);
  renderNotices(item);
  renderMeta(item);
  const video = $("video");
  $("video-missing").classList.toggle("hidden", item.video_exists);
  $("video-missing").textContent = t("review.video_missing") + item.video;
  video.classList.toggle("hidden", !item.video_exists);
  if (item.video_exists && video.dataset.id !== item.id) {
    video.dataset.id = item.id;
    video.src = item.video_url;
  }
}

function renderEditor(item) {
  $("editor").value = item ? item.label : "";
  $("note").value = item && item.review.status !== "pending" ? item.review.note || "" : "";
  if (item) showPreview(item.analysis);
}

function showPreview(analysis) {
  renderSegments($("preview"), analysis.segments);
  const badge = $("conformance");
  badge.className = `badge ${analysis.ok ? "accepted" : "rejected"}`;
  badge.textContent = analysis.ok ? t("review.notice.conforms") : t("review.notice.not_conform") + missingText(analysis);
}

// ------------------------------------------------------------------------------------------ actions
async function loadQueue(startId) {
  const data = await api(`/api/items?filter=${encodeURIComponent(state.filter)}`);
  state.items = data.items;
  state.counts = data.counts;
  const at = startId ? state.items.findIndex((x) => x.id === startId) : -1;
  state.index = at >= 0 ? at : 0;
  renderCounts();
  await show(state.index);
}

async function show(index) {
  if (!state.items.length) {
    state.item = null;
    renderItem();
    return;
  }
  state.index = Math.max(0, Math.min(index, state.items.length - 1));
  const id = state.items[state.index].id;
  state.item = await api(`/api/items/${encodeURIComponent(id)}?filter=${encodeURIComponent(state.filter)}`);
  history.replaceState(null, "", `?filter=${encodeURIComponent(state.filter)}#${encodeURIComponent(id)}`);
  renderItem();
  renderEditor(state.item);
}

async function decide(action) {
  const item = state.item;
  if (!item || state.busy) return;
  const body = { action, note: $("note").value, expected_label: item.label };
  const edited = $("editor").value.trim() !== item.label.trim();
  if (action === "edit") {
    body.text = $("editor").value;
    if (!edited) { toast(t("review.unchanged"), true); return; }
  }
  if (action === "accept" && edited && Date.now() - state.acceptArmedAt > 5000) {
    state.acceptArmedAt = Date.now();
    toast(t("review.unsaved_accept"), true);
    return;
  }
  state.acceptArmedAt = 0;
  state.busy = true;
  try {
    const res = await api(`/api/items/${encodeURIComponent(item.id)}/decision?filter=${encodeURIComponent(state.filter)}`, { method: "POST", body });
    state.counts = res.counts;
    state.items[state.index].status = res.item.status;
    renderCounts();
    if (document.activeElement instanceof HTMLElement) document.activeElement.blur(); // shortcuts work on the next item
    toast(`${t("review.saved")} · ${item.id} · ${t(`review.status.${res.item.status}`)}`);
    if (state.index < state.items.length - 1) {
      await show(state.index + 1);
    } else {
      state.item = res.item;
      renderItem();
      renderEditor(state.item);
      toast(t("review.done"));
    }
  } catch (err) {
    if (err.status === 409) {
      toast(t("review.notice.conflict"), true);
      await show(state.index);
    } else {
      toast(t("common.error") + err.message, true);
    }
  } finally {
    state.busy = false;
  }
}

let parseTimer = null;
function scheduleParse() {
  clearTimeout(parseTimer);
  parseTimer = setTimeout(async () => {
    const seq = ++state.parseSeq;
    try {
      const analysis = await api("/api/parse", { method: "POST", body: { text: $("editor").value } });
      if (seq === state.parseSeq) showPreview(analysis);
    } catch (err) {
      toast(t("common.error") + err.message, true);
    }
  }, 120);
}

function isTyping(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["TEXTAREA", "INPUT", "SELECT"].includes(target.tagName));
}

function onKey(ev) {
  if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") {
    ev.preventDefault();
    decide("edit");
    return;
  }
  if (isTyping(ev.target)) {
    if (ev.key === "Escape") ev.target.blur();
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
  const onVideo = ev.target instanceof HTMLVideoElement;
  const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  if (onVideo && key.startsWith("Arrow")) return; // let the player seek
  const actions = {
    a: () => decide("accept"),
    e: () => decide("edit"),
    r: () => decide("reject"),
    k: () => show(state.index - 1),
    j: () => show(state.index + 1),
    ArrowLeft: () => show(state.index - 1),
    ArrowRight: () => show(state.index + 1),
  };
  if (actions[key]) {
    ev.preventDefault();
    Promise.resolve(actions[key]()).catch((err) => toast(t("common.error") + err.message, true));
  }
}

// -------------------------------------------------------------------------------------------- start
async function main() {
  $("filter").value = new URLSearchParams(location.search).get("filter") || state.filter;
  state.filter = $("filter").value || "pending";
  await setLanguage(initialLanguage());
  $("lang-toggle").addEventListener("click", () => toggleLanguage());
  document.addEventListener("vmeta:language", () => { renderCounts(); renderItem(); if (state.item) showPreview(state.item.analysis); });
  $("filter").addEventListener("change", async () => {
    state.filter = $("filter").value;
    $("filter").blur();
    await loadQueue();
  });
  $("editor").addEventListener("input", scheduleParse);
  $("btn-accept").addEventListener("click", () => decide("accept"));
  $("btn-save").addEventListener("click", () => decide("edit"));
  $("btn-reject").addEventListener("click", () => decide("reject"));
  $("btn-reset").addEventListener("click", () => decide("reset"));
  $("btn-prev").addEventListener("click", () => show(state.index - 1));
  $("btn-next").addEventListener("click", () => show(state.index + 1));
  document.addEventListener("keydown", onKey);
  const startId = decodeURIComponent(location.hash.slice(1));
  await loadQueue(startId || undefined);
  document.body.dataset.ready = "1";
}

main().catch((err) => toast(t("common.error") + err.message, true));
