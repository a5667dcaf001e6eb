// One proxied client's AddMatch rules: each one becomes kdbus matches under a
// cookie of its own (bloom mask, sender, the name and id notifications that
// stand for NameOwnerChanged), and is kept to check what the kernel lets
// through, since bloom masks have false positives and dbus-daemon delivers a
// broadcast only to the clients whose rules it matches.
import type { Connection } from '../client/connection.js';
import { DBusError, ErrorName } from '../client/dbus-error.js';
import type { DBusMessage } from '../client/dbus-message.js';
import { DRIVER_NAME } from '../client/kdbus-envelope.js';
import { installMatch } from '../client/match-install.js';
import { formatMatchRule, kdbusMatch, matchesMessage, parseMatchRule, type MatchRule } from '../client/match-rule.js';
import { isUniqueName } from '../client/dbus-names.js';

/** dbus-daemon's max_match_rules_per_connection (system bus). */
export const MAX_MATCH_RULES = 512;
/** The cookie of the proxy's own matches (its client's NameAcquired / NameLost); rules start above it. */
export const OWN_MATCH_COOKIE = 1n;

/**
 * The rule without its eavesdrop key: dbus-daemon took eavesdrop='true' to
 * see unicasts to others; kdbus has monitors for that (BecomeMonitor), so the
 * key is accepted and the rule is what remains.
 */
function parse(text: string): MatchRule {
  try {
    return parseMatchRule(text.replace(/(^|,)\s*eavesdrop\s*=\s*'?(true|false)'?\s*(?=,|$)/g, '$1').replace(/^,|,$/g, ''));
  } catch (e) {
    throw new DBusError(ErrorName.MATCH_RULE_INVALID, (e as Error).message);
  }
}

interface Entry { key: string; rule: MatchRule; cookie: bigint }

export class ClientMatches {
  private readonly entries: Entry[] = [];
  private nextCookie = OWN_MATCH_COOKIE + 1n;

  constructor(private readonly kdbus: Connection) {}

  get size(): number {
    return this.entries.length;
  }

  /** AddMatch: MatchRuleInvalid for a bad rule, LimitsExceeded past the limit. */
  add(text: string): void {
    const rule = parse(text);
    if (this.entries.length >= MAX_MATCH_RULES) {
      throw new DBusError('org.freedesktop.DBus.Error.LimitsExceeded', `more than ${MAX_MATCH_RULES} match rules`);
    }
    const km = kdbusMatch(rule, this.kdbus.bloom);
    const cookie = this.nextCookie++;
    installMatch(this.kdbus, cookie, km);
    this.entries.push({ key: formatMatchRule(rule), rule, cookie });
  }

  /** A rule checked here only (a monitor's: kdbus shows a monitor everything). */
  addLocal(text: string): void {
    const rule = parse(text);
    this.entries.push({ key: formatMatchRule(rule), rule, cookie: 0n });
  }

  /** RemoveMatch: the first rule equal to `text` (compared parsed); MatchRuleNotFound when none. */
  remove(text: string): void {
    const key = formatMatchRule(parse(text));
    const i = this.entries.findIndex(x => x.key === key);
    if (i < 0) throw new DBusError(ErrorName.MATCH_RULE_NOT_FOUND, `no match rule '${text}'`);
    const [e] = this.entries.splice(i, 1);
    this.kdbus.removeMatch(e!.cookie);
  }

  /**
   * Whether any rule takes `m` (a broadcast or a driver signal). The message
   * names its sender by unique name: a rule's well-known sender is checked
   * against the names the sender owned (kdbus NAMES metadata).
   */
  wants(m: DBusMessage, senderNames?: string[]): boolean {
    return this.entries.some(({ rule }) => {
      if (rule.sender !== undefined && !isUniqueName(rule.sender) && rule.sender !== DRIVER_NAME) {
        if (!senderNames?.includes(rule.sender)) return false;
        const { sender: _unused, ...rest } = rule;
        return matchesMessage(rest as MatchRule, m);
      }
      return matchesMessage(rule, m);
    });
  }
}
