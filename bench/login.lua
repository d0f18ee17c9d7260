-- wrk script: POST /api/auth/login cycling through bench users
-- bench-user-1@bench.example … bench-user-N (N from the BENCH_USERS env var),
-- all with the password bench/run registered them with.
local n = tonumber(os.getenv("BENCH_USERS") or "64")
local password = os.getenv("BENCH_PASSWORD") or "bench-password-123"
local i = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  i = i % n + 1
  local body = string.format('{"email":"bench-user-%d@bench.example","password":"%s"}', i, password)
  return wrk.format(nil, "/api/auth/login", nil, body)
end
