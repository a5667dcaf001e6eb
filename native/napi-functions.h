// What the addon's modules of plain functions (client.cc, unixpeer.cc)
// share: the object of their functions as JS sees it, the TypeError a call
// with bad arguments throws (its usage as the message), numbers for JS.
#pragma once

#include <napi.h>

#include <cstdint>
#include <initializer_list>
#include <utility>

namespace napifn {

using Function = Napi::Value (*)(const Napi::CallbackInfo&);

// An object with each function under its name.
inline Napi::Object Table(Napi::Env env, std::initializer_list<std::pair<const char*, Function>> functions) {
  Napi::Object o = Napi::Object::New(env);
  for (const auto& [name, fn] : functions) o.Set(name, Napi::Function::New(env, fn, name));
  return o;
}

inline Napi::Value TypeError(Napi::Env env, const char* usage) {
  Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
  return env.Undefined();
}

inline Napi::Number Int(Napi::Env env, int64_t v) { return Napi::Number::New(env, static_cast<double>(v)); }

}  // namespace napifn
