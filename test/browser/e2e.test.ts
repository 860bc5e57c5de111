/// <reference lib="dom" />
/**
 * Browser end to end: Debian chromium (headless) with a fake microphone
 * playing LibriVox speech, the real web demo, the real gateway.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { encodeWav, readWav, wavToInt16 } from '../../src/audio/wav.js';
import { cacheDir, librivoxClips } from '../../eval/corpus.js';
import { wer } from '../../eval/wer.js';
import { startGateway, streamPcm, type Harness } from '../helpers/gateway.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.resolve('test-artifacts');

/** All LibriVox clips with 1 s gaps, then 2 s of silence so the tail is zeros. */
function fakeMicrophone(): { file: string; pcm: Int16Array; text: string; seconds: number } {
  const clips = librivoxClips();
  const parts: Int16Array[] = [new Int16Array(8000)];
  for (const c of clips) parts.push(wavToInt16(readWav(c.file)), new Int16Array(16000));
  parts.push(new Int16Array(32000));
  const pcm = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    pcm.set(p, o);
    o += p.length;
  }
  const file = path.join(cacheDir(), 'e2e-librivox-padded.wav');
  writeFileSync(file, encodeWav(pcm, 16000));
  return { file, pcm, text: clips.map((c) => c.text).join(' '), seconds: pcm.length / 16000 };
}

