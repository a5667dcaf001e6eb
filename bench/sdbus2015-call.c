/*
 * The sd-bus 2015 side of bench/client-call.sh: a method call between two
 * programs linked against sd-bus of February 2015 (the real kdbus client),
 * on a kdbus bus (a kdbusfs mount).
 *
 *   sdbus2015-call ADDRESS SIZE SECONDS REPS
 *       forks an Echo server (method Echo(ay) -> ay on /bench, interface
 *       org.kdbusfs.Bench), then prints microseconds per sd_bus_call, one
 *       line per rep (after a warm-up), with an "ay" of SIZE bytes.
 *       With CALLS_FILE set, writes "CLIENT_PID SERVER_PID CALLS" there at
 *       the end (every call made, warm-up included: bench/client-call.sh
 *       COUNT=1 divides the FUSE requests of each process by it).
 * ADDRESS is sd-bus's, e.g. kernel:path=/mnt/0-bench/bus.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include "sd-bus.h"
#include "common.h"

#define IFACE "org.kdbusfs.Bench"

static sd_bus *connect_bus(const char *address) {
  sd_bus *b;
  int r;
  if ((r = sd_bus_new(&b)) < 0) die("sd_bus_new: %s", strerror(-r));
  if ((r = sd_bus_set_address(b, address)) < 0) die("sd_bus_set_address: %s", strerror(-r));
  if ((r = sd_bus_set_bus_client(b, 1)) < 0) die("sd_bus_set_bus_client: %s", strerror(-r));
  if ((r = sd_bus_start(b)) < 0) die("sd_bus_start %s: %s", address, strerror(-r));
  return b;
}

/* sd-bus 2015 handlers take the bus first */
static int echo(sd_bus *bus, sd_bus_message *m, void *ud, sd_bus_error *e) {
  const void *data;
  size_t size;
  sd_bus_message *reply;
  int r;
  if (!sd_bus_message_is_method_call(m, IFACE, "Echo")) return 0;
  if ((r = sd_bus_message_read_array(m, 'y', &data, &size)) < 0) die("read: %s", strerror(-r));
  if ((r = sd_bus_message_new_method_return(m, &reply)) < 0) die("return: %s", strerror(-r));
  if ((r = sd_bus_message_append_array(reply, 'y', data, size)) < 0) die("append: %s", strerror(-r));
  if ((r = sd_bus_send(bus, reply, NULL)) < 0) die("send: %s", strerror(-r));
  sd_bus_message_unref(reply);
  return 1;
}

int main(int argc, char *argv[]) {
  if (argc != 5) die("usage: sdbus2015-call ADDRESS SIZE SECONDS REPS");
  const char *address = argv[1];
  size_t size = strtoul(argv[2], NULL, 10);
  double seconds = atof(argv[3]);
  int reps = atoi(argv[4]);
  int p[2];
  char server[256] = "";
  if (pipe(p) < 0) die("pipe: %m");
  pid_t pid = fork();
  if (pid < 0) die("fork: %m");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sd_bus *b = connect_bus(address);
    const char *name;
    int r;
    if ((r = sd_bus_get_unique_name(b, &name)) < 0) die("unique name: %s", strerror(-r));
    if (sd_bus_add_object(b, NULL, "/bench", echo, NULL) < 0) die("add_object");
    if (write(p[1], name, strlen(name) + 1) < 0) die("pipe: %m");
    for (;;) {
      r = sd_bus_process(b, NULL);
      if (r < 0) die("sd_bus_process: %s", strerror(-r));
      if (r > 0) continue;
      r = sd_bus_wait(b, UINT64_MAX);
      if (r < 0 && r != -EINTR) die("sd_bus_wait: %s", strerror(-r));
    }
  }
  if (read(p[0], server, sizeof server - 1) <= 0) die("server did not start");
  sd_bus *b = connect_bus(address);
  long calls = 0;
  uint8_t *buf = malloc(size ? size : 1);
  memset(buf, 0xa5, size);
  RUN_REPS(seconds, reps, 10, 1, 1, {
    sd_bus_message *m, *reply;
    sd_bus_error err = SD_BUS_ERROR_NULL;
    const uint8_t *d;
    size_t got;
    int r;
    if ((r = sd_bus_message_new_method_call(b, &m, server, "/bench", IFACE, "Echo")) < 0) die("new call: %s", strerror(-r));
    if ((r = sd_bus_message_append_array(m, 'y', buf, size)) < 0) die("append: %s", strerror(-r));
    if ((r = sd_bus_call(b, m, 10000000, &err, &reply)) < 0) die("sd_bus_call: %s %s", strerror(-r), err.message ?: "");
    if ((r = sd_bus_message_read_array(reply, 'y', (const void **)&d, &got)) < 0) die("read: %s", strerror(-r));
    if (got != size || (size && d[size - 1] != 0xa5)) die("bad reply: %zu bytes", got);
    sd_bus_message_unref(reply);
    sd_bus_message_unref(m);
    calls++;
  });
  const char *calls_file = getenv("CALLS_FILE");
  if (calls_file) {
    FILE *f = fopen(calls_file, "w");
    if (!f) die("%s: %m", calls_file);
    fprintf(f, "%d %d %ld\n", (int)getpid(), (int)pid, calls);
    fclose(f);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return 0;
}
