-- wrk script: closed-loop PUT and GET of one workload for raftkv (Consul KV API) or etcd (v3
-- JSON gateway), driven by loadtest/bench/wrk.py. Arguments after `--`:
--   SYSTEM (raftkv|etcd) WORKLOAD (put|get|get-consistent|get-stale) KEYSPACE KEY_BYTES VALUE_BYTES SEED
-- Keys are the same as the Python generator's (a random index of KEYSPACE, zero-padded to
-- KEY_BYTES). Every request of the keyspace is built once in init(), so that request() costs
-- one table lookup: the point of this generator is to cost the shared cores as little as
-- possible. done() prints one line `WRK_JSON {...}` with the counts, the percentiles and the
-- latency quantiles on a fine grid (percent -> µs), so that several wrk processes can be merged.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(s)
   local out = {}
   for i = 1, #s, 3 do
      local a, b, c = s:byte(i, i + 2)
      local n = a * 65536 + (b or 0) * 256 + (c or 0)
      local chars = math.min(#s - i + 1, 3) + 1  -- 3 bytes -> 4 characters, 2 -> 3, 1 -> 2; then `=`
      for j = 1, 4 do
         if j <= chars then
            local k = math.floor(n / 2 ^ (6 * (4 - j))) % 64
            out[#out + 1] = B64:sub(k + 1, k + 1)
         else
            out[#out + 1] = "="
         end
      end
   end
   return table.concat(out)
end

local function build(system, workload, key, value)
   if system == "etcd" then
      local json = {["Content-Type"] = "application/json"}
      local k = b64(key)
      if workload == "put" then
         return wrk.format("POST", "/v3/kv/put", json, '{"key":"' .. k .. '","value":"' .. b64(value) .. '"}')
      elseif workload == "get-stale" then
         return wrk.format("POST", "/v3/kv/range", json, '{"key":"' .. k .. '","serializable":true}')
      end
      return wrk.format("POST", "/v3/kv/range", json, '{"key":"' .. k .. '"}')  -- linearizable by default
   end
   local path = "/v1/kv/" .. key
   if workload == "put" then
      return wrk.format("PUT", path, {}, value)
   end
   local query = ({["get"] = "", ["get-consistent"] = "?consistent", ["get-stale"] = "?stale"})[workload]
   return wrk.format("GET", path .. query, {}, nil)
end

function init(args)
   local system, workload = args[1], args[2]
   local keyspace, key_bytes, value_bytes = tonumber(args[3]), tonumber(args[4]), tonumber(args[5])
   math.randomseed(tonumber(args[6]))
   local value = string.rep("v", value_bytes)
   requests_ = {}
   for i = 0, keyspace - 1 do
      local key = string.format("%0" .. key_bytes .. "d", i):sub(-key_bytes)
      requests_[i + 1] = build(system, workload, key, value)
   end
   count_ = keyspace
   non2xx = 0
end

function request()
   return requests_[math.random(count_)]
end

-- wrk itself counts only statuses above 399; here anything but 2xx is an error.
function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

function done(summary, latency, requests)
   local bad = 0
   for _, t in ipairs(threads) do
      bad = bad + t:get("non2xx")
   end
   -- The quantile function on a grid (every 0.1 %, every 0.01 % above 99 %): this wrk build's
   -- histogram cannot be read bucket by bucket (latency[i] returns i), and the grid lets the
   -- driver merge several processes' distributions.
   local q = {}
   if summary.requests > 0 then
      for i = 1, 990 do
         q[#q + 1] = string.format("[%.1f,%d]", i / 10, latency:percentile(i / 10))
      end
      for i = 9901, 9999 do
         q[#q + 1] = string.format("[%.2f,%d]", i / 100, latency:percentile(i / 100))
      end
      q[#q + 1] = string.format("[100,%d]", latency.max)  -- percentile(100) answers 0 here
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"duration_us":%d,"requests":%d,"bytes":%d,"non2xx":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"quantiles":[%s]}\n',
      summary.duration, summary.requests, summary.bytes, bad,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      table.concat(q, ",")))
end
