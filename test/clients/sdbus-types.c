/* Every D-Bus type, fds and a 1 MiB body between sd-bus of February 2015
 * and kdbusfs/client, for test/client/dbus-sdbus-types.test.ts. One program,
 * two roles:
 *
 *   sdbus-types serve   owns org.kdbusfs.CTypes, exports /org/kdbusfs/Types
 *                       (interface org.kdbusfs.Types, below); prints "ready"
 *   sdbus-types call NAME   calls the same interface of a Node service owning
 *                       NAME; prints "ok WHAT" or "FAIL WHAT: why" per check,
 *                       then "done"; exits 0 when every check passed
 *
 * Interface org.kdbusfs.Types (the Node side has the same, see
 * test/client/every-type.mjs; the values are the same constants):
 *   Values() -> SIG          the constant values
 *   Check(SIG) -> s          "" when the arguments equal the constants, else what differs
 *   Emit()                   broadcasts signal Values(SIG) with the constants
 *   property All (SIG)       the constants as one struct
 *   ReadFd(h) -> s           the text in the fd (read from offset 0)
 *   MakeFd(s) -> h           a memfd holding the text
 *   Big(u) -> ay             n bytes of the pattern (i * 7 + 3) & 0xff
 *   TakeBig(ay) -> ub        the length and whether it is the pattern
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "sd-bus.h"

#define SIG "ybnqiuxtdsogvaiasaya{sv}a(yd)a{ys}aai(xa{ss})av"
#define IFACE "org.kdbusfs.Types"
#define PATH "/org/kdbusfs/Types"
#define TEXT "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93"
#define OPATH "/org/kdbusfs/Path/x1"
#define GSIG "a{sv}(ii)"

static int append_values(sd_bus_message *m) {
        return sd_bus_message_append(m, SIG,
                200, 1, -12345, 54321, (int32_t) -2000000000, (uint32_t) 4000000000u,
                (int64_t) -9000000000000000000LL, (uint64_t) 18000000000000000000ULL, 3.25,
                TEXT, OPATH, GSIG,
                "v", "s", "deep",                                   /* v: <<"deep">> */
                3, 1, -2, 2147483647,                               /* ai */
                0,                                                  /* as: empty */
                4, 0, 1, 2, 255,                                    /* ay */
                2, "one", "u", (uint32_t) 1, "two", "as", 2, "a", "b", /* a{sv} */
                2, 1, 0.5, 2, -1.5,                                 /* a(yd) */
                2, 1, "x", 2, "",                                   /* a{ys} */
                3, 1, 1, 0, 2, 2, 3,                                /* aai: [1] [] [2,3] */
                (int64_t) -5, 0,                                    /* (xa{ss}): (-5, {}) */
                3, "i", 1, "s", "two", "ay", 0);                    /* av */
}

