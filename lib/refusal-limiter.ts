// Which refusal lines get logged. Every user may get a few lines a second (a
// token bucket per uid); what a user's bucket cannot pay for is only counted,
// per command and errno, and summed up in one line per user and period. So a
// user refused thousands of times a second costs the log one line per period,
// and the server one Map update per refusal.

export interface RefusalLimits {
  /** lines a user may get at once (the bucket's size) */
  burst: number;
  /** lines a second a user gets back */
  perSecond: number;
  /** how often suppressed refusals are summed up, in ms */
  summaryMs: number;
  /** the most command/errno pairs a summary names (the rest are counted as "others") */
  summaryKinds: number;
}

export const DEFAULT_REFUSAL_LIMITS: RefusalLimits = { burst: 10, perSecond: 5, summaryMs: 10_000, summaryKinds: 8 };

interface Bucket {
  tokens: number;
  /** when tokens were last topped up (ms) */
  at: number;
  /** refusals not logged since the last summary: "COMMAND ERRNO" -> count */
  suppressed: Map<string, number>;
  suppressedTotal: number;
}

export interface Summary {
  uid: number;
  total: number;
  /** biggest first */
  kinds: [string, number][];
  others: number;
  /** the time the summary covers, in ms */
  periodMs: number;
}

export class RefusalLimiter {
  private readonly buckets = new Map<number, Bucket>();
  private lastSummary: number;

  constructor(private readonly limits: RefusalLimits = DEFAULT_REFUSAL_LIMITS,
              private readonly now: () => number = Date.now) {
    this.lastSummary = now();
  }

  /** Whether this refusal of uid's gets a line; if not, it is counted under kind ("COMMAND ERRNO"). */
  admit(uid: number, kind: string): boolean {
    const t = this.now();
    let b = this.buckets.get(uid);
    if (!b) {
      b = { tokens: this.limits.burst, at: t, suppressed: new Map(), suppressedTotal: 0 };
      this.buckets.set(uid, b);
    } else {
      b.tokens = Math.min(this.limits.burst, b.tokens + ((t - b.at) / 1000) * this.limits.perSecond);
      b.at = t;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
    b.suppressed.set(kind, (b.suppressed.get(kind) ?? 0) + 1);
    b.suppressedTotal++;
    return false;
  }

  /** Refusals not logged, over every user, since the last summaries. */
  get pending(): number {
    let n = 0;
    for (const b of this.buckets.values()) n += b.suppressedTotal;
    return n;
  }

  /**
   * The summaries due (one per user with suppressed refusals) once a period
   * has passed since the last ones, else none. Forgets users whose bucket is
   * full again and who have nothing to report, so that the map stays as small
   * as the set of users refused lately.
   */
  summaries(force = false): Summary[] {
    const t = this.now();
    const periodMs = t - this.lastSummary;
    if (!force && periodMs < this.limits.summaryMs) return [];
    this.lastSummary = t;
    const out: Summary[] = [];
    for (const [uid, b] of this.buckets) {
      if (b.suppressedTotal > 0) {
        const sorted = [...b.suppressed].sort((x, y) => y[1] - x[1]);
        const kinds = sorted.slice(0, this.limits.summaryKinds);
        const others = sorted.slice(this.limits.summaryKinds).reduce((n, [, c]) => n + c, 0);
        out.push({ uid, total: b.suppressedTotal, kinds, others, periodMs });
        b.suppressed = new Map();
        b.suppressedTotal = 0;
      } else if (b.tokens + ((t - b.at) / 1000) * this.limits.perSecond >= this.limits.burst) {
        this.buckets.delete(uid);
      }
    }
    return out;
  }

  /** Users with a bucket (for tests: the map's size stays bounded). */
  get users(): number {
    return this.buckets.size;
  }
}

export function summaryText(s: Summary): string {
  const kinds = s.kinds.map(([k, n]) => `${k} x${n}`);
  if (s.others) kinds.push(`others x${s.others}`);
  return `uid ${s.uid}: ${s.total} more refusals in the last ${Math.max(1, Math.round(s.periodMs / 1000))} s not logged one by one: ${kinds.join(', ')}`;
}
