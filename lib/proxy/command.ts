// `kdbusfs proxy`: classic D-Bus clients on a kdbus bus.
// The proxy's modules load the native addon: they are imported when it runs,
// so that `--help` and usage errors work without the addon.
import { parseArgs } from 'node:util';
import { findRoot } from '../commands/bus-address.js';
import type { Command } from '../commands/command-table.js';
import { onStopSignal } from '../commands/hold.js';
import { usage } from '../commands/usage-error.js';

export const PROXY_HELP = `Usage: kdbusfs proxy --bus BUS [--make-bus] [--listen ADDRESS] [--policy FILE] [--root DIR]

Serves the classic D-Bus socket protocol for a kdbus bus: dbus-send, busctl,
gdbus, python-dbus and every libdbus/GDBus/sd-bus program of today connect to
ADDRESS and talk to kdbus clients of the bus, each through a kdbus connection
that carries its own credentials. Runs in the foreground until SIGINT or
SIGTERM; prints the D-Bus address it serves on stdout once it listens.

  --bus BUS        the bus: a bus file (/sys/fs/kdbus/0-system/bus) or a bus
                   name under --root (0-system)
  --root DIR       where bus names are looked up (default $KDBUSFS_ROOT, else
                   /sys/fs/kdbus)
  --make-bus       make the bus BUS (a name, UID-NAME) first and hold it while
                   the proxy runs: a private session-style bus in one command
                   (with --policy, open to every user: a system-style bus)
  --listen ADDRESS unix:path=PATH, unix:abstract=NAME or a bare PATH; without
                   it the socket systemd passes (LISTEN_FDS) is served
  --policy FILE    a dbus-daemon busconfig file whose <policy> own/send/receive
                   rules apply (system-bus style: deny unless allowed), whose
                   user/group rules say who may connect (without them only
                   the bus's owner, the UID of its name), and
                   what of them kdbus can express is held as kdbus policy for
                   kdbus-native clients; without it everything kdbus allows
                   is allowed (session-bus style)
`;

async function proxy(args: string[]): Promise<number | 'serving'> {
  let values: { bus?: string; root?: string; listen?: string; policy?: string; 'make-bus'?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args, options: {
        bus: { type: 'string' }, root: { type: 'string' }, listen: { type: 'string' }, policy: { type: 'string' },
        'make-bus': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    throw usage((e as Error).message, PROXY_HELP);
  }
  if (values.help) {
    process.stdout.write(PROXY_HELP);
    return 0;
  }
  const { makeBus } = await import('../client/bus-owner.js');
  const { BusProxy } = await import('./bus-proxy.js');
  const { activationSocket, dbusAddress, Listener } = await import('./listener.js');
  const { XmlPolicy } = await import('./xml-policy.js');
  const activated = activationSocket();
  if (!values.bus || (values.listen === undefined && activated === null)) {
    throw usage('proxy needs --bus and --listen (or socket activation)', PROXY_HELP);
  }
  values.root = findRoot(values.root);
  const policy = values.policy ? XmlPolicy.load(values.policy) : null;
  // the bus lives as long as its creator's handle: this process, for --make-bus
  // a system-style bus (a policy) is open to every user, as dbus-daemon's system bus: the policy says who may do what
  const made = values['make-bus']
    ? makeBus(values.bus, { ...(values.root !== undefined && { root: values.root }), access: policy ? 'world' : 'owner' })
    : null;
  const busName = made ? made.name : values.bus;
  let proxy: InstanceType<typeof BusProxy>;
  try {
    proxy = new BusProxy({
      bus: busName, ...(values.root !== undefined && { root: values.root }), policy,
      ...(process.env.KDBUSFS_PROXY_DEBUG && { onClientClose: (p, why) => process.stderr.write(`kdbusfs proxy: client pid ${p.pid} uid ${p.uid}: ${why}\n`) }),
    });
  } catch (e) {
    made?.close();
    throw e;
  }
  if (proxy.kdbusPolicy?.refused.length) {
    process.stderr.write(`kdbusfs proxy: kdbus did not take the policy for ${proxy.kdbusPolicy.refused.join(', ')}: `
      + 'kdbus-native clients are not held to it there (the proxy\'s clients are)\n');
  }
  // the socket appears once the proxy is ready: the bus checked, its kdbus policy held
  let listener: ReturnType<typeof Listener.open>;
  try {
    listener = values.listen !== undefined ? Listener.open(values.listen) : Listener.inherited(activated!);
  } catch (e) {
    proxy.close();
    made?.close();
    throw e;
  }
  proxy.start(listener);
  if (listener.socket) process.stdout.write(`${dbusAddress(listener.socket)}\n`);
  onStopSignal(() => {
    proxy.close();
    made?.close();
    process.exit(0);
  });
  return 'serving';
}

export const proxyCommand: Command = {
  name: 'proxy', synopsis: 'proxy --bus BUS', summary: 'serve a kdbus bus to classic D-Bus clients (a unix socket)',
  help: PROXY_HELP, run: proxy,
};
