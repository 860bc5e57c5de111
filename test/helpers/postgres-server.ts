/**
 * A real PostgreSQL 15 for tests, on 127.0.0.1 and a free port, in a
 * temporary folder: initdb once (per test file), then start, stop and start
 * again on the same data (an outage). PostgreSQL refuses to run as root, so
 * initdb and postgres run as the postgres user (runuser) on a folder it
 * owns, with its socket in that folder. fsync off: a test database need not
 * survive a power cut. Password authentication on TCP (scram), so URLs
 * carry a real password.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import pg from 'pg';

import { freePort } from './net.js';

export const POSTGRES_BIN = '/usr/lib/postgresql/15/bin';
export const POSTGRES_PASSWORD = 'pg-test-s3cret';

export interface PostgresServer {
  readonly port: number;
  /** postgres://postgres:<password>@127.0.0.1:<port>/<database> */
  url(database?: string): string;
  /** A new, empty database; returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Runs SQL on a database (as the superuser). */
  query<R extends object = Record<string, unknown>>(database: string, sql: string, params?: unknown[]): Promise<R[]>;
  /** Fast shutdown (SIGINT), waiting until it has exited. */
  stop(): Promise<void>;
  /** Starts again on the same data and port. */
  start(): Promise<void>;
  /** Stops it (if running) and removes its folder. */
  destroy(): Promise<void>;
}

export function postgresAvailable(): boolean {
  return existsSync(path.join(POSTGRES_BIN, 'postgres')) && spawnSync('id', ['-u', 'postgres']).status === 0;
}

const ids = (user: string) => {
  const r = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', user], { encoding: 'utf8' });
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
};

// As root, run as postgres; as postgres (or any non-root user that owns the folder), run directly.
const asPostgres = (cmd: string, args: string[]): [string, string[]] =>
  process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];

export async function startPostgres(): Promise<PostgresServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-pg-'));
  const data = path.join(dir, 'data');
  const pwfile = path.join(dir, 'pw');
  writeFileSync(pwfile, `${POSTGRES_PASSWORD}\n`);
  if (process.getuid?.() === 0) {
    const { uid, gid } = ids('postgres');
    chownSync(dir, uid, gid);
    chownSync(pwfile, uid, gid);
  }
  const [initCmd, initArgs] = asPostgres(path.join(POSTGRES_BIN, 'initdb'), [
    '-D', data, '-U', 'postgres', `--pwfile=${pwfile}`, '--auth-local=trust', '--auth-host=scram-sha-256', '--no-sync', '--encoding=UTF8', '--locale=C',
  ]);
  const init = spawnSync(initCmd, initArgs, { encoding: 'utf8' });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status}):\n${init.stdout}\n${init.stderr}`);
  }
  let port = await freePort();
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let log = '';

  const launch = async (): Promise<void> => {
    const [cmd, args] = asPostgres(path.join(POSTGRES_BIN, 'postgres'), [
      '-D', data, '-k', dir, '-h', '127.0.0.1', '-p', String(port),
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=60', '-c', 'shared_buffers=16MB',
    ]);
    log = '';
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    c.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    c.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    exited = new Promise((r) => c.once('exit', () => r()));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`postgres exited (${c.exitCode}):\n${log}`);
      if (/ready to accept connections/.test(log)) return;
      if (Date.now() > deadline) throw new Error(`postgres did not start in 60 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const stop = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null) return;
    // Signal the postmaster itself (its pid is in postmaster.pid): runuser
    // sits between us and it. SIGINT: fast shutdown (clients are cut off).
    let pid: number | null = null;
    try {
      pid = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    } catch {
      pid = null;
    }
    try {
      if (pid) process.kill(pid, 'SIGINT');
      else c.kill('SIGINT');
    } catch {
      c.kill('SIGINT');
    }
    const t = setTimeout(() => {
      if (pid) {
        try {
          process.kill(pid, 'SIGQUIT');
        } catch {
          /* gone */
        }
      }
      c.kill('SIGKILL');
    }, 20_000);
    await exited;
    clearTimeout(t);
    child = null;
  };

  try {
    await launch();
  } catch (err) {
    // A port taken between freePort() and the bind: once more on another.
    await stop();
    port = await freePort();
    try {
      await launch();
    } catch (again) {
      await stop();
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`${(err as Error).message}\n---\n${(again as Error).message}`);
    }
  }
  // Never leave a server behind, even if the test process ends abruptly.
  const onExit = () => {
    try {
      const pid = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
      if (pid) process.kill(pid, 'SIGQUIT');
    } catch {
      /* not running */
    }
  };
  process.once('exit', onExit);

  const url = (database = 'postgres') => `postgres://postgres:${POSTGRES_PASSWORD}@127.0.0.1:${port}/${database}`;
  const query = async <R extends object>(database: string, sql: string, params: unknown[] = []): Promise<R[]> => {
    const c = new pg.Client({ connectionString: url(database) });
    await c.connect();
    try {
      return (await c.query<R>(sql, params)).rows;
    } finally {
      await c.end();
    }
  };
  return {
    get port() {
      return port;
    },
    url,
    async createDatabase(name) {
      await query('postgres', `CREATE DATABASE "${name}"`);
      return url(name);
    },
    query,
    stop,
    start: launch,
    async destroy() {
      await stop();
      process.removeListener('exit', onExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
