// What `kdbusfs monitor --json` prints for each message: one JSON object a
// line, the same facts as the text (lib/commands/message-dump.ts) with
// numbers as numbers (64-bit ones exact, printed by json-output.ts) and the
// body in busctl's JSON form ({"type": SIGNATURE, "data": [...]}).
import { MESSAGE_TYPE_NAMES } from '../client/dbus-message.js';
import type { Metadata } from '../client/metadata.js';
import { jsonBody } from './dbus-values.js';
import type { Observed } from './monitored-message.js';

function timestamp(md: Metadata): Record<string, bigint> | undefined {
  const ts = md.timestamp;
  return ts && { monotonicUs: ts.monotonicNs / 1000n, realtimeUs: ts.realtimeNs / 1000n, seqnum: ts.seqnum };
}

/** The metadata the kernel attached, the timestamp apart. */
function attached(md: Metadata): Omit<Metadata, 'timestamp'> {
  const { timestamp: _ts, ...rest } = md;
  return rest;
}

export function observedJson(o: Observed): Record<string, unknown> {
  const k = o.kmsg;
  if (o.kind === 'dbus') {
    const m = o.message;
    return {
      kind: 'dbus', synthetic: o.synthetic, type: MESSAGE_TYPE_NAMES[m.type], flags: m.flags, priority: k.priority,
      cookie: m.cookie, replyCookie: m.replyCookie, sender: m.sender, destination: m.destination, path: m.path,
      interface: m.interface, member: m.member, errorName: m.errorName, size: o.wire.length,
      timestamp: timestamp(k.metadata), metadata: attached(k.metadata), body: jsonBody(m.signature, m.body),
    };
  }
  return {
    kind: 'kdbus', why: o.why, payloadType: k.payloadType, flags: k.flags, priority: k.priority, srcId: k.srcId,
    dstId: k.dstId, dstName: k.dstName, cookie: k.cookie, cookieReply: k.cookieReply, notification: k.notification,
    fds: k.fds.length, memfds: k.memfds.map((m) => m.size), timestamp: timestamp(k.metadata),
    metadata: attached(k.metadata), payload: o.payload.toString('hex'),
  };
}
