// A log that a flood cannot turn into a disk filler or a CPU sink: at most
// `burst` lines per `intervalMs` window (the kernel's printk_ratelimit
// idea); lines beyond that are counted, and the next window begins with one
// line saying how many were left out.

export class RateLimitedLog {
  private windowStart = -Infinity;
  private printed = 0;
  private suppressed = 0;

  constructor(
    private readonly write: (line: string) => void,
    private readonly burst = 10,
    private readonly intervalMs = 5000,
    private readonly now: () => number = () => Date.now(),
  ) {}

  line(text: string): void {
    const t = this.now();
    if (t - this.windowStart >= this.intervalMs) {
      if (this.suppressed) this.write(`${this.suppressed} similar lines suppressed`);
      this.windowStart = t;
      this.printed = 0;
      this.suppressed = 0;
    }
    if (this.printed < this.burst) {
      this.printed++;
      this.write(text);
    } else {
      this.suppressed++;
    }
  }
}
