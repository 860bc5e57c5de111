// captiongate web demo: microphone -> AudioWorklet (16 kHz mono Int16, 100 ms
// frames) -> WebSocket -> live captions. No build step; plain ES modules.
import { buildCues, toWebVTT } from '/lib/cues.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const viewMeeting = params.get('view');
const token = params.get('token');
const wsBase = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`;

const END_REASONS = {
  client_stop: 'stopped',
  max_duration: 'the maximum session length was reached',
  idle_timeout: 'no audio arrived for too long',
  server_shutdown: 'the server is restarting',
  engine_overload: 'the server fell too far behind',
  engine_error: 'the recognizer failed',
  protocol_violation: 'too many protocol errors',
  slow_reader: 'this page stopped reading captions',
};
const RETRYABLE = new Set(['CAP_ERR_CAPACITY', 'CAP_ERR_TOO_MANY_SESSIONS', 'CAP_ERR_RATE_LIMITED', 'CAP_ERR_SERVER_SHUTDOWN']);
/** Audio kept to send again after a resume (what the server had not received). */
const KEEP_SAMPLES = 30 * 16000;
/** A viewer keeps trying this long; a speaker as long as the server parks its session. */
const VIEWER_RECONNECT_MS = 60_000;

const state = {
  ws: null,
  ctx: null,
  stream: null,
  node: null,
  ready: false,
  stopping: false,
  refused: null,
  sentSamples: 0,
  finals: [],
  retryTimer: null,
  partials: new Map(), // viewer mode: speaker -> text
  // Resume after a dropped connection (docs/protocol.md).
  resumeToken: null,
  graceMs: 0,
  lastSeq: 0,
  reconnecting: null, // { since, delayMs, timer } while the connection is down
  kept: [], // { pos, buf }: the last KEEP_SAMPLES of audio sent, by sample position
  flushed: false, // the worklet's last frame is out: `stop` goes next
  ended: false,
};

function setStatus(text) {
  $('status').textContent = text;
}
function showAlert(text, kind = 'error') {
  const el = $('alert');
  el.textContent = text;
  el.className = kind === 'warn' ? 'warn' : '';
  el.hidden = false;
}
function clearAlert() {
  $('alert').hidden = true;
  $('alert').textContent = '';
}
function setRunning(running) {
  $('start').disabled = running;
  $('stop').disabled = !running;
  $('processing').disabled = running;
  $('meeting-id').disabled = running;
  $('speaker-name').disabled = running;
}

// ------------------------------------------------------------------ captions

function appendFinal(m) {
  if (!m.text) return;
  state.finals.push(m);
  const p = document.createElement('p');
  if (m.speaker && (viewMeeting || $('meeting-id').value)) {
    const s = document.createElement('span');
    s.className = 'speaker';
    s.textContent = `${m.speaker}:`;
    p.append(s);
  }
  p.append(document.createTextNode(m.text));
  const box = $('captions');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.append(p);
  if (atBottom) box.scrollTop = box.scrollHeight;
  $('download-vtt').disabled = false;
  $('download-txt').disabled = false;
}

function showPartial(m) {
  if (viewMeeting) {
    if (m.text) state.partials.set(m.speaker ?? '', m.text);
    else state.partials.delete(m.speaker ?? '');
    $('partial').textContent = [...state.partials].map(([s, t]) => (s ? `${s}: ${t}` : t)).join('  ·  ');
  } else {
    $('partial').textContent = m.text;
  }
}

function updateLatency(m) {
  if (viewMeeting || !state.sentSamples) return;
  // How far the caption trails the audio already sent.
  const behind = state.sentSamples / 16000 - m.end;
  $('latency').textContent = `${Math.max(0, behind).toFixed(2)} s behind live`;
}

function handle(m) {
  if (typeof m.seq === 'number') {
    // A session's replay after a resume never repeats what was seen; this
    // guards against one that would. (A viewer's replay is sorted by start:
    // its seqs are not in order, and it is never repeated.)
    if (!viewMeeting && m.type !== 'ready' && m.seq <= state.lastSeq) return;
    state.lastSeq = Math.max(state.lastSeq, m.seq);
  }
  switch (m.type) {
    case 'resumed':
      resumed(m);
      break;
    case 'viewer_ready':
      setStatus(`Viewing meeting ${m.meetingId}: ${m.participants.length} speaking now, ${m.replay} earlier captions.`);
      state.ready = true;
      clearAlert();
      break;
    case 'participant':
      break;
    case 'ready':
      state.ready = true;
      state.resumeToken = m.resumeToken ?? null;
      state.graceMs = (m.limits?.resumeGraceSeconds ?? 0) * 1000;
      $('session-id').textContent = m.sessionId;
      // Which recognizer is captioning: name, and model where it has several.
      $('engine').textContent = m.engine ? [m.engine.name, m.engine.model].filter(Boolean).join(' ') : '–';
      setStatus(viewMeeting ? `Connected to meeting ${viewMeeting}. Waiting for captions…` : 'Connected. Captioning: speak now.');
      clearAlert();
      break;
    case 'partial':
      showPartial(m);
      updateLatency(m);
      break;
    case 'final':
      if (viewMeeting) state.partials.delete(m.speaker ?? '');
      $('partial').textContent = viewMeeting ? [...state.partials].map(([s, t]) => `${s}: ${t}`).join('  ·  ') : '';
      appendFinal(m);
      updateLatency(m);
      break;
    case 'warning':
      if (m.code === 'lagging') showAlert(`Captions are running ${m.lagSeconds.toFixed(1)} s behind the audio.`, 'warn');
      break;
    case 'error':
      if (m.fatal) {
        state.refused = m;
        if (RETRYABLE.has(m.code)) scheduleRetry(m);
        else showAlert(`Refused: ${m.message}`);
      } else {
        console.warn('captiongate error', m);
      }
      break;
    case 'end':
      setStatus(`Session ended: ${END_REASONS[m.reason] ?? m.reason}. ${m.audio.decodedSeconds.toFixed(1)} s of audio captioned${m.audio.droppedSeconds > 0 ? `, ${m.audio.droppedSeconds.toFixed(1)} s not captioned` : ''}.`);
      document.body.dataset.ended = m.reason;
      state.ended = true;
      break;
  }
}

function scheduleRetry(m) {
  let left = Math.ceil((m.retryAfterMs ?? 3000) / 1000);
  const tick = () => {
    showAlert(`The server is at capacity (${m.code}). Retrying in ${left} s…`, 'warn');
    if (left-- <= 0) {
      state.retryTimer = null;
      start();
      return;
    }
    state.retryTimer = setTimeout(tick, 1000);
  };
  teardown();
  tick();
}

// ------------------------------------------------------------------ connection

function openSocket(url) {
  state.ready = false;
  state.refused = null;
  const ws = new WebSocket(url, ['captiongate.v1.json']);
  ws.binaryType = 'arraybuffer';
  ws.onmessage = (e) => {
    if (typeof e.data === 'string') handle(JSON.parse(e.data));
  };
  ws.onclose = (e) => {
    if (state.ws !== ws) return;
    state.ws = null;
    // 1006: the network dropped (no close frame). The session is parked on
    // the server: come back to it. (A refused resume also looks like 1006
    // to a page, so retries stop when the grace period is over.)
    // 4014: the server's node is draining; the load balancer sends the
    // resume (or the viewer's ?lastSeq=) to another node.
    if ((e.code === 1006 || e.code === 4014) && !state.ended && (state.reconnecting || (state.ready && (viewMeeting || state.resumeToken)))) {
      reconnect();
      return;
    }
    if (state.reconnecting) {
      gaveUp();
      return;
    }
    if (!state.ready && !state.refused) {
      showAlert(`Cannot reach the captioning server at ${location.host} (connection closed, code ${e.code}). Is it running?`);
      setStatus('Not connected.');
    }
    teardown();
  };
  state.ws = ws;
  return ws;
}

// ------------------------------------------------------------------ resume

function reconnect() {
  const r = state.reconnecting ?? { since: Date.now(), delayMs: 250, timer: null, attempt: 0 };
  state.reconnecting = r;
  state.ready = false;
  document.body.dataset.reconnecting = 'true';
  const limit = viewMeeting ? VIEWER_RECONNECT_MS : state.graceMs;
  if (Date.now() - r.since + r.delayMs > limit) {
    gaveUp();
    return;
  }
  r.attempt++;
  setStatus('Reconnecting…');
  showAlert(`The connection dropped. Reconnecting (attempt ${r.attempt})… Captions will carry on here.`, 'warn');
  r.timer = setTimeout(() => {
    r.timer = null;
    const q = new URLSearchParams({ lastSeq: String(state.lastSeq) });
    if (token) q.set('token', token);
    if (viewMeeting) openSocket(`${wsBase}/v1/meetings/${encodeURIComponent(viewMeeting)}/captions?${q}`);
    else {
      q.set('resume', state.resumeToken);
      openSocket(`${wsBase}/v1/listen?${q}`);
    }
  }, r.delayMs);
  r.delayMs = Math.min(4000, r.delayMs * 2);
}

function reconnected() {
  if (!state.reconnecting) return;
  clearTimeout(state.reconnecting.timer);
  state.reconnecting = null;
  delete document.body.dataset.reconnecting;
  clearAlert();
}

/** The session is back: send again what the server did not receive, then go on. */
function resumed(m) {
  reconnected();
  state.ready = true;
  setStatus(`Reconnected after ${m.gapSeconds.toFixed(1)} s: captioning goes on.`);
  const from = m.receivedFrames;
  const oldest = state.kept.length ? state.kept[0].pos : state.sentSamples;
  if (from < oldest) showAlert(`${((oldest - from) / 16000).toFixed(1)} s of audio from before the drop could not be sent again.`, 'warn');
  for (const k of state.kept) {
    const n = k.buf.byteLength / 2;
    if (k.pos + n <= from) continue;
    const skip = Math.max(0, from - k.pos);
    state.ws.send(pad(k.buf.slice(skip * 2)));
  }
  if (state.flushed) state.ws.send(JSON.stringify({ type: 'stop' }));
}

function gaveUp() {
  reconnected();
  showAlert('The connection was lost and the session could not be resumed. Press Start for a new one; the captions so far stay here.');
  setStatus('Not connected.');
  teardown();
}

/** Frames under 10 ms (only the final flush can be) are padded to 10 ms. */
function pad(buf) {
  if (buf.byteLength >= 320) return buf;
  const padded = new Uint8Array(320);
  padded.set(new Uint8Array(buf));
  return padded.buffer;
}

/** Keeps the frame for a resume, and sends it unless the connection is down (then the resume sends it). */
function sendAudio(buf) {
  state.kept.push({ pos: state.sentSamples, buf });
  state.sentSamples += buf.byteLength / 2;
  while (state.kept.length && state.sentSamples - state.kept[0].pos > KEEP_SAMPLES) state.kept.shift();
  $('sent').textContent = `${(state.sentSamples / 16000).toFixed(1)} s`;
  // A browser socket that cannot keep up drops nothing: it queues (bufferedAmount).
  if (state.ws?.readyState === WebSocket.OPEN && state.ready) state.ws.send(buf);
}

async function start() {
  clearAlert();
  document.body.dataset.ended = '';
  setStatus('Requesting the microphone…');
  setRunning(true);
  const processing = $('processing').checked;
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing, channelCount: 1 },
    });
  } catch (err) {
    setRunning(false);
    if (err && (err.name === 'NotAllowedError' || err.name === 'SecurityError')) {
      showAlert('Microphone access was denied. Allow the microphone for this site in the browser settings, then press Start again.');
    } else if (err && err.name === 'NotFoundError') {
      showAlert('No microphone was found. Connect one and press Start again.');
    } else {
      showAlert(`The microphone could not be opened: ${err && err.message ? err.message : err}`);
    }
    setStatus('Not captioning.');
    return;
  }
  try {
    state.ctx = new AudioContext();
    await state.ctx.audioWorklet.addModule('capture-worklet.js');
  } catch (err) {
    showAlert(`This browser cannot process audio here (${err.message}). Use a current Chrome, Edge or Firefox over https or localhost.`);
    teardown();
    return;
  }
  const source = state.ctx.createMediaStreamSource(state.stream);
  state.node = new AudioWorkletNode(state.ctx, 'capture-processor');
  const mute = state.ctx.createGain();
  mute.gain.value = 0;
  source.connect(state.node).connect(mute).connect(state.ctx.destination);
  state.sentSamples = 0;
  state.kept = [];
  state.lastSeq = 0;
  state.flushed = false;
  state.ended = false;
  state.resumeToken = null;

  const q = new URLSearchParams({ sampleRate: '16000', channels: '1', encoding: 's16le' });
  const meetingId = $('meeting-id').value.trim();
  const speaker = $('speaker-name').value.trim();
  if (meetingId) q.set('meetingId', meetingId);
  if (speaker) q.set('speaker', speaker);
  if (token) q.set('token', token);
  setStatus('Connecting to the captioning server…');
  openSocket(`${wsBase}/v1/listen?${q}`);
  state.node.port.onmessage = (e) => {
    if (e.data === 'flushed') {
      // While reconnecting, the resume sends `stop` after the audio.
      state.flushed = true;
      if (state.ws?.readyState === WebSocket.OPEN && state.ready) state.ws.send(JSON.stringify({ type: 'stop' }));
      return;
    }
    if (!(e.data instanceof ArrayBuffer) || state.flushed) return;
    sendAudio(pad(e.data));
  };
}

function stop() {
  if (!state.node) return;
  setStatus('Finishing: waiting for the last captions…');
  $('stop').disabled = true;
  state.node.port.postMessage('flush');
  for (const t of state.stream?.getTracks() ?? []) t.stop();
  state.stopping = true;
}

function teardown() {
  if (state.reconnecting) {
    clearTimeout(state.reconnecting.timer);
    state.reconnecting = null;
    delete document.body.dataset.reconnecting;
  }
  for (const t of state.stream?.getTracks() ?? []) t.stop();
  state.stream = null;
  state.node?.disconnect();
  state.node = null;
  state.ctx?.close().catch(() => {});
  state.ctx = null;
  state.stopping = false;
  setRunning(false);
}

// ------------------------------------------------------------------ viewer

function startViewer() {
  document.body.classList.add('viewer');
  $('mode-label').textContent = `viewing meeting ${viewMeeting}`;
  $('speaker-controls').hidden = true;
  $('options').hidden = true;
  $('meeting-options').hidden = true;
  setStatus('Connecting…');
  const q = token ? `?token=${encodeURIComponent(token)}` : '';
  openSocket(`${wsBase}/v1/meetings/${encodeURIComponent(viewMeeting)}/captions${q}`);
}

// ------------------------------------------------------------------ downloads

function download(name, type, text) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

$('download-vtt').addEventListener('click', () => download('captions.vtt', 'text/vtt', toWebVTT(buildCues(state.finals))));
$('download-txt').addEventListener('click', () =>
  download('transcript.txt', 'text/plain', state.finals.map((f) => (f.speaker ? `${f.speaker}: ${f.text}` : f.text)).join('\n') + '\n'),
);
$('clear').addEventListener('click', () => {
  state.finals = [];
  $('captions').replaceChildren();
  $('partial').textContent = '';
  $('download-vtt').disabled = true;
  $('download-txt').disabled = true;
});
$('start').addEventListener('click', () => start());
$('stop').addEventListener('click', () => stop());

// Theme: follows the system until the user picks one.
const themeButton = $('theme');
function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  const dark = theme ? theme === 'dark' : matchMedia('(prefers-color-scheme: dark)').matches;
  themeButton.textContent = dark ? 'Light theme' : 'Dark theme';
  themeButton.setAttribute('aria-pressed', String(dark));
}
themeButton.addEventListener('click', () => {
  const dark = themeButton.getAttribute('aria-pressed') === 'true';
  const next = dark ? 'light' : 'dark';
  localStorage.setItem('captiongate-theme', next);
  applyTheme(next);
});
applyTheme(localStorage.getItem('captiongate-theme'));

if (viewMeeting) startViewer();
