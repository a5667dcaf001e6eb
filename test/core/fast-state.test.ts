// What the core tells the native fast path (lib/core/fast-state.ts,
// native/fastpath.h), in process: each handle's role, its connection's kind,
// activity and queue, and its poll mask, published as they change; the
// slices the client holds; and FREEs answered natively applied by the pool
// before its next operation, as if the core had served them in order.
import t from 'tap';
import { CMD, LIMITS } from '../../lib/abi/kdbus.js';
import { POLL } from '../../lib/abi/poll.js';
import { errno } from '../../lib/core/errors.js';
import { FAST, ROLE, STATE } from '../../lib/core/fast-state.js';
import { fastRows } from '../../lib/core/handle.js';
import { makeBus } from './client.js';

const ORDINARY = 1, MONITOR = 8;
const IDLE = POLL.OUT | POLL.WRNORM;

t.test('a handle publishes its role, and its connection its activity and queue, as they change', async (t) => {
  const { world, control, connect } = makeBus(t);
  t.equal(control.published?.[0], ROLE.JS, 'a control file that made its bus: every ioctl to JS');
  t.equal(world.openControl().published?.[0], ROLE.CONTROL, 'a new control file: BUS_MAKE refusals may be native');
  const fresh = connect({ hello: false, privileged: true });
  t.same(fresh.file.published, [ROLE.ENDPOINT | STATE.PRIVILEGED, POLL.ERR | POLL.HUP], 'an unconnected endpoint file');
  const a = connect();
  const b = connect();
  const connected = ROLE.CONNECTED | (ORDINARY << STATE.KIND_SHIFT) | STATE.ACTIVE;
  t.same(a.file.published, [connected | STATE.QUEUE_EMPTY, IDLE], 'connected, nothing queued');

  t.equal(b.send({ dst: a.id, payload: Buffer.from('x') }), 0);
  t.same(a.file.published, [connected, IDLE | POLL.IN | POLL.RDNORM], 'a message queued');
  t.equal(b.send({ dst: a.id, payload: Buffer.from('y') }), 0);
  t.equal(a.recv().ret, 0);
  t.same(a.file.published, [connected, IDLE | POLL.IN | POLL.RDNORM], 'one of two received: still queued');
  t.equal(a.recv().ret, 0);
  t.same(a.file.published, [connected | STATE.QUEUE_EMPTY, IDLE], 'all received: empty again');

  const m = connect({ flags: 8n /* HELLO_MONITOR */, privileged: true });
  t.equal(m.file.published![0] >> STATE.KIND_SHIFT & 0xf, MONITOR, 'a monitor says its kind');

  t.equal(a.byebye(), 0);
  t.same(a.file.published, [ROLE.CONNECTED | (ORDINARY << STATE.KIND_SHIFT) | STATE.QUEUE_EMPTY, POLL.ERR | POLL.HUP],
    'disconnected: not active, POLLERR | POLLHUP');
});

t.test('FREEs answered natively are applied before the pool is used again', async (t) => {
  const { connect } = makeBus(t);
  const a = connect();
  const b = connect();
  const pool = a.file.pool!;
  t.equal(b.send({ dst: a.id, payload: Buffer.from('first') }), 0);
  const r = a.recv(0n, { keep: true });
  const off = Number(r.offset);
  t.ok(pool.userHeld.has(off), "a received message's slice is freeable natively");

  // the fast path answers FREE: the offset leaves its set, the pool gets it on sync
  pool.held(off, false);
  const answered = [off];
  pool.sync = () => {
    for (const o of answered.splice(0)) a.conn.pool.freeByUser(o);
  };
  t.equal(b.send({ dst: a.id, payload: Buffer.from('again') }), 0);
  const again = a.recv(0n, { keep: true });
  t.equal(again.offset, r.offset, 'the next message reuses the slice freed natively');
  t.equal(a.free(again.offset), 0, 'FREE through the core');
  t.notOk(pool.userHeld.has(off), 'and the fast path is told');
  t.equal(a.free(again.offset), -errno.ENXIO, 'twice: ENXIO');
});

t.test('the fast path gets COMMANDS as the prologue checks them', async (t) => {
  const rows = new Map(fastRows().map((r) => [r.cmd, r]));
  t.notOk(rows.has(CMD.BYEBYE), 'BYEBYE has no struct: not for the fast path');
  t.equal(rows.get(CMD.RECV)!.fast, FAST.RECV);
  t.equal(rows.get(CMD.FREE)!.fast, FAST.FREE);
  t.equal(rows.get(CMD.FREE)!.returnDone, true, 'FREE zeroes return_flags on success');
  t.match(rows.get(CMD.BUS_MAKE), { on: ROLE.CONTROL, min: 32, max: LIMITS.MAKE_MAX_SIZE, valid: 3n });
  t.match(rows.get(CMD.NAME_ACQUIRE), { on: ROLE.CONNECTED, returnFirst: true, conns: ORDINARY });
  t.equal(rows.size, Object.keys(CMD).length - 1, 'every other command');
});
