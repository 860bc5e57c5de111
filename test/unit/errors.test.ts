import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { CloseCode, END_REASONS, ERRORS } from '../../src/errors.js';

const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');

describe('every coded error is documented (and only those)', () => {
  it('each ERRORS code has a row in docs/protocol.md with its close code and HTTP status', () => {
    for (const [code, spec] of Object.entries(ERRORS)) {
      const row = doc.split('\n').find((l) => l.startsWith(`| \`${code}\``));
      expect(row, `${code} missing from docs/protocol.md`).toBeDefined();
      const cells = row!.split('|').map((c) => c.trim());
      expect(cells[2]!.startsWith(spec.fatal ? 'yes' : 'no'), `${code} fatal`).toBe(true);
      if ('close' in spec && spec.close !== undefined) expect(cells[3], `${code} close`).toBe(String(spec.close));
      if ('status' in spec && spec.status !== undefined) expect(cells[4], `${code} status`).toBe(String(spec.status));
    }
  });

  it('docs/protocol.md documents no code that does not exist', () => {
    const documented = [...doc.matchAll(/\| `(CAP_ERR_[A-Z_]+)`/g)].map((m) => m[1]!);
    for (const c of documented) expect(Object.keys(ERRORS)).toContain(c);
  });

  it('every close code and end reason is documented', () => {
    for (const code of Object.values(CloseCode)) expect(doc).toMatch(new RegExp(`\\| ${code} \\|`));
    for (const reason of Object.keys(END_REASONS)) expect(doc).toContain(`| \`${reason}\` |`);
  });
});
