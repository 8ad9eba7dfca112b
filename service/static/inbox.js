// The reps' web inbox: plain ES module, no build step.
// Every piece of run data is CRM- or model-derived and untrusted: it only ever reaches the page through
// textContent / createTextNode / setAttribute, never through innerHTML.

const TOKEN_KEY = "salesloop.token";
const SENTENCE_HINT = "Hover, focus or click a sentence to see its sources.";

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

const ui = {
  token: null,
  me: null,
  runs: [],
  current: null, // {run, state, interrupt, may_decide}
  mode: "view", // view | edit | reject
  pinned: null, // index of the pinned sentence
  busy: false,
  openSeq: 0,
};

// ---------- DOM helpers (text only) ----------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "testid") node.dataset.testid = value;
    else if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function add(node, ...children) {
  return append(node, children);
}

function clear(node) {
  node.replaceChildren();
  return node;
}

function code(text, title) {
  return el("code", { title }, text);
}

function shortHash(hash) {
  return hash ? String(hash).slice(0, 12) : "";
}

function pct(share) {
  return `${Math.round(share * 100)}%`;
}

function num(value, digits = 0) {
  return typeof value === "number" ? value.toFixed(digits) : "–";
}

// ---------- errors and status ----------

function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

function hideError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

function setBusy(message) {
  ui.busy = Boolean(message);
  $("busy").textContent = message || "";
  for (const button of document.querySelectorAll("[data-action]")) button.disabled = ui.busy || button.dataset.allowed === "false";
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${ui.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, `The service did not answer (${err.message}). Is salesloop serve running?`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, detail);
  }
  return data;
}

// Every failed call lands here: a 401 means the token is gone or wrong, so ask for it again.
function failed(err) {
  if (err instanceof ApiError && err.status === 401) {
    signOut(err.message);
    return;
  }
  showError(err instanceof ApiError ? err.message : `Unexpected error: ${err.message}`);
}

// ---------- sign in ----------

async function signIn(token) {
  hideError();
  ui.token = token;
  setBusy("Signing in…");
  try {
    ui.me = await api("api/me");
  } catch (err) {
    setBusy(null);
    ui.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(err.message);
    return;
  }
  setBusy(null);
  sessionStorage.setItem(TOKEN_KEY, token);
  hideError();
  $("whoami-name").textContent = ui.me.name;
  $("whoami-role").textContent = ui.me.role;
  $("whoami-rep").textContent = ui.me.rep_id ? `, decides as ${ui.me.rep_id}` : "";
  $("whoami").hidden = false;
  $("signin").hidden = true;
  $("app").hidden = false;
  await loadList();
  const wanted = runFromHash();
  if (wanted) await openRun(wanted);
}

function showSignIn(message) {
  $("whoami").hidden = true;
  $("app").hidden = true;
  $("signin").hidden = false;
  if (message) showError(message);
  else hideError();
  $("token-input").value = "";
  $("token-input").focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  ui.token = null;
  ui.me = null;
  ui.current = null;
  ui.runs = [];
  clear($("run-list"));
  resetDetail();
  showSignIn(message);
}

// ---------- the list ----------

async function loadList() {
  const status = $("status-filter").value;
  try {
    const data = await api(`api/runs?status=${encodeURIComponent(status)}`);
    ui.runs = data.runs || [];
  } catch (err) {
    failed(err);
    return;
  }
  renderList();
}

