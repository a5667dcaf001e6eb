// Small procfs reads for the native side: a whole /proc file as a string,
// and one field of a /proc/<tid>/status text.
#pragma once

#include <string>

namespace procfile {

// The contents of a (small) procfs file, or "" if it cannot be read.
std::string Read(const std::string& path);

// The value of "Key:\t..." in a /proc/<tid>/status text, or "" if absent.
std::string StatusField(const std::string& status, const char* key);

}  // namespace procfile
