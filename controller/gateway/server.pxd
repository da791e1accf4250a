# For the compiled build only (hatch_build.py): the connection protocol becomes an extension
# type, its state struct fields and its answering steps direct C calls. Every attribute stays
# readable and writable from Python as before.

from controller.gateway.outbox cimport Outbox


cdef class _Request:
    cdef public object method, target, headers, body, keep_alive, refusal

cdef class GatewayProtocol:
    cdef public Outbox outbox
    cdef public object server, app, limits, max_body, loop, parser, transport, client
    cdef public object _target, _headers, _body, _body_size, _declared, _head_bytes
    cdef public object _pending, _answering, _own, _on_answer
    cdef public bint _expects, _in_head, _refusing, _wants_continue, _busy, _in_next
    cdef public bint _reading_paused, _writing_paused, _close_when_done
    cdef public double _head_deadline, _idle_deadline
    cpdef _next(self)
    cpdef _take(self)
    cpdef _start(self, _Request request)
    cpdef _answered(self, reply, copy)
    cpdef _finish(self, _Request request, reply)
    cpdef _write(self, reply, method, keep_alive)
    cpdef _refuse(self, reply)
