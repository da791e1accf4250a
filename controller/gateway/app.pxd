# For the compiled build only (hatch_build.py): the app and its calls in flight become extension
# types, their state struct fields and the steps of settling an answer direct C calls. Every
# attribute stays readable and writable from Python as before.

from controller.gateway.paths cimport TargetCache
from controller.gateway.upstream cimport Upstream


cdef class GatewayApp:
    cdef public Upstream upstream
    cdef public TargetCache targets
    cdef public object settings, database, metrics, parser, signer, recorder, _input_sampler
    cdef public object routes, feedback, max_body, authenticator, forcing, lag
    cdef public object shadow, in_flight, _stop, _tasks, _reserved
    cpdef bint is_reserved(self, path)
    cpdef answer(self, method, raw_path, query, headers, body, client_host, done)
    cpdef _answered(self, _Call call, result)
    cpdef mirror(self, copy)
    cpdef _choose(self, route, key, forced)
    cpdef _reply(self, route, arm, result, predicted, counted)
    cpdef _observe(self, route, arm, result, forced)
    cpdef _prediction(self, arm, result)
    cpdef _record(self, arm, result, prediction, body, unit)

cdef class _Call:
    cdef public GatewayApp app
    cdef public object route, arm, unit, mirror, counted, forced, method, path, headers, body
    cdef public object done
    cpdef answered(self, result)
