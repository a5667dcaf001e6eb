/*
 * sd-bus clients of the benchmark suite, for dbus-daemon and dbus-broker,
 * on a private bus address (sd_bus_set_address + sd_bus_set_bus_client).
 *
 *   sdbus-bench ADDRESS call SIZE SECONDS REPS     us per sd_bus_call
 *       (method with an "ay" of SIZE bytes, echoed back by the server)
 *   sdbus-bench ADDRESS signal NSUBS SECONDS REPS BATCH   deliveries/s
 *       (sd_bus_emit_signal; subscribers use sd_bus_match_signal and
 *       acknowledge each BATCH signals with a signal addressed to the emitter)
 *   sdbus-bench ADDRESS connect SECONDS REPS       us per connection
 *       (sd_bus_start, Hello answered, sd_bus_flush_close_unref)
 *   sdbus-bench ADDRESS idle N       N connections held until stdin closes
 *   sdbus-bench broker-controller SOCKET   runs dbus-broker without systemd
 *       on a listening unix socket at SOCKET (see run_controller)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <systemd/sd-bus.h>
#include "common.h"

#define IFACE "org.kdbusfs.Bench"
static const char *address;

static sd_bus *connect_bus(void) {
  sd_bus *b;
  int r;
  if ((r = sd_bus_new(&b)) < 0) die("sd_bus_new: %s", strerror(-r));
  if ((r = sd_bus_set_address(b, address)) < 0) die("sd_bus_set_address: %s", strerror(-r));
  if ((r = sd_bus_set_bus_client(b, 1)) < 0) die("sd_bus_set_bus_client: %s", strerror(-r));
  if ((r = sd_bus_start(b)) < 0) die("sd_bus_start %s: %s", address, strerror(-r));
  const char *name;
  if ((r = sd_bus_get_unique_name(b, &name)) < 0) die("Hello: %s", strerror(-r));
  return b;
}

static void run_loop(sd_bus *b) {
  for (;;) {
    int r = sd_bus_process(b, NULL);
    if (r < 0) die("sd_bus_process: %s", strerror(-r));
    if (r > 0) continue;
    r = sd_bus_wait(b, UINT64_MAX);
    if (r < 0 && r != -EINTR) die("sd_bus_wait: %s", strerror(-r));
  }
}

static pid_t fork_child(void) {
  pid_t p = fork();
  if (p < 0) die("fork: %m");
  if (p == 0) prctl(PR_SET_PDEATHSIG, SIGKILL);
  return p;
}

/* ---- call ---- */
static int echo(sd_bus_message *m, void *ud, sd_bus_error *e) {
  const void *data;
  size_t size;
  sd_bus_message *reply;
  int r;
  if (!sd_bus_message_is_method_call(m, IFACE, "Echo")) return 0;
  if ((r = sd_bus_message_read_array(m, 'y', &data, &size)) < 0) die("read: %s", strerror(-r));
  if ((r = sd_bus_message_new_method_return(m, &reply)) < 0) die("return: %s", strerror(-r));
  if ((r = sd_bus_message_append_array(reply, 'y', data, size)) < 0) die("append: %s", strerror(-r));
  if ((r = sd_bus_send(NULL, reply, NULL)) < 0) die("send: %s", strerror(-r));
  sd_bus_message_unref(reply);
  return 1;
}

static void bench_call(size_t size, double seconds, int reps) {
  int p[2];
  char server[256] = "";
  if (pipe(p) < 0) die("pipe: %m");
  pid_t pid = fork_child();
  if (pid == 0) {
    sd_bus *b = connect_bus();
    const char *name;
    sd_bus_get_unique_name(b, &name);
    if (sd_bus_add_object(b, NULL, "/bench", echo, NULL) < 0) die("add_object");
    if (write(p[1], name, strlen(name) + 1) < 0) die("pipe: %m");
    run_loop(b);
  }
  if (read(p[0], server, sizeof server - 1) <= 0) die("server did not start");
  sd_bus *b = connect_bus();
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
  });
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

/* ---- signal ---- */
static int batch, acks;
static const char *emitter;
static long ticks;

