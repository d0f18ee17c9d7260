-- wrk script: a light, paced load (each connection waits BENCH_PROBE_DELAY_MS,
-- default 1 ms, between requests) to measure latency while something else
-- loads the server, instead of saturating it.
local pause = tonumber(os.getenv("BENCH_PROBE_DELAY_MS") or "1")

delay = function()
  return pause
end
