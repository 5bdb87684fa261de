// MicroturnClient: one call to a Microturn server over WebRTC (WHIP-style signaling).
// Used by the demo page and the widget; plain ES module, no dependencies, no build step.
//
//   const client = new MicroturnClient({ baseUrl: "", token: null });
//   client.addEventListener("event", (e) => console.log(e.detail));   // every server event
//   await client.start({ mic: { on: true }, camera: { on: true } });
//   client.send("input_text", { text: "hello" });
//   await client.setMicOn(false);            // the device is released; the server hears silence
//   await client.stop();
//
// Events (CustomEvent, payload in `detail`):
//   state        "starting" | "connecting" | "connected" | "disconnected" | "reconnecting" |
//                "failed" | "closed"
//   event        a server event from the `events` data channel ({type, ...})
//   sent         a client event this client sent ({type, ...})
//   channelopen  the `events` channel is open
//   remotetrack  the MediaStream carrying the model's audio
//   localtracks  {mic: MediaStreamTrack|null, camera: MediaStreamTrack|null} after any change
//   quality      {rttMs, jitterMs, lossPct, level, message} about once a second (see quality.js)
// A server event `session.ended` {reason} means the server ended the call: call stop() to release
// the devices (it then skips the DELETE).
//
// Playback feedback (docs/api.md, output_audio.played): while the model speaks, the client sends
// {type: "output_audio.played", microturn, played_ms} about every 500 ms, where microturn is the
// latest output_audio.started and played_ms the audio the page has actually played out since that
// event (the inbound-rtp `totalSamplesDuration` delta), and once more when output_audio.stopped
// arrives.
//
// Calls that survive the network (docs/api.md, "Resuming a call"): before its offer the client
// asks GET /v1/ice-servers (STUN, TURN with short-lived credentials); `session.created` brings a
// resume token and fresh ICE servers. When the peer connection fails (or stays disconnected for
// RESUME_AFTER_DISCONNECT_MS), the client re-offers on a new one with the token
// (POST {location}/resume) until the server's resume window passes: the same call goes on. When
// the page goes away (a reload), it keeps the token in sessionStorage and closes its connection
// without hanging up; start() on the reloaded page resumes that call if the window is still open.
//
// Sending only what the model uses (docs/api.md, session.created's `video`): the server says how
// many frames a second and how large a picture its model uses; the client caps its video sender
// to that (RTCRtpSender.setParameters: maxFramerate, and scaleResolutionDownBy from the camera's
// own settings), again whenever the camera changes; where the browser refuses, it asks the camera
// for less instead (applyConstraints). `videoSent` says what was applied.

import { assessQuality, QualitySampler } from "./quality.js";

export const STATS_INTERVAL_MS = 500;
export const RESUME_AFTER_DISCONNECT_MS = 2000;
const RESUME_RETRY_MS = 1000;
const RESUME_KEY = "microturn.resume";

export class CallError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// A message a person can act on, for an error code from the server or the browser.
const FRIENDLY = {
  origin_not_allowed:
    "This website is not allowed to use this Microturn server. The site's owner must add its " +
    "address to the server's allowed origins.",
  origin_mismatch: "The call token was issued for a different website, so the server refused it.",
  token_expired: "The call token expired before the call could start. Press Start to try again.",
  token_used:
    "This call token was already used for a call. Each call needs a fresh token; press Start to " +
    "try again.",
  invalid_token: "The server refused the call token this website supplied.",
  unauthorized: "The server needs a call token, and this page has none (or an invalid one).",
  invalid_authorization: "The server refused this page's credentials.",
  at_capacity: "The server is busy with as many calls as it can take. Try again in a few seconds.",
  rate_limited: "Too many calls were started from this device just now. Wait a few seconds and try again.",
  token_fetch_failed: "This website could not provide a call token.",
  network_error: "Could not reach the Microturn server. Check your connection and try again.",
  NotAllowedError:
    "Permission to use the microphone or camera was refused. Allow it in the browser's address " +
    "bar, then try again.",
  NotFoundError: "No microphone (or camera) was found on this device.",
  NotReadableError: "The microphone or camera is in use by another application.",
  OverconstrainedError: "The chosen microphone or camera is no longer available.",
  connection_failed: "The connection to the server was lost.",
  invalid_resume_token: "The call could not be resumed; press Start for a new one.",
};

