-- wrk script used by Scripts/bench/bench.py.
--
-- With SWITCHBOARD_BENCH_COUNT=1 it tallies responses per worker pid (parsed
-- from the body "Handled by worker: <pid>"), counts non-2xx responses and
-- bodies that do not match. Either way it prints one machine-readable line:
--   SWITCHBOARD_BENCH_JSON {...}
-- with request/error counts, latency percentiles (microseconds) and the
-- per-pid tallies merged over all wrk threads.
--
-- Each wrk thread runs its own Lua state, so the tallies live in per-thread
-- globals; setup() keeps the thread handles and done() reads them back with
-- thread:get().

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   counts = {}
   non2xx = 0
   unmatched = 0
end

-- Counting needs wrk to hand every response to Lua, which costs wrk more CPU
-- than the servers spend on a response: throughput and latency are therefore
-- measured in a pass without it, and only the distribution pass sets
-- SWITCHBOARD_BENCH_COUNT=1.
if os.getenv("SWITCHBOARD_BENCH_COUNT") == "1" then
   function response(status, headers, body)
      if status < 200 or status > 299 then
         non2xx = non2xx + 1
      end
      local pid = body and string.match(body, "Handled by worker: (%d+)")
      if pid then
         counts[pid] = (counts[pid] or 0) + 1
      else
         unmatched = unmatched + 1
      end
   end
end

local function num(x)
   return string.format("%.0f", x or 0)
end

function done(summary, latency, requests)
   local merged = {}
   local total_non2xx = 0
   local total_unmatched = 0
   for _, t in ipairs(threads) do
      local c = t:get("counts")
      if c then
         for pid, n in pairs(c) do
            merged[pid] = (merged[pid] or 0) + n
         end
      end
      total_non2xx = total_non2xx + (t:get("non2xx") or 0)
      total_unmatched = total_unmatched + (t:get("unmatched") or 0)
   end

   local per_pid = {}
   for pid, n in pairs(merged) do
      table.insert(per_pid, string.format("%q:%s", pid, num(n)))
   end

   local pct = {}
   for _, p in ipairs({50, 75, 90, 99, 99.9}) do
      table.insert(pct, string.format("\"%s\":%s", tostring(p), num(latency:percentile(p))))
   end

   local e = summary.errors
   io.write(string.format(
      "SWITCHBOARD_BENCH_JSON {\"duration_us\":%s,\"requests\":%s,\"bytes\":%s," ..
      "\"errors\":{\"connect\":%s,\"read\":%s,\"write\":%s,\"status\":%s,\"timeout\":%s}," ..
      "\"non2xx\":%s,\"unmatched\":%s," ..
      "\"latency_us\":{\"min\":%s,\"max\":%s,\"mean\":%s,\"stdev\":%s,\"percentiles\":{%s}}," ..
      "\"per_pid\":{%s}}\n",
      num(summary.duration), num(summary.requests), num(summary.bytes),
      num(e.connect), num(e.read), num(e.write), num(e.status), num(e.timeout),
      num(total_non2xx), num(total_unmatched),
      num(latency.min), num(latency.max), string.format("%.1f", latency.mean or 0),
      string.format("%.1f", latency.stdev or 0),
      table.concat(pct, ","), table.concat(per_pid, ",")))
end