describe('web demo in Chromium', () => {
  let h: Harness;
  let browser: Browser;
  const mic = fakeMicrophone();

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: run scripts/setup.sh --test (installs Debian's chromium)`);
    // The default engine (Moonshine tiny), as a newcomer gets it.
    h = await startGateway('uws', { engine: { kind: 'moonshine', threads: 2 } });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--use-fake-ui-for-media-stream',
        '--use-fake-device-for-media-stream',
        `--use-file-for-fake-audio-capture=${mic.file}%noloop`,
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--autoplay-policy=no-user-gesture-required',
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await h?.stop();
  });

  it('captions real speech from the microphone, live, within a few WER points of the gateway itself', async () => {
    const page = await browser.newPage();
    const consoleErrors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    await page.goto(`${h.http}/`);
    await page.getByTestId('start').click();
    // Partials show up while the fake microphone is still playing.
    await page.waitForFunction(() => (document.querySelector('[data-testid="partial"]')?.textContent ?? '').length > 0, null, {
      timeout: 15_000,
    });
    await page.waitForTimeout(mic.seconds * 1000);
    await page.getByTestId('stop').click();
    await page.waitForFunction(() => document.body.dataset.ended === 'client_stop', null, { timeout: 30_000 });
    const captions = (await page.getByTestId('captions').innerText()).replace(/\s+/g, ' ').trim();
    const latency = await page.getByTestId('latency').innerText();
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'web-demo-captions.png'), fullPage: true });

    // The gateway's own result on the same audio, sent directly.
    const direct = await streamPcm(`${h.base}/v1/listen`, mic.pcm);
    const browserWer = wer([[mic.text, captions]]);
    const gatewayWer = wer([[mic.text, direct.finals.map((f) => f.text).filter(Boolean).join(' ')]]);
    console.log(`browser WER ${browserWer.wer.toFixed(1)}% vs gateway ${gatewayWer.wer.toFixed(1)}%; latency readout "${latency}"`);
    expect(captions.split(' ').length).toBeGreaterThan(40);
    expect(browserWer.wer).toBeLessThanOrEqual(gatewayWer.wer + 8);
    expect(latency).toMatch(/s behind live/);
    // The page says which engine (and model) is captioning.
    const info = h.gw.engine.info;
    expect(await page.getByTestId('engine').innerText()).toBe([info.name, info.model].filter(Boolean).join(' '));
    expect(consoleErrors).toEqual([]);
    await page.close();
  });

  it('a dropped network shows "Reconnecting…", resumes the same session, and the captions carry on in the same list', async () => {
    // The page and its WebSocket go through a TCP proxy, which is cut mid-speech.
    const proxy = await startTcpProxy(Number(new URL(h.http).port));
    const page = await browser.newPage();
    try {
      await page.goto(`http://127.0.0.1:${proxy.port}/`);
      await page.getByTestId('start').click();
      await page.waitForFunction(() => (document.querySelector('[data-testid="captions"]')?.textContent ?? '').trim().length > 0, null, {
        timeout: 30_000,
      });
      const sessionId = await page.getByTestId('session-id').innerText();
      const before = (await page.getByTestId('captions').innerText()).trim();
      proxy.cut();
      await page.waitForFunction(() => document.body.dataset.reconnecting === 'true', null, { timeout: 15_000 });
      expect(await page.getByTestId('status').innerText()).toMatch(/Reconnecting/);
      await page.waitForFunction(() => document.body.dataset.reconnecting === undefined, null, { timeout: 30_000 });
      expect(await page.getByTestId('status').innerText()).toMatch(/Reconnected after/);
      await page.waitForTimeout(mic.seconds * 1000);
      await page.getByTestId('stop').click();
      await page.waitForFunction(() => document.body.dataset.ended === 'client_stop', null, { timeout: 30_000 });
      expect(await page.getByTestId('session-id').innerText()).toBe(sessionId);
      const captions = (await page.getByTestId('captions').innerText()).replace(/\s+/g, ' ').trim();
      // The same list: what was shown before the drop is still its beginning.
      expect(captions.startsWith(before.replace(/\s+/g, ' '))).toBe(true);
      const w = wer([[mic.text, captions]]);
      console.log(`browser after a resume: WER ${w.wer.toFixed(1)}%`);
      expect(captions.split(' ').length).toBeGreaterThan(40);
      expect(w.wer).toBeLessThan(25);
      expect(proxy.accepted).toBeGreaterThanOrEqual(2);
    } finally {
      await page.close();
      await proxy.close();
    }
  });

  it('says so plainly when the microphone is denied', async () => {
    const page = await browser.newPage();
    await page.addInitScript(() => {
      navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('denied', 'NotAllowedError'));
    });
    await page.goto(`${h.http}/`);
    await page.getByTestId('start').click();
    await page.waitForFunction(() => !document.querySelector('[data-testid="alert"]')?.hasAttribute('hidden'));
    expect(await page.getByTestId('alert').innerText()).toMatch(/Microphone access was denied/);
    expect(await page.getByTestId('start').isEnabled()).toBe(true);
    await page.close();
  });

  it('shows a capacity refusal with a retry countdown, then connects when a slot frees', async () => {
    const small = await startGateway('uws', { pool: { slabs: 1 }, engine: { decoders: 1, threads: 1 } });
    const page = await browser.newPage();
    try {
      const { connect } = await import('../../src/client/client.js');
      const hog = await connect(`${small.base}/v1/listen`, { sampleRate: 16000 });
      await page.goto(`${small.http}/`);
      await page.getByTestId('start').click();
      await page.waitForFunction(() => /at capacity/.test(document.querySelector('[data-testid="alert"]')?.textContent ?? ''), null, {
        timeout: 15_000,
      });
      expect(await page.getByTestId('alert').innerText()).toMatch(/CAP_ERR_CAPACITY.*Retrying in \d+ s/);
      await hog.stop();
      await page.waitForFunction(() => /Connected/.test(document.querySelector('[data-testid="status"]')?.textContent ?? ''), null, {
        timeout: 15_000,
      });
      await page.getByTestId('stop').click();
      await page.waitForFunction(() => document.body.dataset.ended === 'client_stop', null, { timeout: 15_000 });
    } finally {
      await page.close();
      await small.stop();
    }
  });

  it('shows a plain message when the server is unreachable, and keyboard operation works', async () => {
    const page = await browser.newPage();
    await page.goto(`${h.http}/`);
    // Make the WebSocket point at a closed port.
    await page.evaluate(() => {
      const Orig = window.WebSocket;
      // @ts-expect-error test shim
      window.WebSocket = function (url: string, protocols?: string[]) {
        return new Orig(url.replace(/:\d+\//, ':9/'), protocols);
      };
      Object.assign(window.WebSocket, Orig);
    });
    await page.keyboard.press('Tab'); // skip link
    await page.keyboard.press('Tab'); // theme
    await page.keyboard.press('Tab'); // start
    await expect.poll(() => page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('start');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => !document.querySelector('[data-testid="alert"]')?.hasAttribute('hidden'), null, { timeout: 15_000 });
    expect(await page.getByTestId('alert').innerText()).toMatch(/Cannot reach the captioning server/);
    await page.close();
  });
});
