/**
 * Debian's nginx as a test's reverse proxy: one of the documented configs in
 * docs/deploy/, its ${...} placeholders filled in, run in the foreground from
 * a temporary prefix, stopped afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { waitForPort } from './net.js';

const NGINX = '/usr/sbin/nginx';

export interface Nginx {
  readonly prefix: string;
  stop(): Promise<void>;
}

/**
 * `config` is a file under docs/deploy/; `vars` fills its placeholders
 * (PREFIX is set here). Resolves once `listenPort` accepts connections.
 */
export async function startNginx(config: string, vars: Record<string, string | number>, listenPort: number): Promise<Nginx> {
  if (!existsSync(NGINX)) throw new Error(`${NGINX} not found: run scripts/setup.sh --test (installs nginx-light)`);
  const prefix = mkdtempSync(path.join(tmpdir(), 'cg-nginx-'));
  mkdirSync(path.join(prefix, 'client_body'));
  mkdirSync(path.join(prefix, 'proxy'));
  let conf = readFileSync(new URL(`../../docs/deploy/${config}`, import.meta.url), 'utf8').replaceAll('${PREFIX}', prefix);
  for (const [k, v] of Object.entries(vars)) conf = conf.replaceAll(`\${${k}}`, String(v));
  const unfilled = /\$\{[A-Z_]+\}/.exec(conf);
  if (unfilled) throw new Error(`docs/deploy/${config}: placeholder ${unfilled[0]} not given`);
  const confFile = path.join(prefix, 'nginx.conf');
  writeFileSync(confFile, `daemon off;\n${conf}`);
  const child: ChildProcess = spawn(NGINX, ['-e', path.join(prefix, 'startup.log'), '-p', prefix, '-c', confFile], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    await waitForPort(listenPort, 10_000, 'nginx');
  } catch (e) {
    child.kill('SIGKILL');
    const log = ['startup.log', 'error.log'].map((f) => path.join(prefix, f)).filter(existsSync).map((f) => readFileSync(f, 'utf8')).join('');
    throw new Error(`${(e as Error).message}\n${log}`);
  }
  return {
    prefix,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(prefix, { recursive: true, force: true });
    },
  };
}
