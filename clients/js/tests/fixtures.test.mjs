// The client agrees with the server where it mirrors it, by the fixtures both test suites read
// (fixtures/, at the repository's root; shared/tests/client.rs holds the server to the same
// files): `node --test clients/js/tests/`.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { MAX_ARTISTS_PER_MESSAGE, MAX_DATA_BYTES, artistKey } from '../marquee.js';

const fixture = (name) => JSON.parse(readFileSync(new URL(`../../../fixtures/${name}`, import.meta.url), 'utf8'));

describe('the shared fixtures', () => {
  test('every spelling the server takes gets the key the server gives it', () => {
    const { groups } = fixture('artist-keys.json');
    const wrong = [];
    for (const group of groups.filter((g) => 'key' in g)) {
      for (const name of group.names) {
        const key = artistKey(name);
        if (key !== group.key) wrong.push(`${JSON.stringify(name)} (${group.why}): ${JSON.stringify(key)}, server ${JSON.stringify(group.key)}`);
      }
    }
    assert.deepEqual(wrong, []);
  });

  test('the limits are the server limits, in the library and its declarations', () => {
    const limits = fixture('client-limits.json');
    const declarations = readFileSync(new URL('../marquee.d.ts', import.meta.url), 'utf8');
    const declared = (name) => Number(new RegExp(`export const ${name}: (\\d+);`).exec(declarations)?.[1]);
    assert.deepEqual(
      { MAX_ARTISTS_PER_MESSAGE, MAX_DATA_BYTES },
      { MAX_ARTISTS_PER_MESSAGE: limits.MAX_ARTISTS_PER_MESSAGE, MAX_DATA_BYTES: limits.MAX_DATA_BYTES },
    );
    assert.deepEqual(
      { MAX_ARTISTS_PER_MESSAGE: declared('MAX_ARTISTS_PER_MESSAGE'), MAX_DATA_BYTES: declared('MAX_DATA_BYTES') },
      { MAX_ARTISTS_PER_MESSAGE: limits.MAX_ARTISTS_PER_MESSAGE, MAX_DATA_BYTES: limits.MAX_DATA_BYTES },
    );
  });
});
