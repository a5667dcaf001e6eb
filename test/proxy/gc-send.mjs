// A SEND whose command outlives a garbage collection during the ioctl: the
// kernel (here the kdbusfs server) reads the message through its address,
// so the Buffer must stay alive until the ioctl returns, also in optimized
// code where a local is dead after its last use. Collects before every SEND
// (the ioctl wrapped) with Connection.send optimized; prints the errors.
//   node --expose-gc --allow-natives-syntax gc-send.mjs DIST BUS
const [dist, bus] = process.argv.slice(2);
const { Connection } = await import(`${dist}/lib/client/index.js`);
const { clientNative } = await import(`${dist}/lib/client/native.js`);
const a = Connection.open(bus, { autoReceive: false });
const b = Connection.open(bus, { autoReceive: false });
const send = () => a.send({ dst: b.id, payload: [Buffer.alloc(64, 1), Buffer.alloc(8, 2)] });
for (let i = 0; i < 20; i++) {
  send();
  while (b.recv());
}
const ioctl = clientNative.ioctl;
let collect = false;
clientNative.ioctl = (fd, cmd, buf) => {
  if (collect) { gc(); gc(); }
  return ioctl(fd, cmd, buf);
};
const errors = {};
for (let i = 0; i < 40; i++) {
  %PrepareFunctionForOptimization(Connection.prototype.send);
  %OptimizeFunctionOnNextCall(Connection.prototype.send);
  collect = true;
  try {
    send();
  } catch (e) {
    errors[e.code] = (errors[e.code] ?? 0) + 1;
  }
  collect = false;
  while (b.recv());
}
process.stdout.write(`${JSON.stringify(errors)}\n`);
a.close();
b.close();
