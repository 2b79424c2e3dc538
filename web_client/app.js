// facecast web client: one session, its WebRTC video + audio, and the REST/WebSocket API.
// Plain ES2020 modules, no build step and no external resources, so it works offline.
import { api, authHeaders, formWith, websocketUrl, withToken } from "./api.js";
import { applyControls, bindControls } from "./controls.js";

const $ = (id) => document.getElementById(id);
const DASH = "\u2013";

const state = {
  session: null, // session info from POST /api/sessions
  pc: null,
  ws: null,
  micSender: null, // RTCRtpSender of the sendrecv audio transceiver: the mic goes there
  micTrack: null,
  portraitId: null,
  active: false, // between Connect and Disconnect, including while connecting
  generation: 0, // bumps on every connect/disconnect so a stale async step can tell
  connectStartedAt: 0,
  lastInbound: null, // previous inbound-rtp video sample, for the fps delta
  playing: new Set(), // utterance ids between playback_started and playback_finished
  statsTimer: null,
};
window.facecast = state; // for the browser console and the browser test

// ---- messages: errors must be visible on the page, not only in the console ------------

function showMessage(text, kind = "error") {
  $("error-text").textContent = text;
  $("error").dataset.kind = kind;
  $("error").hidden = false;
}

function hideMessage() {
  $("error").hidden = true;
}

// Wraps a UI handler so any failure lands in the message area.
function guarded(fn) {
  return (...args) => Promise.resolve().then(() => fn(...args)).catch((err) => showMessage(err.message || String(err)));
}

function logEvent(text) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  $("events").prepend(item);
  while ($("events").children.length > 30) $("events").lastChild.remove();
}

// ---- connection -------------------------------------------------------------------

function setConnState(text, kind = text) {
  $("conn-state").textContent = text;
  $("conn-state").dataset.state = kind;
}

function setOverlay(text) {
  $("video-overlay").textContent = text || "";
  $("video-overlay").hidden = !text;
}

// Non-trickle: the server wants every candidate inside the offer. On localhost host
// candidates gather in milliseconds; the timeout only guards odd network setups.
function waitForIceGathering(pc, timeoutMs = 3000) {
  return new Promise((resolve) => {
    const check = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, timeoutMs);
    check();
  });
}

function createPeer() {
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addTransceiver("video", { direction: "recvonly" });
  // sendrecv with no track yet: the mic is attached later with replaceTrack, no renegotiation.
  state.micSender = pc.addTransceiver("audio", { direction: "sendrecv" }).sender;
  const stream = new MediaStream();
  pc.addEventListener("track", (event) => {
    stream.addTrack(event.track);
    if ($("video").srcObject !== stream) $("video").srcObject = stream;
    playVideo();
  });
  pc.addEventListener("connectionstatechange", () => {
    if (pc !== state.pc) return;
    setConnState(pc.connectionState);
    if (pc.connectionState === "failed") showMessage("the WebRTC connection failed; press Connect to retry");
  });
  return pc;
}

async function playVideo() {
  const video = $("video");
  try {
    await video.play();
  } catch (err) {
    // Autoplay with sound needs a user gesture in most browsers: play muted, offer sound.
    if (err.name !== "NotAllowedError") return;
    video.muted = true;
    $("unmute").hidden = false;
    await video.play().catch(() => {});
  }
}

