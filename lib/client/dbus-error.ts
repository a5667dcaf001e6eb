// A D-Bus error: an error name and its text, as an ERROR reply carries them.
// Method handlers throw it to answer with that error; calls reject with it.

/** Error names the object layer and the driver calls answer with. */
export const ErrorName = {
  FAILED: 'org.freedesktop.DBus.Error.Failed',
  UNKNOWN_OBJECT: 'org.freedesktop.DBus.Error.UnknownObject',
  UNKNOWN_INTERFACE: 'org.freedesktop.DBus.Error.UnknownInterface',
  UNKNOWN_METHOD: 'org.freedesktop.DBus.Error.UnknownMethod',
  UNKNOWN_PROPERTY: 'org.freedesktop.DBus.Error.UnknownProperty',
  PROPERTY_READ_ONLY: 'org.freedesktop.DBus.Error.PropertyReadOnly',
  INVALID_ARGS: 'org.freedesktop.DBus.Error.InvalidArgs',
  NAME_HAS_NO_OWNER: 'org.freedesktop.DBus.Error.NameHasNoOwner',
  MATCH_RULE_NOT_FOUND: 'org.freedesktop.DBus.Error.MatchRuleNotFound',
  MATCH_RULE_INVALID: 'org.freedesktop.DBus.Error.MatchRuleInvalid',
  SERVICE_UNKNOWN: 'org.freedesktop.DBus.Error.ServiceUnknown',
  NO_REPLY: 'org.freedesktop.DBus.Error.NoReply',
  DISCONNECTED: 'org.freedesktop.DBus.Error.Disconnected',
} as const;

export class DBusError extends Error {
  constructor(readonly errorName: string, readonly text = '') {
    super(text ? `${errorName}: ${text}` : errorName);
    this.name = 'DBusError';
  }
}
