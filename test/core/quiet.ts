// Imported first by fake-env.ts: the core's info lines (lib/log.ts, read at
// its load) stay off the test output; errors still show.
process.env.KDBUSFS_QUIET = '1';
