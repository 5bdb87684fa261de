// Connection quality from RTCPeerConnection.getStats(): round-trip time, jitter, packet loss, and a
// plain verdict. Pure functions plus a small sampler, so they can be tested without a network.
//
// The model answers every 200 ms micro-turn; what a person feels is the round trip plus the jitter
// buffer. Past ~300 ms round trip, ~50 ms jitter or ~5 % loss, replies arrive late or break up.

export const THRESHOLDS = {
  rttMs: { fair: 150, poor: 300 },
  jitterMs: { fair: 30, poor: 50 },
  lossPct: { fair: 1, poor: 5 },
};

const NAMES = { rttMs: "round-trip time", jitterMs: "jitter", lossPct: "packet loss" };

/** {level: "unknown"|"good"|"fair"|"poor", message, reasons: [...]} for one sample. */
export function assessQuality(sample, thresholds = THRESHOLDS) {
  const known = Object.keys(thresholds).filter((k) => Number.isFinite(sample && sample[k]));
  if (known.length === 0) return { level: "unknown", message: "Measuring the connection…", reasons: [] };
  const poor = known.filter((k) => sample[k] >= thresholds[k].poor);
  const fair = known.filter((k) => sample[k] >= thresholds[k].fair);
  if (poor.length) {
    const why = poor.map((k) => NAMES[k]).join(" and ");
    return {
      level: "poor",
      reasons: poor,
      message: `Your network is too poor for a realtime conversation (high ${why}): ` +
        "replies may arrive late or break up. A wired or stronger connection will help.",
    };
  }
  if (fair.length) {
    return { level: "fair", reasons: fair, message: "The connection is usable but not ideal." };
  }
  return { level: "good", reasons: [], message: "The connection is good for realtime." };
}

function selectedPair(report) {
  let pairId = null;
  report.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
  let pair = pairId ? report.get(pairId) : null;
  if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
  return pair;
}

/** The raw counters of one getStats() report that quality needs. */
export function readCounters(report) {
  const out = { rttS: null, jitterS: null, received: 0, lost: 0, remoteLossFraction: null, remoteJitterS: null };
  const pair = selectedPair(report);
  if (pair && Number.isFinite(pair.currentRoundTripTime)) out.rttS = pair.currentRoundTripTime;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out.jitterS = s.jitter ?? out.jitterS;
      out.received += s.packetsReceived || 0;
      out.lost += Math.max(0, s.packetsLost || 0);
    }
    if (s.type === "remote-inbound-rtp" && s.kind === "audio") {
      if (out.rttS === null && Number.isFinite(s.roundTripTime)) out.rttS = s.roundTripTime;
      if (Number.isFinite(s.fractionLost)) out.remoteLossFraction = s.fractionLost;
      if (Number.isFinite(s.jitter)) out.remoteJitterS = s.jitter;
    }
  });
  return out;
}

/** Feeds on successive reports; loss is measured over the last ~2 s, both directions. */
export class QualitySampler {
  constructor(windowMs = 2000) {
    this.windowMs = windowMs;
    this.history = [];  // [{t, received, lost}]
  }

  add(report, now = performance.now()) {
    const c = readCounters(report);
    this.history.push({ t: now, received: c.received, lost: c.lost });
    while (this.history.length > 2 && now - this.history[1].t >= this.windowMs) this.history.shift();
    const first = this.history[0];
    if (this.history.length < 2 || now - first.t < 900) return null;
    const received = c.received - first.received;
    const lost = c.lost - first.lost;
    let lossPct = received + lost > 0 ? (100 * lost) / (received + lost) : 0;
    if (c.remoteLossFraction !== null) lossPct = Math.max(lossPct, 100 * c.remoteLossFraction);
    const jitters = [c.jitterS, c.remoteJitterS].filter(Number.isFinite);
    return {
      rttMs: c.rttS === null ? null : Math.round(c.rttS * 1000),
      jitterMs: jitters.length ? Math.round(Math.max(...jitters) * 1000) : null,
      lossPct: Math.round(lossPct * 10) / 10,
    };
  }
}
