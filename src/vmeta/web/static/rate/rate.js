// The rating page (vmeta rate serve). Plain ES module; the server owns the study (which item, which order).
// The page never learns which model wrote an answer: it sees "A" and "B" and an opaque item id.
import { initialLanguage, setLanguage, toggleLanguage, t } from "/static/js/i18n.js";
import { $, el, makeApi, meta, renderSegments, toast } from "/static/js/page.js";

const TOKEN = meta("rate-token");
const SLOTS = meta("rate-slots").split(",").filter(Boolean);
const RATER_KEY = "vmeta_rater";
const MAX_NAME = 64;
const CHOICE_KEYS = { 1: "a", a: "a", 2: "b", b: "b", 3: "tie", t: "tie", 4: "both_wrong", w: "both_wrong" };

const state = {
  rater: "",
  view: null,        // the /api/next answer shown
  choice: null,      // a | b | tie | both_wrong
  judged: { a: {}, b: {} }, // side -> slot -> 0/1
  shownAt: 0,
  busy: false,
};

// ------------------------------------------------------------------------------------------ helpers
const api = makeApi("X-Rate-Token", TOKEN);

/** An answer with its slots highlighted like the review page (textContent only, no HTML). */
function renderAnswer(target, part) {
  renderSegments(target, part.segments);
  if (!part.text.trim()) target.append(el("span", "muted", t("rate.empty_answer")));
}

function nameProblem(name) {
  if (!name) return t("rate.name_empty");
  if (name.length > MAX_NAME) return t("rate.name_too_long", { n: MAX_NAME });
  return "";
}

function savedName() {
  try { return (localStorage.getItem(RATER_KEY) || "").trim(); } catch { return ""; }
}

// ------------------------------------------------------------------------------------------- render
function renderProgress(p) {
  if (!p) { $("progress").textContent = ""; return; }
  $("progress").textContent = t("rate.progress", p);
  $("progress").dataset.done = String(p.done);
  $("bar-mine").style.width = p.total ? `${(100 * p.done) / p.total}%` : "100%";
}

function renderJudges() {
  for (const side of ["a", "b"]) {
    const box = $(`judges-${side}`);
    box.replaceChildren();
    for (const slot of SLOTS) {
      box.append(el("span", "", t(`rate.slot.${slot}`)));
      for (const [value, key] of [[1, "rate.right"], [0, "rate.wrong"]]) {
        const btn = el("button", "judge", t(key));
        btn.type = "button";
        btn.dataset.side = side;
        btn.dataset.slot = slot;
        btn.dataset.value = String(value);
        btn.setAttribute("aria-pressed", String(state.judged[side][slot] === value));
        btn.setAttribute("aria-label", `${side.toUpperCase()} · ${t(`rate.slot.${slot}`)} · ${t(key)}`);
        btn.addEventListener("click", () => judge(side, slot, value));
        box.append(btn);
      }
    }
  }
}

function renderChoice() {
  for (const btn of $("choices").querySelectorAll(".choice")) {
    btn.setAttribute("aria-pressed", String(btn.dataset.choice === state.choice));
  }
  $("answer-a").classList.toggle("chosen", state.choice === "a");
  $("answer-b").classList.toggle("chosen", state.choice === "b");
}

function showScreen(which) {
  $("login").classList.toggle("hidden", which !== "login");
  $("main").classList.toggle("hidden", which !== "item");
  $("done").classList.toggle("hidden", which !== "done");
  $("who").classList.toggle("hidden", which === "login");
}

function render() {
  const v = state.view;
  $("rater-name").textContent = state.rater;
  if (!v) return;
  renderProgress(v.progress);
  if (v.done) {
    showScreen("done");
    $("done").textContent = t("rate.done");
    return;
  }
  showScreen("item");
  $("category").textContent = v.category;
  renderAnswer($("text-a"), v.answers[0]);
  renderAnswer($("text-b"), v.answers[1]);
  $("reference-box").classList.toggle("hidden", !v.reference);
  if (v.reference) renderAnswer($("reference"), v.reference);
  const video = $("video");
  $("no-video").classList.toggle("hidden", Boolean(v.video_url));
  video.classList.toggle("hidden", !v.video_url);
  if (v.video_url && video.dataset.item !== v.item) {
    video.dataset.item = v.item;
    video.src = v.video_url;
  } else if (!v.video_url) {
    video.removeAttribute("src");
    delete video.dataset.item;
  }
  renderJudges();
  renderChoice();
}

