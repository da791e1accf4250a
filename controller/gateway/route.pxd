# For the compiled build only (hatch_build.py): a route and its arms become extension types,
# their fields struct members that Python code can read but not assign.

cdef class _ComparedByFields:
    pass

cdef class RouteArm(_ComparedByFields):
    cdef readonly object name, index, version_id, version, serving_url, stats_key
    cdef readonly object version_label, version_header, weight_bp, bucket_start

cdef class Route(_ComparedByFields):
    cdef readonly RouteArm champion
    cdef readonly object model, model_id, challenger, weight_bp, mirror, rollout_id
    cdef readonly object strategy, state, stratum, mirror_bp, challengers, ranges
