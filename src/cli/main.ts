#!/usr/bin/env node
/**
 * captiongate command line.
 *
 *   captiongate serve                       start the gateway (same as npm start)
 *   captiongate transcribe FILE.wav         engine demo: stream a file through the addon
 */
import { parseArgs } from 'node:util';

const USAGE = `Usage:
  captiongate serve
  captiongate transcribe FILE.wav [--realtime] [--json] [--window-ms 100]
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
    case 'serve': {
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
