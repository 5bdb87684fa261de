// The demo page: start a call, show what the model says and does, type to it.
import { LevelMeter, MicroturnClient } from "./client.js";

const $ = (id) => document.getElementById(id);
const ui = {
  start: $("start"), stop: $("stop"), state: $("state"), preview: $("preview"), remote: $("remote"),
  form: $("text-form"), text: $("text"), send: $("send"), modelText: $("model-text"), events: $("events"),
  mic: $("sense-mic"), camera: $("sense-camera"), speaker: $("sense-speaker"),
};
const MAX_EVENT_ROWS = 200;

// Test and QA hook: everything a script needs to observe the call.
const probe = {
  state: "idle", events: [], callId: null, remoteLevel: 0, maxRemoteLevel: 0, errors: [], pc: null,
};
window.microturn = probe;

let client = null;
let audioContext = null;
let meter = null;
let meterTimer = null;

function setState(state) {
  probe.state = state;
  ui.state.textContent = state;
}

function setSense(el, on, onText, offText, cls = "on") {
  el.classList.toggle(cls, on);
  el.textContent = on ? onText : offText;
}

function logEvent(event) {
  const li = document.createElement("li");
  if (event.type === "error") li.className = "error";
  li.textContent = JSON.stringify(event);
  ui.events.prepend(li);
  while (ui.events.children.length > MAX_EVENT_ROWS) ui.events.lastChild.remove();
}

function onServerEvent(event) {
  probe.events.push(event);
  if (probe.events.length > 2000) probe.events.splice(0, 1000);
  if (event.type === "session.created") probe.callId = event.call_id;
  if (event.type === "output_text.delta") ui.modelText.textContent += event.text;
  if (event.type === "output_audio.started") setSense(ui.speaker, true, "model speaking", "model silent", "speaking");
  if (event.type === "output_audio.stopped") setSense(ui.speaker, false, "model speaking", "model silent", "speaking");
  if (event.type === "error") probe.errors.push(event);
  if (event.type !== "output_text.delta") logEvent(event);
}

function measureRemote(stream) {
  // Play through the <audio> element (WebRTC audio reaches WebAudio only if an element plays it),
  // and meter the same stream.
  ui.remote.srcObject = stream;
  ui.remote.play().catch(() => {});
  meter = new LevelMeter(stream, audioContext);
  meterTimer = setInterval(() => {
    probe.remoteLevel = meter.level();
    probe.maxRemoteLevel = Math.max(probe.maxRemoteLevel, probe.remoteLevel);
  }, 50);
}

async function start() {
  ui.start.disabled = true;
  audioContext = audioContext || new AudioContext();
  await audioContext.resume().catch(() => {});
  client = new MicroturnClient();
  client.addEventListener("state", (e) => setState(e.detail));
  client.addEventListener("event", (e) => onServerEvent(e.detail));
  client.addEventListener("remotetrack", (e) => measureRemote(e.detail));
  client.addEventListener("channelopen", () => { ui.text.disabled = ui.send.disabled = false; });
  try {
    await client.start({ audio: true, video: true });
    probe.pc = client.pc;
    ui.preview.srcObject = client.localStream;
    setSense(ui.mic, client.localStream.getAudioTracks().length > 0, "mic on", "mic off");
    setSense(ui.camera, client.localStream.getVideoTracks().length > 0, "camera on", "camera off");
    ui.stop.disabled = false;
  } catch (err) {
    const message = err.code ? `${err.code}: ${err.message}` : String(err.message || err);
    probe.errors.push({ type: "error", code: err.code || "client_error", message });
    setState(`failed: ${message}`);
    client = null;
    ui.start.disabled = false;
  }
}

async function stop() {
  ui.stop.disabled = true;
  ui.text.disabled = ui.send.disabled = true;
  clearInterval(meterTimer);
  if (meter) meter.disconnect();
  if (client) await client.stop();
  client = null;
  ui.preview.srcObject = null;
  setSense(ui.mic, false, "mic on", "mic off");
  setSense(ui.camera, false, "camera on", "camera off");
  setSense(ui.speaker, false, "model speaking", "model silent", "speaking");
  ui.start.disabled = false;
}

ui.start.addEventListener("click", start);
ui.stop.addEventListener("click", stop);
ui.form.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.text.value.trim();
  if (!text || !client) return;
  client.send("input_text", { text });
  logEvent({ type: "input_text", text });
  ui.text.value = "";
});
