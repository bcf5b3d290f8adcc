"""Helpers of Scripts/faults, the Switchboard fault suite (standard library only).

common  -- the bench.py import, /proc readers, FaultServer (bench.Server started with extra Popen options and
           tracked by pid + start time), Sampler, Row
clients -- the normal client, the connection floods, the pipeliner, wrk run in the background
faults  -- the nine faults and their expectations
"""
