{
  "targets": [
    {
      "target_name": "kdbusfs_native",
      "sources": [
        "native/addon.cc",
        "native/session.cc",
        "native/fastpath.cc",
        "native/fairqueue.cc",
        "native/mount.cc",
        "native/tree.cc",
        "native/pool.cc",
        "native/procmem.cc",
        "native/memtask.cc",
        "native/fdwatch.cc",
        "native/fdchannel.cc",
        "native/fdinstall.cc",
        "native/fdtransfer.cc",
        "native/syscall_inject.cc",
        "native/fdcloser.cc",
        "native/procfile.cc",
        "native/loopcall.cc",
        "native/stallrescue.cc",
        "native/unixsend.cc",
        "native/client.cc",
        "native/unixpeer.cc",
        "native/scmrights.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
