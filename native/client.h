// What a kdbus client needs from the kernel side of a connection (open,
// ioctl on a Buffer, read-only pool mapping, poll readiness on libuv, sealed
// memfds), exported as `client` on the addon. Independent of the FUSE
// server: usable by any user, with no mount served by this process.
#pragma once
#include <napi.h>

// Sets exports.client to the object of client functions (lib/client/native.ts).
void RegisterClient(Napi::Env env, Napi::Object exports);