async function connect(startedAt) {
  const generation = ++state.generation;
  Object.assign(state, { active: true, connectStartedAt: startedAt, lastInbound: null });
  hideMessage();
  resetStats();
  setConnState("connecting");
  setOverlay("Connecting\u2026");
  $("connect").textContent = "Disconnect";
  const pc = (state.pc = createPeer());
  watchFirstFrame(generation);
  // The offer does not depend on the session: gather ICE while the server creates it.
  const offerReady = pc.setLocalDescription().then(() => waitForIceGathering(pc));
  const session = await api("POST", "/api/sessions", state.portraitId ? { portrait_id: state.portraitId } : {});
  if (generation !== state.generation) return api("DELETE", `/api/sessions/${session.id}`).catch(() => {});
  state.session = session;
  showSession(session);
  openEvents(session.id, generation);
  await offerReady;
  const offer = { sdp: pc.localDescription.sdp, type: "offer" };
  const answer = await api("POST", `/api/sessions/${session.id}/offer`, offer);
  if (generation !== state.generation) return;
  await pc.setRemoteDescription({ sdp: answer.sdp, type: "answer" });
  clearInterval(state.statsTimer);
  state.statsTimer = setInterval(guarded(pollStats), 1000);
}

async function disconnect() {
  state.generation++;
  const session = state.session;
  stopMic();
  if (state.ws) state.ws.close();
  if (state.pc) state.pc.close();
  clearInterval(state.statsTimer);
  Object.assign(state, { active: false, session: null, pc: null, ws: null, micSender: null });
  state.playing.clear();
  pendingControls = {}; // they were meant for the session that just ended
  setSpeaking(false);
  $("video").srcObject = null;
  setOverlay("Disconnected");
  $("connect").textContent = "Connect";
  $("session-id").textContent = "no session";
  setConnState("disconnected", "closed");
  if (session) await api("DELETE", `/api/sessions/${session.id}`).catch(() => {}); // may be gone already
}

async function connectOrCleanUp(startedAt) {
  try {
    await connect(startedAt);
  } catch (err) {
    await disconnect(); // leave no half-made session or peer behind
    throw err;
  }
}

function toggleConnection() {
  return state.active ? disconnect() : connectOrCleanUp(performance.now());
}

function showSession(session) {
  $("session-id").textContent = session.id;
  state.portraitId = session.portrait_id;
  markSelectedPortrait();
  if (session.controls) applyControls(session.controls);
}

// ---- session events (WebSocket) -----------------------------------------------------

function openEvents(sessionId, generation) {
  const ws = new WebSocket(websocketUrl(`/api/sessions/${sessionId}/events`));
  state.ws = ws;
  ws.addEventListener("message", (event) => onEvent(JSON.parse(event.data)));
  ws.addEventListener("close", (event) => {
    if (generation !== state.generation) return; // we closed it ourselves
    // 1008: the server refused it (unknown session, wrong token); retrying cannot help.
    if (event.code === 1008) return showMessage(`session events refused: ${event.reason || "policy"}`);
    // A dropped event socket must not end the session: the video is still flowing.
    logEvent(`events closed (${event.code} ${event.reason}); reconnecting`);
    setTimeout(() => generation === state.generation && openEvents(sessionId, generation), 1000);
  });
}

function onEvent(msg) {
  if (msg.type === "stats") return showServerStats(msg);
  if (msg.type === "error") return showMessage(`server: ${msg.message}`);
  if (msg.type === "closed") {
    showMessage("the server ended this session; press Connect for a new one", "info");
    return disconnect();
  }
  if (msg.type === "playback_started") {
    state.playing.add(msg.utterance_id);
    logEvent(`playback_started ${msg.source || ""} ${msg.utterance_id}`);
  } else if (msg.type === "playback_finished") {
    state.playing.delete(msg.utterance_id);
    logEvent(`playback_finished ${msg.position_s}s${msg.interrupted ? " (interrupted)" : ""}`);
  }
  setSpeaking(state.playing.size > 0);
}

function setSpeaking(speaking) {
  $("speaking").hidden = !speaking;
  document.body.dataset.speaking = String(speaking);
}

// ---- portraits ----------------------------------------------------------------------

async function loadPortraits() {
  const portraits = await api("GET", "/api/portraits");
  $("portraits").replaceChildren(...portraits.map(portraitThumb));
  markSelectedPortrait();
}