function renderList() {
  const list = clear($("run-list"));
  const status = $("status-filter").value;
  $("run-count").textContent = ui.runs.length === 1 ? `1 run ${status === "all" ? "" : status}`.trim()
    : `${ui.runs.length} runs ${status === "all" ? "" : status}`.trim();
  if (!ui.runs.length) {
    list.append(el("li", { class: "empty", testid: "run-list-empty" }, status === "waiting" ? "Nothing waiting for you." : "No runs."));
    return;
  }
  for (const row of ui.runs) {
    const id = row.run.run_id;
    const selected = ui.current && ui.current.run.run_id === id;
    const preview = (row.draft || "").replace(/\s+/g, " ").trim();
    const button = el("button", {
      type: "button", class: "run-item", testid: "run-item", "data-run-id": id, "aria-current": selected ? "true" : null,
      onclick: () => openRun(id),
    },
    el("span", { class: "run-line" },
      el("strong", { testid: "run-company" }, row.company || "(unknown company)"),
      row.grade ? el("span", { class: `grade grade-${row.grade}`, testid: "run-grade", title: `score ${num(row.score)}` }, row.grade) : null),
    el("span", { class: "run-line muted" },
      el("span", { testid: "run-contact" }, row.contact || ""),
      row.route ? el("span", { class: "route", testid: "run-route", title: routeRule(row.route) }, routeName(row.route)) : null,
      el("span", { class: "status-tag" }, row.run.status)),
    el("span", { class: "preview", testid: "run-preview" }, preview ? (preview.length > 140 ? `${preview.slice(0, 140)}…` : preview) : "(no draft)"));
    list.append(el("li", {}, button));
  }
}

// The route a trigger rule picked: an object {name, prompt, record_below_grade, rule} (a plain name is accepted too).
function routeName(route) {
  return typeof route === "string" ? route : (route && route.name) || "";
}

function routeRule(route) {
  if (!route || typeof route === "string" || !route.rule) return null;
  const rule = route.rule;
  return `${rule.kind}:${rule.id}${rule.field ? `#${rule.field}` : ""}${rule.note ? ` — ${rule.note}` : ""}`;
}

// ---------- one run ----------

