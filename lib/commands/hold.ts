// Commands that run until SIGINT or SIGTERM (monitor, stats --watch, proxy)
// and those that hold what they made (a bus, an endpoint) that long: its
// path printed on stdout once it exists, then nothing until the signal,
// which releases it and exits 0.

/** stop runs on the first SIGINT or SIGTERM. */
export function onStopSignal(stop: () => void): void {
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

export function holdUntilSignal(path: string, release: () => void): 'serving' {
  process.stdout.write(`${path}\n`);
  // nothing else keeps the event loop alive: the made things are plain fds
  const keepAlive = setInterval(() => undefined, 1 << 30);
  onStopSignal(() => {
    clearInterval(keepAlive);
    release();
    process.exit(0);
  });
  return 'serving';
}
