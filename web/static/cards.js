// Background tasks as cards that fill in as results stream (`agent.task` events, docs/api.md).
// Shared by the demo page and the widget. A result's `data` picks how its card renders:
//   calculate      {expression, value}                 a big "12*7 = 84"
//   convert_units  {input, from, to, value}            "5 km = 3.107 mi"
//   set_timer      {timer_s, label, remaining_s, ...}  a live countdown and a progress bar
//   current_time   {now_iso, zone}                     the time, large
//   search_notes   {query, hits: [{path, line, score, text}]}   a table of passages
//   anything else  a table for a list of objects, a key/value list for an object
// Everything is put into the DOM as text (never as HTML): results come from models and tools.

const STATUS_TEXT = { queued: "queued", running: "working", partial: "working", done: "done", failed: "failed" };
const MAX_ROWS = 20;
const MAX_COLUMNS = 6;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function formatValue(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(10)));
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function clock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = String(m).padStart(h ? 2 : 1, "0"), ss = String(r).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function table(rows) {
  const columns = [];
  for (const row of rows) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
  const t = el("table", "mt-table");
  const head = t.createTHead().insertRow();
  for (const c of columns.slice(0, MAX_COLUMNS)) {
    const th = el("th", null, c);
    th.scope = "col";
    head.appendChild(th);
  }
  const body = t.createTBody();
  for (const row of rows.slice(0, MAX_ROWS)) {
    const tr = body.insertRow();
    for (const c of columns.slice(0, MAX_COLUMNS)) tr.insertCell().textContent = formatValue(row[c]);
  }
  return t;
}

function keyValues(data) {
  const dl = el("dl", "mt-kv");
  for (const [key, value] of Object.entries(data)) {
    dl.append(el("dt", null, key), el("dd", null, formatValue(value)));
  }
  return dl;
}

// -- renderers: (data, card) -> Node | null ---------------------------------------------------
const RENDERERS = {
  calculate(data) {
    if (data.value === undefined) return null;
    const box = el("p", "mt-result");
    box.append(el("span", "mt-expr", data.expression), " = ", el("strong", "mt-value", formatValue(data.value)));
    return box;
  },
  convert_units(data) {
    if (data.value === undefined) return null;
    const box = el("p", "mt-result");
    box.append(
      el("span", "mt-expr", `${formatValue(data.input)} ${data.from}`), " = ",
      el("strong", "mt-value", `${formatValue(data.value)} ${data.to}`),
    );
    return box;
  },
  current_time(data) {
    if (!data.now_iso) return null;
    const box = el("p", "mt-result");
    const time = el("time", "mt-value", data.now_iso.slice(11, 16));
    time.dateTime = data.now_iso;
    box.append(time, el("span", "mt-expr", ` ${data.zone || ""} · ${data.now_iso.slice(0, 10)}`));
    return box;
  },
  set_timer(data, card) {
    if (!Number.isFinite(data.timer_s)) return null;
    const box = el("div", "mt-timer");
    const face = el("p", "mt-timer-face");
    face.setAttribute("role", "timer");
    const bar = el("progress", "mt-timer-bar");
    bar.max = data.timer_s;
    bar.setAttribute("aria-label", "time elapsed");
    box.append(face);
    if (data.label) box.append(el("p", "mt-timer-label", data.label));
    box.append(bar);
    card.timer = { face, bar, total: data.timer_s, deadline: null, done: false };
    return box;
  },
  search_notes(data) {
    if (!Array.isArray(data.hits)) return null;
    if (data.hits.length === 0) return el("p", "mt-muted", "No passages found.");
    return table(data.hits.map((h) => ({ where: `${h.path}:${h.line}`, passage: h.text, score: Number(h.score).toFixed(2) })));
  },
};

const STATED = new Set(["calculate", "convert_units", "current_time"]);

function genericView(data) {
  const rest = Object.fromEntries(Object.entries(data).filter(([k]) => k !== "tool"));
  const list = Object.values(rest).find((v) => Array.isArray(v) && v.length && v.every((r) => r && typeof r === "object" && !Array.isArray(r)));
  if (list) return table(list);
  if (Object.keys(rest).length) return keyValues(rest);
  return null;
}

