-- POST /items with a distinct body per request: wrk ... -- <run tag>
-- An Authorization header, when the API needs one, is passed with wrk -H.
local counter, thread_tag = 0, nil

init = function(args)
  thread_tag = (args[1] or "run") .. "-" .. tostring(thread_id)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

request = function()
  counter = counter + 1
  local body = string.format(
    '{"title":"Bench item %s-%d","description":"Written by the benchmark, request %d of thread %s."}',
    thread_tag, counter, counter, thread_tag)
  return wrk.format(nil, nil, nil, body)
end
