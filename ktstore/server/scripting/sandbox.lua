-- Sandbox of one Lua state of ktstore-server's script host.
--
-- Runs in every fresh state before the script.  Scripts come from the server operator, but
-- a procedure is reachable by any client that can talk to the port, so a bug
-- or an injected string must not turn into access to the host's files,
-- processes or Python objects.  Unless the host allows unsafe scripts, this
-- removes what reaches outside the state (io, os.execute/remove/rename/exit/
-- getenv/tmpname/setlocale, loading files or C libraries, the debug library
-- that exposes the registry) and refuses precompiled chunks, which can crash
-- a Lua 5.1 VM.  lupa's `python` module is removed in every case.
--
-- Runs after budget.lua, which installed the time budget (it needs the
-- debug library and, on LuaJIT, the FFI, both removed here).

-- jit_mode (LuaJIT only): "off" turns the compiler off; "selective" means
-- the host barred every function from it but the dump codecs, and `nojit`
-- bars the chunks loaded from now on; nil without a time budget (no hook to
-- protect: everything may be compiled).
local unsafe, jit_mode, nojit = ...

local _loadstring, concat, error, type = loadstring, table.concat, error, type

-- LuaJIT: compiled traces never call debug hooks, so script code must not be
-- compiled for the time budget to hold; its extra modules go, so scripts see
-- the Lua 5.1 globals ktserver offers whichever engine runs them.
if jit then
  if jit_mode == "off" then
    jit.off()
    jit.flush()
  end
  math.mod = math.mod or math.fmod
  string.gfind = string.gfind or string.gmatch
  table.setn = table.setn or function() error("'setn' is obsolete", 2) end
  table.move, coroutine.isyieldable = nil, nil
end
jit, bit = nil, nil
if package then
  -- even an unsafe script must not turn the JIT back on (nor reach the FFI)
  for _, name in ipairs({ "jit", "jit.opt", "jit.util", "jit.profile", "bit", "ffi",
                          "table.new", "table.clear", "string.buffer" }) do
    if package.loaded then package.loaded[name] = nil end
    if package.preload then package.preload[name] = nil end
  end
end
python = nil
if package and package.loaded then package.loaded.python = nil end

if not unsafe then
  local function text_only(s, name)
    if type(s) ~= "string" then s = tostring(s) end
    if s:byte(1) == 27 then return nil, "precompiled chunks are not allowed" end
    local f, err = _loadstring(s, name)
    if f and nojit then nojit(f) end
    return f, err
  end
  loadstring = text_only
  load = function(reader, name)
    if type(reader) ~= "function" then return nil, "bad reader" end
    local parts = {}
    while true do
      local piece = reader()
      if piece == nil or piece == "" then break end
      if type(piece) ~= "string" then return nil, "reader function must return a string" end
      parts[#parts + 1] = piece
    end
    return text_only(concat(parts), name or "=(load)")
  end
  io = nil
  dofile = nil
  loadfile = nil
  require = nil
  module = nil
  package = nil
  debug = nil
  os.execute = nil
  os.remove = nil
  os.rename = nil
  os.exit = nil
  os.getenv = nil
  os.tmpname = nil
  os.setlocale = nil
end