export class TaskBoard {
  /**
   * container: where cards go (newest first). announce(text): optional, for a screen-reader
   * live region (a card's final result and failures are announced; progress is not).
   */
  constructor(container, { announce = null } = {}) {
    this.container = container;
    this.announce = announce;
    this.cards = new Map();
    this.ticker = null;
  }

  get tasks() {
    const out = {};
    for (const [id, card] of this.cards) out[id] = { status: card.status, text: card.text, data: card.data, request: card.request };
    return out;
  }

  update(event) {
    if (!event || !event.task_id) return;
    let card = this.cards.get(event.task_id);
    if (!card) card = this._create(event);
    const previous = card.status;
    card.status = event.status || card.status;
    card.root.dataset.status = card.status;
    card.badge.textContent = STATUS_TEXT[card.status] || card.status;
    if (event.status === "queued" && event.text) {
      card.request = event.text;
      card.title.textContent = event.text;
    } else if (event.text) {
      card.text = event.text;
      card.textNode.textContent = event.text;
    }
    if (event.data && typeof event.data === "object") this._renderData(card, event.data);
    if (card.timer) this._timerUpdate(card, event);
    if (card.status !== previous && (card.status === "done" || card.status === "failed") && this.announce) {
      this.announce(`Task ${card.status}: ${card.text || card.request || ""}`);
    }
  }

  clear() {
    clearInterval(this.ticker);
    this.ticker = null;
    this.cards.clear();
    this.container.replaceChildren();
  }

  _create(event) {
    const root = el("article", "mt-card");
    root.dataset.taskId = event.task_id;
    const header = el("header", "mt-card-head");
    const title = el("h3", "mt-card-title", event.status === "queued" && event.text ? event.text : "Background task");
    const badge = el("span", "mt-badge");
    header.append(title, badge);
    const view = el("div", "mt-card-view");
    const textNode = el("p", "mt-card-text");
    textNode.setAttribute("aria-live", "off");
    root.append(header, view, textNode);
    root.setAttribute("aria-label", `Background task: ${title.textContent}`);
    this.container.prepend(root);
    const card = { root, title, badge, view, textNode, status: null, text: "", data: null, request: "", tool: null, timer: null };
    this.cards.set(event.task_id, card);
    return card;
  }

  _renderData(card, data) {
    card.data = data;
    const tool = data.tool || null;
    // A timer keeps its widgets across updates (the countdown ticks locally between events).
    if (card.timer && tool === "set_timer") return;
    const render = RENDERERS[tool];
    const node = (render && render(data, card)) || genericView(data);
    card.tool = tool;
    card.root.dataset.tool = tool || "generic";
    // A result its card already states in full needs no sentence under it.
    card.root.classList.toggle("mt-stated", Boolean(node && render && STATED.has(tool)));
    card.view.replaceChildren(...(node ? [node] : []));
  }

  _timerUpdate(card, event) {
    const t = card.timer;
    const data = card.data || {};
    if (Number.isFinite(data.remaining_s)) t.deadline = performance.now() + data.remaining_s * 1000;
    if (event.status === "done" || event.status === "failed") {
      t.done = true;
      t.deadline = performance.now();
      card.root.classList.toggle("mt-fired", event.status === "done");
    }
    this._paintTimer(t);
    if (!this.ticker) this.ticker = setInterval(() => this._tickTimers(), 250);
  }

  _paintTimer(t) {
    const left = t.deadline === null ? t.total : Math.max(0, (t.deadline - performance.now()) / 1000);
    t.face.textContent = t.done ? `${clock(0)} · time's up` : clock(left);
    t.bar.value = Math.min(t.total, t.total - left);
  }

  _tickTimers() {
    let running = 0;
    for (const card of this.cards.values()) {
      if (!card.timer || card.timer.done) continue;
      running += 1;
      this._paintTimer(card.timer);
    }
    if (!running) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
  }
}
