// A kdbusfs client process driven by the end-to-end client tests
// (test/client/kdbus-*.test.ts): one JSON request per stdin line
// ({op, ...args}), one JSON answer per line ({ok, value} or {ok: false,
// code, command, why}). Plain JavaScript on the built library (dist/), so
// that any uid can run it without a TypeScript loader. Events of its
// connection (messages, notifications, drops, hangup) are queued and handed
// out by the `next` op. bigints travel as strings, payloads as utf8 text.
import { closeSync, openSync, readSync, writeFileSync, fstatSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  connect, makeBus, makeEndpoint, readMemfd, sealedMemfd, memfdSeals, ATTACH_ALL,
} from '../../dist/lib/client/index.js';
import { clientNative } from '../../dist/lib/client/native.js';

let conn = null;
let owners = new Map();
const events = [];
let waiter = null;
/** replies this agent sends to calls: null (none) or a prefix put before the payload */
let echoPrefix = null;
/** view mode: messages kept unfreed, by offset */
const held = new Map();

function unsealedMemfd(data) {
  const fd = clientNative.memfdCreate('unsealed');
  writeFileSync(fd, data);
  return fd;
}

const text = (b) => b.toString('utf8');
function fdText(fd) {
  if (fd < 0) return null;
  const size = fstatSync(fd).size;
  const buf = Buffer.alloc(size);
  readSync(fd, buf, 0, size, 0);
  closeSync(fd);
  return text(buf);
}

function plain(msg) {
  return {
    srcId: msg.srcId, dstId: msg.dstId, cookie: msg.cookie, cookieReply: msg.cookieReply, flags: msg.flags,
    priority: msg.priority, payloadType: msg.payloadType, expectReply: msg.expectReply, signal: msg.signal,
    payload: msg.payload.map(text), dstName: msg.dstName, metadata: msg.metadata, notification: msg.notification,
    memfds: msg.memfds.map((m) => {
      const r = { size: m.size, seals: memfdSeals(m.fd), data: text(readMemfd(m.fd, m.start, m.size)) };
      closeSync(m.fd);
      return r;
    }),
    fds: msg.fds.map(fdText), offset: msg.offset, peeked: msg.peeked, timeoutNs: msg.timeoutNs,
  };
}

function push(ev) {
  events.push(ev);
  if (waiter) waiter();
}

function attach(c) {
  c.on('message', (msg) => {
    if (echoPrefix !== null && msg.expectReply) {
      try {
        c.reply(msg, { payload: Buffer.from(echoPrefix + msg.payload.map(text).join('')) });
      } catch (e) {
        push({ kind: 'reply-error', code: e.code });
      }
    }
    const p = plain(msg);
    if (msg.peeked === false && !c.copyMode) held.set(msg.offset, msg);
    push({ kind: 'message', msg: p });
  });
  c.on('notification', (n) => push({ kind: 'notification', n }));
  c.on('dropped', (count) => push({ kind: 'dropped', count }));
  c.on('hangup', () => push({ kind: 'hangup' }));
  c.on('readable', () => push({ kind: 'readable' }));
}

function payloadOf(a) {
  if (a.payload === undefined) return undefined;
  return Array.isArray(a.payload) ? a.payload.map((s) => Buffer.from(s)) : Buffer.from(a.payload);
}

function sendOpts(a) {
  const o = { ...a.opts, payload: payloadOf(a.opts ?? {}) };
  if (a.opts?.bloom) o.bloom = Buffer.from(a.opts.bloom, 'hex');
  if (a.memfd !== undefined) {
    const data = Buffer.from(a.memfd);
    const fd = a.unsealed ? unsealedMemfd(data) : sealedMemfd(data);
    o.memfds = [{ fd, size: data.length }];
    o.closeAfter = [fd];
  }
  if (a.fdTexts) {
    o.fds = a.fdTexts.map((s, i) => {
      const path = join(tmpdir(), `kdbus-agent-${process.pid}-${i}`);
      writeFileSync(path, s);
      return openSync(path, 'r');
    });
    o.closeAfter = [...(o.closeAfter ?? []), ...o.fds];
  }
  return o;
}

function done(o) {
  for (const fd of o.closeAfter ?? []) closeSync(fd);
}

