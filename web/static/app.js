// The demo page: start a call, see and control what the model perceives, watch what it says and
// does, type to it. Everything the page knows is also on `window.microturn` for tests and QA.
import { TaskBoard } from "./cards.js";
import { LevelMeter, MicroturnClient, describeError } from "./client.js";

const $ = (id) => document.getElementById(id);
const ui = {
  start: $("start"), stop: $("stop"), state: $("state"), error: $("error"),
  preview: $("preview"), previewOff: $("preview-off"), remote: $("remote"),
  toggleMic: $("toggle-mic"), toggleCamera: $("toggle-camera"),
  micSelect: $("mic-select"), cameraSelect: $("camera-select"),
  micLevel: $("mic-level"), privacy: $("privacy"), privacyText: $("privacy-text"),
  senseMic: $("sense-mic"), senseCamera: $("sense-camera"), senseSpeaker: $("sense-speaker"),
  quality: $("quality"), qRtt: $("q-rtt"), qJitter: $("q-jitter"), qLoss: $("q-loss"), qLevel: $("q-level"),
  qualityWarning: $("quality-warning"),
  speaking: $("speaking"), speakingText: $("speaking-text"), conversation: $("conversation"),
  form: $("text-form"), text: $("text"), send: $("send"),
  tasks: $("tasks"), tasksEmpty: $("tasks-empty"), announcer: $("announcer"), events: $("events"),
};
const MAX_EVENT_ROWS = 200;
const MAX_EVENTS_KEPT = 2000;
const AUDIBLE_LEVEL = 0.005;
const BASE_TITLE = document.title;

// Test and QA hook: everything a script needs to observe the call. Fields are only ever added.
const probe = {
  state: "idle", events: [], callId: null, remoteLevel: 0, maxRemoteLevel: 0, errors: [], pc: null,
  localLevel: 0, maxLocalLevel: 0,
  senses: { mic: "off", camera: "off", speaker: "silent" },
  quality: null,            // {rttMs, jitterMs, lossPct, level, message}
  sent: [],                 // client events sent (input_text, output_audio.played, ...)
  played: null,             // the last output_audio.played sent
  lastError: null,          // {code, message, detail} of the last failure shown to the user
  marks: {},                // performance.now() of: start, sessionCreated, firstModelAudio, stopped
  videoSent: null,          // how the camera's video was capped to what the model uses
  get tasks() { return board.tasks; },
};
window.microturn = probe;

const board = new TaskBoard(ui.tasks, { announce: (text) => { ui.announcer.textContent = text; } });
const want = { mic: true, camera: true };  // what the user asked for, before or during a call
let client = null;
let audioContext = null;
let localMeter = null;
let remoteMeter = null;
let meterTimer = null;
let modelTurn = null;  // the conversation element the model's text stream is appending to

// -- small view helpers ------------------------------------------------------------------------
function setStatus(text) { ui.state.textContent = text; }

function showError(err) {
  const info = describeError(err);
  probe.lastError = info;
  probe.errors.push({ type: "error", code: info.code, message: info.detail });
  ui.error.textContent = info.message;
  ui.error.hidden = false;
  return info;
}

function clearError() {
  ui.error.hidden = true;
  ui.error.textContent = "";
}

function setToggle(button, on) {
  button.setAttribute("aria-pressed", String(on));
  button.querySelector(".toggle-state").textContent = on ? "on" : "off";
}

function setSense(node, on, onText, offText, onClass = "on") {
  node.classList.toggle(onClass, on);
  node.classList.toggle("off", !on);
  node.textContent = on ? onText : offText;
}

