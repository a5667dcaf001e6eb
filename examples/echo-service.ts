// The example service: owns org.kdbusfs.Example and exports
// /org/kdbusfs/Example with interface org.kdbusfs.Example (Echo, Sum, the
// Echoed signal, the Count and Greeting properties) until SIGINT/SIGTERM.
//
//   node dist/examples/echo-service.js --bus PATH_OF_BUS_FILE
import { parseArgs } from 'node:util';
import { BusConnection, RequestNameFlag, RequestNameReply } from '../lib/client/index.js';

const NAME = 'org.kdbusfs.Example';
const PATH = '/org/kdbusfs/Example';

const { values } = parseArgs({ options: { bus: { type: 'string' } } });
if (!values.bus) {
  process.stderr.write('usage: echo-service --bus PATH_OF_BUS_FILE\n');
  process.exit(2);
}

const bus = await BusConnection.connect(values.bus, { description: 'echo-service' });
let count = 0;
let greeting = 'hello';
const object = bus.export(PATH, {
  [NAME]: {
    methods: {
      Echo: {
        in: 's', out: 's',
        call: ([text]) => {
          count++;
          object.emit(NAME, 'Echoed', text!);
          // introspection says Count emits change (sd-bus's default), so it does
          object.propertiesChanged(NAME, ['Count']);
          return text;
        },
      },
      Sum: { in: 'ai', out: 'x', call: ([numbers]) => (numbers as number[]).reduce((a, n) => a + BigInt(n), 0n) },
    },
    properties: {
      Count: { type: 'u', get: () => count },
      Greeting: { type: 's', get: () => greeting, set: (v) => { greeting = v as string; } },
    },
    signals: { Echoed: 's' },
  },
});
// the object answers before the name points callers at it
const got = bus.requestName(NAME, RequestNameFlag.DO_NOT_QUEUE);
if (got !== RequestNameReply.PRIMARY_OWNER) {
  process.stderr.write(`echo-service: ${NAME} is owned by someone else\n`);
  bus.close();
  process.exit(1);
}
process.stderr.write(`echo-service: ${bus.uniqueName} owns ${NAME}\n`);

const stop = (): void => {
  bus.close();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
bus.on('hangup', () => {
  process.stderr.write('echo-service: the bus went away\n');
  process.exit(1);
});
