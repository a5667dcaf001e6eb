// The exit-code convention of every kdbusfs command: 0 done, 1 failed (an
// Error: the operation was refused or went wrong), 2 usage (a UsageError:
// the command line itself is wrong; its message ends with the command's help).
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A command line that cannot be run as given: exits 2 with its message (and the help it carries). */
export class UsageError extends Error {}

/** A usage error saying why, followed by the command's help text. */
export function usage(why: string, help: string): UsageError {
  return new UsageError(`${why}\n\n${help}`);
}
