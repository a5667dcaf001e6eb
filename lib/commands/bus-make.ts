// kdbusfs bus make NAME [--world] [--policy FILE] [--bloom SIZE,HASHES]:
// a bus (KDBUS_CMD_BUS_MAKE) held until SIGINT/SIGTERM, its policy held by
// policy-holder connections, one per name as kdbus takes them.
import type { BusOwner, Connection } from '../client/index.js';
import { KdbusClientError } from '../client/errors.js';
import { ATTACH_ALL } from '../abi/kdbus.js';
import { findRoot, ROOT_OPTION } from './bus-address.js';
import type { Command } from './command-table.js';
import { holdUntilSignal } from './hold.js';
import { HELP_OPTION, helpShown, parseOptions } from './options.js';
import { policyOption } from './policy-file.js';
import { usage } from './usage-error.js';

const HELP = `Usage: kdbusfs bus make NAME [--world] [--policy FILE] [--bloom SIZE,HASHES] [options]

Makes the bus UID-NAME under the root (kdbus names buses after their
creator's uid: NAME without it gets this user's uid in front; a NAME with
another uid is refused), prints the path of its bus file (what clients
connect to) and holds the bus until SIGINT or SIGTERM, when it is removed
with every connection on it.

Options:
  --root DIR           the kdbus root (default $KDBUSFS_ROOT, else /sys/fs/kdbus)
  --world              anybody may connect (default: this user only)
  --group              this user's group may connect
  --policy FILE        who may see, talk to and own which names (README
                       "Policy files"; wildcards allowed), installed by
                       policy-holder connections this command keeps
  --bloom SIZE,HASHES  the bloom filter's size in bytes (a multiple of 8)
                       and hash count for signal matching (default 64,1)
  -h, --help           show this text
`;

/** NAME as kdbus wants it: UID-NAME for this user; a name with another uid is a usage error. */
export function ownedBusName(name: string, help: string, what = 'bus'): string {
  const uid = process.geteuid?.() ?? 0;
  const m = /^(\d+)-(.+)$/.exec(name);
  if (m && Number(m[1]) !== uid) {
    throw usage(`a ${what} name must start with its creator's uid: '${name}' starts with ${m[1]}-, this user is ${uid} (use ${uid}-${m[2]}, or just ${m[2]})`, help);
  }
  if (!m && /^\d+$/.test(name)) throw usage(`'${name}' is only a uid: a ${what} name is UID-NAME`, help);
  return m ? name : `${uid}-${name}`;
}

function parseBloom(value: string): { size: number; hashes: number } {
  const m = /^(\d+),(\d+)$/.exec(value);
  if (!m) throw usage(`--bloom takes SIZE,HASHES (e.g. 64,1), not '${value}'`, HELP);
  const size = Number(m[1]);
  const hashes = Number(m[2]);
  if (size < 8 || size % 8 !== 0) throw usage(`the bloom size must be a multiple of 8 of at least 8 bytes, not ${size}`, HELP);
  if (hashes < 1) throw usage('the bloom hash count must be at least 1', HELP);
  return { size, hashes };
}

async function run(args: string[]): Promise<'serving' | number> {
  const { values, positionals } = parseOptions(args, {
    ...ROOT_OPTION, world: { type: 'boolean' }, group: { type: 'boolean' }, policy: { type: 'string' },
    bloom: { type: 'string' }, ...HELP_OPTION,
  }, HELP);
  if (helpShown(values, HELP)) return 0;
  if (positionals.length !== 1) throw usage('bus make takes exactly one NAME', HELP);
  const name = ownedBusName(positionals[0]!, HELP);
  const bloom = values.bloom === undefined ? { size: 64, hashes: 1 } : parseBloom(values.bloom);
  const policy = policyOption(values.policy, HELP);
  const root = findRoot(values.root);
  const { makeBus } = await import('../client/bus-owner.js');
  const { Connection } = await import('../client/connection.js');
  let owner: BusOwner;
  try {
    owner = makeBus(name, {
      root, bloomSize: bloom.size, bloomHashes: bloom.hashes, attachCreator: ATTACH_ALL, access: values.world ? 'world' : values.group ? 'group' : 'owner',
    });
  } catch (e) {
    if (e instanceof KdbusClientError && e.command === 'open') throw new Error(`no kdbus root at ${root} (${e.code}): is kdbusfs mounted there?`);
    if (e instanceof KdbusClientError && e.code === 'EEXIST') throw new Error(`a bus named ${name} exists already under ${root}`);
    throw e;
  }
  const holders: Connection[] = [];
  try {
    for (const entry of policy) {
      holders.push(Connection.open(owner.path, {
        kind: 'policy-holder', name: entry.name, grants: entry.grants, poolSize: 4096, description: 'kdbusfs-policy',
      }));
    }
  } catch (e) {
    for (const h of holders) h.close();
    owner.close();
    throw new Error(`cannot install the policy: ${(e as Error).message}`);
  }
  return holdUntilSignal(owner.path, () => {
    for (const h of holders) h.close();
    owner.close();
  });
}

export const busMakeCommand: Command = {
  name: 'bus make', synopsis: 'bus make NAME', summary: 'make a bus and hold it until SIGINT/SIGTERM', help: HELP, run,
};
