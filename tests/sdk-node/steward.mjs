// Runs a real `steward serve` process and points the official Telnyx Node SDK at it.
//
// Environment:
//   STEWARD_BIN               the steward binary (default: <repo>/target/debug/steward)
//   STEWARD_SDK_DATABASE_URL  a fresh PostgreSQL database to use (default: a new SQLite file)
//
// The Node counterpart of tests/sdk/conftest.py.

import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import Telnyx from 'telnyx';

const execFileAsync = promisify(execFile);

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const STEWARD_BIN = process.env.STEWARD_BIN || join(REPO, 'target', 'debug', 'steward');

export const MANAGER_CHANNEL_POOL = 20;
const STARTUP_TIMEOUT_MS = 20_000;
const SHUTDOWN_TIMEOUT_MS = 10_000;

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A handle on the running server and on its operator CLI. */
export class Steward {
  constructor() {
    this.tmpDir = mkdtempSync(join(tmpdir(), 'steward-sdk-node-'));
    this.databaseUrl =
      process.env.STEWARD_SDK_DATABASE_URL || `sqlite://${join(this.tmpDir, 'steward.db')}`;
    this.logPath = join(this.tmpDir, 'serve.log');
    this.process = null;
    this.exit = null;
    this.baseURL = '';
    this.onExit = () => this.process?.kill('SIGTERM');
  }

  /** Runs `steward admin ...` and returns the JSON object it prints. */
  async admin(...args) {
    const command = [...args, '--database-url', this.databaseUrl];
    let done;
    try {
      done = await execFileAsync(STEWARD_BIN, ['admin', ...command], { timeout: 60_000 });
    } catch (error) {
      throw new Error(`${args.join(' ')} failed (${error.code}):\n${error.stderr}`);
    }
    return JSON.parse(done.stdout);
  }

  /** A manager account created through the operator CLI, with its own channel pool. */
  async createManager() {
    // 12 hex digits at most: a longer random run of digits can read as a card number,
    // which every free-text field refuses.
    const email = `mgr-${randomUUID().replaceAll('-', '').slice(0, 12)}@reseller.example`;
    const created = await this.admin(
      'create-account',
      '--email', email,
      '--business-name', `Reseller ${email}`,
      '--manager',
      '--allocatable-channels', String(MANAGER_CHANNEL_POOL),
    );
    if (created.email !== email || !created.id || !created.api_key) {
      throw new Error(`unexpected create-account output: ${JSON.stringify(created)}`);
    }
    return { id: created.id, email: created.email, api_key: created.api_key };
  }

  /** The SDK, authenticated with the given key and pointed at this server. */
  client(apiKey) {
    return new Telnyx({
      apiKey,
      baseURL: this.baseURL,
      maxRetries: 0,
      timeout: 30_000,
      // Never let ambient TELNYX_* variables send the SDK anywhere else.
      publicKey: null,
      clientID: null,
      clientSecret: null,
    });
  }

  log() {
    try {
      return readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** Starts `steward serve` on a free port and waits until `/livez` answers. */
  async start() {
    const port = await freePort();
    const log = openSync(this.logPath, 'w');
    try {
      this.process = spawn(
        STEWARD_BIN,
        ['serve', '--listen', `127.0.0.1:${port}`, '--database-url', this.databaseUrl],
        { stdio: ['ignore', log, log] },
      );
    } finally {
      closeSync(log);
    }
    this.process.on('exit', (code, signal) => {
      this.exit = { code, signal };
    });
    this.process.on('error', (error) => {
      this.exit = { error };
    });
    process.on('exit', this.onExit);

    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.exit) {
        throw new Error(`steward serve exited (${JSON.stringify(this.exit)}):\n${this.log()}`);
      }
      try {
        const response = await fetch(`http://127.0.0.1:${port}/livez`, {
          signal: AbortSignal.timeout(1000),
        });
        if (response.ok) {
          const body = await response.json();
          if (body?.status === 'ok') {
            this.baseURL = `http://127.0.0.1:${port}/v2`;
            return this;
          }
        }
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`steward serve not live after ${STARTUP_TIMEOUT_MS} ms:\n${this.log()}`);
  }

  /** Stops the server with SIGTERM (SIGKILL after a grace period) and removes the temp dir. */
  async stop() {
    const child = this.process;
    if (child && !this.exit) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const graceful = await Promise.race([
        exited.then(() => true),
        sleep(SHUTDOWN_TIMEOUT_MS).then(() => false),
      ]);
      if (!graceful) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    process.removeListener('exit', this.onExit);
    const log = this.log();
    rmSync(this.tmpDir, { recursive: true, force: true });
    return { exit: this.exit, log };
  }
}
