// Buses and custom endpoints made by this process: BUS_MAKE on the domain's
// control file, ENDPOINT_MAKE on a bus file. What is made lives as long as
// the fd that made it stays open (BusOwner.close ends it).
import { join } from 'node:path';
import { CMD, CMD_MAKE, CMD_UPDATE, ITEM, MAKE_ACCESS_GROUP, MAKE_ACCESS_WORLD } from '../abi/kdbus.js';
import { CommandBuilder } from './command.js';
import { DEFAULT_ROOT } from './connection.js';
import { KdbusClientError, check } from './errors.js';
import { clientNative as nat } from './native.js';
import { addPolicy, type PolicyEntry } from './policy.js';

export type MakeAccess = 'owner' | 'group' | 'world';

export interface MakeBusOptions {
  /** the domain: ROOT/control (default /sys/fs/kdbus) */
  root?: string;
  /** bloom filter size in bytes (a multiple of 8; default 64) and hash count (default 1) */
  bloomSize?: number;
  bloomHashes?: number;
  /** who may connect besides the owner (default: the owner only) */
  access?: MakeAccess;
  /** metadata every sender must let the bus attach (ATTACH_FLAGS_RECV of BUS_MAKE) */
  attachRequired?: bigint;
  /** the creator's metadata kept for BUS_CREATOR_INFO (ATTACH_FLAGS_SEND of BUS_MAKE) */
  attachCreator?: bigint;
}

export interface MakeEndpointOptions {
  access?: MakeAccess;
  policy?: PolicyEntry[];
}

const ACCESS_FLAGS: Record<MakeAccess, bigint> = { owner: 0n, group: MAKE_ACCESS_GROUP, world: MAKE_ACCESS_GROUP | MAKE_ACCESS_WORLD };

/** kdbus names of buses and endpoints start with the creator's uid: added when missing. */
function ownedName(name: string): string {
  return /^\d+-/.test(name) ? name : `${process.geteuid?.() ?? 0}-${name}`;
}

function openFile(path: string): number {
  const fd = nat.open(path);
  if (fd < 0) throw new KdbusClientError(-fd, 'open', path);
  return fd;
}

/** The fd that holds a bus (BUS_MAKE) or a custom endpoint (ENDPOINT_MAKE) alive. */
export class BusOwner {
  private closed = false;

  constructor(readonly fd: number, readonly name: string,
              /** the path to connect to: the bus's `bus` file or the endpoint file */
              readonly path: string) {}

  /** Makes a custom endpoint of this bus (the bus's owner only); it lives as long as the returned owner's fd. */
  makeEndpoint(name: string, opts: MakeEndpointOptions = {}): BusOwner {
    return makeEndpoint(this.path, name, opts);
  }

  /** KDBUS_CMD_ENDPOINT_UPDATE: replaces a custom endpoint's policy. */
  updatePolicy(policy: PolicyEntry[]): void {
    const cmd = new CommandBuilder(CMD_UPDATE.items);
    addPolicy(cmd, policy);
    check('ENDPOINT_UPDATE', nat.ioctl(this.fd, CMD.ENDPOINT_UPDATE, cmd.finish()));
  }

  /** Closes the fd: the bus (with every connection on it) or the endpoint goes away. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    nat.close(this.fd);
  }
}

/** KDBUS_CMD_BUS_MAKE of name (uid- prefixed when not already) in the domain at opts.root. */
export function makeBus(name: string, opts: MakeBusOptions = {}): BusOwner {
  const root = opts.root ?? DEFAULT_ROOT;
  const full = ownedName(name);
  const cmd = new CommandBuilder(CMD_MAKE.items)
    .u64s(ITEM.BLOOM_PARAMETER, [opts.bloomSize ?? 64, opts.bloomHashes ?? 1])
    .string(ITEM.MAKE_NAME, full);
  if (opts.attachCreator !== undefined) cmd.u64s(ITEM.ATTACH_FLAGS_SEND, [opts.attachCreator]);
  if (opts.attachRequired !== undefined) cmd.u64s(ITEM.ATTACH_FLAGS_RECV, [opts.attachRequired]);
  const fd = openFile(join(root, 'control'));
  const r = nat.ioctl(fd, CMD.BUS_MAKE, cmd.finish({ [CMD_MAKE.flags]: ACCESS_FLAGS[opts.access ?? 'owner'] }));
  if (r < 0) {
    nat.close(fd);
    check('BUS_MAKE', r);
  }
  return new BusOwner(fd, full, join(root, full, 'bus'));
}

/** KDBUS_CMD_ENDPOINT_MAKE on the bus file busPath: a custom endpoint with its own policy. */
export function makeEndpoint(busPath: string, name: string, opts: MakeEndpointOptions = {}): BusOwner {
  const full = ownedName(name);
  const cmd = new CommandBuilder(CMD_MAKE.items).string(ITEM.MAKE_NAME, full);
  if (opts.policy) addPolicy(cmd, opts.policy);
  const fd = openFile(busPath);
  const r = nat.ioctl(fd, CMD.ENDPOINT_MAKE, cmd.finish({ [CMD_MAKE.flags]: ACCESS_FLAGS[opts.access ?? 'owner'] }));
  if (r < 0) {
    nat.close(fd);
    check('ENDPOINT_MAKE', r);
  }
  return new BusOwner(fd, full, join(busPath, '..', full));
}
