-- wrk script of bench/bench_scan.py: one request shape per run, chosen by environment variables.
--
--   YB_METHOD     POST (default) or GET
--   YB_PATH       /api/v1/scans (default); /floor, /hello for the floors; /c/ with YB_MODE=page
--   YB_MODE       api (default): JSON body {"code", "device_id"}; page: GET YB_PATH .. code;
--                 bare: the same method and path every time, with the same-sized body for POST
--   YB_CODES      file of codes, one a line (URLs or tokens), loaded once per thread in init
--   YB_HOT        the first YB_HOT codes form a hot set ...
--   YB_HOT_SHARE  ... drawn with this probability (re-scans); else uniform over the whole file
--   YB_DEVICES    size of the device-id pool (default 50)
--   YB_DELAY_MS   mean pause before each request on a connection (jittered 0.5x..1.5x):
--                 paces the run to about connections * 1000 / (delay + latency) requests/s
--
-- Every request is built by request() (also for the floors), so the load generator, which
-- shares the machine's two cores with the server, spends the same on each app.

local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("thread_id", counter)
end

local method, path, mode
local codes, ncodes = {}, 0
local hot, hot_share = 0, 0
local devices, ndevices = {}, 50
local delay_ms = nil
local headers = { ["Content-Type"] = "application/json" }

function init(args)
   math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
   method = os.getenv("YB_METHOD") or "POST"
   path = os.getenv("YB_PATH") or "/api/v1/scans"
   mode = os.getenv("YB_MODE") or "api"
   local file = os.getenv("YB_CODES")
   if file and file ~= "" then
      for line in io.lines(file) do
         if #line > 0 then
            ncodes = ncodes + 1
            codes[ncodes] = line
         end
      end
   end
   if ncodes == 0 then
      -- The bare floors still carry a body of a scan's size.
      ncodes = 1
      codes[1] = "HTTPS://YIMA.EXAMPLE.COM/C/AAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
   end
   hot = math.min(tonumber(os.getenv("YB_HOT") or "0"), ncodes)
   hot_share = tonumber(os.getenv("YB_HOT_SHARE") or "0")
   ndevices = tonumber(os.getenv("YB_DEVICES") or "50")
   for i = 1, ndevices do
      devices[i] = string.format("bench-device-%04d", i)
   end
   local d = os.getenv("YB_DELAY_MS")
   if d and d ~= "" then
      delay_ms = tonumber(d)
   end
end

local function pick_code()
   if hot > 0 and math.random() < hot_share then
      return codes[math.random(hot)]
   end
   return codes[math.random(ncodes)]
end

function request()
   local code = pick_code()
   if mode == "page" then
      return wrk.format("GET", path .. code, nil, nil)
   end
   local body = nil
   if method == "POST" then
      body = '{"code":"' .. code .. '","device_id":"' .. devices[math.random(ndevices)] .. '"}'
   end
   if mode == "bare" and method == "GET" then
      return wrk.format("GET", path, nil, nil)
   end
   return wrk.format(method, path, headers, body)
end

if os.getenv("YB_DELAY_MS") and os.getenv("YB_DELAY_MS") ~= "" then
   function delay()
      return math.floor(delay_ms * (0.5 + math.random()) + 0.5)
   end
end

function done(summary, latency, requests)
   -- Machine-readable line for bench_scan.py (wrk prints its own report above it).
   io.write(string.format(
      "YB_RESULT requests=%d duration_us=%d errors_connect=%d errors_read=%d errors_write=%d "
         .. "errors_status=%d errors_timeout=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d "
         .. "max_us=%d mean_us=%.1f\n",
      summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
      summary.errors.write, summary.errors.status, summary.errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean))
end