function renderSenses() {
  const inCall = Boolean(client && client.pc);
  const tracks = client ? client.localTracks : { mic: null, camera: null };
  const mic = inCall && Boolean(tracks.mic);
  const camera = inCall && Boolean(tracks.camera);
  probe.senses.mic = mic ? "on" : "off";
  probe.senses.camera = camera ? "on" : "off";
  setSense(ui.senseMic, mic, "Mic on: the model hears you", inCall ? "Mic off: the model hears silence" : "Mic off");
  setSense(ui.senseCamera, camera, "Camera on: the model sees you", "Camera off");
  ui.previewOff.hidden = camera;
  ui.privacy.dataset.live = String(inCall);
  let text = "Not listening";
  if (inCall) {
    if (mic && camera) text = "Live: hearing and seeing you";
    else if (mic) text = "Live: hearing you, camera off";
    else if (camera) text = "Live: seeing you, mic off";
    else text = "In a call: mic and camera off";
  }
  ui.privacyText.textContent = text;
  document.title = inCall ? `● Live · ${BASE_TITLE}` : BASE_TITLE;
}

function setSpeaking(speaking) {
  probe.senses.speaker = speaking ? "speaking" : "silent";
  setSense(ui.senseSpeaker, speaking, "Model speaking", "Model silent", "speaking");
  ui.speaking.dataset.speaking = String(speaking);
  ui.speakingText.textContent = speaking ? "speaking" : "silent";
}

function setMeter(node, level) {
  const pct = Math.min(100, Math.round(Math.sqrt(Math.min(1, level * 4)) * 100));
  node.firstElementChild.style.transform = `scaleX(${pct / 100})`;
  node.setAttribute("aria-valuenow", String(pct));
}

function logEvent(event, direction = "in") {
  const li = document.createElement("li");
  li.className = event.type === "error" ? "error" : direction;
  li.textContent = `${direction === "in" ? "←" : "→"} ${JSON.stringify(event)}`;
  ui.events.prepend(li);
  while (ui.events.children.length > MAX_EVENT_ROWS) ui.events.lastChild.remove();
}

function addTurn(who, text) {
  ui.conversation.querySelector(".placeholder")?.remove();
  const p = document.createElement("p");
  p.className = `turn ${who}`;
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = who === "user" ? "You" : "Model";
  const body = document.createElement("span");
  body.className = "said";
  body.textContent = text;
  p.append(name, body);
  ui.conversation.append(p);
  ui.conversation.scrollTop = ui.conversation.scrollHeight;
  return body;
}

function renderQuality(q) {
  probe.quality = q;
  ui.qRtt.textContent = Number.isFinite(q.rttMs) ? `${q.rttMs} ms` : "–";
  ui.qJitter.textContent = Number.isFinite(q.jitterMs) ? `${q.jitterMs} ms` : "–";
  ui.qLoss.textContent = Number.isFinite(q.lossPct) ? `${q.lossPct} %` : "–";
  ui.qLevel.textContent = q.level === "unknown" ? "measuring…" : q.level;
  ui.quality.dataset.level = q.level;
  const poor = q.level === "poor";
  if (poor && ui.qualityWarning.textContent !== q.message) ui.qualityWarning.textContent = q.message;
  ui.qualityWarning.hidden = !poor;
}

function resetQuality() {
  for (const node of [ui.qRtt, ui.qJitter, ui.qLoss]) node.textContent = "–";
  ui.qLevel.textContent = "not connected";
  ui.quality.dataset.level = "unknown";
  ui.qualityWarning.hidden = true;
}

// -- devices -----------------------------------------------------------------------------------
async function listDevices() {
  if (!navigator.mediaDevices?.enumerateDevices) return;
  let devices = [];
  try { devices = await navigator.mediaDevices.enumerateDevices(); } catch { return; }
  fillSelect(ui.micSelect, devices.filter((d) => d.kind === "audioinput"), "Microphone");
  fillSelect(ui.cameraSelect, devices.filter((d) => d.kind === "videoinput"), "Camera");
}

