// The proxy's unix stream sockets (lib/proxy): listening on a path or an
// abstract name, accepting with the peer's SO_PEERCRED, and moving bytes
// with SCM_RIGHTS fds, never waiting. Node's net module can do neither the
// peer credentials nor fd passing. Exported as `unixPeer` on the addon.
#pragma once
#include <napi.h>

void RegisterUnixPeer(Napi::Env env, Napi::Object exports);
