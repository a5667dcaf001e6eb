// Makes the bus 0-system (world-accessible) on the kdbusfs mounted at
// /sys/fs/kdbus, as sd-bus's default system bus address expects, and holds it
// until killed. For dbus-sdbus-interop.test.ts, inside its mount namespace.
import { makeBus } from '../../dist/lib/client/index.js';

const bus = makeBus('0-system', { access: 'world' });
process.stdout.write(`${bus.path}\n`);
setInterval(() => undefined, 1 << 30);
