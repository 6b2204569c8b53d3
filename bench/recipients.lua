-- wrk: GET one path with a token taken in turn from a file (one key a line), each thread from its own offset.
-- wrk -s bench/recipients.lua URL -- TOKENS_FILE PATH
local tokens = {}
local counter = 0
local path = "/"

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  path = args[2] or path
  -- Threads start apart, so they do not ask for the same user at the same moment.
  counter = math.random(#tokens)
end

function request()
  counter = counter % #tokens + 1
  return wrk.format("GET", path, { ["Authorization"] = "Token " .. tokens[counter] })
end
