# For the compiled build only (hatch_build.py): an extension type, its state struct fields and
# its lookup a direct C call.

cdef class TargetCache:
    cdef dict _known
    cdef object _size, _longest
    cpdef split(self, raw_path)
