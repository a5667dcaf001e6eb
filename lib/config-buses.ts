// Buses from configuration: made by the server when it mounts and held until it
// stops, as PID 1 held 0-system on kdbus systems, so that a bus exists without
// any client keeping a control fd open. The configuration is a JSON file
// (README "Buses from configuration"):
//
//   { "buses": [ { "name": "0-system", "owner": 0, "group": 0, "access": "world",
//                  "bloom": { "size": 64, "n_hash": 1 },
//                  "policy": [ { "name": "org.example.Service",
//                                "allow": [ { "user": 1000, "access": "own" },
//                                           { "world": true, "access": "talk" } ] } ] } ] }
//
// A bus is made as BUS_MAKE by its owner would make it (name "<owner uid>-...",
// the owner charged for it, the bus and its `bus` endpoint owned by it), and
// its policy entries are held as a policy holder's would be.
import { readFileSync } from 'node:fs';
import {
  ATTACH, ITEM, LIMITS, MAKE_ACCESS_GROUP, MAKE_ACCESS_WORLD, POLICY_ACCESS_GROUP, POLICY_ACCESS_USER, POLICY_ACCESS_WORLD,
  POLICY_OWN, POLICY_SEE, POLICY_TALK,
} from './abi/kdbus.js';
import { sysnameBytes, sysnameValid } from './abi/items.js';
import { Bus } from './core/bus.js';
import { ROOT_INO, type Domain } from './core/domain.js';
import { Endpoint, endpointMode } from './core/endpoint.js';
import { KdbusError } from './core/errors.js';
import type { FdAccess } from './core/message.js';
import { ProcMeta } from './core/metadata.js';
import { PolicyDb } from './core/policy.js';
import { log } from './log.js';

export type Access = 'owner' | 'group' | 'world';

export interface PolicyRule {
  type: 'user' | 'group' | 'world';
  id: number;
  access: 'see' | 'talk' | 'own';
}

export interface BusConfig {
  name: string;
  owner: number;
  group: number;
  access: Access;
  bloom: { size: number; nHash: number };
  policy: { name: string; allow: PolicyRule[] }[];
}

/** A configuration error: where (file:field) and what is wrong. */
export class BusConfigError extends Error {}

const BLOOM_MAX_SIZE = LIMITS.BUS_BLOOM_MAX_SIZE;
const DEFAULT_BLOOM = { size: 64, nHash: 1 };
const ACCESS_VALUES: Access[] = ['owner', 'group', 'world'];
const POLICY_ACCESS = { see: POLICY_SEE, talk: POLICY_TALK, own: POLICY_OWN } as const;
const ID_MAX = 0xfffffffe; // (uid_t)-1 is no id

/** Reads and validates a bus configuration file. Throws BusConfigError naming file:field. */
export function readBusConfig(file: string): BusConfig[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new BusConfigError(`${file}: cannot read: ${(e as Error).message}`);
  }
  return parseBusConfig(text, file);
}

