-- ==========================================================================
-- Diagnostics
-- ==========================================================================

-- ktstoreversion: out: version of this script (lets clients detect it)
procedure("ktstoreversion", function(inmap, outmap)
  outmap.version = "1"
end)

