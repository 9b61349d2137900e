-- wrk script for the unique-token scenario: every request carries the next token of a pool file
-- (one token per line), starting after a given index, wrapping at the end.
-- usage: wrk -t1 ... -s pool.lua URL -- <tokens-file> <start-index>
local tokens = {}
local n = 0
local idx = 0
local headers = {}

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      n = n + 1
      tokens[n] = "Bearer " .. line
    end
  end
  idx = (tonumber(args[2] or "0") or 0) % n
end

function request()
  idx = idx % n + 1
  headers["Authorization"] = tokens[idx]
  return wrk.format(nil, nil, headers)
end
