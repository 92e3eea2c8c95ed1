"""Lua scripting (`modifier/lua-endpoint`, `modifier/lua-proxy`, `modifier/lua-backend`) with KrakenD's Lua API.

- `config`: the three namespaces, parsed once (sources read, checksums and syntax checked at load time).
- `sandbox`: one Lua runtime per script set and worker, the sandboxed globals, and the driver that runs a script
  under the CPU and memory limits and serves its `http_response.new` calls on the event loop.
- `api`: the objects a script sees (`request`, `ctx`, `response`, `luaTable`, `luaList`, `http_response`).
- `steps`: where the scripts run in the request path (a front guard, a backend wrapper, a fan-out wrapper).
"""