static int on_tick(sd_bus_message *m, void *ud, sd_bus_error *e) {
  sd_bus *b = sd_bus_message_get_bus(m);
  if (++ticks % batch == 0) {
    sd_bus_message *a;
    int r;
    if ((r = sd_bus_message_new_signal(b, &a, "/bench", IFACE, "Ack")) < 0) die("signal: %s", strerror(-r));
    if ((r = sd_bus_message_set_destination(a, emitter)) < 0) die("destination: %s", strerror(-r));
    if ((r = sd_bus_send(b, a, NULL)) < 0) die("send ack: %s", strerror(-r));
    sd_bus_message_unref(a);
  }
  return 1;
}

static int on_ack(sd_bus_message *m, void *ud, sd_bus_error *e) {
  if (sd_bus_message_is_signal(m, IFACE, "Ack")) acks++;
  return 0;
}

static void bench_signal(int nsubs, double seconds, int reps) {
  sd_bus *b = connect_bus();
  int p[2], r;
  pid_t pids[1024];
  sd_bus_get_unique_name(b, &emitter);
  if (pipe(p) < 0) die("pipe: %m");
  for (int i = 0; i < nsubs; i++) {
    pids[i] = fork_child();
    if (pids[i] == 0) {
      sd_bus *s = connect_bus();
      if ((r = sd_bus_match_signal(s, NULL, NULL, "/bench", IFACE, "Tick", on_tick, NULL)) < 0)
        die("match: %s", strerror(-r));
      if (write(p[1], "r", 1) != 1) die("pipe: %m");
      run_loop(s);
    }
  }
  for (int i = 0; i < nsubs; i++) {
    char ch;
    if (read(p[0], &ch, 1) != 1) die("subscriber did not start");
  }
  if ((r = sd_bus_add_filter(b, NULL, on_ack, NULL)) < 0) die("filter: %s", strerror(-r));
  RUN_REPS(seconds, reps, 3, 0, (double)batch * nsubs, {
    for (int i = 0; i < batch; i++)
      if ((r = sd_bus_emit_signal(b, "/bench", IFACE, "Tick", "t", (uint64_t)i)) < 0) die("emit: %s", strerror(-r));
    acks = 0;
    while (acks < nsubs) {
      r = sd_bus_process(b, NULL);
      if (r < 0) die("process: %s", strerror(-r));
      if (r == 0 && sd_bus_wait(b, 10000000) == 0) die("no ack for 10 s (lost signal?)");
    }
  });
  for (int i = 0; i < nsubs; i++) kill(pids[i], SIGKILL);
  for (int i = 0; i < nsubs; i++) waitpid(pids[i], NULL, 0);
}

/* ---- connect / idle ---- */
static void bench_connect(double seconds, int reps) {
  RUN_REPS(seconds, reps, 10, 1, 1, {
    sd_bus *b = connect_bus();
    sd_bus_flush_close_unref(b);
  });
}

static void idle(int n) {
  struct rlimit rl = { n + 64, n + 64 };
  setrlimit(RLIMIT_NOFILE, &rl);
  sd_bus **b = calloc(n, sizeof *b);
  for (int i = 0; i < n; i++) b[i] = connect_bus();
  printf("ready\n");
  fflush(stdout);
  char buf[64];
  while (read(0, buf, sizeof buf) > 0) {}
  for (int i = 0; i < n; i++) sd_bus_flush_close_unref(b[i]);
}

/*
 * dbus-broker without systemd: dbus-broker-launch needs systemd, but the
 * broker itself takes a controller socket (--controller FD). Its controller
 * (this process) hands it a listening socket with org.bus1.DBus.Broker.
 * AddListener(o path, h socket, v policy); the policy allows everything to
 * every uid: a batch (connect; own rules; send and receive rules
 * (btssssuutt): verdict, priority, name, path, interface, member, type,
 * broadcast, min and max fds) for the fall-back uid -1, no gid/uid-range
 * batches, no SELinux names, AppArmor off (the signature dbus-broker 33
 * expects). The broker then serves the
 * socket; the controller just keeps the controller connection open.
 */
#define BATCH_T "bta(btbs)a(btssssuutt)a(btssssuutt)"
#define POLICY_T "a(u(" BATCH_T "))a(buu(" BATCH_T "))a(ss)bs"

