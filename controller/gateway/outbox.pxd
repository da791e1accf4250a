# For the compiled build only (hatch_build.py): an extension type, its state struct fields.

cdef class Outbox:
    cdef object _loop
    cdef list _held
    cdef bint _scheduled
    cpdef write(self, transport, data)
    cpdef close(self, transport)
    cpdef flush(self)
    cdef _schedule(self)