/* Reads SIG from m and compares it with the constants; "" or what differs in why. */
static void check_values(sd_bus_message *m, char *why, size_t len) {
        uint8_t y, a_y[4], ys_k[2], ayd_y[2];
        int b;
        int16_t n;
        uint16_t q;
        int32_t i, ai[3], aai[3], av_i;
        uint32_t u, sv_u;
        int64_t x, st_x;
        uint64_t t;
        double d, ayd_d[2];
        const char *s, *o, *g, *deep, *k1, *k2, *as1, *as2, *ys_v[2], *av_s;
        int r;

        why[0] = 0;
        r = sd_bus_message_read(m, SIG,
                &y, &b, &n, &q, &i, &u, &x, &t, &d, &s, &o, &g,
                "v", "s", &deep,
                3, &ai[0], &ai[1], &ai[2],
                0,
                4, &a_y[0], &a_y[1], &a_y[2], &a_y[3],
                2, &k1, "u", &sv_u, &k2, "as", 2, &as1, &as2,
                2, &ayd_y[0], &ayd_d[0], &ayd_y[1], &ayd_d[1],
                2, &ys_k[0], &ys_v[0], &ys_k[1], &ys_v[1],
                3, 1, &aai[0], 0, 2, &aai[1], &aai[2],
                &st_x, 0,
                3, "i", &av_i, "s", &av_s, "ay", 0);
        if (r <= 0) {
                snprintf(why, len, "reading " SIG ": %s", r < 0 ? strerror(-r) : "no arguments");
                return;
        }
#define EXPECT(cond, ...) do { if (!(cond)) { snprintf(why, len, __VA_ARGS__); return; } } while (0)
        EXPECT(y == 200, "y %u", y);
        EXPECT(b == 1, "b %d", b);
        EXPECT(n == -12345, "n %d", n);
        EXPECT(q == 54321, "q %u", q);
        EXPECT(i == -2000000000, "i %d", i);
        EXPECT(u == 4000000000u, "u %u", u);
        EXPECT(x == -9000000000000000000LL, "x %" PRId64, x);
        EXPECT(t == 18000000000000000000ULL, "t %" PRIu64, t);
        EXPECT(d == 3.25, "d %g", d);
        EXPECT(!strcmp(s, TEXT), "s '%s'", s);
        EXPECT(!strcmp(o, OPATH), "o '%s'", o);
        EXPECT(!strcmp(g, GSIG), "g '%s'", g);
        EXPECT(!strcmp(deep, "deep"), "v '%s'", deep);
        EXPECT(ai[0] == 1 && ai[1] == -2 && ai[2] == 2147483647, "ai %d %d %d", ai[0], ai[1], ai[2]);
        EXPECT(a_y[0] == 0 && a_y[1] == 1 && a_y[2] == 2 && a_y[3] == 255, "ay %u %u %u %u", a_y[0], a_y[1], a_y[2], a_y[3]);
        EXPECT(!strcmp(k1, "one") && sv_u == 1 && !strcmp(k2, "two") && !strcmp(as1, "a") && !strcmp(as2, "b"),
               "a{sv} %s=%u %s=[%s %s]", k1, sv_u, k2, as1, as2);
        EXPECT(ayd_y[0] == 1 && ayd_d[0] == 0.5 && ayd_y[1] == 2 && ayd_d[1] == -1.5,
               "a(yd) (%u %g) (%u %g)", ayd_y[0], ayd_d[0], ayd_y[1], ayd_d[1]);
        EXPECT(ys_k[0] == 1 && !strcmp(ys_v[0], "x") && ys_k[1] == 2 && !strcmp(ys_v[1], ""),
               "a{ys} %u=%s %u=%s", ys_k[0], ys_v[0], ys_k[1], ys_v[1]);
        EXPECT(aai[0] == 1 && aai[1] == 2 && aai[2] == 3, "aai %d %d %d", aai[0], aai[1], aai[2]);
        EXPECT(st_x == -5, "(xa{ss}) x %" PRId64, st_x);
        EXPECT(av_i == 1 && !strcmp(av_s, "two"), "av %d %s", av_i, av_s);
        r = sd_bus_message_at_end(m, false);
        EXPECT(r > 0, "arguments after " SIG);
#undef EXPECT
}

static uint8_t pattern(size_t i) {
        return (uint8_t) (i * 7 + 3);
}

static int fd_text(int fd, char *out, size_t len) {
        ssize_t k = pread(fd, out, len - 1, 0);
        if (k < 0)
                return -errno;
        out[k] = 0;
        return 0;
}

static int memfd_with(const char *text) {
        int fd = memfd_create("sdbus-types", MFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (write(fd, text, strlen(text)) != (ssize_t) strlen(text)) {
                close(fd);
                return -EIO;
        }
        return fd;
}

/* ---- the service ---- */

static int m_values(sd_bus *bus, sd_bus_message *m, void *userdata, sd_bus_error *error) {
        sd_bus_message *reply = NULL;
        int r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = append_values(reply);
        if (r >= 0)
                r = sd_bus_send(bus, reply, NULL);
        sd_bus_message_unref(reply);
        return r;
}

static int m_check(sd_bus *bus, sd_bus_message *m, void *userdata, sd_bus_error *error) {
        char why[256];
        check_values(m, why, sizeof why);
        return sd_bus_reply_method_return(m, "s", why);
}

static int m_emit(sd_bus *bus, sd_bus_message *m, void *userdata, sd_bus_error *error) {
        sd_bus_message *sig = NULL;
        int r = sd_bus_message_new_signal(bus, &sig, PATH, IFACE, "Values");
        if (r >= 0)
                r = append_values(sig);
        if (r >= 0)
                r = sd_bus_send(bus, sig, NULL);
        sd_bus_message_unref(sig);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, NULL);
}

