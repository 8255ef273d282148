-- Lua 5.1 pattern matching written in Lua, for the calls the host cannot
-- trust to the C matcher.
--
-- string.find/match/gmatch/gsub run in C, where the time budget's count hook
-- never fires, and a backtracking pattern can take exponential time on a
-- short subject: string.find(string.rep('a', 60), string.rep('a-', 8) .. 'b')
-- would keep a core busy for ages.  The sandbox (sandbox.lua) estimates the
-- worst-case work of each call and sends the expensive ones here: the same
-- semantics as the C matcher of Lua 5.1 (captures, position captures, %b,
-- %f, back-references, anchors, gsub's replacement rules), but every step is
-- a VM instruction, so the hook can end the call when its time is up.
--
-- The pattern ends at its first NUL byte, as in Lua 5.1's C matcher.
-- Returns a table {find, match, gmatch, gsub} taking checked arguments
-- (strings, numbers or nil, as the C functions would have converted them).

local byte, sub, char, concat = string.byte, string.sub, string.char, table.concat
local nfind, ngsub = string.find, string.gsub
local type, tostring, error, unpack = type, tostring, error, unpack
local floor = math.floor

-- C's (int) conversion of a Lua number: toward zero.
local function toint(n)
  if n >= 0 then return floor(n) end
  return -floor(-n)
end

local MAXCAPTURES = 32
local CAP_UNFINISHED, CAP_POSITION = -1, -2
local ESC, LBRACKET, RBRACKET, CARET, DOLLAR = 37, 91, 93, 94, 36

-- C-locale character classes (Lua's isalpha & co. on bytes >= 128 are false).
local CLASS = {}
do
  local function set(test)
    local t = {}
    for c = 0, 255 do t[c] = test(c) and true or false end
    return t
  end
  local function upper(c) return c >= 65 and c <= 90 end
  local function lower(c) return c >= 97 and c <= 122 end
  local function digit(c) return c >= 48 and c <= 57 end
  local function alpha(c) return upper(c) or lower(c) end
  local function space(c) return c == 32 or (c >= 9 and c <= 13) end
  local function cntrl(c) return c < 32 or c == 127 end
  local function punct(c) return c > 32 and c < 127 and not alpha(c) and not digit(c) end
  CLASS[97] = set(alpha)                                        -- a
  CLASS[99] = set(cntrl)                                        -- c
  CLASS[100] = set(digit)                                       -- d
  CLASS[108] = set(lower)                                       -- l
  CLASS[112] = set(punct)                                       -- p
  CLASS[115] = set(space)                                       -- s
  CLASS[117] = set(upper)                                       -- u
  CLASS[119] = set(function(c) return alpha(c) or digit(c) end) -- w
  CLASS[120] = set(function(c)                                  -- x
    return digit(c) or (c >= 97 and c <= 102) or (c >= 65 and c <= 70)
  end)
  CLASS[122] = set(function(c) return c == 0 end)               -- z
end

local function match_class(c, cl)
  local lowered = cl
  if cl >= 65 and cl <= 90 then lowered = cl + 32 end
  local t = CLASS[lowered]
  if t == nil then return cl == c end
  if lowered ~= cl then return not t[c] end
  return t[c]
end

-- One matching run: the subject, the pattern (cut at its first NUL) and the
-- capture stack live in upvalues of the closures made here.
local function matcher(src, pat)
  local nul = nfind(pat, "\0", 1, true)
  if nul then pat = sub(pat, 1, nul - 1) end
  local slen, plen = #src, #pat
  local level = 0
  local cstart, clen = {}, {}
  local do_match

  -- index just past the single-character class starting at p
  local function class_end(p)
    local c = byte(pat, p)
    p = p + 1
    if c == ESC then
      if p > plen then error("malformed pattern (ends with '%')", 0) end
      return p + 1
    end
    if c == LBRACKET then
      if byte(pat, p) == CARET then p = p + 1 end
      repeat
        if p > plen then error("malformed pattern (missing ']')", 0) end
        local cc = byte(pat, p)
        p = p + 1
        if cc == ESC and p <= plen then p = p + 1 end
      until byte(pat, p) == RBRACKET
      return p + 1
    end
    return p
  end

  -- p at '[', ec at the closing ']'
  local function match_bracket(c, p, ec)
    local sig = true
    if byte(pat, p + 1) == CARET then
      sig = false
      p = p + 1
    end
    p = p + 1
    while p < ec do
      local pc = byte(pat, p)
      if pc == ESC then
        p = p + 1
        if match_class(c, byte(pat, p)) then return sig end
      elseif byte(pat, p + 1) == 45 and p + 2 < ec then
        if pc <= c and c <= byte(pat, p + 2) then return sig end
        p = p + 2
      elseif pc == c then
        return sig
      end
      p = p + 1
    end
    return not sig
  end

  local function single(s, p, ep)
    if s > slen then return false end
    local c = byte(src, s)
    local pc = byte(pat, p)
    if pc == 46 then return true end
    if pc == ESC then return match_class(c, byte(pat, p + 1)) end
    if pc == LBRACKET then return match_bracket(c, p, ep - 1) end
    return pc == c
  end

  local function max_expand(s, p, ep)
    local i = 0
    while single(s + i, p, ep) do i = i + 1 end
    while i >= 0 do
      local res = do_match(s + i, ep + 1)
      if res then return res end
      i = i - 1
    end
    return nil
  end

  local function min_expand(s, p, ep)
    while true do
      local res = do_match(s, ep + 1)
      if res then return res end
      if single(s, p, ep) then s = s + 1 else return nil end
    end
  end

  local function start_capture(s, p, what)
    if level >= MAXCAPTURES then error("too many captures", 0) end
    level = level + 1
    cstart[level], clen[level] = s, what
    local res = do_match(s, p)
    if not res then level = level - 1 end
    return res
  end

  local function end_capture(s, p)
    local l = level
    while l >= 1 and clen[l] ~= CAP_UNFINISHED do l = l - 1 end
    if l < 1 then error("invalid pattern capture", 0) end
    clen[l] = s - cstart[l]
    local res = do_match(s, p)
    if not res then clen[l] = CAP_UNFINISHED end
    return res
  end

  local function match_balance(s, p)
    if p + 1 > plen then error("unbalanced pattern", 0) end
    if s > slen or byte(src, s) ~= byte(pat, p) then return nil end
    local b, e = byte(pat, p), byte(pat, p + 1)
    local cont = 1
    s = s + 1
    while s <= slen do
      local c = byte(src, s)
      if c == e then
        cont = cont - 1
        if cont == 0 then return s + 1 end
      elseif c == b then
        cont = cont + 1
      end
      s = s + 1
    end
    return nil
  end

  local function check_capture(d)
    local l = d - 48
    if l < 1 or l > level or clen[l] == CAP_UNFINISHED then
      error("invalid capture index", 0)
    end
    return l
  end

  local function match_capture(s, d)
    local l = check_capture(d)
    local len = clen[l]
    if len >= 0 and slen - s + 1 >= len and sub(src, cstart[l], cstart[l] + len - 1) == sub(src, s, s + len - 1)
    then
      return s + len
    end
    return nil
  end

  -- the end (one past) of a match of pat[p..] at src[s..], or nil
  do_match = function(s, p)
    while true do
      if p > plen then return s end
      local pc = byte(pat, p)
      local nxt = byte(pat, p + 1)
      if pc == 40 then -- '('
        if nxt == 41 then return start_capture(s, p + 2, CAP_POSITION) end
        return start_capture(s, p + 1, CAP_UNFINISHED)
      elseif pc == 41 then -- ')'
        return end_capture(s, p + 1)
      elseif pc == ESC and nxt == 98 then -- %b
        s = match_balance(s, p + 2)
        if not s then return nil end
        p = p + 4
      elseif pc == ESC and nxt == 102 then -- %f
        p = p + 2
        if byte(pat, p) ~= LBRACKET then error("missing '[' after '%f' in pattern", 0) end
        local ep = class_end(p)
        local prev = s == 1 and 0 or byte(src, s - 1)
        local cur = s <= slen and byte(src, s) or 0
        if match_bracket(prev, p, ep - 1) or not match_bracket(cur, p, ep - 1) then
          return nil
        end
        p = ep
      elseif pc == ESC and nxt and nxt >= 48 and nxt <= 57 then -- back-reference
        s = match_capture(s, nxt)
        if not s then return nil end
        p = p + 2
      elseif pc == DOLLAR and p == plen then
        if s == slen + 1 then return s end
        return nil
      else
        local ep = class_end(p)
        local q = byte(pat, ep)
        if q == 63 then -- '?'
          if single(s, p, ep) then
            local res = do_match(s + 1, ep + 1)
            if res then return res end
          end
          p = ep + 1
        elseif q == 42 then -- '*'
          return max_expand(s, p, ep)
        elseif q == 43 then -- '+'
          if single(s, p, ep) then return max_expand(s + 1, p, ep) end
          return nil
        elseif q == 45 then -- '-'
          return min_expand(s, p, ep)
        else
          if not single(s, p, ep) then return nil end
          s = s + 1
          p = ep
        end
      end
    end
  end

  local function capture(i, s, e)
    if i > level then
      if i == 1 then return sub(src, s, e - 1) end
      error("invalid capture index", 0)
    end
    local l = clen[i]
    if l == CAP_UNFINISHED then error("unfinished capture", 0) end
    if l == CAP_POSITION then return cstart[i] end
    return sub(src, cstart[i], cstart[i] + l - 1)
  end

  -- all captures (or the whole match when there are none and s is given)
  local function captures(s, e)
    local n = level
    if n == 0 and s then n = 1 end
    local out = {}
    for i = 1, n do out[i] = capture(i, s, e) end
    return n, out
  end

  local function try(s, p)
    level = 0
    return do_match(s, p)
  end

  return {
    try = try,
    captures = captures,
    capture = capture,
    plen = plen,
    pat = pat,
    slen = slen,
  }
end

local SPECIALS = "[%^%$%*%+%?%.%(%)%[%]%%%-]"

-- a pattern that matches the string p literally (NUL bytes too)
local function escape(p)
  return (ngsub(ngsub(p, SPECIALS, "%%%0"), "%z", "%%z"))
end

-- str_find_aux's start position: relative to the end when negative, clamped.
local function start_of(init, len)
  init = init or 1
  if init < 0 then init = len + init + 1 end
  init = init - 1
  if init < 0 then init = 0 elseif init > len then init = len end
  return init + 1
end

local function find_aux(isfind, s, p, init, plain)
  local len = #s
  local s1 = start_of(init and toint(init) or nil, len)
  if isfind then
    -- like C's strpbrk, the test for special characters stops at a NUL
    local nul = nfind(p, "\0", 1, true)
    if plain or not nfind(nul and sub(p, 1, nul - 1) or p, SPECIALS) then p = escape(p) end
  end
  local m = matcher(s, p)
  local pi = 1
  local anchor = byte(m.pat, 1) == CARET
  if anchor then pi = 2 end
  repeat
    local e = m.try(s1, pi)
    if e then
      if isfind then
        local n, caps = m.captures(nil, e)
        return s1, e - 1, unpack(caps, 1, n)
      end
      local n, caps = m.captures(s1, e)
      return unpack(caps, 1, n)
    end
    s1 = s1 + 1
  until s1 > len + 1 or anchor
  return nil
end

local function find(s, p, init, plain)
  return find_aux(true, s, p, init, plain)
end

local function match(s, p, init)
  return find_aux(false, s, p, init, false)
end

-- Lua 5.1's gmatch takes no anchor: a leading '^' is an ordinary character.
local function gmatch(s, p)
  local m = matcher(s, p)
  local pos = 1
  local len = #s
  return function()
    local src = pos
    while src <= len + 1 do
      local e = m.try(src, 1)
      if e then
        local newstart = e
        if e == src then newstart = newstart + 1 end
        pos = newstart
        local n, caps = m.captures(src, e)
        return unpack(caps, 1, n)
      end
      src = src + 1
    end
    pos = len + 2
    return nil
  end
end

local function add_string(m, out, repl, s, e)
  local i, rl = 1, #repl
  local n = #out
  while i <= rl do
    local c = byte(repl, i)
    if c ~= ESC then
      n = n + 1
      out[n] = char(c)
    else
      i = i + 1
      local d = byte(repl, i) or 0
      if d < 48 or d > 57 then
        n = n + 1
        out[n] = char(d)
      elseif d == 48 then
        n = n + 1
        out[n] = m.whole(s, e)
      else
        local v = m.capture(d - 48, s, e)
        n = n + 1
        out[n] = tostring(v)
      end
    end
    i = i + 1
  end
end

local function gsub(src, p, repl, max_n)
  local m = matcher(src, p)
  local srcl = #src
  max_n = max_n and toint(max_n) or srcl + 1
  local pi = 1
  local anchor = byte(m.pat, 1) == CARET
  if anchor then pi = 2 end
  local tr = type(repl)
  if tr == "number" then
    repl = tostring(repl)
    tr = "string"
  end
  local out = {}
  local s, n = 1, 0
  m.whole = function(a, b) return sub(src, a, b - 1) end
  while n < max_n do
    local e = m.try(s, pi)
    if e then
      n = n + 1
      if tr == "string" then
        add_string(m, out, repl, s, e)
      else
        local v
        if tr == "function" then
          local k, caps = m.captures(s, e)
          v = repl(unpack(caps, 1, k))
        else
          v = repl[m.capture(1, s, e)]
        end
        if not v then
          v = sub(src, s, e - 1)
        elseif type(v) ~= "string" and type(v) ~= "number" then
          error("invalid replacement value (a " .. type(v) .. ")", 0)
        end
        out[#out + 1] = tostring(v)
      end
    end
    if e and e > s then
      s = e
    elseif s <= srcl then
      out[#out + 1] = sub(src, s, s)
      s = s + 1
    else
      break
    end
    if anchor then break end
  end
  out[#out + 1] = sub(src, s)
  return concat(out), n
end

return { find = find, match = match, gmatch = gmatch, gsub = gsub, SPECIALS = SPECIALS }
