// Pending replies (ipc/kdbus/reply.c): a connection that sent a message with
// EXPECT_REPLY waits for the receiver to answer with cookie_reply = cookie.
// The waiter is charged one request (KDBUS_CONN_MAX_REQUESTS_PENDING); an
// unanswered request times out with a REPLY_TIMEOUT notification, and one whose
// replier goes away gets REPLY_DEAD.
import { LIMITS } from '../abi/kdbus.js';
import { errno, fail } from './errors.js';
import type { QueueEntry } from './message.js';
import type { User } from './user.js';

/** The two ends of a reply, as far as the registry needs them. */
export interface ReplyPeer {
  readonly id: bigint;
  readonly replies: Set<Reply>; // replies this peer waits for
  readonly user: User; // charged for the replies it waits for
}

/** A caller parked in a synchronous SEND, woken with 0 and the reply, or an errno. */
export interface SyncWaiter {
  wake(err: number, entry: QueueEntry | null): void;
}

export class Reply {
  timer: NodeJS.Timeout | null = null;
  /** the parked caller of a synchronous call (SEND with SYNC_REPLY); null for an asynchronous one */
  syncWaiter: SyncWaiter | null = null;

  constructor(public replier: ReplyPeer, readonly waiter: ReplyPeer, readonly cookie: bigint,
              readonly deadlineNs: bigint, /** name entry it was sent to (0: by id) */ readonly nameId: bigint) {}
}

export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

/** kdbus_reply_new: EMLINK once the waiter has too many requests pending. */
export function replyNew(replier: ReplyPeer, waiter: ReplyPeer, cookie: bigint, deadlineNs: bigint,
                         nameId: bigint): Reply {
  if (waiter.replies.size >= LIMITS.CONN_MAX_REQUESTS_PENDING) fail(errno.EMLINK, 'too many pending replies');
  waiter.user.check('replies', 1); // charged once linked
  return new Reply(replier, waiter, cookie, deadlineNs, nameId);
}

/** Links the reply and arms its timeout; onTimeout runs once when it expires. */
export function replyLink(r: Reply, onTimeout: (r: Reply) => void): void {
  r.waiter.replies.add(r);
  r.waiter.user.charge('replies', 1);
  if (r.syncWaiter) return; // the parked call keeps its own deadline
  const delayMs = Number((r.deadlineNs - monotonicNs()) / 1_000_000n);
  r.timer = setTimeout(() => {
    r.timer = null;
    if (!r.waiter.replies.has(r)) return;
    replyUnlink(r);
    onTimeout(r);
  }, Math.max(0, delayMs) + 1);
}

export function replyUnlink(r: Reply): void {
  if (r.waiter.replies.delete(r)) r.waiter.user.uncharge('replies');
  if (r.timer) clearTimeout(r.timer);
  r.timer = null;
}

/**
 * kdbus_sync_reply_wakeup: ends a synchronous call (the caller learns err,
 * or gets entry as its reply) and unlinks the reply.
 */
export function replyWakeSync(r: Reply, err: number, entry: QueueEntry | null): void {
  const waiter = r.syncWaiter;
  replyUnlink(r);
  r.syncWaiter = null;
  waiter?.wake(err, entry);
}

/** kdbus_reply_find: the reply `waiter` expects from `replier` for cookie. */
export function replyFind(replier: ReplyPeer, waiter: ReplyPeer, cookie: bigint): Reply | null {
  for (const r of waiter.replies) if (r.replier === replier && r.cookie === cookie) return r;
  return null;
}
