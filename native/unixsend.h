// Sending on unix sockets without ever waiting: the journal's stream socket
// on stderr (log lines) and systemd's notification socket ($NOTIFY_SOCKET).
// Node has neither non-blocking writes to a socket it did not open nor unix
// datagram sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

// send(fd, MSG_DONTWAIT | MSG_NOSIGNAL): bytes sent, or -errno (-EAGAIN when the reader is behind).
long SendDontWait(int fd, const uint8_t* data, size_t len);

// One datagram to the unix socket at path ('@' first: the abstract namespace), without waiting.
// 0 or -errno.
int DatagramSend(const std::string& path, const uint8_t* data, size_t len);
