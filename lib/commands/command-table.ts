// What a kdbusfs command is to the dispatcher in lib/cli.ts: a name, a
// one-line summary for the top help, its own help text, and run(args), which
// answers an exit code or 'serving' (the process stays up: mount, bus make,
// endpoint make). Failures are thrown: an Error exits 1, a UsageError 2.
export type CommandResult = number | 'serving';

export interface Command {
  /** the words that select it, e.g. 'list' or 'bus make' */
  name: string;
  /** how it is called, for the top help (after `kdbusfs `) */
  synopsis: string;
  summary: string;
  help: string;
  run(args: string[]): Promise<CommandResult> | CommandResult;
  /** failures go to the server's log format (mount, umount, selftest); others print one plain line */
  logsErrors?: boolean;
}

/** The command that argv starts with (one- or two-word names) and the rest of argv, or null. */
export function findCommand(table: readonly Command[], argv: string[]): { command: Command; args: string[] } | null {
  for (const words of [2, 1]) {
    const name = argv.slice(0, words).join(' ');
    const command = table.find((c) => c.name === name);
    if (command && argv.length >= words) return { command, args: argv.slice(words) };
  }
  return null;
}
