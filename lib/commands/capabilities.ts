// Linux capability numbers and their names (linux/capability.h), for
// showing a CAPS metadata item's sets as busctl status does.
const NAMES = [
  'cap_chown', 'cap_dac_override', 'cap_dac_read_search', 'cap_fowner', 'cap_fsetid', 'cap_kill', 'cap_setgid',
  'cap_setuid', 'cap_setpcap', 'cap_linux_immutable', 'cap_net_bind_service', 'cap_net_broadcast', 'cap_net_admin',
  'cap_net_raw', 'cap_ipc_lock', 'cap_ipc_owner', 'cap_sys_module', 'cap_sys_rawio', 'cap_sys_chroot', 'cap_sys_ptrace',
  'cap_sys_pacct', 'cap_sys_admin', 'cap_sys_boot', 'cap_sys_nice', 'cap_sys_resource', 'cap_sys_time',
  'cap_sys_tty_config', 'cap_mknod', 'cap_lease', 'cap_audit_write', 'cap_audit_control', 'cap_setfcap',
  'cap_mac_override', 'cap_mac_admin', 'cap_syslog', 'cap_wake_alarm', 'cap_block_suspend', 'cap_audit_read',
  'cap_perfmon', 'cap_bpf', 'cap_checkpoint_restore',
];

/** The names of the capabilities set in mask (bit n = capability n), up to lastCap. */
export function capabilityNames(mask: bigint, lastCap: number): string[] {
  const out: string[] = [];
  for (let n = 0; n <= lastCap && n < 64; n++) if (mask & (1n << BigInt(n))) out.push(NAMES[n] ?? `cap_${n}`);
  return out;
}