// ------------------------------------------------------------------------------------------ actions
async function loadNext() {
  const v = await api(`/api/next?rater=${encodeURIComponent(state.rater)}`);
  const fresh = !state.view || v.item !== state.view.item;
  state.view = v;
  if (fresh) {
    state.choice = null;
    state.judged = { a: {}, b: {} };
    $("note").value = "";
    state.shownAt = performance.now();
  }
  render();
  if (fresh && !v.done) window.scrollTo({ top: 0 });
}

function choose(choice) {
  if (!state.view || state.view.done) return;
  state.choice = choice;
  renderChoice();
}

function judge(side, slot, value) {
  const now = state.judged[side];
  if (now[slot] === value) delete now[slot]; else now[slot] = value; // a second click clears the judgement
  renderJudges();
}

async function submit() {
  const v = state.view;
  if (!v || v.done || state.busy) return;
  if (!state.choice) { toast(t("rate.pick_first"), true); return; }
  state.busy = true;
  $("submit").disabled = true;
  try {
    const body = {
      rater: state.rater,
      item: v.item,
      choice: state.choice,
      slots: state.judged,
      note: $("note").value,
      seconds: Math.round((performance.now() - state.shownAt) / 100) / 10,
    };
    await api("/api/ratings", { method: "POST", body });
    toast(t("rate.saved"));
  } catch (err) {
    if (err.status !== 409) {
      toast(t("common.error") + err.message, true);
      return;
    }
    toast(t("rate.already"), true);
  } finally {
    state.busy = false;
    $("submit").disabled = false;
  }
  if (document.activeElement instanceof HTMLElement) document.activeElement.blur(); // shortcuts work on the next item
  await loadNext();
}

async function login(name) {
  const problem = nameProblem(name);
  const box = $("login-error");
  box.classList.toggle("hidden", !problem);
  box.textContent = problem;
  if (problem) return false;
  state.rater = name;
  state.view = null;
  try {
    await loadNext();
  } catch (err) {
    box.textContent = err.message;
    box.classList.remove("hidden");
    showScreen("login");
    return false;
  }
  try { localStorage.setItem(RATER_KEY, name); } catch { /* private mode: asked again next time */ }
  return true;
}

function askName() {
  state.view = null;
  renderProgress(null);
  showScreen("login");
  $("rater-input").value = state.rater;
  $("rater-input").focus();
}

function isTyping(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["TEXTAREA", "INPUT", "SELECT"].includes(target.tagName));
}

function onKey(ev) {
  if ($("main").classList.contains("hidden")) return;
  if (isTyping(ev.target)) {
    if (ev.key === "Escape") ev.target.blur();
    if (ev.key === "Enter" && ev.target.id === "note" && !ev.isComposing) { ev.preventDefault(); submit(); }
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
  if (ev.key === "Enter") {
    ev.preventDefault(); // not a click on the focused button
    submit();
    return;
  }
  const choice = CHOICE_KEYS[ev.key.length === 1 ? ev.key.toLowerCase() : ev.key];
  if (choice) {
    ev.preventDefault();
    choose(choice);
  }
}

// -------------------------------------------------------------------------------------------- start
async function main() {
  await setLanguage(initialLanguage());
  $("lang-toggle").addEventListener("click", () => toggleLanguage());
  document.addEventListener("vmeta:language", () => { render(); if (!state.view) renderProgress(null); });
  $("login-form").addEventListener("submit", (ev) => { ev.preventDefault(); login($("rater-input").value.trim()); });
  $("change-rater").addEventListener("click", askName);
  for (const btn of $("choices").querySelectorAll(".choice")) {
    btn.addEventListener("click", () => choose(btn.dataset.choice));
  }
  $("submit").addEventListener("click", () => submit());
  document.addEventListener("keydown", onKey);
  const name = savedName();
  if (!name || !(await login(name))) askName();
  document.body.dataset.ready = "1";
}

main().catch((err) => toast(t("common.error") + err.message, true));
