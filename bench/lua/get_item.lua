-- GET /items/<id> with ids drawn uniformly from the seeded range: wrk ... -- <first id> <last id>
local first, last

init = function(args)
  first, last = tonumber(args[1]), tonumber(args[2])
  math.randomseed(os.time() * 100 + thread_id)
end

request = function()
  return wrk.format("GET", "/items/" .. math.random(first, last))
end
