# CPU-only fallback build (node-gyp): used by `npm install` through node-gyp-build when no prebuild
# matches. The CUDA build is CMakeLists.txt (cmake-js). Both emit build/Release/monarch.node.
{
  "targets": [{
    "target_name": "monarch",
    "sources": ["<!@(node -p \"['csrc','cpu'].flatMap(d=>require('fs').readdirSync(d).filter(f=>f.endsWith('.cc')).map(f=>d+'/'+f)).join(' ')\")"],
    "include_dirs": ["include"],
    "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "cflags_cc": ["-std=c++17", "-O3", "-fvisibility=hidden"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
    "ldflags": ["-pthread"],
    "libraries": ["-ldl"]
  }]
}