const ops = {
  async connect(a) {
    const opts = { ...a.opts };
    for (const k of ['attachSend', 'attachRecv']) {
      if (opts[k] !== undefined) opts[k] = opts[k] === 'all' ? ATTACH_ALL : BigInt(opts[k]);
    }
    conn = await connect(a.bus, opts);
    conn.copyMode = (opts.receive ?? 'copy') === 'copy';
    attach(conn);
    return { id: conn.id, bloom: conn.bloom, busFlags: conn.busFlags, requiredAttachSend: conn.requiredAttachSend };
  },
  uid: () => ({ uid: process.getuid(), pid: process.pid }),
  echo(a) { echoPrefix = a.prefix ?? null; return null; },
  send(a) {
    const o = sendOpts(a);
    try {
      let cookie;
      for (let i = 0; i < (a.count ?? 1); i++) cookie = conn.send({ ...o, cookie: undefined });
      return cookie;
    } finally { done(o); }
  },
  /** sends until SEND fails (at most max): how many went and the error */
  sendUntilError(a) {
    const o = sendOpts(a);
    try {
      for (let sent = 0; sent < a.max; sent++) {
        try { conn.send(o); } catch (e) { return { sent, code: e.code, why: e.why }; }
      }
      return { sent: a.max };
    } finally { done(o); }
  },
  async call(a) {
    const o = sendOpts(a);
    let p;
    try { p = conn.call(o); } finally { done(o); }
    const reply = await p;
    const r = plain(reply);
    reply.free();
    return r;
  },
  recv(a) {
    const m = conn.recv(a.opts ?? {});
    if (!m) return null;
    const r = plain(m);
    if (!m.peeked && !a.keep) m.free();
    return r;
  },
  /**
   * autoReceive off, as the proxy receives: each 'readable' takes one message in the
   * handler while `limit` allows (a 'pumped' event each), then leaves one unanswered
   */
  pump(a) {
    let left = a.limit;
    conn.removeAllListeners('readable');
    conn.on('readable', () => {
      push({ kind: 'readable' });
      if (left <= 0) return;
      left--;
      const m = conn.recv();
      if (m) push({ kind: 'pumped', payload: m.payload.map(text) });
      conn.resume();
    });
    return null;
  },
  resume() { conn.resume(); return null; },
  /** frees a held (view-mode) message; reads its payload first to show the view was live */
  free(a) {
    const m = held.get(a.offset);
    held.delete(a.offset);
    const before = m.payload.map(text);
    m.free();
    return { before };
  },
  async next(a) {
    const until = Date.now() + (a.ms ?? 5000);
    for (;;) {
      const i = events.findIndex((e) => !a.kind || e.kind === a.kind);
      if (i >= 0) return events.splice(i, 1)[0];
      const left = until - Date.now();
      if (left <= 0) return null;
      await new Promise((res) => { waiter = res; setTimeout(res, left); });
      waiter = null;
    }
  },
  pending: (a) => events.filter((e) => !a.kind || e.kind === a.kind).length,
  acquire: (a) => conn.acquireName(a.name, a.flags ?? {}),
  release: (a) => { conn.releaseName(a.name); return null; },
  list: (a) => conn.listNames(a.flags),
  addMatch(a) {
    const rule = { ...a.rule };
    if (rule.bloomMask) rule.bloomMask = Buffer.from(rule.bloomMask, 'hex');
    conn.addMatch(a.cookie, rule, { replace: a.replace });
    return null;
  },
  removeMatch: (a) => { conn.removeMatch(a.cookie); return null; },
  connInfo: (a) => conn.connInfo(typeof a.target === 'string' && !/^\d+$/.test(a.target) ? a.target : BigInt(a.target)),
  busCreatorInfo: () => conn.busCreatorInfo(),
  update(a) {
    const o = { ...a.opts };
    for (const k of ['attachSend', 'attachRecv']) if (o[k] !== undefined) o[k] = BigInt(o[k]);
    conn.update(o);
    return null;
  },
  byebye: () => { conn.byebye(); return null; },
  close: () => { conn.close(); return null; },
  makeBus(a) {
    const o = makeBus(a.name, a.opts ?? {});
    owners.set(o.name, o);
    return { name: o.name, path: o.path };
  },
  makeEndpoint(a) {
    const o = makeEndpoint(a.bus, a.name, a.opts ?? {});
    owners.set(o.name, o);
    return { name: o.name, path: o.path };
  },
  updatePolicy: (a) => { owners.get(a.name).updatePolicy(a.policy); return null; },
  dropOwner: (a) => { owners.get(a.name).close(); owners.delete(a.name); return null; },
};

const json = (v) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x));
const rl = createInterface({ input: process.stdin });
let chain = Promise.resolve();
rl.on('line', (line) => {
  chain = chain.then(async () => {
    let answer;
    try {
      const req = JSON.parse(line);
      answer = { ok: true, value: (await ops[req.op](req)) ?? null };
    } catch (e) {
      answer = { ok: false, code: e.code ?? 'EJS', command: e.command, why: e.why, message: String(e.message ?? e) };
    }
    process.stdout.write(json(answer) + '\n');
  });
});
rl.on('close', () => chain.then(() => process.exit(0)));
process.stdout.write(json({ ok: true, value: 'ready' }) + '\n');