function fillSelect(select, devices, noun) {
  const chosen = select.value;
  const options = [new Option(`Default ${noun.toLowerCase()}`, "")];
  devices.filter((d) => d.deviceId && d.deviceId !== "default").forEach((d, i) => {
    options.push(new Option(d.label || `${noun} ${i + 1}`, d.deviceId));
  });
  select.replaceChildren(...options);
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

// -- meters ------------------------------------------------------------------------------------
function meterLocal(tracks) {
  if (localMeter) localMeter.disconnect();
  localMeter = null;
  if (tracks.mic && audioContext) localMeter = new LevelMeter(new MediaStream([tracks.mic]), audioContext);
  ui.preview.srcObject = tracks.camera ? new MediaStream([tracks.camera]) : null;
  renderSenses();
}

function meterRemote(stream) {
  // Play through the <audio> element (WebRTC audio reaches WebAudio only if an element plays it),
  // and meter the same stream.
  ui.remote.srcObject = stream;
  ui.remote.play().catch(() => {});
  if (remoteMeter) remoteMeter.disconnect();
  remoteMeter = new LevelMeter(stream, audioContext);
}

function sampleMeters() {
  probe.localLevel = localMeter ? localMeter.level() : 0;
  probe.maxLocalLevel = Math.max(probe.maxLocalLevel, probe.localLevel);
  setMeter(ui.micLevel, probe.localLevel);
  if (remoteMeter) {
    probe.remoteLevel = remoteMeter.level();
    probe.maxRemoteLevel = Math.max(probe.maxRemoteLevel, probe.remoteLevel);
    if (probe.remoteLevel > AUDIBLE_LEVEL && probe.marks.firstModelAudio === undefined) {
      probe.marks.firstModelAudio = performance.now();
    }
  }
}

// -- server events -----------------------------------------------------------------------------
function onServerEvent(event) {
  probe.events.push(event);
  if (probe.events.length > MAX_EVENTS_KEPT) probe.events.splice(0, MAX_EVENTS_KEPT / 2);
  switch (event.type) {
    case "session.created":
      probe.callId = event.call_id;
      probe.marks.sessionCreated = performance.now();
      setStatus(`In a call with ${event.model}. Talk, or type below.`);
      break;
    case "output_text.delta":
      if (!modelTurn) modelTurn = addTurn("model", "");
      modelTurn.textContent += event.text;
      ui.conversation.scrollTop = ui.conversation.scrollHeight;
      return;  // not logged: one row per 200 ms would drown the log
    case "output_audio.started": setSpeaking(true); break;
    case "output_audio.stopped": setSpeaking(false); break;
    case "session.ended":
      if (client && !client._stopping) stop(`The call ended: ${event.reason}.`);
      break;
    case "agent.task":
      ui.tasksEmpty.hidden = true;
      board.update(event);
      break;
    case "error":
      probe.errors.push(event);
      break;
    default:
  }
  logEvent(event);
}

function onSent(event) {
  probe.sent.push(event);
  if (probe.sent.length > MAX_EVENTS_KEPT) probe.sent.splice(0, MAX_EVENTS_KEPT / 2);
  if (event.type === "output_audio.played") { probe.played = event; return; }
  logEvent(event, "out");
}

function onClientState(state) {
  probe.state = state;
  if (state === "connecting") setStatus("Connecting…");
  if (state === "connected" && !probe.callId) setStatus("Connected; opening the session…");
  if (state === "reconnecting") setStatus("Connection lost; reconnecting to the same call…");
  if ((state === "failed" || state === "disconnected") && client && client.pc && !client._stopping) {
    if (state === "failed") {
      showError({ code: "connection_failed", message: "the peer connection failed" });
      stop();
    } else {
      setStatus("Connection interrupted; trying to recover…");
    }
  }
}

// -- actions -----------------------------------------------------------------------------------
async function start() {
  clearError();
  ui.start.disabled = true;
  probe.marks = { start: performance.now() };
  probe.callId = null;
  setStatus("Asking for your microphone and camera…");
  audioContext = audioContext || new AudioContext();
  await audioContext.resume().catch(() => {});
  client = new MicroturnClient({ audioContext });
  client.addEventListener("state", (e) => onClientState(e.detail));
  client.addEventListener("event", (e) => onServerEvent(e.detail));
  client.addEventListener("sent", (e) => onSent(e.detail));
  client.addEventListener("remotetrack", (e) => meterRemote(e.detail));
  client.addEventListener("localtracks", (e) => meterLocal(e.detail));
  client.addEventListener("quality", (e) => renderQuality(e.detail));
  client.addEventListener("videosent", (e) => { probe.videoSent = e.detail; });
  client.addEventListener("channelopen", () => {
    ui.text.disabled = ui.send.disabled = false;
    ui.text.placeholder = "Say something to the model";
  });
  meterTimer = meterTimer || setInterval(sampleMeters, 50);
  try {
    await client.start({
      mic: { on: want.mic, deviceId: ui.micSelect.value || undefined },
      camera: { on: want.camera, deviceId: ui.cameraSelect.value || undefined },
    });
    probe.pc = client.pc;
    ui.stop.disabled = false;
    ui.qLevel.textContent = "measuring…";
    renderSenses();
    listDevices();  // labels are known once permission is granted
  } catch (err) {
    const info = showError(err);
    setStatus(`Could not start the call (${info.code}).`);
    client = null;
    renderSenses();
    ui.start.disabled = false;
  }
}

async function stop(endedText = null) {
  if (!client) return;
  const ending = client;
  client = null;
  ui.stop.disabled = true;
  ui.text.disabled = ui.send.disabled = true;
  ui.text.placeholder = "Start a call to type";
  await ending.stop();
  probe.state = "closed";
  probe.marks.stopped = performance.now();
  if (localMeter) localMeter.disconnect();
  if (remoteMeter) remoteMeter.disconnect();
  localMeter = remoteMeter = null;
  probe.remoteLevel = probe.localLevel = 0;
  setMeter(ui.micLevel, 0);
  ui.preview.srcObject = null;
  ui.remote.srcObject = null;
  modelTurn = null;
  setSpeaking(false);
  resetQuality();
  renderSenses();
  if (endedText) setStatus(`${endedText} Nothing is being sent.`);
  else if (ui.error.hidden) setStatus("Call ended. Nothing is being sent.");
  ui.start.disabled = false;
  ui.start.focus();
}

async function toggle(kind) {
  want[kind] = !want[kind];
  setToggle(kind === "mic" ? ui.toggleMic : ui.toggleCamera, want[kind]);
  if (!client || !client.pc) return;
  try {
    if (kind === "mic") await client.setMicOn(want.mic);
    else await client.setCameraOn(want.camera);
  } catch (err) {
    want[kind] = !want[kind];
    setToggle(kind === "mic" ? ui.toggleMic : ui.toggleCamera, want[kind]);
    showError(err);
  }
  renderSenses();
}

async function chooseDevice(kind) {
  if (!client || !client.pc) return;
  try {
    if (kind === "mic") await client.useMic(ui.micSelect.value);
    else await client.useCamera(ui.cameraSelect.value);
  } catch (err) {
    showError(err);
  }
}

function sendText(e) {
  e.preventDefault();
  const text = ui.text.value.trim();
  if (!text || !client) return;
  if (client.send("input_text", { text })) {
    addTurn("user", text);
    modelTurn = null;  // the model's next words start a new turn
    ui.text.value = "";
  }
}

ui.start.addEventListener("click", start);
ui.stop.addEventListener("click", () => stop());
ui.toggleMic.addEventListener("click", () => toggle("mic"));
ui.toggleCamera.addEventListener("click", () => toggle("camera"));
ui.micSelect.addEventListener("change", () => chooseDevice("mic"));
ui.cameraSelect.addEventListener("change", () => chooseDevice("camera"));
ui.form.addEventListener("submit", sendText);
navigator.mediaDevices?.addEventListener?.("devicechange", listDevices);
// A reload keeps the call (the client saves its resume token on pagehide, without hanging up):
// take it up again at once if its resume window is still open.
listDevices();
renderSenses();
if (MicroturnClient.savedCall("")) start();