static int get_all(sd_bus *bus, const char *path, const char *interface, const char *property,
                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        int r = sd_bus_message_open_container(reply, 'r', SIG);
        if (r >= 0)
                r = append_values(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int m_read_fd(sd_bus *bus, sd_bus_message *m, void *userdata, sd_bus_error *error) {
        int fd, r;
        char text[256];
        r = sd_bus_message_read(m, "h", &fd);
        if (r < 0)
                return r;
        r = fd_text(fd, text, sizeof text);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "s", text);
}

static int m_make_fd(sd_bus *bus, sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *text;
        int fd, r;
        r = sd_bus_message_read(m, "s", &text);
        if (r < 0)
                return r;
        fd = memfd_with(text);
        if (fd < 0)
                return fd;
        r = sd_bus_reply_method_return(m, "h", fd); /* sd-bus sends a duplicate */
        close(fd);
        return r;
}

static int m_big(sd_bus *bus, sd_bus_message *m, void *userdata, sd_bus_error *error) {
        sd_bus_message *reply = NULL;
        uint32_t n;
        void *p;
        int r = sd_bus_message_read(m, "u", &n);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_append_array_space(reply, 'y', n, &p);
        if (r >= 0) {
                for (size_t i = 0; i < n; i++)
                        ((uint8_t *) p)[i] = pattern(i);
                r = sd_bus_send(bus, reply, NULL);
        }
        sd_bus_message_unref(reply);
        return r;
}

static int m_take_big(sd_bus *bus, sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const void *p;
        size_t n;
        bool same = true;
        int r = sd_bus_message_read_array(m, 'y', &p, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n && same; i++)
                same = ((const uint8_t *) p)[i] == pattern(i);
        return sd_bus_reply_method_return(m, "ub", (uint32_t) n, same);
}

static const sd_bus_vtable vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Values", "", SIG, m_values, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Check", SIG, "s", m_check, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Emit", "", "", m_emit, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("ReadFd", "h", "s", m_read_fd, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("MakeFd", "s", "h", m_make_fd, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Big", "u", "ay", m_big, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("TakeBig", "ay", "ub", m_take_big, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_PROPERTY("All", "(" SIG ")", get_all, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_SIGNAL("Values", SIG, 0),
        SD_BUS_VTABLE_END
};

static _Noreturn void die(const char *what, int r) {
        fprintf(stderr, "sdbus-types: %s: %s\n", what, strerror(-r));
        exit(2);
}

static _Noreturn void serve(sd_bus *bus) {
        sd_bus_slot *slot = NULL;
        int r = sd_bus_add_object_vtable(bus, &slot, PATH, IFACE, vtable, NULL);
        if (r < 0)
                die("exporting the object", r);
        r = sd_bus_request_name(bus, "org.kdbusfs.CTypes", 0);
        if (r < 0)
                die("acquiring org.kdbusfs.CTypes", r);
        printf("ready\n");
        fflush(stdout);
        for (;;) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        die("processing", r);
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, (uint64_t) -1);
                if (r < 0)
                        die("waiting", r);
        }
}

/* ---- the caller ---- */

static int failures;

static void report(const char *what, const char *why) {
        if (why[0]) {
                failures++;
                printf("FAIL %s: %s\n", what, why);
        } else
                printf("ok %s\n", what);
        fflush(stdout);
}

static void report_errno(const char *what, int r, const sd_bus_error *e) {
        char why[512];
        snprintf(why, sizeof why, "%s", e && e->message ? e->message : strerror(-r));
        report(what, why);
}

static sd_bus_message *received_signal;

static int on_values(sd_bus *bus, sd_bus_message *m, void *userdata, sd_bus_error *error) {
        received_signal = sd_bus_message_ref(m);
        return 0;
}

