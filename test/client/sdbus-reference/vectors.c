/* Prints, as "name hex" lines, bytes computed by the real sd-bus of February
 * 2015 for the client codec's tests (test/client/*.test.ts hold them as hex
 * literals): sealed protocol-2 messages, the bloom filter of a signal, and
 * the KDBUS_CMD_MATCH_ADD commands of match rules. No bus is involved: the
 * sd_bus object is only configured (message version 2, bloom parameters), and
 * ioctl() is replaced below so that match commands are printed, not sent.
 * "codec-vectors read HEX" instead dumps a message as sd-bus reads it.
 * Build and run: bash test/client/sdbus-reference/run.sh (needs
 * /work/shared/sd-bus-2015/build.sh's tree). */
#include <stdarg.h>
#include <stdio.h>
#include <sys/ioctl.h>

/* bus_message_setup_bloom() is static in bus-kernel.c: compile it in here */
#include "bus-kernel.c"
#include "bus-control.h"
#include "bus-match.h"
#include "bus-dump.h"

static void hex(const char *name, const void *p, size_t n) {
        const uint8_t *b = p;
        size_t i;

        printf("%s ", name);
        for (i = 0; i < n; i++)
                printf("%02x", b[i]);
        printf("\n");
}

static const char *match_name;
static unsigned match_count;

/* every KDBUS_CMD_MATCH_ADD sd-bus issues: its items after the fixed part */
int ioctl(int fd, unsigned long request, ...) {
        struct kdbus_cmd_match *m;
        char name[256];
        va_list ap;

        va_start(ap, request);
        m = va_arg(ap, struct kdbus_cmd_match *);
        va_end(ap);
        if (request != KDBUS_CMD_MATCH_ADD)
                return -1;
        snprintf(name, sizeof(name), "match:%s#%u", match_name, match_count++);
        hex(name, m->items, m->size - offsetof(struct kdbus_cmd_match, items));
        return 0;
}

static void message(const char *name, sd_bus_message *m, uint64_t cookie) {
        void *blob;
        size_t sz;

        assert_se(bus_message_seal(m, cookie, 0) >= 0);
        assert_se(bus_message_get_blob(m, &blob, &sz) >= 0);
        hex(name, blob, sz);
        free(blob);
}

/* the kdbus_msg sd-bus built for a sealed message: "kmsg:NAME flags dst_id cookie
 * cookie_reply expects-timeout item-types..." (a timeout is a clock reading) */
static void kmsg(const char *name, sd_bus_message *m) {
        struct kdbus_item *d;

        assert_se(bus_message_setup_kmsg(m->bus, m) >= 0);
        printf("kmsg:%s %llx %llx %llu %llu %d", name, (unsigned long long) m->kdbus->flags,
               (unsigned long long) m->kdbus->dst_id, (unsigned long long) m->kdbus->cookie,
               (unsigned long long) m->kdbus->cookie_reply, m->kdbus->timeout_ns != 0);
        KDBUS_ITEM_FOREACH(d, m->kdbus, items)
                printf(" %llu", (unsigned long long) d->type);
        printf("\n");
}

static void bloom(const char *name, sd_bus_message *m) {
        uint8_t buf[sizeof(struct kdbus_bloom_filter) + 64];
        struct kdbus_bloom_filter *f = (struct kdbus_bloom_filter *) buf;

        assert_se(bus_message_setup_bloom(m, f) >= 0);
        hex(name, f->data, m->bus->bloom_size);
}

static void match(sd_bus *bus, const char *rule) {
        struct bus_match_component *components = NULL;
        unsigned n = 0;

        match_name = rule;
        match_count = 0;
        assert_se(bus_match_parse(rule, &components, &n) >= 0);
        assert_se(bus_add_match_internal_kernel(bus, components, n, 1) >= 0);
        bus_match_parse_free(components, n);
}

/* "read HEX": whether sd-bus accepts a message and all of its body */
static int read_message(sd_bus *bus, const char *text) {
        size_t n = strlen(text) / 2, i;
        sd_bus_message *m = NULL;
        uint8_t *blob = malloc(n);
        int r;

        for (i = 0; i < n; i++)
                sscanf(text + 2 * i, "%2hhx", &blob[i]);
        r = bus_message_from_malloc(bus, blob, n, NULL, 0, NULL, NULL, &m);
        if (r >= 0)
                r = bus_message_dump(m, stdout, BUS_MESSAGE_DUMP_WITH_HEADER);
        printf("read %s\n", r < 0 ? strerror(-r) : "ok");
        return r < 0;
}

