// The chat page's one state object, shared by its modules, and the conversation it remembers per user
// (localStorage: reopened after a reload).
const LAST_KEY = "vmeta_chat_last";

export const state = {
  me: null,
  models: [],
  unavailable: [],
  model: null,
  convId: null,
  convTitle: "",
  messages: [],
  list: { items: [], q: "", next: null, seq: 0 },
  history: { items: [], q: "", next: null, seq: 0 },
  streaming: null,          // {controller, msg}
  attachments: [],          // {key, file, status: uploading|done|error, loaded, upload, error, abort}
};

function lastKey() { return `${LAST_KEY}:${state.me?.user.id ?? ""}`; }

export function rememberConversation(id) {
  try { if (id) localStorage.setItem(lastKey(), id); else localStorage.removeItem(lastKey()); } catch { /* private */ }
}

export function rememberedConversation() {
  try { return localStorage.getItem(lastKey()); } catch { return null; }
}

/** Stop the answer being streamed, if any (its reader then marks it interrupted). */
export function abortStreaming() {
  if (state.streaming) state.streaming.controller.abort();
}