function portraitThumb(portrait) {
  const button = document.createElement("button");
  button.className = "thumb";
  button.dataset.portraitId = portrait.id;
  button.title = [portrait.name, ...(portrait.notes || [])].join("\n");
  const img = document.createElement("img");
  img.alt = portrait.name;
  img.src = withToken(`/api/portraits/${encodeURIComponent(portrait.id)}/image`); // <img> sends no headers
  const label = document.createElement("span");
  label.textContent = portrait.name;
  button.append(img, label);
  button.addEventListener("click", guarded(() => choosePortrait(portrait.id)));
  return button;
}

function markSelectedPortrait() {
  for (const thumb of $("portraits").children) {
    thumb.classList.toggle("selected", thumb.dataset.portraitId === state.portraitId);
  }
}

async function choosePortrait(portraitId) {
  state.portraitId = portraitId; // also what the next Connect asks for
  markSelectedPortrait();
  if (!state.session) return;
  const info = await api("PUT", `/api/sessions/${state.session.id}/portrait`, { portrait_id: portraitId });
  state.portraitId = info.portrait_id;
  markSelectedPortrait();
}

async function uploadPortrait(file) {
  const portrait = await api("POST", "/api/portraits", formWith(file));
  if (portrait.notes && portrait.notes.length) showMessage(`${portrait.name}: ${portrait.notes.join("; ")}`, "info");
  await loadPortraits();
  await choosePortrait(portrait.id);
}

// ---- speech in ----------------------------------------------------------------------

function requireSession() {
  if (!state.session) throw new Error("not connected: press Connect first");
  return state.session.id;
}

async function speak() {
  const text = $("speak-text").value.trim();
  if (!text) throw new Error("type some text to speak first");
  const id = requireSession();
  $("speak-button").disabled = true; // TTS takes a moment; avoid double submissions
  try {
    const result = await api("POST", `/api/sessions/${id}/speak`, { text });
    logEvent(`queued speech ${result.duration_s}s`);
  } finally {
    $("speak-button").disabled = false;
  }
}

async function uploadAudio(file) {
  const result = await api("POST", `/api/sessions/${requireSession()}/audio`, formWith(file));
  logEvent(`queued ${file.name} ${result.duration_s}s`);
}

async function toggleMic() {
  if (state.micTrack) return stopMic();
  requireSession();
  if (!navigator.mediaDevices) throw new Error("the microphone needs https (or localhost)");
  // Echo cancellation keeps the face's own voice from looping back into its lips.
  const constraints = { audio: { echoCancellation: true, noiseSuppression: true } };
  const track = (await navigator.mediaDevices.getUserMedia(constraints)).getAudioTracks()[0];
  if (!state.micSender) return track.stop(); // disconnected while the permission prompt was up
  state.micTrack = track;
  await state.micSender.replaceTrack(track);
  setMicButton(true);
}

function stopMic() {
  if (state.micSender) state.micSender.replaceTrack(null).catch(() => {});
  if (state.micTrack) state.micTrack.stop();
  state.micTrack = null;
  setMicButton(false);
}

function setMicButton(on) {
  $("mic").setAttribute("aria-pressed", String(on));
  $("mic").textContent = on ? "Microphone on" : "Microphone off";
}

// ---- controls: coalesced, since sliders fire many input events --------------------------

let pendingControls = {};
let controlsTimer = null;
let controlsInFlight = false;

// At most ~20 requests/s and one at a time: two requests in flight could arrive out of
// order and the older value would win. Later values of a control replace earlier ones.
function sendControls(partial) {
  if (!state.session) return;
  Object.assign(pendingControls, partial);
  if (!controlsTimer && !controlsInFlight) controlsTimer = setTimeout(guarded(flushControls), 50);
}

async function flushControls() {
  const body = pendingControls;
  pendingControls = {};
  controlsTimer = null;
  if (!state.session || !Object.keys(body).length) return;
  controlsInFlight = true;
  try {
    await api("POST", `/api/sessions/${state.session.id}/controls`, body);
  } finally {
    controlsInFlight = false;
    if (Object.keys(pendingControls).length) sendControls({});
  }
}

