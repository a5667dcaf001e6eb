// The proxy: a listener and its clients, each a ProxyConnection with its own
// kdbus connection, and with an XML policy the policy-holder connections that
// keep its kdbus equivalent on the bus (kdbus-policy.ts). Connection limits as
// dbus-daemon's system-bus defaults keep one user from taking every slot.
import { clientNative } from '../client/native.js';
import { Connection } from '../client/connection.js';
import { holdKdbusPolicy, kdbusPolicyOf, type HeldPolicy } from './kdbus-policy.js';
import { Listener } from './listener.js';
import { DEFAULT_LIMITS, ProxyConnection, type PeerCred, type ProxyLimits } from './proxy-connection.js';
import { RateLimitedLog } from './rate-limited-log.js';
import { serverGuid } from './sasl.js';
import type { XmlPolicy } from './xml-policy.js';

export interface BusProxyOptions {
  /** the kdbus bus: a bus file's path or a bus name under root */
  bus: string;
  root?: string;
  policy?: XmlPolicy | null;
  limits?: Partial<ProxyLimits>;
  /** dbus-daemon's max_completed_connections */
  maxConnections?: number;
  /** dbus-daemon's max_connections_per_user */
  maxConnectionsPerUser?: number;
  /** dbus-daemon's max_incomplete_connections: clients still authenticating */
  maxIncomplete?: number;
  /** called with each client that goes, and why (logging) */
  onClientClose?: (peer: PeerCred, why: string) => void;
  /** where a client the policy does not let connect is logged, rate-limited (default: stderr) */
  log?: (line: string) => void;
}

/**
 * The uid that owns a kdbus bus: the one in its name. kdbus names a bus
 * "UID-..." with its creator's euid (BUS_MAKE refuses any other prefix), and
 * that uid owns the bus's node: it is to the bus what the user dbus-daemon
 * runs as is to dbus-daemon's, the one user that may connect before the
 * policy's user/group rules. It is not the proxy's own uid: a root proxy
 * serves a user's bus too. BUS_CREATOR_INFO always carries the name; the
 * creator's CREDS only when the creator chose to share them.
 */
export function busOwnerOf(busName: string): number {
  const m = /^(\d+)-/.exec(busName);
  if (!m) throw new Error(`the bus name ${busName} has no UID- prefix`);
  return Number(m[1]);
}

export class BusProxy {
  private readonly clients = new Set<ProxyConnection>();
  private readonly perUid = new Map<number, number>();
  private readonly guid: string;
  private readonly limits: ProxyLimits;
  private readonly busOwner: number;
  private readonly refusals: RateLimitedLog;
  /** the XML policy's kdbus part, held while the proxy runs (null: no policy) */
  readonly kdbusPolicy: HeldPolicy | null;

  private listener: Listener | null = null;

  constructor(private readonly opts: BusProxyOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    // the bus's id as the server GUID clients see in OK; a bus that is not there fails here, not at the first client
    const probe = Connection.open(opts.bus, { ...(opts.root !== undefined && { root: opts.root }), poolSize: 4096 * 16 });
    this.guid = serverGuid(probe.busId);
    try {
      this.busOwner = busOwnerOf(probe.busCreatorInfo(0n).busName ?? '');
    } finally {
      probe.close();
    }
    this.refusals = new RateLimitedLog(opts.log ?? (line => process.stderr.write(`kdbusfs proxy: ${line}\n`)));
    this.kdbusPolicy = opts.policy ? holdKdbusPolicy(opts.bus, opts.root, kdbusPolicyOf(opts.policy)) : null;
  }

  /** Serves listener's clients; its socket is best opened only now, with the bus checked and the policy held. */
  start(listener: Listener): void {
    this.listener = listener;
    listener.start((fd, peer) => this.accept(fd, peer));
  }

  private accept(fd: number, peer: PeerCred): void {
    const incomplete = [...this.clients].filter(c => !c.authenticated).length;
    const mine = this.perUid.get(peer.uid) ?? 0;
    if (this.clients.size >= (this.opts.maxConnections ?? 2048) || mine >= (this.opts.maxConnectionsPerUser ?? 256)
        || incomplete >= (this.opts.maxIncomplete ?? 64)) {
      clientNative.close(fd);
      this.opts.onClientClose?.(peer, 'refused: connection limit');
      return;
    }
    const c = new ProxyConnection(fd, peer, {
      bus: this.opts.bus, ...(this.opts.root !== undefined && { root: this.opts.root }),
      guid: this.guid, limits: this.limits, policy: this.opts.policy ?? null, busOwner: this.busOwner,
    });
    c.once('refused', (why: string) => this.refusals.line(`client pid ${peer.pid} refused: ${why}`));
    this.clients.add(c);
    this.perUid.set(peer.uid, mine + 1);
    c.once('close', (why: string) => {
      this.clients.delete(c);
      const n = (this.perUid.get(peer.uid) ?? 1) - 1;
      if (n) this.perUid.set(peer.uid, n);
      else this.perUid.delete(peer.uid);
      this.opts.onClientClose?.(peer, why);
    });
  }

  close(): void {
    this.listener?.close();
    for (const c of [...this.clients]) c.close('the proxy stops');
    for (const h of this.kdbusPolicy?.holders ?? []) h.close();
  }
}
