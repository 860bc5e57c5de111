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
  switch (m.type) {
    case 'viewer_ready':
      setStatus(`Viewing meeting ${m.meetingId}: ${m.participants.length} speaking now, ${m.replay} earlier captions.`);
      state.ready = true;
      clearAlert();
      break;
    case 'participant':
      break;
    case 'ready':
      state.ready = true;
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
    if (!state.ready && !state.refused) {
      showAlert(`Cannot reach the captioning server at ${location.host} (connection closed, code ${e.code}). Is it running?`);
      setStatus('Not connected.');
    }
    teardown();
  };
  state.ws = ws;
  return ws;
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

  const q = new URLSearchParams({ sampleRate: '16000', channels: '1', encoding: 's16le' });
  const meetingId = $('meeting-id').value.trim();
  const speaker = $('speaker-name').value.trim();
  if (meetingId) q.set('meetingId', meetingId);
  if (speaker) q.set('speaker', speaker);
  if (token) q.set('token', token);
  setStatus('Connecting to the captioning server…');
  const ws = openSocket(`${wsBase}/v1/listen?${q}`);
  state.node.port.onmessage = (e) => {
    if (e.data === 'flushed') {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'stop' }));
      return;
    }
    if (!(e.data instanceof ArrayBuffer)) return;
    // Frames under 10 ms (only the final flush can be) are padded to 10 ms.
    let buf = e.data;
    if (buf.byteLength < 320) {
      const padded = new Uint8Array(320);
      padded.set(new Uint8Array(buf));
      buf = padded.buffer;
    }
    if (ws.readyState === WebSocket.OPEN && state.ready && !state.stopping) {
      // A browser socket that cannot keep up drops nothing: it queues (bufferedAmount).
      ws.send(buf);
      state.sentSamples += buf.byteLength / 2;
      $('sent').textContent = `${(state.sentSamples / 16000).toFixed(1)} s`;
    }
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