// ---- stats --------------------------------------------------------------------------

function watchFirstFrame(generation) {
  const video = $("video");
  const shown = () => {
    if (generation !== state.generation) return;
    setOverlay(null);
    const since = state.connectStartedAt === 0 ? "page load" : "pressing Connect";
    $("stats-first-frame").textContent = `${Math.round(performance.now() - state.connectStartedAt)} ms`;
    $("stats-first-frame").title = `from ${since} to the first decoded frame on screen`;
  };
  // requestVideoFrameCallback fires when a decoded frame is composited: the honest moment.
  if ("requestVideoFrameCallback" in video) video.requestVideoFrameCallback(shown);
  else video.addEventListener("loadeddata", shown, { once: true });
}

async function pollStats() {
  if (!state.pc) return;
  const report = await state.pc.getStats();
  let inbound = null;
  report.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") inbound = s; });
  if (!inbound) return;
  const frames = inbound.framesDecoded || 0;
  const last = state.lastInbound;
  // framesDecoded per second over our own interval; framesPerSecond is not always there.
  let fps = inbound.framesPerSecond;
  if (last && inbound.timestamp > last.timestamp) fps = ((frames - last.frames) * 1000) / (inbound.timestamp - last.timestamp);
  state.lastInbound = { frames, timestamp: inbound.timestamp };
  $("stats-frames").textContent = String(frames);
  if (fps !== undefined) $("stats-fps").textContent = fps.toFixed(1);
}

function resetStats() {
  for (const id of ["stats-fps", "stats-first-frame", "stats-latency", "stats-frame-time", "stats-server"]) {
    $(id).textContent = DASH;
  }
  $("stats-frames").textContent = "0";
}

function ms(value) {
  return value === null || value === undefined ? DASH : `${Number(value).toFixed(1)} ms`;
}

function showServerStats(msg) {
  $("stats-latency").textContent = ms(msg.audio_to_frame_ms_p50);
  $("stats-frame-time").textContent = ms(msg.frame_time_ms_p50);
  $("stats-server").textContent = `${Number(msg.fps).toFixed(1)} / ${msg.dropped_frames}`;
}

// ---- boot ---------------------------------------------------------------------------

function onFileChosen(id, handler) {
  $(id).addEventListener("change", guarded(async () => {
    const file = $(id).files[0];
    $(id).value = ""; // picking the same file again must fire change again
    if (file) await handler(file);
  }));
}

async function interrupt() {
  const result = await api("POST", `/api/sessions/${requireSession()}/interrupt`);
  logEvent(`interrupt: ${result.interrupted} utterance(s) dropped`);
}

function bindUi() {
  $("error-close").addEventListener("click", hideMessage);
  $("connect").addEventListener("click", guarded(toggleConnection));
  $("speak-button").addEventListener("click", guarded(speak));
  $("speak-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) guarded(speak)();
  });
  $("interrupt").addEventListener("click", guarded(interrupt));
  $("mic").addEventListener("click", guarded(toggleMic));
  $("unmute").addEventListener("click", () => { $("video").muted = false; $("unmute").hidden = true; });
  onFileChosen("portrait-file", uploadPortrait);
  onFileChosen("audio-file", uploadAudio);
  bindControls(sendControls);
  // Free the server's session when the tab goes away; a keepalive request outlives the page.
  window.addEventListener("pagehide", () => {
    if (!state.session) return;
    fetch(`/api/sessions/${state.session.id}`, { method: "DELETE", headers: authHeaders(), keepalive: true });
  });
}

async function boot() {
  bindUi();
  guarded(loadPortraits)();
  // Connect at once; the first frame is timed from page load (performance time 0).
  await guarded(connectOrCleanUp)(0);
}

boot();
