"""Routers: how the controller's desired traffic weights reach a data plane.

The built-in gateway reads them from the database (``gateway``, the default); a ``webhook``
router sends them to any data plane's endpoint (an ingress controller, nginx, a service mesh)
and waits for its acknowledgement. One interface, one package per router, one factory, as Argo
Rollouts does for its traffic routers."""
