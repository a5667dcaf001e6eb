// `kdbusfs proxy`: classic D-Bus clients on a kdbus bus.
import { parseArgs } from 'node:util';
import { makeBus } from '../client/bus-owner.js';
import { BusProxy } from './bus-proxy.js';
import { activationSocket, dbusAddress, Listener } from './listener.js';
import { XmlPolicy } from './xml-policy.js';

export const PROXY_HELP = `Usage: kdbusfs proxy --bus BUS [--make-bus] [--listen ADDRESS] [--policy FILE] [--root DIR]

Serves the classic D-Bus socket protocol for a kdbus bus: dbus-send, busctl,
gdbus, python-dbus and every libdbus/GDBus/sd-bus program of today connect to
ADDRESS and talk to kdbus clients of the bus, each through a kdbus connection
that carries its own credentials. Runs in the foreground until SIGINT or
SIGTERM; prints the D-Bus address it serves on stdout once it listens.

  --bus BUS        the bus: a bus file (/sys/fs/kdbus/0-system/bus) or a bus
                   name under --root (0-system)
  --root DIR       where bus names are looked up (default /sys/fs/kdbus)
  --make-bus       make the bus BUS (a name, UID-NAME) first and hold it while
                   the proxy runs: a private session-style bus in one command
  --listen ADDRESS unix:path=PATH, unix:abstract=NAME or a bare PATH; without
                   it the socket systemd passes (LISTEN_FDS) is served
  --policy FILE    a dbus-daemon busconfig file whose <policy> own/send/receive
                   rules apply (system-bus style: deny unless allowed); without
                   it everything kdbus allows is allowed (session-bus style)
`;

export async function proxyCommand(args: string[]): Promise<number | 'serving'> {
  let values: { bus?: string; root?: string; listen?: string; policy?: string; 'make-bus'?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args, options: {
        bus: { type: 'string' }, root: { type: 'string' }, listen: { type: 'string' }, policy: { type: 'string' },
        'make-bus': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    process.stderr.write(`kdbusfs: ${(e as Error).message}\n\n${PROXY_HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(PROXY_HELP);
    return 0;
  }
  const activated = activationSocket();
  if (!values.bus || (values.listen === undefined && activated === null)) {
    process.stderr.write(`kdbusfs: proxy needs --bus and --listen (or socket activation)\n\n${PROXY_HELP}`);
    return 2;
  }
  const policy = values.policy ? XmlPolicy.load(values.policy) : null;
  // the bus lives as long as its creator's handle: this process, for --make-bus
  const made = values['make-bus'] ? makeBus(values.bus, { ...(values.root !== undefined && { root: values.root }) }) : null;
  const busName = made ? made.name : values.bus;
  const listener = values.listen !== undefined ? Listener.open(values.listen) : Listener.inherited(activated!);
  let proxy: BusProxy;
  try {
    proxy = new BusProxy(listener, {
      bus: busName, ...(values.root !== undefined && { root: values.root }), policy,
      ...(process.env.KDBUSFS_PROXY_DEBUG && { onClientClose: (p, why) => process.stderr.write(`kdbusfs proxy: client pid ${p.pid} uid ${p.uid}: ${why}\n`) }),
    });
  } catch (e) {
    listener.close();
    made?.close();
    throw e;
  }
  proxy.start();
  if (listener.socket) process.stdout.write(`${dbusAddress(listener.socket)}\n`);
  const stop = (): void => {
    proxy.close();
    made?.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return 'serving';
}