static void run_controller(const char *path, char **extra) {
  int pair[2], r;
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  unlink(path);
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4096) < 0) die("listen %s: %m", path);
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0) die("socketpair: %m");
  pid_t pid = fork_child();
  if (pid == 0) {
    char fd[16];
    char *argv[32] = { "dbus-broker", "--controller", fd,
                       "--machine-id", "0123456789abcdef0123456789abcdef" };
    int n = 5;
    fcntl(pair[1], F_SETFD, 0);
    snprintf(fd, sizeof fd, "%d", pair[1]);
    for (; *extra && n < 30; extra++) argv[n++] = *extra;
    argv[n] = NULL;
    execvp("dbus-broker", argv);
    die("exec dbus-broker: %m");
  }
  close(pair[1]);
  sd_bus *b;
  sd_bus_message *m;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  if ((r = sd_bus_new(&b)) < 0 || (r = sd_bus_set_fd(b, pair[0], pair[0])) < 0 || (r = sd_bus_start(b)) < 0)
    die("controller bus: %s", strerror(-r));
  if ((r = sd_bus_message_new_method_call(b, &m, NULL, "/org/bus1/DBus/Broker", "org.bus1.DBus.Broker", "AddListener")) < 0)
    die("AddListener: %s", strerror(-r));
  r = sd_bus_message_append(m, "oh", "/org/bus1/DBus/Listener/0", lfd);
  if (r >= 0) r = sd_bus_message_open_container(m, 'v', "(" POLICY_T ")");
  if (r >= 0) r = sd_bus_message_open_container(m, 'r', POLICY_T);
  if (r >= 0) r = sd_bus_message_open_container(m, 'a', "(u(" BATCH_T "))");
  if (r >= 0) r = sd_bus_message_open_container(m, 'r', "u(" BATCH_T ")");
  if (r >= 0) r = sd_bus_message_append(m, "u", (uint32_t)-1);
  if (r >= 0) r = sd_bus_message_open_container(m, 'r', BATCH_T);
  /* connect: allowed; own: any name; send: anything; receive: anything */
  if (r >= 0) r = sd_bus_message_append(m, BATCH_T, true, UINT64_C(1),
                                         1, true, UINT64_C(1), true, "",
                                         1, true, UINT64_C(1), "", "", "", "", 0, 0, UINT64_C(0), UINT64_MAX,
                                         1, true, UINT64_C(1), "", "", "", "", 0, 0, UINT64_C(0), UINT64_MAX);
  for (int i = 0; i < 3 && r >= 0; i++) r = sd_bus_message_close_container(m);
  if (r >= 0) r = sd_bus_message_append(m, "a(buu(" BATCH_T "))a(ss)bs", 0, 0, false, "");
  for (int i = 0; i < 2 && r >= 0; i++) r = sd_bus_message_close_container(m);
  if (r < 0) die("policy: %s", strerror(-r));
  if ((r = sd_bus_call(b, m, 0, &err, NULL)) < 0) die("AddListener: %s %s", strerror(-r), err.message ?: "");
  printf("%d\n", pid);
  fflush(stdout);
  for (;;) {
    r = sd_bus_process(b, NULL);
    if (r < 0) {
      int st;
      waitpid(pid, &st, 0);
      die("dbus-broker controller: %s (broker exit status %d)", strerror(-r), st);
    }
    if (r == 0) sd_bus_wait(b, UINT64_MAX);
  }
}

int main(int argc, char **argv) {
  if (argc < 3) die("usage: sdbus-bench ADDRESS call|signal|connect|idle ARGS... | broker-controller SOCKET [ARGS]");
  signal(SIGPIPE, SIG_IGN);
  if (!strcmp(argv[1], "broker-controller")) {
    run_controller(argv[2], argv + 3);
    return 0;
  }
  address = argv[1];
  const char *mode = argv[2];
  if (!strcmp(mode, "call") && argc == 6)
    bench_call(strtoull(argv[3], NULL, 0), atof(argv[4]), atoi(argv[5]));
  else if (!strcmp(mode, "signal") && argc == 7) {
    batch = atoi(argv[6]);
    bench_signal(atoi(argv[3]), atof(argv[4]), atoi(argv[5]));
  } else if (!strcmp(mode, "connect") && argc == 5)
    bench_connect(atof(argv[3]), atoi(argv[4]));
  else if (!strcmp(mode, "idle") && argc == 4)
    idle(atoi(argv[3]));
  else
    die("bad arguments");
  return 0;
}
