# Built by `npm ci` (package.json "install": node-gyp rebuild -C native) against the
# local Node headers; nothing is downloaded. C++ exceptions are on (node-addon-api
# NAPI_CPP_EXCEPTIONS) so that refusals surface as JavaScript errors.
{
  "targets": [
    {
      "target_name": "postcopy_native",
      "sources": [
        "src/addon.cc",
        "src/uffd.cc",
        "src/probe.cc",
        "src/guest_memory.cc",
        "src/fault_reader.cc",
        "src/vcpu_workers.cc",
        "src/host.cc",
        "src/host_vcpus.cc",
        "src/placement.cc",
        "src/fault_delivery.cc",
        "src/shared_file.cc",
        "src/socket_options.cc",
        "src/relay.cc",
        "src/relay_binding.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags!": ["-fno-exceptions", "-O3"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20", "-O3"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O2", "-Wall", "-Wextra"],
      "ldflags": ["-pthread"]
    }
  ]
}
