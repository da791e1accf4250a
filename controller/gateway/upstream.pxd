# For the compiled build only (hatch_build.py): the upstream client's classes become extension
# types, their state struct fields and their hot methods direct C calls. Every attribute stays
# readable and writable from Python as before.

from controller.gateway.outbox cimport Outbox


cdef class UpstreamResponse:
    cdef public object outcome, status, headers, body, latency_s, error, received

cdef class _Connection:
    cdef public object _loop, transport, _parser, _future, status, headers, body
    cdef public bint closed, reused, _finished, _head_only, keep_alive, _received
    cdef public bint _headers_done, _has_length
    cpdef _complete(self)
    cpdef _fail(self, exc)
    cpdef send(self, payload, head_only, waiter, Outbox outbox)
    cpdef response(self, start)
    cpdef close(self)

cdef class _Pool:
    cdef public object origin, _limit, _ssl, _outbound, _idle, _open, _waiters
    cpdef _Connection take_idle(self)
    cpdef release(self, _Connection connection)
    cpdef _wake_one(self)

cdef class _Exchange:
    cdef public Upstream _upstream
    cdef public _Pool _pool
    cdef public _Connection _connection
    cdef public object _payload, _start, _deadline, _on_done
    cdef public bint _head_only, _done
    cpdef bint _settle(self)

cdef class Upstream:
    cdef public object _limit, _timeout_s, _outbound, _pools, _ssl, _deadlines, _tick_s
    cdef public object _sweeper, _loop, _tasks
    cdef public Outbox _outbox
    cpdef Outbox _writes(self)
    cpdef _Pool _pool(self, base_url)
    cpdef _running_loop(self)
    cpdef send(self, method, base_url, path, headers, body, on_done)
