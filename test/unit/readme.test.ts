import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { configTable, END, START } from '../../scripts/config-table.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const ci = readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8');

describe('README stays true', () => {
  it('lists every config key with its environment variable', () => {
    for (const row of configTable().split('\n').slice(2)) {
      const key = row.split('|')[1]!.trim();
      expect(readme, `README config table is missing ${key}`).toContain(`| ${key} |`);
    }
  });

  it('has the config table the generator writes, so regenerating it loses nothing', () => {
    const table = readme.slice(readme.indexOf(`${START}\n`) + START.length + 1, readme.indexOf(`\n${END}`));
    expect(table).toBe(configTable());
  });

  it('shows exactly the two quick-start commands, and CI runs the test one', () => {
    const commands = [...readme.matchAll(/```sh\n(.+)\n\s*```/g)].map((m) => m[1]!.trim());
    expect(commands).toEqual(['./scripts/setup.sh && npm start', './scripts/setup.sh --test && npm test']);
    expect(ci).toContain(commands[1]);
  });
});