static int call(const char *dest) {
        sd_bus *bus = NULL;
        sd_bus_message *reply = NULL, *req = NULL;
        sd_bus_error e = SD_BUS_ERROR_NULL;
        char why[512];
        int r;

        r = sd_bus_open_system(&bus);
        if (r < 0)
                die("connecting to the system bus", r);

        /* Values(): the constants from Node */
        r = sd_bus_call_method(bus, dest, PATH, IFACE, "Values", &e, &reply, "");
        if (r < 0)
                report_errno("Values", r, &e);
        else {
                check_values(reply, why, sizeof why);
                report("Values", why);
        }
        reply = sd_bus_message_unref(reply);
        sd_bus_error_free(&e);

        /* Check(constants): Node compares what sd-bus marshalled */
        r = sd_bus_message_new_method_call(bus, &req, dest, PATH, IFACE, "Check");
        if (r >= 0)
                r = append_values(req);
        if (r >= 0)
                r = sd_bus_call(bus, req, 0, &e, &reply);
        if (r < 0)
                report_errno("Check", r, &e);
        else {
                const char *text;
                r = sd_bus_message_read(reply, "s", &text);
                report("Check", r < 0 ? strerror(-r) : text);
        }
        req = sd_bus_message_unref(req);
        reply = sd_bus_message_unref(reply);
        sd_bus_error_free(&e);

        /* property All */
        r = sd_bus_get_property(bus, dest, PATH, IFACE, "All", &e, &reply, "(" SIG ")");
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'r', SIG);
        if (r < 0)
                report_errno("property All", r, &e);
        else {
                check_values(reply, why, sizeof why);
                report("property All", why);
        }
        reply = sd_bus_message_unref(reply);
        sd_bus_error_free(&e);

        /* signal Values through a match rule */
        {
                char rule[256];
                snprintf(rule, sizeof rule, "type='signal',sender='%s',interface='" IFACE "',member='Values',path_namespace='/org/kdbusfs'", dest);
                r = sd_bus_add_match(bus, NULL, rule, on_values, NULL);
                if (r >= 0)
                        r = sd_bus_call_method(bus, dest, PATH, IFACE, "Emit", &e, NULL, "");
                for (int k = 0; r >= 0 && !received_signal && k < 100; k++) {
                        r = sd_bus_process(bus, NULL);
                        if (r == 0)
                                r = sd_bus_wait(bus, 50000);
                }
                if (r < 0)
                        report_errno("signal Values", r, &e);
                else if (!received_signal)
                        report("signal Values", "no signal within 5 s");
                else {
                        check_values(received_signal, why, sizeof why);
                        report("signal Values", why);
                }
                sd_bus_error_free(&e);
        }

        /* fds both ways */
        {
                int fd = memfd_with("from sd-bus"), got;
                const char *text;
                char content[256];
                r = sd_bus_call_method(bus, dest, PATH, IFACE, "ReadFd", &e, &reply, "h", fd);
                close(fd);
                if (r >= 0)
                        r = sd_bus_message_read(reply, "s", &text);
                if (r < 0)
                        report_errno("ReadFd", r, &e);
                else
                        report("ReadFd", strcmp(text, "from sd-bus") ? text : "");
                reply = sd_bus_message_unref(reply);
                sd_bus_error_free(&e);

                r = sd_bus_call_method(bus, dest, PATH, IFACE, "MakeFd", &e, &reply, "s", "from node?");
                if (r >= 0)
                        r = sd_bus_message_read(reply, "h", &got);
                if (r >= 0)
                        r = fd_text(got, content, sizeof content);
                if (r < 0)
                        report_errno("MakeFd", r, &e);
                else
                        report("MakeFd", strcmp(content, "from node?") ? content : "");
                reply = sd_bus_message_unref(reply);
                sd_bus_error_free(&e);
        }

        /* 1 MiB both ways */
        {
                const size_t big = 1 << 20;
                const void *p;
                size_t n;
                void *space;
                uint32_t len;
                int same;
                r = sd_bus_call_method(bus, dest, PATH, IFACE, "Big", &e, &reply, "u", (uint32_t) big);
                if (r >= 0)
                        r = sd_bus_message_read_array(reply, 'y', &p, &n);
                if (r < 0)
                        report_errno("Big", r, &e);
                else {
                        bool ok = n == big;
                        for (size_t k = 0; k < n && ok; k++)
                                ok = ((const uint8_t *) p)[k] == pattern(k);
                        snprintf(why, sizeof why, "%zu bytes%s", n, ok ? "" : ", not the pattern");
                        report("Big", ok ? "" : why);
                }
                reply = sd_bus_message_unref(reply);
                sd_bus_error_free(&e);

                r = sd_bus_message_new_method_call(bus, &req, dest, PATH, IFACE, "TakeBig");
                if (r >= 0)
                        r = sd_bus_message_append_array_space(req, 'y', big, &space);
                if (r >= 0) {
                        for (size_t k = 0; k < big; k++)
                                ((uint8_t *) space)[k] = pattern(k);
                        r = sd_bus_call(bus, req, 0, &e, &reply);
                }
                if (r >= 0)
                        r = sd_bus_message_read(reply, "ub", &len, &same);
                if (r < 0)
                        report_errno("TakeBig", r, &e);
                else {
                        snprintf(why, sizeof why, "Node read %u bytes%s", len, same ? "" : ", not the pattern");
                        report("TakeBig", len == big && same ? "" : why);
                }
                req = sd_bus_message_unref(req);
                reply = sd_bus_message_unref(reply);
                sd_bus_error_free(&e);
        }

        printf("done\n");
        sd_bus_message_unref(received_signal);
        sd_bus_unref(bus);
        return failures ? 1 : 0;
}

int main(int argc, char *argv[]) {
        sd_bus *bus = NULL;
        int r;

        if (argc == 2 && !strcmp(argv[1], "serve")) {
                r = sd_bus_open_system(&bus);
                if (r < 0)
                        die("connecting to the system bus", r);
                serve(bus);
        }
        if (argc == 3 && !strcmp(argv[1], "call"))
                return call(argv[2]);
        fprintf(stderr, "usage: sdbus-types serve | sdbus-types call NAME\n");
        return 2;
}