export function parseBusConfig(text: string, file: string): BusConfig[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new BusConfigError(`${file}: not JSON: ${(e as Error).message}`);
  }
  const bad = (field: string, why: string): never => { throw new BusConfigError(`${file}:${field}: ${why}`); };
  const object = (v: unknown, field: string, keys: string[]): Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(field, 'must be an object');
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!keys.includes(k)) bad(`${field}.${k}`, `unknown field (known: ${keys.join(', ')})`);
    return o;
  };
  const id = (v: unknown, field: string): number => {
    if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > ID_MAX) bad(field, `must be a uid/gid (0..${ID_MAX})`);
    return v as number;
  };
  const list = (v: unknown, field: string): unknown[] => {
    if (!Array.isArray(v)) bad(field, 'must be an array');
    return v as unknown[];
  };

  const top = object(doc, '', ['buses']);
  const seen = new Set<string>();
  return list(top.buses ?? [], 'buses').map((b, i): BusConfig => {
    const at = `buses[${i}]`;
    const o = object(b, at, ['name', 'owner', 'group', 'access', 'bloom', 'policy']);
    const owner = id(o.owner ?? 0, `${at}.owner`);
    const group = id(o.group ?? 0, `${at}.group`);
    if (typeof o.name !== 'string' || !sysnameValid(o.name) || o.name.length > LIMITS.SYSNAME_MAX_LEN) {
      bad(`${at}.name`, `must be a bus name ("<owner uid>-" and letters, digits, "-", "_", "."; at most ${LIMITS.SYSNAME_MAX_LEN})`);
    }
    const name = o.name as string;
    if (!name.startsWith(`${owner}-`)) bad(`${at}.name`, `"${name}" must start with "${owner}-", the owner's uid`);
    if (seen.has(name)) bad(`${at}.name`, `"${name}" is configured twice`);
    seen.add(name);
    const access = o.access ?? 'owner';
    if (!ACCESS_VALUES.includes(access as Access)) bad(`${at}.access`, `must be one of ${ACCESS_VALUES.join(', ')}`);

    let bloom = DEFAULT_BLOOM;
    if (o.bloom !== undefined) {
      const bo = object(o.bloom, `${at}.bloom`, ['size', 'n_hash']);
      const size = bo.size ?? DEFAULT_BLOOM.size;
      const nHash = bo.n_hash ?? DEFAULT_BLOOM.nHash;
      if (!Number.isInteger(size) || (size as number) < 8 || (size as number) > BLOOM_MAX_SIZE || (size as number) % 8) {
        bad(`${at}.bloom.size`, `must be a multiple of 8 from 8 to ${BLOOM_MAX_SIZE} (bytes)`);
      }
      if (!Number.isInteger(nHash) || (nHash as number) < 1) bad(`${at}.bloom.n_hash`, 'must be an integer >= 1');
      bloom = { size: size as number, nHash: nHash as number };
    }

    const policy = list(o.policy ?? [], `${at}.policy`).map((p, j) => {
      const pat = `${at}.policy[${j}]`;
      const po = object(p, pat, ['name', 'allow']);
      if (typeof po.name !== 'string' || po.name === '') bad(`${pat}.name`, 'must be a well-known name (a trailing ".*" for a prefix)');
      const allow = list(po.allow ?? [], `${pat}.allow`).map((r, k): PolicyRule => {
        const rat = `${pat}.allow[${k}]`;
        const ro = object(r, rat, ['user', 'group', 'world', 'access']);
        const kinds = (['user', 'group', 'world'] as const).filter((kind) => ro[kind] !== undefined);
        if (kinds.length !== 1) bad(rat, 'needs exactly one of "user": UID, "group": GID, "world": true');
        const type = kinds[0]!;
        if (type === 'world' && ro.world !== true) bad(`${rat}.world`, 'must be true');
        const a = ro.access;
        if (typeof a !== 'string' || !(a in POLICY_ACCESS)) bad(`${rat}.access`, 'must be "see", "talk" or "own"');
        return { type, id: type === 'world' ? 0 : id(ro[type], `${rat}.${type}`), access: a as PolicyRule['access'] };
      });
      return { name: po.name as string, allow };
    });
    const made = { name, owner, group, access: access as Access, bloom, policy };
    policyItems(made, (why) => bad(`${at}.policy`, why)); // the core's own checks, before anything is mounted
    return made;
  });
}

