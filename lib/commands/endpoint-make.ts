// kdbusfs endpoint make BUS NAME [--policy FILE]: a custom endpoint of BUS
// (KDBUS_CMD_ENDPOINT_MAKE) with its own policy, held until SIGINT/SIGTERM.
import type { BusOwner } from '../client/index.js';
import { KdbusClientError } from '../client/errors.js';
import { busAddress, findRoot, ROOT_OPTION } from './bus-address.js';
import { ownedBusName } from './bus-make.js';
import type { Command } from './command-table.js';
import { holdUntilSignal } from './hold.js';
import { HELP_OPTION, helpShown, parseOptions } from './options.js';
import { policyOption } from './policy-file.js';
import { usage } from './usage-error.js';

const HELP = `Usage: kdbusfs endpoint make BUS NAME [--policy FILE] [options]

Makes the custom endpoint UID-NAME of BUS (NAME without a uid gets this
user's in front), prints its path (a file beside the bus's \`bus\` file that
clients connect to instead) and holds it until SIGINT or SIGTERM. Only the
bus's creator may make endpoints. Connections through the endpoint see and
talk to only the names its policy allows (README "Policy files"; no
wildcards on endpoints).

Options:
  --root DIR      the kdbus root (default $KDBUSFS_ROOT, else /sys/fs/kdbus)
  --policy FILE   the endpoint's policy
  --world         anybody may open the endpoint (default: this user only)
  --group         this user's group may open it
  -h, --help      show this text
`;

async function run(args: string[]): Promise<'serving' | number> {
  const { values, positionals } = parseOptions(args, {
    ...ROOT_OPTION, policy: { type: 'string' }, world: { type: 'boolean' }, group: { type: 'boolean' }, ...HELP_OPTION,
  }, HELP);
  if (helpShown(values, HELP)) return 0;
  if (positionals.length !== 2) throw usage('endpoint make takes BUS and NAME', HELP);
  const name = ownedBusName(positionals[1]!, HELP, 'endpoint');
  const policy = policyOption(values.policy, HELP);
  const wildcard = policy.find((p) => p.name.endsWith('.*'));
  if (wildcard) throw usage(`kdbus takes no wildcard names on endpoints ('${wildcard.name}')`, HELP);
  const root = findRoot(values.root);
  const address = busAddress(positionals[0]!, root);
  const { makeEndpoint } = await import('../client/bus-owner.js');
  let owner: BusOwner;
  try {
    owner = makeEndpoint(address.endpoint, name, { policy, access: values.world ? 'world' : values.group ? 'group' : 'owner' });
  } catch (e) {
    if (e instanceof KdbusClientError && e.command === 'open' && e.code === 'ENOENT') {
      throw new Error(`no bus '${address.name}': ${address.endpoint} does not exist (root ${root})`);
    }
    if (e instanceof KdbusClientError && e.code === 'EEXIST') throw new Error(`an endpoint named ${name} exists already on ${address.name}`);
    if (e instanceof KdbusClientError && (e.code === 'EPERM' || e.code === 'EACCES')) {
      throw new Error(`only the creator of ${address.name} may make endpoints on it (${e.code})`);
    }
    throw e;
  }
  return holdUntilSignal(owner.path, () => owner.close());
}

export const endpointMakeCommand: Command = {
  name: 'endpoint make', synopsis: 'endpoint make BUS NAME', summary: 'make a custom endpoint and hold it until SIGINT/SIGTERM', help: HELP, run,
};
