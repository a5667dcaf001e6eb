/* A service written against sd-bus of February 2015 (the real kdbus client),
 * for dbus-sdbus-interop.test.ts: on the system bus (kdbusfs on
 * /sys/fs/kdbus) it owns org.kdbusfs.CService and exports /org/kdbusfs/CTest
 * with interface org.kdbusfs.CTest: method Double(i) -> i, method Fire(s)
 * (emits signal Fired(s) with its argument), read-only property Name (s).
 * Prints "ready" once it owns the name; runs until SIGTERM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sd-bus.h"

static int method_double(sd_bus *bus, sd_bus_message *m, void *userdata, sd_bus_error *error) {
        int32_t x;
        int r = sd_bus_message_read(m, "i", &x);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "i", x * 2);
}

static int method_fire(sd_bus *bus, sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *s;
        int r = sd_bus_message_read(m, "s", &s);
        if (r < 0)
                return r;
        r = sd_bus_emit_signal(bus, "/org/kdbusfs/CTest", "org.kdbusfs.CTest", "Fired", "s", s);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, NULL);
}

static int get_name(sd_bus *bus, const char *path, const char *interface, const char *property,
                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", "written in C");
}

static const sd_bus_vtable vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Double", "i", "i", method_double, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Fire", "s", "", method_fire, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_PROPERTY("Name", "s", get_name, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_SIGNAL("Fired", "s", 0),
        SD_BUS_VTABLE_END
};

static void die(const char *what, int r) {
        fprintf(stderr, "sdbus-service: %s: %s\n", what, strerror(-r));
        exit(1);
}

int main(void) {
        sd_bus *bus = NULL;
        sd_bus_slot *slot = NULL;
        int r;

        r = sd_bus_open_system(&bus);
        if (r < 0)
                die("connecting to the system bus", r);
        r = sd_bus_add_object_vtable(bus, &slot, "/org/kdbusfs/CTest", "org.kdbusfs.CTest", vtable, NULL);
        if (r < 0)
                die("exporting the object", r);
        r = sd_bus_request_name(bus, "org.kdbusfs.CService", 0);
        if (r < 0)
                die("acquiring org.kdbusfs.CService", r);
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
