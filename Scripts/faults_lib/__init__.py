"""Helpers of Scripts/faults, the Switchboard fault suite (standard library only). Shared with the benchmarks
through Scripts/benchlib (servers, /proc readers, wrk, statistics, machine info).

common  -- FaultServer (benchlib's Server started with extra Popen options and tracked by pid + start time),
           Sampler, settle, Row
clients -- the normal client, the connection floods, the pipeliner, wrk run in the background
faults  -- the ten faults of the switchboard binary and their expectations
trap    -- a request that traps (fatalError) in a framework application, alone and behind Switchboard
"""
