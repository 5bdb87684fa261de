// Microturn embeddable widget: one tag adds a launcher button and a call panel to any page.
//
//   <script src="https://HOST/widget.js" data-microturn-token-url="/my-backend/token"></script>
//
// Optional attributes: data-microturn-camera="on" (offer the camera at start; off by default),
// data-microturn-title="Ask Ada" (panel title), data-microturn-launcher="off" (no launcher button;
// drive it with the JS API). JS API on window.Microturn:
//
//   Microturn.start({token?, camera?})  open the panel and start a call (a fresh token each call)
//   Microturn.stop()                    hang up
//   Microturn.on(type, fn)              server events by type ("session.created", "agent.task",
//                                       "output_text.delta", ...), "event" (all of them), "state",
//                                       "error" ({code, message}), "open", "close"; returns an
//                                       unsubscribe function. Microturn.off(type, fn) also works.
//   Microturn.send(text)                type to the model (input_text)
//   Microturn.open() / .close() / .toggle()   the panel
//
// How it works: the script runs in the embedding page and draws into a shadow root (open mode)
// under <div id="microturn-widget">, so the page's CSS cannot break it and its CSS cannot leak
// into the page. It asks the embedding site's backend for a short-lived call token (POST to the
// token URL, same-origin, with the site's cookies), then calls this server directly: the browser
// marks those requests with the embedding page's Origin, which the server checks against its
// allowed origins and the token's origin binding. API keys stay on the site's backend.
(() => {
  "use strict";
  if (window.Microturn && window.Microturn.widget) return;  // the tag was included twice
  const script = document.currentScript;
  const base = new URL(script.src, location.href).origin;
  const data = script.dataset;
  const config = {
    tokenUrl: data.microturnTokenUrl || null,
    camera: data.microturnCamera === "on",
    title: data.microturnTitle || "Microturn",
    launcher: data.microturnLauncher !== "off",
  };
  const MAX_EVENTS = 2000;

  const listeners = new Map();
  const ui = {};
  let loading = null;  // Promise of the modules
  let mods = null;     // client.js and cards.js exports, once loaded
  let client = null;
  let board = null;
  let meter = null;
  let meterTimer = null;
  let modelText = "";
  const want = { mic: true, camera: config.camera };

  const api = {
    widget: true,
    version: 1,
    base,
    config,
    state: "idle",
    events: [],
    sent: [],
    errors: [],
    callId: null,
    pc: null,
    quality: null,
    lastError: null,
    videoSent: null,  // how the camera's video was capped to what the model uses (client.js)
    element: null,
    get tasks() { return board ? board.tasks : {}; },
    on(type, fn) {
      if (!listeners.has(type)) listeners.set(type, new Set());
      listeners.get(type).add(fn);
      return () => api.off(type, fn);
    },
    off(type, fn) { listeners.get(type)?.delete(fn); },
    open() { build(); setOpen(true); },
    close() { setOpen(false); },
    toggle() { build(); if (ui.panel) setOpen(ui.panel.hidden); },
    start(options = {}) { return start(options); },
    stop() { return stop(); },  // (no reason: the user hung up)
    send(text) {
      if (!client || !text || !String(text).trim()) return false;
      return client.send("input_text", { text: String(text) });
    },
  };
  window.Microturn = api;

  function emit(type, detail) {
    for (const fn of [...(listeners.get(type) || [])]) {
      try { fn(detail); } catch (err) { setTimeout(() => { throw err; }); }  // the page's bug, reported as such
    }
  }

  class WidgetError extends Error {
    constructor(code, message) { super(message); this.code = code; }
  }

  async function load() {
    if (!loading) {
      loading = Promise.all([import(`${base}/static/client.js`), import(`${base}/static/cards.js`)])
        .then(([clientModule, cardsModule]) => ({ ...clientModule, ...cardsModule }))
        .catch((err) => {
          loading = null;
          throw new WidgetError("widget_load_failed", `Could not load Microturn from ${base} (${err.message}).`);
        });
    }
    return loading;
  }

  // -- the view ----------------------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (v === true) node.setAttribute(k, "");
      else if (v !== false && v !== null) node.setAttribute(k, v);
    }
    node.append(...children);
    return node;
  }

  function build() {
    if (ui.root) return;
    if (!document.body) return;
    const host = el("div", { id: "microturn-widget" });
    const shadow = host.attachShadow({ mode: "open" });
    const sheets = ["widget.css", "cards.css"].map((name) => el("link", { rel: "stylesheet", href: `${base}/static/${name}` }));
    ui.root = el("div", { class: "mtw", hidden: true });
    let pending = sheets.length;
    const shown = () => { if (--pending <= 0) ui.root.hidden = false; };
    for (const link of sheets) { link.addEventListener("load", shown); link.addEventListener("error", shown); }

    ui.launcher = el("button", { type: "button", class: "launcher", "aria-expanded": "false", "aria-controls": "mtw-panel" },
      el("span", { class: "launcher-dot", "aria-hidden": "true" }), el("span", { class: "launcher-text", text: `Talk to ${config.title}` }));
    ui.launcher.hidden = !config.launcher;
    ui.title = el("h2", { id: "mtw-title", text: config.title });
    ui.live = el("p", { class: "live", "data-live": "false", text: "Not listening" });
    ui.closeButton = el("button", { type: "button", class: "close", "aria-label": "Close the panel", text: "×" });
    ui.status = el("p", { class: "status", role: "status", "aria-live": "polite", text: "Press Start to talk. Nothing is sent until you do." });
    ui.error = el("p", { class: "error", role: "alert", hidden: true });
    ui.start = el("button", { type: "button", class: "primary start", text: "Start" });
    ui.stop = el("button", { type: "button", class: "danger stop", disabled: true, text: "Hang up" });
    ui.mic = el("button", { type: "button", class: "toggle mic", "aria-pressed": "true" }, "Mic ", el("span", { class: "toggle-state", "aria-hidden": "true", text: "on" }));
    ui.camera = el("button", { type: "button", class: "toggle camera", "aria-pressed": String(want.camera) }, "Camera ", el("span", { class: "toggle-state", "aria-hidden": "true", text: want.camera ? "on" : "off" }));
    ui.meter = el("div", { class: "meter", "aria-hidden": "true" }, el("span"));
    ui.speaking = el("p", { class: "speaking", "data-speaking": "false", text: "Model silent" });
    ui.quality = el("p", { class: "quality", role: "alert", hidden: true });
    ui.text = el("div", { class: "model-text", "aria-live": "polite", "aria-label": "what the model says" });
    ui.input = el("input", { type: "text", id: "mtw-input", maxlength: "4000", disabled: true, autocomplete: "off", placeholder: "Start a call to type" });
    ui.send = el("button", { type: "submit", class: "primary", disabled: true, text: "Send" });
    ui.form = el("form", { class: "say" }, el("label", { for: "mtw-input", class: "visually-hidden", text: "Type to the model" }), ui.input, ui.send);
    ui.cards = el("div", { class: "mt-cards", "aria-label": "background tasks" });
    ui.audio = el("audio", { autoplay: true });
    ui.panel = el("section", { id: "mtw-panel", class: "panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "mtw-title", hidden: true },
      el("header", {}, ui.title, ui.live, ui.closeButton),
      ui.status, ui.error,
      el("div", { class: "row" }, ui.start, ui.stop),
      el("div", { class: "row", role: "group", "aria-label": "what the model may perceive" }, ui.mic, ui.camera),
      ui.meter, ui.speaking, ui.quality, ui.text, ui.form, ui.cards, ui.audio);
    ui.root.append(ui.panel, ui.launcher);
    shadow.append(...sheets, ui.root);
    document.body.append(host);
    api.element = host;

    ui.launcher.addEventListener("click", () => api.toggle());
    ui.closeButton.addEventListener("click", () => { setOpen(false); ui.launcher.focus(); });
    ui.panel.addEventListener("keydown", (e) => { if (e.key === "Escape") { setOpen(false); ui.launcher.focus(); } });
    ui.start.addEventListener("click", () => start());
    ui.stop.addEventListener("click", () => stop());
    ui.mic.addEventListener("click", () => toggleSense("mic"));
    ui.camera.addEventListener("click", () => toggleSense("camera"));
    ui.form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (api.send(ui.input.value.trim())) ui.input.value = "";
    });
  }

  function setOpen(open) {
    if (!ui.panel) return;
    const was = !ui.panel.hidden;
    ui.panel.hidden = !open;
    ui.launcher.setAttribute("aria-expanded", String(open));
    if (open && !was) { (ui.start.disabled ? ui.stop : ui.start).focus(); emit("open"); }
    if (!open && was) emit("close");
  }

  function setState(state) {
    api.state = state;
    emit("state", state);
  }

  function setStatus(text) { if (ui.status) ui.status.textContent = text; }

  function showError(err) {
    const info = describeLocal(err);
    api.lastError = info;
    api.errors.push({ type: "error", code: info.code, message: info.detail });
    ui.error.textContent = info.message;
    ui.error.hidden = false;
    emit("error", { code: info.code, message: info.message });
    return info;
  }

  let describeError = null;  // from client.js, once loaded
  function describeLocal(err) {
    if (describeError) return describeError(err);
    const code = (err && err.code) || "error";
    const message = (err && err.message) || String(err);
    return { code, message, detail: message };
  }

  function setToggle(button, on) {
    button.setAttribute("aria-pressed", String(on));
    button.querySelector(".toggle-state").textContent = on ? "on" : "off";
  }

  function renderLive() {
    const tracks = client && client.pc ? client.localTracks : { mic: null, camera: null };
    const live = Boolean(client && client.pc);
    const parts = [];
    if (tracks.mic) parts.push("hearing");
    if (tracks.camera) parts.push("seeing");
    ui.live.dataset.live = String(live);
    ui.live.textContent = !live ? "Not listening" : parts.length ? `Live: ${parts.join(" and ")} you` : "Live: mic and camera off";
    ui.launcher.classList.toggle("is-live", live);
  }

  // -- the call ----------------------------------------------------------------------------------
  async function fetchToken() {
    if (!config.tokenUrl) return null;
    let response;
    try {
      response = await fetch(config.tokenUrl, { method: "POST", credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch (err) {
      throw new WidgetError("token_fetch_failed", `the token URL could not be reached (${err.message})`);
    }
    if (!response.ok) throw new WidgetError("token_fetch_failed", `the token URL answered ${response.status}`);
    let body = null;
    try { body = await response.json(); } catch { /* below */ }
    if (!body || typeof body.token !== "string") throw new WidgetError("token_fetch_failed", "the token URL did not answer {\"token\": \"...\"}");
    return body.token;
  }

  function onServerEvent(event) {
    api.events.push(event);
    if (api.events.length > MAX_EVENTS) api.events.splice(0, MAX_EVENTS / 2);
    if (event.type === "session.created") {
      api.callId = event.call_id;
      setStatus("In a call. Talk, or type below.");
    } else if (event.type === "output_text.delta") {
      modelText = (modelText + event.text).slice(-2000);
      ui.text.textContent = modelText;
    } else if (event.type === "output_audio.started" || event.type === "output_audio.stopped") {
      const speaking = event.type === "output_audio.started";
      ui.speaking.dataset.speaking = String(speaking);
      ui.speaking.textContent = speaking ? "Model speaking" : "Model silent";
    } else if (event.type === "session.ended") {
      if (client && !client._stopping) stop(`The call ended: ${event.reason}.`);
    } else if (event.type === "agent.task") {
      board.update(event);
    } else if (event.type === "error") {
      api.errors.push(event);
      emit("error", { code: event.code, message: event.message });
    }
    emit("event", event);
    if (event.type !== "error") emit(event.type, event);
  }

  function onLocalTracks(tracks) {
    if (meter) meter.disconnect();
    meter = tracks.mic && client && client.audioContext ? new mods.LevelMeter(new MediaStream([tracks.mic]), client.audioContext) : null;
    renderLive();
  }

  function onQuality(q) {
    api.quality = q;
    ui.quality.hidden = q.level !== "poor";
    if (q.level === "poor" && ui.quality.textContent !== q.message) ui.quality.textContent = q.message;
    emit("quality", q);
  }

  function onClientState(state) {
    setState(state);
    if (state === "connecting") setStatus("Connecting…");
    if (state === "reconnecting") setStatus("Connection lost; reconnecting…");
    if (state === "failed" && client && client.pc && !client._stopping) {
      showError({ code: "connection_failed", message: "the peer connection failed" });
      stop();
    }
  }

  function domReady() {
    if (document.body) return Promise.resolve();
    return new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }));
  }

  async function start(options = {}) {
    await domReady();
    build();
    setOpen(true);
    if (client) return;
    ui.error.hidden = true;
    ui.start.disabled = true;
    if (typeof options.camera === "boolean") { want.camera = options.camera; setToggle(ui.camera, want.camera); }
    api.callId = null;
    setState("starting");
    setStatus("Starting…");
    let starting = null;
    try {
      mods = await load();
      describeError = mods.describeError;
      board = board || new mods.TaskBoard(ui.cards);
      // A call this tab left on a reload is taken up with its resume token; a fresh token is
      // still asked for, in case that call is gone.
      const resuming = mods.MicroturnClient.savedCall(base);
      let token = options.token || null;
      if (!token && resuming) token = await fetchToken().catch(() => null);
      else if (!token) token = await fetchToken();
      starting = new mods.MicroturnClient({ baseUrl: base, token });
      client = starting;
      starting.addEventListener("state", (e) => onClientState(e.detail));
      starting.addEventListener("event", (e) => onServerEvent(e.detail));
      starting.addEventListener("localtracks", (e) => onLocalTracks(e.detail));
      starting.addEventListener("quality", (e) => onQuality(e.detail));
      starting.addEventListener("videosent", (e) => { api.videoSent = e.detail; });
      starting.addEventListener("sent", (e) => {
        api.sent.push(e.detail);
        if (api.sent.length > MAX_EVENTS) api.sent.splice(0, MAX_EVENTS / 2);
      });
      starting.addEventListener("remotetrack", (e) => { ui.audio.srcObject = e.detail; ui.audio.play().catch(() => {}); });
      starting.addEventListener("channelopen", () => {
        ui.input.disabled = ui.send.disabled = false;
        ui.input.placeholder = "Type to the model";
      });
      setStatus("Asking for your microphone…");
      await starting.start({ mic: { on: want.mic }, camera: { on: want.camera } });
      api.pc = starting.pc;
      ui.stop.disabled = false;
      meterTimer = setInterval(() => {
        const level = meter ? meter.level() : 0;
        ui.meter.firstElementChild.style.transform = `scaleX(${Math.min(1, Math.sqrt(level * 4))})`;
      }, 80);
      renderLive();
    } catch (err) {
      if (client === starting) client = null;
      const info = showError(err);
      setState("failed");
      setStatus(`Could not start the call (${info.code}).`);
      ui.start.disabled = false;
      renderLive();
    }
  }

  async function stop(endedText = null) {
    if (!client) return;
    const ending = client;
    client = null;
    ui.stop.disabled = true;
    ui.input.disabled = ui.send.disabled = true;
    ui.input.placeholder = "Start a call to type";
    clearInterval(meterTimer);
    if (meter) meter.disconnect();
    meter = null;
    ui.meter.firstElementChild.style.transform = "scaleX(0)";
    await ending.stop();
    api.pc = null;
    ui.audio.srcObject = null;
    ui.speaking.dataset.speaking = "false";
    ui.speaking.textContent = "Model silent";
    ui.quality.hidden = true;
    modelText = "";
    if (endedText) setStatus(`${endedText} Nothing is being sent.`);
    else if (ui.error.hidden) setStatus("Call ended. Nothing is being sent.");
    ui.start.disabled = false;
    renderLive();
  }

  async function toggleSense(kind) {
    want[kind] = !want[kind];
    setToggle(kind === "mic" ? ui.mic : ui.camera, want[kind]);
    if (!client || !client.pc) return;
    try {
      if (kind === "mic") await client.setMicOn(want.mic);
      else await client.setCameraOn(want.camera);
    } catch (err) {
      want[kind] = !want[kind];
      setToggle(kind === "mic" ? ui.mic : ui.camera, want[kind]);
      showError(err);
    }
    renderLive();
  }

  // A reload keeps the call: the client saves its resume token on pagehide without hanging up,
  // and the reloaded page takes it up again while the server's resume window is open.
  if (document.body) build();
  else document.addEventListener("DOMContentLoaded", build, { once: true });
  try {
    if (sessionStorage.getItem(`microturn.resume:${base || window.location.origin}`)) api.start();
  } catch { /* no storage */ }
})();
