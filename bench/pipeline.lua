-- bench/pipeline.lua — wrk script: each write carries DEPTH requests (default 16).
-- wrk counts every response it parses, so its "requests" total is already the
-- number of requests served; it must not be multiplied by the depth.
init = function(args)
        local depth = tonumber(args[1]) or 16
        local r = {}
        for i = 1, depth do
                r[i] = wrk.format(nil, wrk.path)
        end
        req = table.concat(r)
end

request = function()
        return req
end
