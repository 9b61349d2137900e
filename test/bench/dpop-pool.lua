-- wrk script for the DPoP scenario: every request carries the same DPoP-bound token and the next
-- proof of a file whose first line is the Authorization value and every other line one proof.
-- usage: wrk -t1 ... -s dpop-pool.lua URL -- <proofs-file>
local auth = nil
local proofs = {}
local n = 0
local idx = 0
local headers = {}

function init(args)
  for line in io.lines(args[1]) do
    if auth == nil then
      auth = line
    elseif #line > 0 then
      n = n + 1
      proofs[n] = line
    end
  end
end

function request()
  idx = idx % n + 1
  headers["Authorization"] = auth
  headers["DPoP"] = proofs[idx]
  return wrk.format(nil, nil, headers)
end