/** {code, message, detail} for anything thrown while starting or running a call. */
export function describeError(err) {
  const code = (err && (err.code && typeof err.code === "string" ? err.code : err.name)) || "error";
  const detail = (err && err.message) || String(err);
  let friendly = FRIENDLY[code];
  if (!friendly && err instanceof TypeError) return describeError({ code: "network_error", message: detail });
  if (!friendly) friendly = detail;
  return { code, message: friendly, detail };
}

function waitForIceGathering(pc, timeoutMs = 3000) {
  // aiortc does not trickle ICE: send the offer once our candidates are gathered.
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener("icegatheringstatechange", check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

function constraint(device) {
  return device && device.deviceId ? { deviceId: { exact: device.deviceId } } : true;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function resumeKey(baseUrl) {
  return `${RESUME_KEY}:${baseUrl || window.location.origin}`;
}

async function refusal(response) {
  let code = "http_error", message = `the server answered ${response.status}`;
  try {
    const body = await response.json();
    code = body.error.code; message = body.error.message;
  } catch { /* not JSON */ }
  return new CallError(response.status, code, message);
}

export class MicroturnClient extends EventTarget {
  constructor({ baseUrl = "", token = null, audioContext = null } = {}) {
    super();
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.token = token;
    this.audioContext = audioContext;
    this.pc = null;
    this.channel = null;
    this.micTrack = null;      // the real microphone track, null when the mic is off
    this.cameraTrack = null;   // the camera track, null when the camera is off
    this.micDevice = null;     // {deviceId} chosen, or null for the default
    this.cameraDevice = null;
    this.remoteStream = null;
    this.location = null;
    this.callId = null;
    this.state = "idle";
    this.quality = null;
    this._audioSender = null;
    this._videoSender = null;
    this._silence = null;
    this._statsTimer = null;
    this._sampler = new QualitySampler();
    this._playback = null;  // {microturn, base: Promise<seconds>}
    this._ticking = false;
    this._stopping = false;
    this.iceServers = [];       // STUN/TURN for our peer connections (server-provided)
    this.resume = null;         // {token, windowS} from the latest session.created
    this.videoRequest = null;   // what video the server's model uses, from session.created
    this.videoSent = null;      // what this client applied: {maxFramerate, scale, via}
    this.resumed = false;       // this call was resumed (after a failure or a reload)
    this._lostAt = null;        // when the connection was lost, while reconnecting
    this._disconnectTimer = null;
    this._onPageHide = () => this._keepForReload();
  }

  /** The call this tab left behind on a reload, if its resume window may still be open. */
  static savedCall(baseUrl = "") {
    try {
      const saved = JSON.parse(sessionStorage.getItem(resumeKey(baseUrl)) || "null");
      if (saved && saved.until > Date.now() && saved.location && saved.token) return saved;
      sessionStorage.removeItem(resumeKey(baseUrl));
    } catch { /* no storage */ }
    return null;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state) {
    this.state = state;
    this._emit("state", state);
  }

  get localTracks() {
    return { mic: this.micTrack, camera: this.cameraTrack };
  }

  /**
   * Start a call. mic/camera: {on: boolean, deviceId?: string, track?: MediaStreamTrack} (a
   * track given is sent instead of asking for the device). The offer always carries an audio
   * and a video m-line, so the microphone and camera can be switched on and off without
   * renegotiating: a muted mic is replaced by silence (the server's audio timeline stays
   * continuous), a camera that is off sends nothing.
   */
  async start({ mic = { on: true }, camera = { on: true } } = {}) {
    if (this.pc) throw new Error("call already started");
    this._stopping = false;
    this._setState("starting");
    try {
      this.audioContext = this.audioContext || new AudioContext();
      await this.audioContext.resume().catch(() => {});
      this.micDevice = mic.deviceId ? { deviceId: mic.deviceId } : null;
      this.cameraDevice = camera.deviceId ? { deviceId: camera.deviceId } : null;
      // A track given (a WebAudio or canvas stream, a processed mic) is sent as it is.
      this.micTrack = mic.on && mic.track ? mic.track : null;
      this.cameraTrack = camera.on && camera.track ? camera.track : null;
      const wants = {};
      if (mic.on && !this.micTrack) wants.audio = constraint(this.micDevice);
      if (camera.on && !this.cameraTrack) wants.video = constraint(this.cameraDevice);
      if (wants.audio || wants.video) {
        const stream = await navigator.mediaDevices.getUserMedia(wants);
        this.micTrack = this.micTrack || stream.getAudioTracks()[0] || null;
        this.cameraTrack = this.cameraTrack || stream.getVideoTracks()[0] || null;
      }
      this._emit("localtracks", this.localTracks);

      const saved = MicroturnClient.savedCall(this.baseUrl);
      try { sessionStorage.removeItem(resumeKey(this.baseUrl)); } catch { /* no storage */ }
      if (saved) {  // the page was reloaded during a call: take it up again
        this.iceServers = saved.iceServers || [];
        try {
          await this._offer(this._resumeUrl(saved.location), saved.token);
          this.location = saved.location;
          this.resumed = true;
        } catch { /* ended, or its window passed: a new call */ }
      }
      if (!this.resumed) {
        this.iceServers = await this._fetchIceServers();
        const response = await this._offer(`${this.baseUrl}/v1/calls`, this.token);
        this.location = response.headers.get("Location");
      }
      this._setState("connecting");
      this._statsTimer = setInterval(() => this._tick(), STATS_INTERVAL_MS);
      window.addEventListener("pagehide", this._onPageHide);
    } catch (err) {
      await this._teardown();
      this._setState("failed");
      throw err;
    }
  }

  async _fetchIceServers() {
    // STUN/TURN for the first offer; a server without them (or an older one) gives none.
    try {
      const headers = this.token ? { Authorization: `Bearer ${this.token}` } : {};
      const response = await fetch(`${this.baseUrl}/v1/ice-servers`, { headers });
      if (response.status !== 200) return [];
      const body = await response.json();
      return Array.isArray(body.ice_servers) ? body.ice_servers : [];
    } catch {
      return [];
    }
  }

  _resumeUrl(location) {
    // Location may be a path or, behind a scale-out, the absolute URL of the call's node.
    return new URL(`${location}/resume`, this.baseUrl || window.location.href).href;
  }

  /** A new peer connection carrying our tracks and an `events` channel, offered to `url`. */
  async _offer(url, bearer) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    const old = this.pc;
    this.pc = pc;
    if (old) old.close();
    try {
      pc.addEventListener("connectionstatechange", () => {
        if (this.pc === pc) this._onConnectionState(pc.connectionState);
      });
      pc.addEventListener("track", (e) => {
        if (e.track.kind !== "audio") return;
        this.remoteStream = e.streams[0] || new MediaStream([e.track]);
        this._emit("remotetrack", this.remoteStream);
      });
      const audio = pc.addTransceiver(this.micTrack || this._silenceTrack(), { direction: "sendrecv" });
      const video = pc.addTransceiver("video", { direction: "sendonly" });
      this._audioSender = audio.sender;
      this._videoSender = video.sender;
      if (this.cameraTrack) await video.sender.replaceTrack(this.cameraTrack);

      const channel = pc.createDataChannel("events", { ordered: true });
      this.channel = channel;
      channel.addEventListener("message", (e) => this._onMessage(e.data));
      channel.addEventListener("open", () => this._emit("channelopen"));

      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering(pc);
      const headers = { "Content-Type": "application/sdp" };
      if (bearer) headers.Authorization = `Bearer ${bearer}`;
      const response = await fetch(url, { method: "POST", headers, body: pc.localDescription.sdp });
      if (response.status !== 201) throw await refusal(response);
      this._playback = null;
      await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
      return response;
    } catch (err) {
      if (this.pc === pc) { pc.close(); this.pc = null; this.channel = null; }
      throw err;
    }
  }

  _onConnectionState(state) {
    clearTimeout(this._disconnectTimer);
    if (state === "connected") this._lostAt = null;
    if (this._stopping || !this.resume || !this.location) {
      this._setState(state);
      return;
    }
    if (state === "failed") {
      this._reconnect();
    } else if (state === "disconnected") {
      this._setState(state);
      this._disconnectTimer = setTimeout(() => {
        if (this.pc && this.pc.connectionState === "disconnected") this._reconnect();
      }, RESUME_AFTER_DISCONNECT_MS);
    } else {
      this._setState(state);
    }
  }

  /** The path to the server died: re-offer with the resume token until the window passes. */
  async _reconnect() {
    if (this._reconnecting) return;
    this._reconnecting = true;
    this._lostAt = this._lostAt || Date.now();
    this._setState("reconnecting");
    try {
      while (!this._stopping && this.resume && this.location) {
        if (Date.now() - this._lostAt > this.resume.windowS * 1000) break;
        try {
          await this._offer(this._resumeUrl(this.location), this.resume.token);
          this.resumed = true;
          this._setState("connecting");
          return;
        } catch (err) {
          if (err instanceof CallError && err.status < 500 && err.status !== 429) break;
          await sleep(RESUME_RETRY_MS);
        }
      }
      if (!this._stopping) {
        this.location = null;  // gone on the server: no DELETE
        this._setState("failed");
      }
    } finally {
      this._reconnecting = false;
    }
  }

  _keepForReload() {
    // The page goes away (a reload, a navigation): keep the call for the next page of this tab
    // and let the server know at once that our side of the connection is gone; no DELETE.
    if (this._stopping || !this.location || !this.resume) return;
    try {
      sessionStorage.setItem(resumeKey(this.baseUrl), JSON.stringify({
        location: this.location,
        token: this.resume.token,
        iceServers: this.iceServers,
        until: Date.now() + this.resume.windowS * 1000,
      }));
    } catch { /* no storage: the call ends with its window */ }
    if (this.pc) this.pc.close();
  }

  send(type, fields = {}) {
    if (!this.channel || this.channel.readyState !== "open") return false;
    const event = { type, ...fields };
    this.channel.send(JSON.stringify(event));
    this._emit("sent", event);
    return true;
  }

  /** Microphone on (the chosen device) or off (the device is released; silence is sent). */
  async setMicOn(on) {
    if (!this.pc) return;
    if (on && !this.micTrack) {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: constraint(this.micDevice) });
      this.micTrack = stream.getAudioTracks()[0];
      await this._audioSender.replaceTrack(this.micTrack);
    } else if (!on && this.micTrack) {
      await this._audioSender.replaceTrack(this._silenceTrack());
      this.micTrack.stop();
      this.micTrack = null;
    }
    this._emit("localtracks", this.localTracks);
  }

  /** Camera on (the chosen device) or off (the device is released; no video is sent). */
  async setCameraOn(on) {
    if (!this.pc) return;
    if (on && !this.cameraTrack) {
      const stream = await navigator.mediaDevices.getUserMedia({ video: constraint(this.cameraDevice) });
      this.cameraTrack = stream.getVideoTracks()[0];
      await this._videoSender.replaceTrack(this.cameraTrack);
      await this._applyVideoRequest();
    } else if (!on && this.cameraTrack) {
      await this._videoSender.replaceTrack(null);
      this.cameraTrack.stop();
      this.cameraTrack = null;
    }
    this._emit("localtracks", this.localTracks);
  }

  /** Switch to another microphone (used now if the mic is on, else when it is turned on). */
  async useMic(deviceId) {
    this.micDevice = deviceId ? { deviceId } : null;
    if (!this.pc || !this.micTrack) return;
    const stream = await navigator.mediaDevices.getUserMedia({ audio: constraint(this.micDevice) });
    const old = this.micTrack;
    this.micTrack = stream.getAudioTracks()[0];
    await this._audioSender.replaceTrack(this.micTrack);
    old.stop();
    this._emit("localtracks", this.localTracks);
  }

  async useCamera(deviceId) {
    this.cameraDevice = deviceId ? { deviceId } : null;
    if (!this.pc || !this.cameraTrack) return;
    const stream = await navigator.mediaDevices.getUserMedia({ video: constraint(this.cameraDevice) });
    const old = this.cameraTrack;
    this.cameraTrack = stream.getVideoTracks()[0];
    await this._videoSender.replaceTrack(this.cameraTrack);
    await this._applyVideoRequest();
    old.stop();
    this._emit("localtracks", this.localTracks);
  }

  async stop() {
    // Hang up first (the server frees the call at once), then close our side: closing first would
    // let the server drop the call on its own and answer our DELETE with 404.
    this._stopping = true;
    window.removeEventListener("pagehide", this._onPageHide);
    try { sessionStorage.removeItem(resumeKey(this.baseUrl)); } catch { /* no storage */ }
    const location = this.location;
    if (location) {
      const headers = this.token ? { Authorization: `Bearer ${this.token}` } : {};
      // Location may be a path or, behind a scale-out, the absolute URL of the call's node.
      const url = new URL(location, this.baseUrl || window.location.href);
      try { await fetch(url, { method: "DELETE", headers }); } catch { /* gone */ }
    }
    await this._teardown();
    this._setState("closed");
  }

  // -- internals ------------------------------------------------------------------------------
  _silenceTrack() {
    // A MediaStreamDestination with nothing connected plays silence, on the audio clock: the
    // server keeps receiving 20 ms frames, so its timeline never falls behind while muted.
    if (!this._silence) this._silence = this.audioContext.createMediaStreamDestination();
    return this._silence.stream.getAudioTracks()[0];
  }

  _onMessage(data) {
    let event;
    try { event = JSON.parse(data); } catch { return; }
    if (!event || typeof event.type !== "string") return;
    if (event.type === "session.created") {
      this.callId = event.call_id;
      if (event.resume_token) this.resume = { token: event.resume_token, windowS: event.resume_window_s || 0 };
      if (Array.isArray(event.ice_servers)) this.iceServers = event.ice_servers;
      if (event.video && typeof event.video === "object") {
        this.videoRequest = event.video;
        this._applyVideoRequest();
      }
    }
    if (event.type === "session.ended") this.location = null;  // gone on the server: no DELETE
    if (event.type === "output_audio.started") this._playbackStarted(event.microturn);
    if (event.type === "output_audio.stopped") this._playbackStopped();
    this._emit("event", event);
  }

  /** Cap the video sender to what the server's model uses (session.created's `video`). */
  async _applyVideoRequest() {
    const want = this.videoRequest;
    const sender = this._videoSender;
    const track = this.cameraTrack;
    if (!want || !sender || !track) return;
    const fps = Number(want.max_framerate) > 0 ? Number(want.max_framerate) : null;
    const shortSide = Number(want.short_side_px) > 0 ? Number(want.short_side_px) : null;
    const settings = track.getSettings ? track.getSettings() : {};
    const cameraShort = Math.min(settings.width || 0, settings.height || 0);
    const scale = shortSide && cameraShort > shortSide ? cameraShort / shortSide : 1;
    try {
      const params = sender.getParameters();
      if (!params.encodings || !params.encodings.length) throw new Error("no encodings yet");
      for (const encoding of params.encodings) {
        if (fps) encoding.maxFramerate = fps;
        encoding.scaleResolutionDownBy = scale;
      }
      await sender.setParameters(params);
      this.videoSent = { maxFramerate: fps, scale, via: "setParameters" };
    } catch {
      // The camera itself, then: fewer frames and a smaller picture at the source.
      const constraints = {};
      if (fps) constraints.frameRate = { max: fps };
      if (scale > 1 && settings.width && settings.height) {
        constraints.width = { ideal: Math.round(settings.width / scale) };
        constraints.height = { ideal: Math.round(settings.height / scale) };
      }
      try {
        await track.applyConstraints(constraints);
        this.videoSent = { maxFramerate: fps, scale, via: "applyConstraints" };
      } catch { this.videoSent = null; /* sent as it is */ }
    }
    this._emit("videosent", this.videoSent);
  }

  async _inboundAudio(report = null) {
    const stats = report || (this.pc ? await this.pc.getStats() : null);
    let found = null;
    if (stats) stats.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "audio") found = s; });
    return found;
  }

  async _playedSeconds(report = null) {
    const inbound = await this._inboundAudio(report);
    return inbound ? inbound.totalSamplesDuration || 0 : 0;
  }

  _playbackStarted(microturn) {
    // The position is taken when the event arrives; played_ms counts audio played out after it.
    this._playback = { microturn, base: this._playedSeconds().catch(() => 0) };
  }

  _playbackStopped() {
    const playback = this._playback;
    this._playback = null;
    if (playback) this._reportPlayed(playback, null);
  }

  async _reportPlayed(playback, report) {
    try {
      const [base, now] = await Promise.all([playback.base, this._playedSeconds(report)]);
      const played = Math.max(0, Math.round((now - base) * 1000));
      this.send("output_audio.played", { microturn: playback.microturn, played_ms: played });
    } catch { /* the call is closing */ }
  }

  async _tick() {
    const pc = this.pc;
    // One tick at a time: on a loaded machine getStats() can outlast the interval, and reports
    // must leave in order.
    if (!pc || this._ticking) return;
    this._ticking = true;
    try {
      await this._sample(pc);
    } finally {
      this._ticking = false;
    }
  }

  async _sample(pc) {
    let report;
    try { report = await pc.getStats(); } catch { return; }
    if (this._playback) await this._reportPlayed(this._playback, report);
    const sample = this._sampler.add(report);
    if (sample) {
      this.quality = { ...sample, ...assessQuality(sample) };
      this._emit("quality", this.quality);
    }
  }

  async _teardown() {
    clearInterval(this._statsTimer);
    clearTimeout(this._disconnectTimer);
    window.removeEventListener("pagehide", this._onPageHide);
    this._statsTimer = null;
    this._playback = null;
    if (this.channel) this.channel.close();
    if (this.pc) this.pc.close();
    for (const track of [this.micTrack, this.cameraTrack]) if (track) track.stop();
    this.micTrack = this.cameraTrack = null;
    this.channel = this.pc = null;
    this._audioSender = this._videoSender = null;
    this.location = null;
    this._emit("localtracks", this.localTracks);
  }
}

// The loudness (RMS, 0..1) of a MediaStream, sampled on demand through WebAudio.
export class LevelMeter {
  constructor(stream, audioContext) {
    this.context = audioContext;
    this.source = audioContext.createMediaStreamSource(stream);
    this.analyser = audioContext.createAnalyser();
    this.analyser.fftSize = 1024;
    this.source.connect(this.analyser);
    this.buffer = new Float32Array(this.analyser.fftSize);
  }

  level() {
    this.analyser.getFloatTimeDomainData(this.buffer);
    let sum = 0;
    for (const v of this.buffer) sum += v * v;
    return Math.sqrt(sum / this.buffer.length);
  }

  disconnect() { this.source.disconnect(); }
}
