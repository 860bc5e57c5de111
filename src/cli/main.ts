#!/usr/bin/env node
/**
 * captiongate command line.
 *
 *   captiongate serve [--workers N]         start the gateway (same as npm start)
 *   captiongate transcribe FILE.wav         engine demo: stream a file through the addon
 */
import { parseArgs } from 'node:util';

const USAGE = `Usage:
  captiongate serve [--workers N]
  captiongate transcribe FILE.wav [--realtime] [--json] [--window-ms 100]
  captiongate stream FILE.wav|- [--url ws://localhost:8080/v1/listen[,ws://node-b:8080/v1/listen…]] [--fast] [--json]
                     [--vtt OUT.vtt] [--srt OUT.srt] [--rate 16000 --channels 1 --encoding s16le]
                     [--speaker NAME] [--meeting ID] [--token JWT] [--msgpack] [--frame-ms 100]

  serve:  --workers N runs N gateway processes on one port (server.workers; N > 1 needs redis.url).
  stream: WAV files carry their format; raw PCM on stdin ("-") uses --rate/--channels/--encoding.
          Real-time pacing by default; --fast sends as fast as the server accepts.
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'transcribe': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          realtime: { type: 'boolean', default: false },
          json: { type: 'boolean', default: false },
          'window-ms': { type: 'string', default: '100' },
        },
      });
      const file = positionals[0];
      if (!file) {
        process.stderr.write(USAGE);
        return 2;
      }
      const { runTranscribe } = await import('./transcribe.js');
      await runTranscribe({
        file,
        realtime: values.realtime === true,
        json: values.json === true,
        windowMs: Number(values['window-ms']),
      });
      return 0;
    }
    case 'stream': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          url: { type: 'string', default: process.env.CAPTIONGATE_URL ?? 'ws://localhost:8080/v1/listen' },
          rate: { type: 'string' },
          channels: { type: 'string' },
          encoding: { type: 'string' },
          fast: { type: 'boolean', default: false },
          json: { type: 'boolean', default: false },
          vtt: { type: 'string' },
          srt: { type: 'string' },
          speaker: { type: 'string' },
          meeting: { type: 'string' },
          token: { type: 'string', default: process.env.CAPTIONGATE_TOKEN },
          msgpack: { type: 'boolean', default: false },
          'frame-ms': { type: 'string', default: '100' },
        },
      });
      const input = positionals[0];
      if (!input) {
        process.stderr.write(USAGE);
        return 2;
      }
      const enc = values.encoding;
      if (enc !== undefined && enc !== 's16le' && enc !== 'f32le') {
        process.stderr.write('--encoding must be s16le or f32le\n');
        return 2;
      }
      const { runStream } = await import('./stream.js');
      return runStream({
        input,
        url: values.url!,
        rate: values.rate ? Number(values.rate) : undefined,
        channels: values.channels ? Number(values.channels) : undefined,
        encoding: enc,
        fast: values.fast === true,
        json: values.json === true,
        vtt: values.vtt,
        srt: values.srt,
        speaker: values.speaker,
        meeting: values.meeting,
        token: values.token,
        msgpack: values.msgpack === true,
        frameMs: Number(values['frame-ms']),
      });
    }
    case 'serve': {
      const { values } = parseArgs({ args: rest, options: { workers: { type: 'string' } } });
      if (values.workers !== undefined) {
        if (!/^\d+$/.test(values.workers)) {
          process.stderr.write(`--workers must be a whole number (got ${values.workers})\n`);
          return 2;
        }
        // Through the environment, so config validation sees it and the forked workers inherit it.
        process.env.CAPTIONGATE_SERVER_WORKERS = values.workers;
      }
      const { runServer } = await import('../main.js');
      await runServer();
      return 0;
    }
    case undefined:
    case '-h':
    case '--help':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`unknown command: ${cmd}\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`captiongate: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
