// Module-wide parameters, as the kdbus kernel module exposed them in
// /sys/module/kdbus/parameters. Read on every metadata export, so a write
// takes effect at once.

/** The kernel module's default: TIMESTAMP|CREDS|PIDS|AUXGROUPS|NAMES|SECLABEL|CONN_DESCRIPTION. */
export const DEFAULT_ATTACH_FLAGS_MASK = 0x281fn;

export const moduleParams = {
  /** attach_flags_mask (ullong): metadata items never exported unless set here. */
  attachFlagsMask: DEFAULT_ATTACH_FLAGS_MASK,
};
