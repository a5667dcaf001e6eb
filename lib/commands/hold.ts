// Holding what a command made (a bus, an endpoint) until SIGINT or SIGTERM:
// its path printed on stdout once it exists, then nothing until the signal,
// which releases it and exits 0.
export function holdUntilSignal(path: string, release: () => void): 'serving' {
  process.stdout.write(`${path}\n`);
  // nothing else keeps the event loop alive: the made things are plain fds
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const stop = (): void => {
    clearInterval(keepAlive);
    release();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return 'serving';
}
