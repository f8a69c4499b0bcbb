// Rejects every outgoing TCP connection that is not to the loopback address.
//
// Import this module before any SDK. The tests must only ever talk to the
// keyport proxy and to mock upstreams on 127.0.0.1, but SDKs fall back to
// their public endpoints when a base URL is missing or misspelt, and
// KaibanJS sends telemetry unless opted out. Both `http` and the `fetch`
// implementation in Node 20 (undici) open sockets through
// `net.Socket.prototype.connect`, so checking the host there catches them
// before any DNS lookup.

import assert from 'node:assert/strict';
import net from 'node:net';

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** Hosts whose connections were rejected. */
export const rejectedHosts = [];

/**
 * Asserts that nothing in this process tried to reach another host. Clients
 * that swallow connection errors, such as telemetry senders, fail no test on
 * their own.
 */
export function assertNoOutsideConnections() {
  assert.deepEqual(rejectedHosts, [], `connections to hosts other than 127.0.0.1 were attempted: ${rejectedHosts.join(', ')}`);
}

const originalConnect = net.Socket.prototype.connect;

net.Socket.prototype.connect = function connectToLoopbackOnly(...args) {
  const host = targetHost(args);
  if (host !== null && !LOOPBACK_HOSTS.has(host)) {
    rejectedHosts.push(host);
    const error = new Error(
      `loopback guard: rejected a connection to ${host}; e2e tests may only connect to 127.0.0.1`,
    );
    error.code = 'ECONNREFUSED';
    process.nextTick(() => this.destroy(error));
    return this;
  }
  return originalConnect.apply(this, args);
};

/** Returns the host a `connect` call aims at, or null for a Unix socket path. */
function targetHost(args) {
  // Node passes its own normalised argument array as the first argument
  // when `net.connect` calls `socket.connect`.
  let first = args[0];
  if (Array.isArray(first)) first = first[0];

  if (first !== null && typeof first === 'object') {
    if (first.path) return null;
    return first.host ?? 'localhost';
  }
  if (typeof first === 'string' && Number.isNaN(Number(first))) return null;
  return typeof args[1] === 'string' ? args[1] : 'localhost';
}