int main(int argc, char *argv[]) {
        sd_bus *bus;
        sd_bus_message *m, *call;

        assert_se(sd_bus_new(&bus) >= 0);
        bus->message_version = 2;
        bus->state = BUS_RUNNING;
        bus->can_fds = true;
        bus->is_kernel = true;
        bus->bloom_size = 64;
        bus->bloom_n_hash = 8;
        if (argc == 3 && streq(argv[1], "read"))
                return read_message(bus, argv[2]);

        assert_se(sd_bus_message_new_method_call(bus, &m, "org.kdbusfs.Example", "/org/kdbusfs/Example",
                                                 "org.kdbusfs.Example", "Echo") >= 0);
        assert_se(sd_bus_message_append(m, "s", "hello") >= 0);
        message("call-echo", m, 1);
        kmsg("call-echo", m);
        call = m;
        call->sender = ":1.7";

        assert_se(sd_bus_message_new_method_call(bus, &m, NULL, "/", NULL, "Ping") >= 0);
        message("call-empty", m, 2);
        sd_bus_message_unref(m);

        assert_se(sd_bus_message_new_method_call(bus, &m, ":1.42", "/a/b", "a.b", "Every") >= 0);
        assert_se(sd_bus_message_append(m, "ybnqiuxtdsogv", 200, true, -2, 65535, -100000, 4000000000u,
                                        (int64_t) -5000000000LL, (uint64_t) 18000000000000000000ULL, 1.5,
                                        "text", "/obj/path", "a{sv}", "u", 7) >= 0);
        assert_se(sd_bus_message_append(m, "a{sv}as(iay)", 2, "one", "s", "1", "two", "ai", 2, 1, 2,
                                        0, 1, 3, 1, 2, 3) >= 0);
        message("call-every-type", m, 3);
        kmsg("call-every-type", m);
        sd_bus_message_unref(m);

        assert_se(sd_bus_message_new_method_call(bus, &m, NULL, "/", NULL, "Fd") >= 0);
        assert_se(sd_bus_message_append(m, "h", 1) >= 0);
        message("call-fd", m, 4);
        kmsg("call-fd", m);
        sd_bus_message_unref(m);

        /* fixed-size structs: GVariant pads them to their alignment */
        assert_se(sd_bus_message_new_method_call(bus, &m, NULL, "/", NULL, "Fixed") >= 0);
        assert_se(sd_bus_message_append(m, "uy", 1, 2) >= 0);
        message("call-fixed-tail", m, 11);
        sd_bus_message_unref(m);

        assert_se(sd_bus_message_new_method_call(bus, &m, NULL, "/", NULL, "Fixed") >= 0);
        assert_se(sd_bus_message_append(m, "a(uy)(uy)s", 2, 1, 2, 3, 4, 5, 6, "x") >= 0);
        message("call-fixed-structs", m, 12);
        sd_bus_message_unref(m);

        assert_se(sd_bus_message_new_method_return(call, &m) >= 0);
        assert_se(sd_bus_message_append(m, "x", (int64_t) 6) >= 0);
        message("return-sum", m, 5);
        kmsg("return-sum", m);
        sd_bus_message_unref(m);

        assert_se(sd_bus_message_new_method_errorf(call, &m, "org.kdbusfs.Error.Failed", "no %s", "luck") >= 0);
        message("error", m, 6);
        sd_bus_message_unref(m);

        assert_se(sd_bus_message_new_signal(bus, &m, "/org/kdbusfs/Example", "org.kdbusfs.Example", "Echoed") >= 0);
        assert_se(sd_bus_message_append(m, "s", "hello") >= 0);
        message("signal-echoed", m, 7);
        kmsg("signal-echoed", m);
        bloom("bloom-echoed", m);
        sd_bus_message_unref(m);

        assert_se(sd_bus_message_new_signal(bus, &m, "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                            "NameOwnerChanged") >= 0);
        assert_se(sd_bus_message_append(m, "sss", "org.foo.Bar", "", ":1.5") >= 0);
        message("signal-noc", m, 8);
        bloom("bloom-noc", m);
        sd_bus_message_unref(m);

        assert_se(sd_bus_message_new_signal(bus, &m, "/a/b/c", "x.y", "Z") >= 0);
        assert_se(sd_bus_message_append(m, "asogsu", 2, "p.q.r", "/s/t", "/o/p", "ss", "after", 1) >= 0);
        message("signal-args", m, 9);
        bloom("bloom-args", m);
        sd_bus_message_unref(m);

        assert_se(sd_bus_message_new_signal(bus, &m, "/", "x.y", "Z") >= 0);
        assert_se(sd_bus_message_append(m, "us", 1, "not-in-bloom") >= 0);
        message("signal-stop", m, 10);
        bloom("bloom-stop", m);
        sd_bus_message_unref(m);

        match(bus, "type='signal',sender='org.kdbusfs.Example',interface='org.kdbusfs.Example',member='Echoed',path='/org/kdbusfs/Example'");
        match(bus, "sender=':1.42',path_namespace='/org/kdbusfs',arg0='hello'");
        match(bus, "arg1path='/s/',arg2namespace='p.q',destination=':1.3'");
        match(bus, "path_namespace='/'");
        match(bus, "type='signal',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='org.foo.Bar'");
        match(bus, "type='signal',member='NameOwnerChanged',arg0=':1.5',arg1=':1.5',arg2=''");
        match(bus, "type='signal',interface='org.freedesktop.DBus'");
        return 0;
}
