// Per-call counts for bench/client-call.sh COUNT=1, from `perf script -F
// pid,tid,event,trace` on stdin (fuse:fuse_request_send, sys_enter/exit_ioctl,
// the wait syscalls, any other sys_enter_ counted by name, sched_switch): FUSE requests by opcode, kdbus ioctls by
// command (RECVs that found the queue empty apart), waits, context switches
// of any of the process's threads; for the client and the
// server process named in CALLS_FILE ("CLIENT_PID SERVER_PID CALLS"), or the
// two processes named ROLE_A and ROLE_B there (bench/proxy-bench.sh: the
// proxy and the kdbusfs server).
//   perf script ... | node client-call-count.mjs SIDE CALLS_FILE [ROLE_A ROLE_B]
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const [side, callsFile, roleA = 'client', roleB = 'server'] = process.argv.slice(2);
const [pidA, pidB, calls] = readFileSync(callsFile, 'utf8').trim().split(/\s+/);
const role = new Map([[pidA, roleA], [pidB, roleB]]);
const KDBUS_MAGIC = 0x95;
const CMDS = {
  0x20: 'HELLO', 0x21: 'BYEBYE', 0x30: 'SEND', 0x31: 'RECV', 0x32: 'FREE', 0x40: 'NAME_ACQUIRE', 0x41: 'NAME_RELEASE',
  0x42: 'NAME_LIST', 0x50: 'CONN_INFO', 0x51: 'CONN_UPDATE', 0x52: 'BUS_CREATOR_INFO', 0x70: 'MATCH_ADD', 0x71: 'MATCH_REMOVE',
};
const counts = { [roleA]: new Map(), [roleB]: new Map() };
const add = (r, key) => counts[r].set(key, (counts[r].get(key) ?? 0) + 1);
const pending = new Map(); // tid -> kdbus command in flight

for await (const line of createInterface({ input: process.stdin })) {
  const m = /^\s*(\d+)\/\s*(\d+)\s+(\S+):\s*(.*)$/.exec(line) ?? /^\s*(\d+)\s+(\d+)\s+(\S+):\s*(.*)$/.exec(line);
  if (!m) continue;
  const [, pid, tid, event, trace] = m;
  const r = role.get(pid);
  if (!r) continue;
  if (event === 'fuse:fuse_request_send') {
    const op = /\((FUSE_\w+)\)/.exec(trace)?.[1] ?? 'FUSE_?';
    add(r, `FUSE requests`);
    add(r, `  ${op}`);
  } else if (event === 'syscalls:sys_enter_ioctl') {
    const cmd = Number(/cmd: (0x[0-9a-f]+)/.exec(trace)?.[1] ?? 0);
    const name = ((cmd >>> 8) & 0xff) === KDBUS_MAGIC ? CMDS[cmd & 0xff] ?? `kdbus 0x${(cmd & 0xff).toString(16)}` : null;
    pending.set(tid, name);
    if (name) add(r, `ioctl ${name}`);
  } else if (event === 'syscalls:sys_exit_ioctl') {
    // the return value, signed 64-bit: -EAGAIN is 0xfffffffffffffff5
    const ret = BigInt.asIntN(64, BigInt(/0x[0-9a-f]+/.exec(trace)?.[0] ?? 0));
    if (pending.get(tid) === 'RECV' && ret === -11n) add(r, 'ioctl RECV (EAGAIN)');
    pending.delete(tid);
  } else if (event === 'sched:sched_switch') {
    // the task leaving the CPU: asleep (S, D) or preempted while runnable (R)
    const state = /prev_state=(\S+)/.exec(trace)?.[1] ?? '?';
    const thread = tid === pid ? '' : ', other threads';
    add(r, `switches (${state.startsWith('R') ? 'preempted' : 'sleep'}${thread})`);
  } else if (event.startsWith('syscalls:sys_enter_')) {
    const call = event.slice('syscalls:sys_enter_'.length);
    add(r, `${/poll|wait/.test(call) && call !== 'epoll_ctl' ? 'wait' : 'syscall'} ${call}`);
  }
}
console.log(`${side}: ${calls} calls; per call`);
for (const r of [roleA, roleB]) {
  for (const [k, v] of [...counts[r]].sort()) console.log(`  ${r.padEnd(7)} ${k.padEnd(24)} ${(v / Number(calls)).toFixed(2)}`);
}
