// MicroturnClient: one call to a Microturn server over WebRTC (WHIP-style signaling).
// Used by the demo page and the widget; no dependencies, no build step.
//
//   const client = new MicroturnClient({ baseUrl: "", token: null });
//   client.addEventListener("event", (e) => console.log(e.detail));   // every server event
//   await client.start({ audio: true, video: true });
//   client.send("input_text", { text: "hello" });
//   await client.stop();

export class CallError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
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

export class MicroturnClient extends EventTarget {
  constructor({ baseUrl = "", token = null } = {}) {
    super();
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.token = token;
    this.pc = null;
    this.channel = null;
    this.localStream = null;
    this.remoteStream = null;
    this.location = null;
    this.callId = null;
    this.state = "idle";
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state) {
    this.state = state;
    this._emit("state", state);
  }

  async start({ audio = true, video = true, stream = null } = {}) {
    if (this.pc) throw new Error("call already started");
    this._setState("starting");
    try {
      this.localStream = stream || await navigator.mediaDevices.getUserMedia({ audio, video });
      const pc = new RTCPeerConnection();
      this.pc = pc;
      pc.addEventListener("connectionstatechange", () => this._setState(pc.connectionState));
      pc.addEventListener("track", (e) => {
        this.remoteStream = e.streams[0] || new MediaStream([e.track]);
        this._emit("remotetrack", this.remoteStream);
      });
      const audioTracks = this.localStream.getAudioTracks();
      if (audioTracks.length === 0) pc.addTransceiver("audio", { direction: "sendrecv" });
      for (const track of this.localStream.getTracks()) pc.addTrack(track, this.localStream);

      this.channel = pc.createDataChannel("events", { ordered: true });
      this.channel.addEventListener("message", (e) => {
        let event;
        try { event = JSON.parse(e.data); } catch { return; }
        if (event.type === "session.created") this.callId = event.call_id;
        this._emit("event", event);
      });
      this.channel.addEventListener("open", () => this._emit("channelopen"));

      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering(pc);
      const headers = { "Content-Type": "application/sdp" };
      if (this.token) headers.Authorization = `Bearer ${this.token}`;
      const response = await fetch(`${this.baseUrl}/v1/calls`, {
        method: "POST", headers, body: pc.localDescription.sdp,
      });
      if (response.status !== 201) {
        let code = "http_error", message = `server answered ${response.status}`;
        try {
          const body = await response.json();
          code = body.error.code; message = body.error.message;
        } catch { /* not JSON */ }
        throw new CallError(response.status, code, message);
      }
      this.location = response.headers.get("Location");
      await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
      this._setState("connecting");
    } catch (err) {
      await this._teardown();
      this._setState("failed");
      throw err;
    }
  }

  send(type, fields = {}) {
    if (!this.channel || this.channel.readyState !== "open") return false;
    this.channel.send(JSON.stringify({ type, ...fields }));
    return true;
  }

  async stop() {
    // Hang up first (the server frees the call at once), then close our side: closing first would
    // let the server drop the call on its own and answer our DELETE with 404.
    const location = this.location;
    if (location) {
      const headers = this.token ? { Authorization: `Bearer ${this.token}` } : {};
      try { await fetch(`${this.baseUrl}${location}`, { method: "DELETE", headers }); } catch { /* gone */ }
    }
    await this._teardown();
    this._setState("closed");
  }

  async _teardown() {
    if (this.channel) this.channel.close();
    if (this.pc) this.pc.close();
    if (this.localStream) for (const t of this.localStream.getTracks()) t.stop();
    this.channel = this.pc = null;
    this.location = null;
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
