// `keyport serve` lifecycle: it stops cleanly on SIGINT (Ctrl-C) as it does
// on SIGTERM, which the other suites use, and closes its port.

import { assertNoOutsideConnections } from '../lib/loopback-guard.js';

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { stopServe } from '../lib/keyport.js';
import { DIRECT, openSession } from '../lib/session.js';

const skip = DIRECT && 'needs the proxy';
let session;

before(async () => {
  if (DIRECT) return;
  session = await openSession({ keys: ['openai'] });
});

after(async () => {
  await session?.close();
});

test('serve exits cleanly on SIGINT', { skip }, async () => {
  const url = `${session.baseUrl('openai')}/models`;
  const served = await fetch(url, { headers: { authorization: `Bearer ${session.token}` } });
  assert.equal(served.status, 200, 'the proxy did not serve a request before the signal');

  const stopped = await stopServe(session.context, 'SIGINT');

  assert.equal(stopped.killed, false, 'keyport serve did not exit within the time limit after SIGINT');
  assert.equal(stopped.signal, null, `keyport serve was ended by signal ${stopped.signal} instead of exiting`);
  assert.equal(stopped.code, 0, `keyport serve exited with ${stopped.code}\n${session.context.serve.record.stderr}`);
  await assert.rejects(
    fetch(url, { headers: { authorization: `Bearer ${session.token}` }, signal: AbortSignal.timeout(5_000) }),
    (error) => error.cause?.code === 'ECONNREFUSED',
    'the port still accepted connections after keyport serve exited',
  );
});

test('no connections beyond loopback', () => {
  assertNoOutsideConnections();
});
