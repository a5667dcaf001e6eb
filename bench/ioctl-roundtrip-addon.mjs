// The native addon alone: a session whose JS ioctl handler answers EINVAL at
// once. Between the C baseline and full kdbusfs, it shows what the addon and
// the JS call cost.   node ioctl-roundtrip-addon.mjs DIR
import { createRequire } from 'node:module';

const native = createRequire(import.meta.url)('../build/Release/kdbusfs_native.node');
const sid = native.sessionMount({
  mountpoint: process.argv[2], fsname: 'kdbusfs', subtype: 'kdbusfs-bench', rootMode: 0o755,
  rootUid: 0, rootGid: 0, allowOther: true, defaultPermissions: false, passthrough: true,
}, {
  open: () => 0,
  release() {},
  ioctl: (unique, fh, cmd, arg, tid, head, command) => (command === null ? -25 : -22),
});
native.nodeAdd(sid, 1, 'control', false, 0o666, 0, 0, 0);
process.on('SIGTERM', () => {
  native.sessionUnmount(sid);
  process.exit(0);
});
console.log('ready');
