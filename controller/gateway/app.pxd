# For the compiled build only (hatch_build.py): the app and its calls in flight become extension
# types, their state struct fields and the steps of settling an answer direct C calls. Every
# attribute stays readable and writable from Python as before.

from controller.gateway.paths cimport TargetCache
from controller.gateway.route cimport Route, RouteArm
from controller.gateway.upstream cimport Upstream, UpstreamResponse


cdef class GatewayApp:
    cdef public Upstream upstream
    cdef public TargetCache targets
    cdef public object settings, database, metrics, parser, signer, recorder, _input_sampler
    cdef public object routes, feedback, max_body, authenticator, forcing, lag
    cdef public object shadow, in_flight, _stop, _tasks, _reserved
    cpdef bint is_reserved(self, path)
    cpdef answer(self, method, raw_path, query, headers, body, client_host, done)
    cpdef _answered(self, _Call call, UpstreamResponse result)
    cpdef mirror(self, copy)
    cpdef _choose(self, Route route, key, forced)
    cpdef _reply(self, Route route, RouteArm arm, UpstreamResponse result, predicted, counted)
    cpdef _observe(self, Route route, RouteArm arm, UpstreamResponse result, forced)
    cpdef _prediction(self, RouteArm arm, UpstreamResponse result)
    cpdef _record(self, RouteArm arm, UpstreamResponse result, prediction, body, unit)

cdef class _Call:
    cdef public GatewayApp app
    cdef public Route route
    cdef public RouteArm arm
    cdef public object unit, mirror, counted, forced, method, path, headers, body
    cdef public object done
    cpdef answered(self, result)
