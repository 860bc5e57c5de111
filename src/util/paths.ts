import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** Repository root, found from this file whether it runs from src/ or dist/src/. */
export function packageRoot(): string {
  if (root) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'config', 'default.json'))) {
      root = dir;
      return dir;
    }
    dir = path.dirname(dir);
  }
  throw new Error('captiongate: cannot find the package root (package.json with config/default.json)');
}