function runFromHash() {
  const match = /^#run=(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

function resetDetail() {
  $("detail-title").textContent = "Select a run";
  clear($("detail-body"));
}

async function openRun(runId, { keepResult = null, keepError = false } = {}) {
  if (!keepError) hideError();
  const seq = ++ui.openSeq; // a slower answer for a run clicked earlier must not replace the one clicked last
  setBusy("Loading the run…");
  let data;
  try {
    data = await api(`api/runs/${encodeURIComponent(runId)}`);
  } catch (err) {
    if (seq !== ui.openSeq) return;
    setBusy(null);
    ui.current = null;
    resetDetail();
    $("detail-title").textContent = `Run ${runId}`;
    failed(err);
    return;
  }
  if (seq !== ui.openSeq) return;
  setBusy(null);
  ui.current = data;
  ui.mode = "view";
  ui.pinned = null;
  history.replaceState(null, "", `#run=${encodeURIComponent(runId)}`);
  renderDetail(keepResult);
  for (const item of document.querySelectorAll('[data-testid="run-item"]')) {
    if (item.dataset.runId === runId) item.setAttribute("aria-current", "true");
    else item.removeAttribute("aria-current");
  }
  document.getElementById("detail").focus({ preventScroll: true });
}

function renderDetail(decisionResult = null) {
  const { run, state, interrupt } = ui.current;
  const lead = state.lead;
  $("detail-title").textContent = lead ? `${lead.account_name} — ${lead.contact_name}` : `Run ${run.run_id}`;
  const body = clear($("detail-body"));
  body.append(
    el("p", { class: "muted", testid: "run-meta" },
      "Run ", code(run.run_id), ` · ${run.event_type} · `, el("span", { class: "status-tag", testid: "run-status" }, run.status),
      lead && lead.owner_rep_id ? ` · owner ${lead.owner_rep_id}` : "",
      run.error ? el("span", { class: "warn" }, ` · error: ${run.error}`) : null),
  );
  if (state.route) {
    const route = state.route;
    body.append(el("p", { class: "muted", testid: "run-route-detail" }, "Route ", el("strong", {}, routeName(route)),
      typeof route === "object" && route.prompt ? [" · prompt ", code(route.prompt)] : "",
      typeof route === "object" && route.prompt === null ? " · records the lead only, no draft" : "",
      typeof route === "object" && route.rule ? [" · chosen by ", sourceChip(route.rule)] : ""));
  }
  const result = decisionResult || (state.decision ? { decision: state.decision, applied: state.applied } : null);
  if (result) body.append(resultSection(result.decision, result.applied, state));
  if (interrupt && interrupt.description) body.append(el("p", { class: "hint", testid: "interrupt-description" }, interrupt.description));
  if (lead) body.append(leadSection(lead, state));
  if (state.grade) body.append(gradeSection(state.grade, state));
  if (state.cases && state.cases.length) body.append(casesSection(state.cases));
  if (state.draft) body.append(draftSection(state.draft, state));
  if (state.plan) body.append(planSection(state.plan, lead), clausesSection(state.plan));
  if (result) return;
  if (ui.current.may_decide) body.append(actionsSection(interrupt));
  else if (run.status === "waiting") body.append(el("p", { class: "hint", testid: "read-only" }, "You can read this run, but only its owner rep or their manager can decide it."));
}

function section(title, testid, ...children) {
  const id = `h-${testid}`;
  return el("section", { class: "card", testid, "aria-labelledby": id }, el("h3", { id }, title), ...children);
}

function leadSection(lead, state) {
  const rows = [
    ["Company", lead.account_name],
    ["Contact", lead.contact_name],
    ["Title", lead.raw_title],
    ["Role", `${lead.role} (${lead.seniority})${lead.decision_maker ? ", decision maker" : ""}`],
    ["Industry", lead.industry],
    ["Employees", lead.employees],
    ["Region", [lead.region, lead.country].filter(Boolean).join(", ")],
    ["Time zone", lead.timezone],
    ["Deal", lead.deal_id ? `${lead.deal_id}${lead.deal_stage ? ` (${lead.deal_stage})` : ""}` : null],
    ["Budget", typeof lead.budget_usd === "number" ? `$${lead.budget_usd.toLocaleString("en-US")}` : null],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  const dl = el("dl", { class: "facts-grid" });
  for (const [label, value] of rows) dl.append(el("dt", {}, label), el("dd", { testid: `lead-${label.toLowerCase().replace(/\s+/g, "-")}` }, String(value)));
  const facts = el("table", { class: "table", testid: "lead-facts" },
    el("caption", { class: "visually-hidden" }, "Facts the draft may cite, with their CRM source"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Marker"), el("th", { scope: "col" }, "Fact"), el("th", { scope: "col" }, "Value"), el("th", { scope: "col" }, "Source"))),
    el("tbody", {}, (lead.facts || []).map((fact) => el("tr", { testid: "lead-fact" },
      el("td", {}, code(fact.marker)), el("td", {}, fact.label), el("td", {}, fact.value), el("td", {}, sourceChip(fact.source))))));
  return section("Lead", "lead", dl,
    lead.request ? el("details", { class: "request" }, el("summary", {}, "What the customer wrote"), el("p", { class: "pre", testid: "lead-request" }, lead.request)) : null,
    lead.facts && lead.facts.length ? facts : null);
}

function gradeSection(grade) {
  const table = el("table", { class: "table" },
    el("caption", { class: "visually-hidden" }, "Signals behind the grade"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Signal"), el("th", { scope: "col" }, "Points"), el("th", { scope: "col" }, "Reason"), el("th", { scope: "col" }, "Sources"))),
    el("tbody", {}, grade.signals.map((signal) => el("tr", { testid: "signal", "data-signal": signal.signal },
      el("td", {}, signal.signal),
      el("td", { class: "num" }, `${num(signal.points, 1)} / ${num(signal.weight, 0)}`),
      el("td", { testid: "signal-reason" }, signal.reason),
      el("td", { testid: "signal-sources" }, el("ul", { class: "chips" }, signal.sources.map((s) => el("li", {}, sourceChip(s)))))))));
  return section("Grade", "grade",
    el("p", { class: "grade-line" }, el("span", { class: `grade big grade-${grade.grade}`, testid: "grade-letter" }, grade.grade),
      el("span", { testid: "grade-score" }, ` score ${num(grade.score)} / 100`)),
    table);
}

function casesSection(cases) {
  return section("Similar past cases", "cases", el("ol", { class: "cases" }, cases.map((hit) => el("li", { testid: "case", "data-case-id": hit.case_id },
    el("p", {},
      code(hit.marker), " ", el("strong", { testid: "case-id" }, hit.case_id), " · ",
      el("span", { class: `outcome outcome-${hit.outcome}`, testid: "case-outcome" }, hit.outcome),
      ` · similarity ${num(hit.score, 3)}`),
    el("p", { testid: "case-summary" }, hit.summary),
    el("details", {}, el("summary", { testid: "case-chunks" }, `Chunks: ${hit.chunks.map((c) => c.id).join(", ")}`),
      el("ul", {}, hit.chunks.map((chunk) => el("li", { testid: "case-chunk", "data-chunk-id": chunk.id },
        code(chunk.id), ` (${chunk.kind}) `, el("span", {}, chunk.text)))))))));
}

// ---------- the draft, sentence by sentence ----------

function draftSection(draft, state) {
  const sentences = draft.sentences || [];
  const supported = sentences.filter((s) => s.sources && s.sources.length).length;
  const share = typeof draft.supported_share === "number" ? draft.supported_share : (sentences.length ? supported / sentences.length : null);
  const text = el("div", { class: "draft-text", testid: "draft-text" });
  if (sentences.length) renderSentences(text, draft.text, sentences);
  else text.append(draft.text);
  const panel = el("div", { class: "sources-panel", id: "sentence-sources", testid: "sentence-sources", "aria-live": "polite" },
    el("p", { class: "hint" }, SENTENCE_HINT));
  const meta = el("dl", { class: "facts-grid", testid: "draft-meta" },
    el("dt", {}, "Prompt"), el("dd", { testid: "draft-prompt" }, draft.prompt_name, " @ ", code(shortHash(draft.prompt_sha256), draft.prompt_sha256)),
    el("dt", {}, "Model"), el("dd", { testid: "draft-model" }, draft.model_id, draft.model_version ? [" @ ", code(shortHash(draft.model_version), draft.model_version)] : null),
    el("dt", {}, "Adapter"), el("dd", { testid: "draft-adapter" }, draft.adapter_id
      ? [draft.adapter_id, draft.adapter_sha256 ? [" @ ", code(shortHash(draft.adapter_sha256), draft.adapter_sha256)] : null]
      : "none (base model)"));
  const editor = el("div", { class: "editor", testid: "draft-edit-area", hidden: true });
  const injection = draft.injection || [];
  return section("Draft", "draft",
    draft.fallback_reason
      ? el("p", { class: "warn", testid: "draft-fallback", role: "status" }, `Fallback template draft: the model's text was not used because ${draft.fallback_reason}.`) : null,
    injection.length
      ? el("div", { class: "warn", testid: "draft-injection", role: "alert" },
        el("p", {}, `Possible prompt injection in the customer's text (${injection.length} signal${injection.length === 1 ? "" : "s"}): read it before sending.`),
        el("ul", {}, injection.map((s) => el("li", {}, `${s.kind} in ${s.field}: “${s.excerpt}”`)))) : null,
    (draft.guard_notes || []).length
      ? el("ul", { class: "warn", testid: "draft-guard" }, draft.guard_notes.map((note) => el("li", {}, `Removed: ${note}`))) : null,
    el("p", { testid: "supported-share", class: share !== null && share < 1 ? "warn" : "" },
      share === null ? "No sentences to check."
        : `Supported: ${supported} of ${sentences.length} sentence${sentences.length === 1 ? "" : "s"} (${pct(share)}).`,
      supported < sentences.length ? " Sentences marked “unsupported” have no source: check them before sending." : ""),
    text, editor, panel,
    draft.removed_markers && draft.removed_markers.length
      ? el("p", { class: "warn", testid: "removed-markers" }, `Markers the model invented and that were removed: ${draft.removed_markers.join(", ")}`) : null,
    meta);
}

// Lays the sentences over the draft's own text so its line breaks stay; gaps are plain text.
function renderSentences(container, fullText, sentences) {
  let cursor = 0;
  sentences.forEach((sentence, index) => {
    const at = fullText.indexOf(sentence.text, cursor);
    if (at >= 0) {
      if (at > cursor) container.append(fullText.slice(cursor, at));
      cursor = at + sentence.text.length;
    } else if (index > 0) {
      container.append(" ");
    }
    container.append(sentenceNode(sentence, index));
  });
  if (cursor > 0 && cursor < fullText.length) container.append(fullText.slice(cursor));
}

function sentenceNode(sentence, index) {
  const supported = Boolean(sentence.sources && sentence.sources.length);
  // A span with a button role, not a <button>: it must flow and wrap like the text it is part of.
  const node = el("span", {
    role: "button",
    tabindex: 0,
    class: `sentence ${supported ? "supported" : "unsupported"}`,
    testid: "sentence",
    "data-index": index,
    "data-supported": supported ? "true" : "false",
    "aria-pressed": "false",
    "aria-controls": "sentence-sources",
    title: supported ? `${sentence.sources.length} source(s): click to pin` : "unsupported: no source found",
  }, sentence.text);
  if (!supported) node.append(el("span", { class: "badge-unsupported", testid: "unsupported-badge" }, "unsupported"));
  node.addEventListener("mouseenter", () => showSentence(index));
  node.addEventListener("focus", () => showSentence(index));
  node.addEventListener("mouseleave", () => showSentence(ui.pinned));
  node.addEventListener("blur", () => showSentence(ui.pinned));
  node.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      node.click();
    }
  });
  node.addEventListener("click", () => {
    ui.pinned = ui.pinned === index ? null : index;
    for (const other of document.querySelectorAll('[data-testid="sentence"]')) {
      other.setAttribute("aria-pressed", String(Number(other.dataset.index) === ui.pinned));
    }
    showSentence(ui.pinned === null ? index : ui.pinned);
  });
  return node;
}

function showSentence(index) {
  const panel = document.getElementById("sentence-sources");
  if (!panel || !ui.current) return;
  clear(panel);
  if (index === null || index === undefined) {
    panel.append(el("p", { class: "hint" }, SENTENCE_HINT));
    return;
  }
  const sentence = ui.current.state.draft.sentences[index];
  const supported = sentence.sources && sentence.sources.length;
  panel.dataset.index = String(index);
  panel.append(
    el("p", { class: "panel-head" }, el("strong", {}, `Sentence ${index + 1}${ui.pinned === index ? " (pinned)" : ""}: `), el("q", { testid: "panel-sentence" }, sentence.text)),
    el("p", { testid: "sentence-method", class: supported ? "" : "warn" }, methodText(sentence)),
  );
  if (supported) panel.append(el("ul", { class: "sources", testid: "sentence-source-list" }, sentence.sources.map((ref) => sourceDetail(ref, ui.current.state))));
}

function methodText(sentence) {
  const sim = typeof sentence.similarity === "number" ? sentence.similarity.toFixed(2) : null;
  if (sentence.method === "marker") return "Method: marker — the model cited these sources itself, and they were checked.";
  if (sentence.method === "similarity") return `Method: similarity — embedding similarity ${sim ?? "?"} to the sources below.`;
  return `Unsupported — no source found${sim ? ` (best similarity ${sim}, below the threshold)` : ""}.`;
}

function findChunk(state, chunkId) {
  for (const hit of state.cases || []) {
    for (const chunk of hit.chunks) if (chunk.id === chunkId) return { hit, chunk };
  }
  return null;
}

function findFact(state, ref) {
  return ((state.lead && state.lead.facts) || []).find((f) => f.source.id === ref.id && f.source.field === ref.field) || null;
}

// A short, one-line label for a SourceRef (kind:id#field@version).
function sourceChip(ref) {
  const label = `${ref.kind}:${ref.id}${ref.field ? `#${ref.field}` : ""}${ref.version ? `@${shortHash(ref.version)}` : ""}`;
  return el("span", { class: `chip chip-${ref.kind}`, testid: "source-chip", title: ref.note || label }, label);
}

// The full account of one SourceRef in the sentence panel: what it is and what it says.
function sourceDetail(ref, state) {
  const item = el("li", { testid: "source", "data-kind": ref.kind, "data-source-id": ref.id });
  if (ref.kind === "crm_record") {
    const fact = findFact(state, ref);
    add(item, el("span", { class: "kind" }, "CRM record "), code(ref.id), ref.field ? [" field ", code(ref.field)] : null,
      fact ? [" — ", el("span", { testid: "source-value" }, `${fact.label}: ${fact.value}`)] : null);
  } else if (ref.kind === "document_chunk") {
    const found = findChunk(state, ref.id);
    add(item, el("span", { class: "kind" }, "Document chunk "), code(ref.id), ref.field ? ` (${ref.field})` : "",
      found ? ` of case ${found.hit.case_id}` : "",
      found ? el("blockquote", { testid: "source-chunk-text" }, found.chunk.text) : null);
  } else if (ref.kind === "case") {
    const hit = (state.cases || []).find((c) => c.case_id === ref.id);
    add(item, el("span", { class: "kind" }, "Similar case "), code(ref.id), hit ? ` (${hit.outcome})` : "",
      hit ? el("blockquote", { testid: "source-case-summary" }, hit.summary) : null);
  } else {
    add(item, el("span", { class: "kind" }, `${ref.kind} `), code(ref.id), ref.field ? [" ", code(ref.field)] : null);
  }
  if (ref.version) add(item, " @ ", code(shortHash(ref.version), ref.version));
  if (ref.note && ref.kind !== "case") add(item, el("span", { class: "muted" }, ` — ${ref.note}`));
  return item;
}

// ---------- schedule and clauses ----------

function formatSlot(slot, timeZone) {
  const start = new Date(slot.start);
  const end = new Date(slot.end);
  const options = { weekday: "short", day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit" };
  try {
    const day = new Intl.DateTimeFormat("en-GB", { ...options, timeZone }).format(start);
    const until = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", timeZone }).format(end);
    return `${day}–${until} (${timeZone})`;
  } catch {
    return `${slot.start} – ${slot.end}`;
  }
}

function planSection(plan, lead) {
  const tz = (lead && lead.timezone) || "UTC";
  const consultant = plan.consultant;
  const parts = [];
  if (consultant) {
    parts.push(el("p", { testid: "consultant" }, "Consultant: ", el("strong", {}, consultant.consultant.name), " (", code(consultant.consultant.id), ")",
      consultant.matched_skills && consultant.matched_skills.length ? ` — matched skills: ${consultant.matched_skills.join(", ")}` : ""));
  }
  const conflicts = ui.current.state.conflicts || [];
  if (conflicts.length && ui.current.run.status === "waiting") {
    const last = conflicts[conflicts.length - 1];
    parts.push(el("p", { class: "warn", testid: "slot-conflict", role: "status" },
      `Your earlier decision was not applied: the slot ${formatSlot(last.slot, tz)} was booked by `, code(last.taken_by.uid),
      " since the plan was made, so nothing was booked or sent. Choose one of the new slots below."));
  }
  if (plan.slots.length) {
    const decided = ui.current.state.decision;
    // What the calendar holds now: a slot booked since the plan was made cannot be chosen.
    const taken = new Map((ui.current.slot_status || []).filter((s) => s.taken_by).map((s) => [s.index, s.taken_by]));
    const firstFree = plan.slots.findIndex((_, index) => !taken.has(index));
    const chosen = decided ? (decided.decision === "reject" ? -1 : decided.slot_index) : firstFree;
    const fieldset = el("fieldset", { class: "slots", testid: "slot-options" }, el("legend", {}, decided ? "Slot the rep chose" : "Meeting slot to book"));
    plan.slots.forEach((slot, index) => {
      const id = `slot-${index}`;
      const holder = taken.get(index);
      fieldset.append(el("div", { class: holder ? "slot taken" : "slot", testid: "slot", "data-taken": holder ? "true" : "false" },
        el("input", { type: "radio", name: "slot", id, value: index, testid: "slot-radio", checked: index === chosen,
          disabled: !ui.current.may_decide || Boolean(decided) || Boolean(holder) }),
        el("label", { for: id, testid: "slot-label" }, formatSlot(slot, tz),
          consultant && consultant.consultant.timezone && consultant.consultant.timezone !== tz
            ? el("span", { class: "muted" }, ` · consultant's time ${formatSlot(slot, consultant.consultant.timezone)}`) : null,
          holder ? el("span", { class: "badge-taken", testid: "slot-taken", title: `booked since the plan was made: ${holder.uid}` },
            `taken since the plan (${holder.uid})`) : null)));
    });
    if (!decided && firstFree < 0) fieldset.append(el("p", { class: "warn", testid: "all-slots-taken" }, "Every proposed slot was booked since the plan was made: reject the draft, or decide and the run is planned again."));
    parts.push(fieldset);
  } else {
    parts.push(el("p", { class: "warn", testid: "no-slots" }, "No slots proposed: nothing will be booked."));
  }
  if (plan.notes && plan.notes.length) parts.push(el("ul", { class: "notes", testid: "plan-notes" }, plan.notes.map((n) => el("li", {}, n))));
  return section("Meeting with a consultant", "slots", ...parts);
}

function clausesSection(plan) {
  if (!plan.clauses.length) return section("Contract clauses", "clauses", el("p", { class: "hint" }, "No clauses picked."));
  return section("Contract clauses", "clauses", el("ul", { class: "clauses" }, plan.clauses.map((choice) => el("li", { testid: "clause", "data-clause-id": choice.clause.id },
    el("details", {},
      el("summary", {}, code(choice.clause.id), ` v${choice.clause.version} — ${choice.clause.title} · picked by rule `, el("span", { testid: "clause-rule" }, choice.rule_id)),
      el("p", { class: "clause-text" }, choice.clause.text))))));
}

// ---------- decisions ----------

function actionsSection(interrupt) {
  const allowed = (interrupt && interrupt.config) || { allow_accept: true, allow_edit: true, allow_respond: true };
  const action = (name, label, testid, allow, handler) => el("button", {
    type: "button", testid, "data-action": name, "data-allowed": allow ? "true" : "false", disabled: !allow || ui.busy, onclick: handler,
  }, label);
  const reason = el("div", { class: "reject-box", testid: "reject-box", hidden: true },
    el("label", { for: "reject-reason" }, "Why reject this draft? (required, the reason is kept as training feedback)"),
    el("textarea", { id: "reject-reason", rows: 3, testid: "reject-reason" }),
    el("div", { class: "buttons" },
      action("reject-submit", "Reject the draft", "reject-submit", true, submitReject),
      action("reject-cancel", "Cancel", "reject-cancel", true, () => setMode("view"))));
  return section("Decide", "actions",
    el("div", { class: "buttons", testid: "action-buttons" },
      action("adopt", "Adopt and send", "adopt", allowed.allow_accept, submitAdopt),
      action("edit", "Edit the draft", "edit", allowed.allow_edit, () => setMode("edit")),
      action("reject", "Reject…", "reject", allowed.allow_respond, () => setMode("reject"))),
    reason);
}

// The rep's choice, or null (the field is left out) when there is nothing to choose: never a made-up slot.
function selectedSlot() {
  const checked = document.querySelector('input[name="slot"]:checked');
  return checked ? Number(checked.value) : null;
}

function withSlot(body) {
  const slot = selectedSlot();
  return slot === null ? body : { ...body, slot_index: slot };
}

function setMode(mode) {
  ui.mode = mode;
  const text = $("draft-text");
  const area = $("draft-edit-area");
  const rejectBox = $("reject-box");
  const buttons = $("action-buttons");
  if (rejectBox) rejectBox.hidden = mode !== "reject";
  if (buttons) buttons.hidden = mode !== "view";
  if (text && area) {
    if (mode === "edit") {
      const editor = el("textarea", { id: "draft-editor", testid: "draft-editor", rows: 10, spellcheck: "true" });
      editor.value = ui.current.state.draft.text;
      clear(area).append(
        el("label", { for: "draft-editor" }, "Edit the draft, then submit it (the edit is kept as training feedback)"),
        editor,
        el("div", { class: "buttons" },
          el("button", { type: "button", testid: "edit-submit", "data-action": "edit-submit", "data-allowed": "true", onclick: submitEdit }, "Submit the edited draft"),
          el("button", { type: "button", testid: "edit-cancel", "data-action": "edit-cancel", "data-allowed": "true", onclick: () => setMode("view") }, "Cancel")));
      text.hidden = true;
      area.hidden = false;
      editor.focus();
    } else {
      clear(area);
      area.hidden = true;
      text.hidden = false;
    }
  }
  if (mode === "reject") $("reject-reason").focus();
  if (mode === "view" && $("edit")) $("edit").focus();
}

async function submitAdopt() {
  await decide(withSlot({ type: "accept" }), "Adopting the draft…");
}

async function submitEdit() {
  const text = $("draft-editor").value.trim();
  if (!text) {
    showError("The edited draft is empty: write the text to send, or cancel the edit.");
    $("draft-editor").focus();
    return;
  }
  await decide(withSlot({ type: "edit", args: { action: "send_proposal", args: { draft: text } } }), "Sending the edited draft…");
}

async function submitReject() {
  const reason = $("reject-reason").value.trim();
  if (!reason) {
    showError("Give a reason to reject the draft.");
    $("reject-reason").focus();
    return;
  }
  await decide({ type: "response", args: reason }, "Rejecting the draft…");
}

async function decide(body, busyText) {
  if (ui.busy || !ui.current) return;
  const runId = ui.current.run.run_id;
  hideError();
  setBusy(busyText);
  let result;
  try {
    result = await api(`api/runs/${encodeURIComponent(runId)}/decision`, { method: "POST", body });
  } catch (err) {
    setBusy(null);
    failed(err);
    if (err instanceof ApiError && err.status === 409) {
      await loadList();
      await openRun(runId, { keepError: true }); // decided elsewhere meanwhile: show what happened, and why this failed
    }
    return;
  }
  setBusy(null);
  await loadList();
  await openRun(runId, { keepResult: result });
  const shown = $("result");
  if (shown) shown.focus();
}

function resultSection(decision, applied, state) {
  const verb = { adopt: "Adopted", edit: "Edited and sent", reject: "Rejected" }[decision.decision] || decision.decision;
  const when = decision.decided_at ? new Date(decision.decided_at).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "";
  const parts = [el("p", { testid: "result-decision", "data-decision": decision.decision }, el("strong", {}, verb), ` by ${decision.rep_id}${when ? ` on ${when}` : ""}.`)];
  if (decision.reason) parts.push(el("p", { testid: "result-reason" }, `Reason: ${decision.reason}`));
  if (decision.final_text) parts.push(el("details", { open: decision.decision === "edit" }, el("summary", {}, "Text sent"), el("p", { class: "pre", testid: "result-final-text" }, decision.final_text)));
  const tz = (state.lead && state.lead.timezone) || "UTC";
  if (applied && applied.booked_slot) {
    const consultant = state.plan && state.plan.consultant ? state.plan.consultant.consultant : null;
    parts.push(el("p", { testid: "result-booking", "data-booked": "true" }, "Booked: ",
      consultant ? `${consultant.name}, ` : "", formatSlot(applied.booked_slot, tz),
      applied.booking_uid ? [" · calendar UID ", code(applied.booking_uid)] : null,
      applied.booked_now ? "" : " (it was booked already)"));
  } else {
    parts.push(el("p", { testid: "result-booking", "data-booked": "false" }, "Nothing booked."));
  }
  if (applied && applied.clause_ids && applied.clause_ids.length) parts.push(el("p", { testid: "result-clauses" }, `Clauses recorded: ${applied.clause_ids.join(", ")}`));
  if (applied && applied.feedback_id) parts.push(el("p", { class: "muted" }, "Feedback record ", code(applied.feedback_id)));
  const node = section("Result", "result", ...parts);
  node.tabIndex = -1;
  return node;
}

// ---------- wiring ----------

function init() {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (token) signIn(token);
  });
  $("signout").addEventListener("click", () => signOut(null));
  $("refresh").addEventListener("click", () => loadList());
  $("status-filter").addEventListener("change", () => loadList());
  $("error-dismiss").addEventListener("click", hideError);
  window.addEventListener("hashchange", () => {
    const wanted = runFromHash();
    if (ui.token && wanted && (!ui.current || ui.current.run.run_id !== wanted)) openRun(wanted);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && ui.mode !== "view" && !ui.busy) setMode("view");
  });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  else showSignIn(null);
}

init();
