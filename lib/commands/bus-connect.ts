// Connecting a command to a bus: a kdbus connection (Connection) or a D-Bus
// one (BusConnection) on the bus's endpoint, with a failure to reach it
// said in words (no such bus under the root, no permission). The client
// (and with it the native addon) is loaded only here, when a command
// connects: help and usage errors work without the addon.
import type { BusConnection, BusConnectOptions, Connection, ConnectOptions } from '../client/index.js';
import { KdbusClientError } from '../client/errors.js';
import type { BusAddress } from './bus-address.js';

/** Why `open` of the endpoint failed, for the user. */
function reachError(address: BusAddress, root: string, e: unknown): unknown {
  if (!(e instanceof KdbusClientError)) return e;
  if (e.command === 'open' && e.code === 'ENOENT') {
    const hint = /^\d+-/.test(address.name) ? '' : `; bus names start with their creator's uid, e.g. ${process.geteuid?.() ?? 0}-${address.name}`;
    return new Error(`no bus '${address.name}': ${address.endpoint} does not exist (root ${root})${hint}`);
  }
  if (e.command === 'open' && (e.code === 'EACCES' || e.code === 'EPERM')) {
    return new Error(`no permission to connect to ${address.endpoint}`);
  }
  return new Error(`cannot connect to ${address.endpoint}: ${e.message}`);
}

/** A kdbus connection to the bus, described as the command (kdbusfs-NAME). */
export async function openKdbus(address: BusAddress, root: string, opts: ConnectOptions = {}): Promise<Connection> {
  const { Connection } = await import('../client/connection.js');
  try {
    return Connection.open(address.endpoint, { poolSize: 1 << 20, ...opts });
  } catch (e) {
    throw reachError(address, root, e);
  }
}

/** A D-Bus connection to the bus. */
export async function openDBus(address: BusAddress, root: string, opts: BusConnectOptions = {}): Promise<BusConnection> {
  const { BusConnection } = await import('../client/bus-connection.js');
  try {
    return await BusConnection.connect(address.endpoint, { poolSize: 1 << 20, ...opts });
  } catch (e) {
    throw reachError(address, root, e);
  }
}