/** The bus's policy as the NAME / POLICY_ACCESS items a policy holder would send. */
function policyItems(c: BusConfig, bad: (why: string) => never): Buffer {
  const parts: Buffer[] = [];
  const item = (type: number, data: Buffer): void => {
    const size = 16 + data.length;
    const b = Buffer.alloc((size + 7) & ~7);
    b.writeBigUInt64LE(BigInt(size), 0);
    b.writeBigUInt64LE(BigInt(type), 8);
    data.copy(b, 16);
    parts.push(b);
  };
  const kinds = { user: POLICY_ACCESS_USER, group: POLICY_ACCESS_GROUP, world: POLICY_ACCESS_WORLD };
  for (const p of c.policy) {
    item(ITEM.NAME, Buffer.concat([sysnameBytes(p.name), Buffer.from([0])]));
    for (const r of p.allow) {
      const d = Buffer.alloc(24);
      d.writeBigUInt64LE(kinds[r.type], 0);
      d.writeBigUInt64LE(POLICY_ACCESS[r.access], 8);
      d.writeBigUInt64LE(BigInt(r.id), 16);
      item(ITEM.POLICY_ACCESS, d);
    }
  }
  const items = Buffer.concat(parts);
  // a scratch database runs the checks the bus's will (names, wildcards, duplicates, size)
  try {
    new PolicyDb().set(items, 0, items.length, 0, true, {});
  } catch (e) {
    if (e instanceof KdbusError) bad(e.message);
    throw e;
  }
  return items;
}

/**
 * The configured buses of one domain, made at once (all or none) and held
 * until release(). addEndpointFile puts an endpoint's file in the tree (the
 * server's, as for a bus made by BUS_MAKE).
 */
export class ConfiguredBuses {
  /** the owner of the buses' policy entries */
  private readonly policyOwner = {};
  private readonly buses: Bus[] = [];

  private constructor(private readonly domain: Domain) {}

  static make(domain: Domain, fds: FdAccess, addEndpointFile: (bus: Bus, ep: Endpoint) => void,
              configs: BusConfig[]): ConfiguredBuses {
    const held = new ConfiguredBuses(domain);
    try {
      for (const c of configs) held.buses.push(held.makeBus(c, fds, addEndpointFile));
    } catch (e) {
      held.release();
      throw e;
    }
    return held;
  }

  /** What ControlHandle.makeBus does after parsing BUS_MAKE, with the server as creator. */
  private makeBus(c: BusConfig, fds: FdAccess, addEndpointFile: (bus: Bus, ep: Endpoint) => void): Bus {
    if (this.domain.buses.has(c.name)) throw new Error(`bus ${c.name} exists`);
    const user = this.domain.users.get(c.owner);
    this.domain.users.chargeBus(user);
    const group = c.access === 'group';
    const world = c.access === 'world';
    const flags = (group ? MAKE_ACCESS_GROUP : 0n) | (world ? MAKE_ACCESS_WORLD : 0n);
    // BUS_CREATOR_INFO shares none of it (ATTACH_FLAGS_SEND 0), as for a creator that asked for nothing
    const meta = ProcMeta.collect(process.pid, ATTACH.CREDS | ATTACH.PIDS);
    const bus = new Bus(this.domain, c.name, this.domain.nextBusId(), flags,
      { size: BigInt(c.bloom.size), nHash: BigInt(c.bloom.nHash) }, 0n, 0n, c.owner, c.group, user, meta, fds);
    const items = policyItems(c, (why) => { throw new Error(why); });
    bus.policy.set(items, 0, items.length, 0, true, this.policyOwner);
    const dirMode = 0o500 | (group || world ? 0o050 : 0) | (world ? 0o005 : 0);
    bus.ino = this.domain.tree.addDir(ROOT_INO, c.name, dirMode, bus.uid, bus.gid);
    this.domain.buses.set(c.name, bus);
    const ep = new Endpoint(bus, 'bus', bus.uid, bus.gid, endpointMode(group, world), false);
    bus.endpoints.set('bus', ep);
    addEndpointFile(bus, ep);
    log('bus', `bus ${c.name} created from configuration (owner uid ${c.owner}, access ${c.access})`);
    return bus;
  }

  /** Tears the buses down as the close of their control handle would. Idempotent. */
  release(): void {
    for (const bus of this.buses.splice(0)) {
      bus.policy.removeOwner(this.policyOwner);
      bus.deactivate();
      this.domain.buses.delete(bus.name);
      this.domain.tree.remove(bus.ino);
      this.domain.users.uncharge(bus.creator, 'buses');
    }
  }
}
